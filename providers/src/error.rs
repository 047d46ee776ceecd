//! Errors of key providers. None of them carries secret material.

/// Why a key could not be enrolled or recovered.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The node UUID could not be read.
    #[error("cannot read the node UUID from {source_name}: {reason}; set it with --node-uuid or VOLCTL_NODE_UUID")]
    NodeUuidUnavailable {
        /// Where it was read from.
        source_name: String,
        /// Why it failed.
        reason: String,
    },
    /// The node UUID is too predictable to derive a key from.
    #[error("node UUID `{uuid}` has too little entropy (one character fills more than half of it); nodeID keys are refused on this machine")]
    LowEntropyUuid {
        /// The UUID (not secret: it identifies the machine).
        uuid: String,
    },
    /// A lockToSTATE key was used without the STATE salt.
    #[error("the STATE salt is not available (lockToState keys need it; pass --state-salt-file or open STATE first)")]
    MissingSalt,
    /// A TPM refused to unseal because the PCRs it was sealed to changed (a
    /// firmware or Secure Boot database update); re-sealing mends it.
    #[error(
        "{what}: the PCR values changed since the key was sealed; another key must open the volume"
    )]
    PcrMismatch {
        /// The step that failed, and the TPM's answer.
        what: String,
    },
    /// The key kind cannot be used right now (not built in, device absent, server down).
    #[error("{kind} key unavailable: {reason}")]
    Unavailable {
        /// The key kind.
        kind: api_types::KeySource,
        /// Why.
        reason: String,
    },
    /// A new typed passphrase was not confirmed (the two answers differed).
    #[error("no new passphrase was enrolled: {reason}")]
    NotConfirmed {
        /// Why.
        reason: String,
    },
    /// What was asked of the key cannot be done (the reason says why).
    #[error("{kind} key: {reason}")]
    Refused {
        /// The key kind.
        kind: api_types::KeySource,
        /// Why.
        reason: String,
    },
    /// The TPM refused the PIN typed (TPM_RC_AUTH_FAIL): a wrong PIN, which
    /// the TPM counts towards its dictionary-attack lockout. No KDF ran.
    #[error("the TPM refused the PIN (a wrong PIN; the TPM counts it towards its lockout)")]
    WrongPin,
    /// The slot's token does not hold what this provider needs.
    #[error("{kind} token is malformed: {reason}")]
    BadToken {
        /// The key kind.
        kind: api_types::KeySource,
        /// What is wrong.
        reason: String,
    },
}
