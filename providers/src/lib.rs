//! # volctl providers
//!
//! Key sources behind one seam, [`KeyProvider`]: each key kind (`static`,
//! `nodeID`, `kms`, `tang`, `tpm`) turns a key config into the passphrase
//! LUKS2 sees, and says what non-secret data to keep in the keyslot's token.
//! `lockToSTATE` is a wrapper ([`SaltedProvider`]) around any kind, not a
//! flag inside each one.

pub mod ask;
mod error;
mod key_data;
mod kms;
mod node_id;
mod passphrase;
pub mod prompt;
mod provider;
pub mod recovery;
mod registry;
mod salted;
mod sealed_key;
mod static_key;
pub mod tang;
pub mod threshold;
pub mod tpm;

pub use ::kms::client::ClientOptions as KmsClientOptions;
pub use error::ProviderError;
pub use key_data::KeyData;
pub use kms::{
    race as kms_race, KmsProvider, Wait as KmsWait, BOOT_DEADLINE as KMS_BOOT_DEADLINE,
    STAGGER as KMS_STAGGER,
};
pub use node_id::{
    check_uuid_entropy, node_uuid, read_node_uuid, NodeIdProvider, NodeUuid, UnknownNodeUuid,
    NODE_UUID_ENV, SMBIOS_UUID_PATH,
};
pub use passphrase::Passphrase;
pub use provider::{answered_report, others_did, Enrolled, KeyContext, KeyProvider};
pub use recovery::RecoveryHandover;
pub use registry::{provider_for, ProviderEnv};
pub use salted::{SaltedProvider, StateSalt, STATE_SALT_LEN};
pub use sealed_key::{Base64Bytes, KmsTokenData, PcrValueSet, SignedPolicyToken, TpmTokenData};
pub use static_key::StaticProvider;
pub use tang::{TangProvider, TangTokenData};
pub use threshold::{ThresholdProvider, ThresholdTokenData};
pub use tpm::{secure_boot_enabled, TpmOptions, TpmProvider, DEFAULT_TCTI};

#[cfg(feature = "test-swtpm")]
pub mod test_swtpm;
#[cfg(feature = "test-swtpm")]
pub mod test_tang;
