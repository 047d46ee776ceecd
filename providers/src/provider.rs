//! The seam between the keyslot engine and the key kinds.

use crate::{KeyData, Passphrase, ProviderError};
use api_types::KeySource;
use async_trait::async_trait;

/// What a provider knows about the volume a key is for.
#[derive(Debug, Clone)]
pub struct KeyContext {
    /// The volume's partition label (`STATE`, `EPHEMERAL`, `u-data`): the volume ID.
    pub volume_id: String,
}

/// A freshly enrolled key: the passphrase for the new keyslot and the
/// non-secret data to keep in its token (sealed blobs, endpoint, PCRs).
#[derive(Debug)]
pub struct Enrolled {
    /// The passphrase to add to the keyslot.
    pub passphrase: Passphrase,
    /// Kind-specific token data (no secrets in clear).
    pub token_data: KeyData,
}

/// One key kind. Implementations must never log or return secrets in errors.
#[async_trait]
pub trait KeyProvider: Send + Sync {
    /// The kind; its unlock cost and whether it is derivable from the
    /// config alone are facts of the kind ([`KeySource`]).
    fn kind(&self) -> KeySource;

    /// Makes a new key for a keyslot.
    async fn enroll(&self, ctx: &KeyContext) -> Result<Enrolled, ProviderError>;

    /// Recovers the passphrase of an enrolled key from its token data.
    async fn recover(
        &self,
        ctx: &KeyContext,
        token_data: &KeyData,
    ) -> Result<Passphrase, ProviderError>;

    /// The passphrase of a key a person helps open, from what they typed
    /// (`answer`): a TPM key with a PIN unseals with it. Keys whose answer
    /// is the passphrase itself (`prompt`) give it back as it is.
    async fn recover_typed(
        &self,
        _ctx: &KeyContext,
        _token_data: &KeyData,
        answer: &Passphrase,
    ) -> Result<Passphrase, ProviderError> {
        Ok(answer.clone())
    }

    /// The canonical description of this key that its keyslot's binding
    /// covers: the kind, its non-secret parameters, and any passphrase
    /// material derivable locally (static passphrase, nodeID derivation,
    /// salt). A change here means the slot must be re-enrolled.
    fn binding_material(&self, ctx: &KeyContext) -> Result<Passphrase, ProviderError>;

    /// The token data this key should have from now on, when its own rules
    /// say to rewrite it for the same passphrase (no new keyslot, no KDF
    /// run): a TPM key sealed to "these values or those" once the machine
    /// has one of them. `None`: keep the token. Asked after the volume is
    /// unlocked.
    async fn refresh(
        &self,
        _ctx: &KeyContext,
        _token_data: &KeyData,
    ) -> Result<Option<KeyData>, ProviderError> {
        Ok(None)
    }

    /// What a slot enrolled with this key would be bound to, beyond its
    /// kind, for the plan to show (no secret): e.g. a TPM key's PCRs and
    /// the fingerprint of the key that signs its PCR policy.
    fn describe(&self) -> Option<String> {
        None
    }

    /// What the last [`Self::recover`] met that a person should see though
    /// it succeeded (no secret), e.g. which key servers answered and which
    /// did not.
    fn report(&self) -> Option<String> {
        None
    }
}

/// What a provider's last [`KeyProvider::recover`] met, kept for
/// [`KeyProvider::report`] (providers are shared by reference, so behind a
/// lock).
#[derive(Debug, Default)]
pub struct LastReport(std::sync::Mutex<Option<String>>);

impl LastReport {
    /// Keeps `report` (replacing the one before).
    pub fn set(&self, report: Option<String>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = report;
    }

    /// The report kept.
    pub fn get(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// What those asked at the same time as the one that answered did, for a
/// report: each failure as it reads, then `<name>: no answer yet` for each
/// that had not answered (key servers, threshold members, keyslots).
pub fn others_did(
    failed: impl IntoIterator<Item = String>,
    waiting: impl IntoIterator<Item = impl std::fmt::Display>,
) -> Vec<String> {
    failed
        .into_iter()
        .chain(waiting.into_iter().map(|w| format!("{w}: no answer yet")))
        .collect()
}

/// `<who> answered; <what the others did>`, when others were asked.
pub fn answered_report(who: &str, others: &[String]) -> Option<String> {
    (!others.is_empty()).then(|| format!("{who} answered; {}", others.join("; ")))
}
