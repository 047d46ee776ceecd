//! The key that opens a volume, and nothing else: for operations that
//! need a keyslot's passphrase but change no keyslot (a decryption in
//! place opens the detached header by it). One KDF run, as every unlock.

use super::keys;
use super::{observe, unlock_any, ConvergeError};
use crate::device::LuksDevice;
use crate::luks2::header::Luks2Header;
use crate::volume::VolumeSpec;
use api_types::KeyslotId;
use providers::{Passphrase, ProviderEnv};
use std::sync::Arc;

/// A keyslot that opens the volume, and its passphrase.
pub struct Opener {
    /// The keyslot.
    pub slot: KeyslotId,
    /// Its passphrase.
    pub passphrase: Passphrase,
}

/// Finds the configured key that opens header `h`, read from `device` (a
/// device, or a detached header file, whose keyslots `device` opens):
/// unattended keys first, then a typed one, as a converge unlocks. Writes
/// nothing.
pub async fn opener(
    spec: &VolumeSpec,
    h: &Luks2Header,
    device: &Arc<dyn LuksDevice>,
    env: &ProviderEnv,
) -> Result<Opener, ConvergeError> {
    let keys = keys::keys(spec, env);
    let desired: Vec<_> = keys.iter().map(keys::desired_slot).collect();
    let observed = observe::observe(h);
    let u = unlock_any(spec, h, &keys, &desired, &observed, device, env).await?;
    Ok(Opener {
        slot: u.slot,
        passphrase: u.passphrase,
    })
}
