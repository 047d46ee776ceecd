//! The pure decision: from (desired keys, observed keyslots) to an ordered
//! list of actions. No I/O, no KDF, no clock: every rule of keyslot
//! convergence lives here and is unit-tested without devices.
//!
//! Rules (docs/architecture.md has the why):
//! - a desired slot that is empty is added; one whose binding does not match
//!   is replaced; one without a volctl token is taken over (adopted if it is
//!   the slot that unlocked, else replaced);
//! - a managed slot not in the config is removed, but only when its token is
//!   authenticated (its owner tag, keyed by the volume key, matches the
//!   keyslot); an unmanaged or unauthenticated one is left alone and reported;
//! - the slot that unlocked this run is never replaced or removed;
//! - a key that cannot be produced now (salt missing, TPM absent, KMS down)
//!   is never touched: its slot is reported instead;
//! - actions are ordered add → replace → token fixes → remove → cleanup,
//!   so a crash between two of them leaves a volume that opens.
//!
//! - `vocabulary.rs`: desired and observed slots, `Action`, `Note`, `Plan`;
//! - `decide.rs`: the rules;
//! - `text.rs`: the lines a person reads.

mod decide;
mod text;
mod vocabulary;

pub use decide::*;
pub use vocabulary::*;

#[cfg(test)]
mod tests;
