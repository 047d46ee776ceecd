//! The `encryption` block of a volume document and its keys, as written
//! (`mod.rs`); what they resolve to, one typed key per slot, is
//! `resolved.rs` (re-exported here).

mod resolved;
pub use resolved::*;

use crate::keyslot::KeyslotId;
use crate::secret::SecretString;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The only encryption provider volctl implements.
pub const PROVIDER_LUKS2: &str = "luks2";
/// The default cipher, as in Talos.
pub const DEFAULT_CIPHER: &str = "aes-xts-plain64";
/// Ciphers volctl accepts, with the key sizes (bits) each allows.
pub const CIPHERS: &[(&str, &[u32])] = &[
    ("aes-xts-plain64", &[256, 512]),
    ("xchacha12,aes-adiantum-plain64", &[256]),
    ("xchacha20,aes-adiantum-plain64", &[256]),
];
/// dm-crypt performance flags accepted in `encryption.options`.
pub const PERF_OPTIONS: &[&str] = &["no_read_workqueue", "no_write_workqueue", "same_cpu_crypt"];
/// Sector sizes accepted in `encryption.blockSize`.
pub const BLOCK_SIZES: &[u32] = &[512, 1024, 2048, 4096];
/// Default PCRs a TPM key is sealed to (Secure Boot state).
pub const DEFAULT_TPM_PCRS: &[u32] = &[7];
/// Highest PCR index of a PC-client TPM.
pub const MAX_PCR: u32 = 23;
/// Highest LUKS2 keyslot number.
pub const MAX_SLOT: i64 = KeyslotId::COUNT as i64 - 1;

/// `encryption`: how a volume is encrypted and which keys open it.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Encryption {
    /// Encryption provider: `luks2`. Absent means none, as in Talos (an
    /// error when keys are given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// The keys, each in its own LUKS2 keyslot. At least one.
    #[serde(default)]
    pub keys: Vec<KeySpec>,
    /// dm-crypt cipher (default `aes-xts-plain64`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cipher: Option<String>,
    /// Volume key size in bits (default 512 for aes-xts, 256 for adiantum).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_size: Option<u32>,
    /// Encryption sector size in bytes: 512, 1024, 2048 or 4096 (default: chosen by libcryptsetup).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_size: Option<u32>,
    /// dm-crypt performance flags: `no_read_workqueue`, `no_write_workqueue`, `same_cpu_crypt`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
    /// Pass TRIM/discard through dm-crypt (leaks which blocks are unused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_discards: Option<bool>,
    /// Fixed PBKDF costs for new keyslots. Without it, libcryptsetup benchmarks
    /// its defaults once at format time and volctl reuses those costs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pbkdf: Option<PbkdfSpec>,
    /// Accept a `static` key on STATE, whose config is kept in clear on META.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_static_key_on_state: Option<bool>,
    /// Encrypt a volume that holds an ext4 filesystem in place (shrink it
    /// by 32 MiB, then LUKS2 reencryption with a data shift) instead of
    /// waiting for a wipe. volctl's own field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_place: Option<bool>,
    /// Decrypt the volume in place at the next boot, its data kept, and
    /// keep it plain from then on: the keys above open it until it is
    /// plaintext (then the `encryption` block may go). volctl's own field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decrypt_in_place: Option<bool>,
}

impl Encryption {
    /// Whether a volume holding data is encrypted in place (`inPlace`).
    pub fn in_place(&self) -> bool {
        self.in_place == Some(true)
    }

    /// Whether the volume is to be decrypted in place and kept plain
    /// (`decryptInPlace`).
    pub fn decrypt_in_place(&self) -> bool {
        self.decrypt_in_place == Some(true)
    }

    /// The cipher in effect.
    pub fn cipher(&self) -> &str {
        self.cipher.as_deref().unwrap_or(DEFAULT_CIPHER)
    }

    /// The volume key size in effect.
    pub fn key_size(&self) -> KeySize {
        KeySize::from_bits(self.key_size_bits())
    }

    /// The volume key size in bits in effect.
    pub fn key_size_bits(&self) -> u32 {
        self.key_size.unwrap_or_else(|| {
            if self.cipher().contains("adiantum") {
                256
            } else {
                512
            }
        })
    }

    /// The keys in a resolved form (kind chosen, PCRs sorted), skipping keys
    /// that fail validation. Call after [`crate::validate`] has passed.
    pub fn resolved_keys(&self) -> Vec<ResolvedKey> {
        self.keys.iter().filter_map(KeySpec::resolve).collect()
    }
}

/// `encryption.pbkdf`: fixed key-derivation costs.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PbkdfSpec {
    /// `argon2id` (default), `argon2i` or `pbkdf2`.
    #[serde(default, rename = "type")]
    pub kind: PbkdfType,
    /// Memory cost in KiB (argon2 only; 32 to 4194304).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_ki_b: Option<u32>,
    /// Iterations: argon2 time cost (≥ 4) or PBKDF2 iterations (≥ 1000).
    pub iterations: u32,
    /// Threads (argon2 only; 1 to 32, default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallelism: Option<u32>,
}

/// A PBKDF algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PbkdfType {
    /// Argon2id (memory-hard; the LUKS2 default).
    #[default]
    Argon2id,
    /// Argon2i.
    Argon2i,
    /// PBKDF2-SHA256.
    Pbkdf2,
}

/// One key of `encryption.keys`: a slot and exactly one kind.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KeySpec {
    /// LUKS2 keyslot number, 0–31, unique within the volume (default 0, as in Talos).
    #[serde(default)]
    pub slot: i64,
    /// A passphrase written in the config.
    #[serde(default, rename = "static", skip_serializing_if = "Option::is_none")]
    pub static_key: Option<StaticKey>,
    /// A key derived from the machine's SMBIOS UUID and the partition label.
    #[serde(default, rename = "nodeID", skip_serializing_if = "Option::is_none")]
    pub node_id: Option<NodeIdKey>,
    /// A random key sealed by a network KMS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms: Option<KmsKey>,
    /// A random key sealed to the TPM and its PCR state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<TpmKey>,
    /// volctl: a random key bound to a Tang server (network-bound disk
    /// encryption, clevis-compatible): it opens while the server answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tang: Option<TangKey>,
    /// A random key a person keeps: generated at enrolment, shown once,
    /// stored nowhere on the node but in its keyslot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery: Option<RecoveryKey>,
    /// A passphrase a person types when the volume is unlocked (asked
    /// twice at enrolment); written nowhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<PromptKey>,
    /// volctl: the slot's passphrase split among member keys (Shamir's
    /// secret sharing), `required` of which open it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<ThresholdKey>,
    /// Mix the STATE salt into the key, so a wiped STATE makes this key useless.
    #[serde(
        default,
        rename = "lockToSTATE",
        skip_serializing_if = "Option::is_none"
    )]
    pub lock_to_state: Option<bool>,
    /// Talos's spelling of `lockToSTATE`; accepted, but set only one of them.
    #[serde(
        default,
        rename = "lockToState",
        skip_serializing_if = "Option::is_none"
    )]
    pub lock_to_state_talos: Option<bool>,
}

/// `threshold` (volctl's): a random passphrase for the slot, split into
/// one share per member (Shamir's secret sharing), each share sealed by
/// its member's key and kept in the slot's token; any `required` members
/// give the passphrase back.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ThresholdKey {
    /// How many members must answer: 1 to the number of members.
    pub required: i64,
    /// The members, 1 to 16: keys that open unattended (static, nodeID,
    /// kms, tang, tpm) and at most one `prompt`, without slots of their own.
    pub keys: Vec<MemberKey>,
}

/// The most members a threshold may have.
pub const MAX_THRESHOLD_MEMBERS: usize = 16;

/// One member of a `threshold`: exactly one kind, one that opens
/// unattended or (one member at most) `prompt`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberKey {
    /// A passphrase written in the config.
    #[serde(default, rename = "static", skip_serializing_if = "Option::is_none")]
    pub static_key: Option<StaticKey>,
    /// A key derived from the machine's SMBIOS UUID and the partition label.
    #[serde(default, rename = "nodeID", skip_serializing_if = "Option::is_none")]
    pub node_id: Option<NodeIdKey>,
    /// A random key sealed by a network KMS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms: Option<KmsKey>,
    /// A random key sealed to the TPM and its PCR state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<TpmKey>,
    /// volctl: a random key bound to a Tang server (network-bound disk
    /// encryption, clevis-compatible): it opens while the server answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tang: Option<TangKey>,
    /// A passphrase a person types at unlock (at most one member): "the
    /// TPM and a passphrase". A threshold with one is typed: asked for
    /// when no unattended key opened the volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<PromptKey>,
}

/// `recovery: {}`: no parameters.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecoveryKey {}

/// `prompt`: a passphrase asked for at unlock (systemd ask-password
/// agents, else the console).
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PromptKey {
    /// The question shown (default: `Passphrase for <volume>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Wrong answers allowed before the volume stays `waiting-for-key` (1–10, default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tries: Option<i64>,
    /// How long one question waits for an answer (Go duration, e.g. `5m`; default: for ever).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
}

/// Wrong answers a prompt allows by default.
pub const DEFAULT_PROMPT_TRIES: u32 = 3;
/// The most wrong answers a prompt may allow.
pub const MAX_PROMPT_TRIES: i64 = 10;

/// How a typed key is asked for: resolved from [`PromptKey`].
#[derive(Debug, Clone, PartialEq)]
pub struct PromptParams {
    /// The question, when the config sets one.
    pub message: Option<String>,
    /// Wrong answers allowed.
    pub tries: u32,
    /// How long one question waits (`None`: for ever).
    pub timeout: Option<std::time::Duration>,
}

impl Default for PromptParams {
    fn default() -> Self {
        PromptParams {
            message: None,
            tries: DEFAULT_PROMPT_TRIES,
            timeout: None,
        }
    }
}

impl PromptKey {
    /// The timeout in effect, or why it is not a positive duration.
    pub fn timeout(&self) -> Result<Option<std::time::Duration>, String> {
        let Some(text) = &self.timeout else {
            return Ok(None);
        };
        let secs = crate::duration::parse_go_duration(text)?;
        if secs <= 0.0 {
            return Err(format!("`{text}` must be a positive duration"));
        }
        Ok(Some(std::time::Duration::from_secs_f64(secs)))
    }

    /// The resolved parameters (invalid values fall back to defaults;
    /// validation reports them).
    pub fn params(&self) -> PromptParams {
        PromptParams {
            message: self.message.clone(),
            tries: self
                .tries
                .filter(|t| (1..=MAX_PROMPT_TRIES).contains(t))
                .and_then(|t| u32::try_from(t).ok())
                .unwrap_or(DEFAULT_PROMPT_TRIES),
            timeout: self.timeout().ok().flatten(),
        }
    }
}

/// `static`: a passphrase.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StaticKey {
    /// The passphrase (never logged).
    pub passphrase: SecretString,
}

/// `nodeID: {}`: no parameters.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeIdKey {}

/// `kms`: the KMS that seals this key.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KmsKey {
    /// `https://host:port` (or `http://` for tests only). Set this or
    /// `endpoints`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub endpoint: String,
    /// volctl: replicas of one KMS (the same master key), asked
    /// concurrently, each a short stagger after the one before (at once
    /// when that one fails); the first answer wins. Set this or
    /// `endpoint`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<String>,
    /// volctl: how long the key waits for an answer from any of them
    /// altogether (a Go duration; default 15s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// volctl: every request carries a TPM2 quote of PCR 7 over the
    /// server's nonce, signed by the TPM's attestation key; the server
    /// (with node records) releases the key only to the TPM it recorded,
    /// in a state its policy allows.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub attest: bool,
}

/// How long a `kms` key waits for an answer unless its `timeout` says.
pub const KMS_DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

impl KmsKey {
    /// Its endpoints: `endpoint`, or `endpoints` in their order.
    pub fn all_endpoints(&self) -> Vec<String> {
        if self.endpoint.is_empty() {
            self.endpoints.clone()
        } else {
            std::iter::once(self.endpoint.clone())
                .chain(self.endpoints.iter().cloned())
                .collect()
        }
    }

    /// How long it waits for an answer (`timeout`, or the default; a
    /// `timeout` that does not parse is validation's to report).
    pub fn deadline(&self) -> std::time::Duration {
        timeout_or(self.timeout.as_deref(), KMS_DEFAULT_TIMEOUT)
    }
}

/// `tang` (volctl's): a random key encrypted to a Tang server's exchange
/// key as clevis's tang pin does it; unlocking asks the server (it learns
/// nothing of the key).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TangKey {
    /// The server, `http://host[:port]` (Tang speaks plain HTTP: its
    /// answers are signed, and nothing secret crosses the network).
    pub url: String,
    /// The JWK thumbprint (SHA-256) of the server's signing key, as
    /// `tang-show-keys` prints it. Required unless `trustOnFirstUse`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbprint: Option<String>,
    /// Trust the signing key the server shows at enrolment (no
    /// `thumbprint`); the token records it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_on_first_use: Option<bool>,
    /// How long the key waits for the server (a Go duration; default 5s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
}

/// A key's `timeout` as a duration, or `default` when it is unset (or
/// not a positive duration, which validation reports).
fn timeout_or(timeout: Option<&str>, default: std::time::Duration) -> std::time::Duration {
    timeout
        .and_then(|t| crate::duration::parse_go_duration(t).ok())
        .filter(|s| *s > 0.0)
        .map_or(default, std::time::Duration::from_secs_f64)
}

/// How long a `tang` key waits for its server unless its `timeout` says.
pub const TANG_DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

impl TangKey {
    /// How long it waits for the server (`timeout`, or the default).
    pub fn deadline(&self) -> std::time::Duration {
        timeout_or(self.timeout.as_deref(), TANG_DEFAULT_TIMEOUT)
    }
}

/// `tpm`: seal the key to this machine's TPM.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TpmKey {
    /// Refuse to enrol unless UEFI Secure Boot is enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_secureboot_status_on_enroll: Option<bool>,
    /// Sealing options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<TpmOptions>,
    /// Older Talos spelling of `options.pcrs`; accepted, but set only one of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pcrs: Option<Vec<i64>>,
    /// Re-seal the key to the current PCR values when they changed and
    /// another key opened the volume (volctl; default true).
    #[serde(
        default,
        rename = "autoReseal",
        skip_serializing_if = "Option::is_none"
    )]
    pub auto_reseal: Option<bool>,
    /// Bind the key to a public key whose signatures of PCR values open it
    /// (systemd's signed PCR policy; volctl). A new boot image brings a new
    /// signature; nothing is re-sealed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_policy: Option<SignedPolicy>,
    /// Ask a PIN at every unlock as well (TPM2_PolicyAuthValue; volctl):
    /// the TPM's dictionary-attack lockout limits guesses, so a short PIN
    /// is safe where a short passphrase is not. The key becomes typed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin: Option<bool>,
}

/// Where systemd-stub puts the UKI's `.pcrpkey` section.
pub const DEFAULT_PCR_PUBLIC_KEY: &str = "/run/systemd/tpm2-pcr-public-key.pem";
/// Where systemd-stub puts the UKI's `.pcrsig` section.
pub const DEFAULT_PCR_SIGNATURE: &str = "/run/systemd/tpm2-pcr-signature.json";
/// The PCR a UKI's signature covers by default (systemd-stub measures the
/// UKI's sections into it).
pub const DEFAULT_SIGNED_PCRS: &[u32] = &[11];

/// `tpm.signedPolicy`: signatures of PCR values, systemd's format.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SignedPolicy {
    /// The PEM public key (RSA) whose signatures open the key; default
    /// where systemd-stub puts a UKI's `.pcrpkey`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// systemd's JSON signature file; default where systemd-stub puts a
    /// UKI's `.pcrsig`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// The PCRs the signatures cover (0–23); default `[11]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pcrs: Option<Vec<i64>>,
}

impl SignedPolicy {
    /// The public key's path in effect.
    pub fn public_key_path(&self) -> &str {
        self.public_key.as_deref().unwrap_or(DEFAULT_PCR_PUBLIC_KEY)
    }

    /// The signature file's path in effect.
    pub fn signature_path(&self) -> &str {
        self.signature.as_deref().unwrap_or(DEFAULT_PCR_SIGNATURE)
    }

    /// The signed PCRs in effect, sorted ascending and deduplicated.
    pub fn effective_pcrs(&self) -> Vec<u32> {
        sorted_pcrs(self.pcrs.as_deref(), DEFAULT_SIGNED_PCRS)
    }
}

/// `written` (or `default`) as PCR numbers, ascending, each once.
fn sorted_pcrs(written: Option<&[i64]>, default: &[u32]) -> Vec<u32> {
    let mut v: Vec<u32> = match written {
        Some(p) => p.iter().filter_map(|&x| u32::try_from(x).ok()).collect(),
        None => default.to_vec(),
    };
    v.sort_unstable();
    v.dedup();
    v
}

/// `tpm.options`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TpmOptions {
    /// PCR indexes (0–23) the key is sealed to; default `[7]`, `[]` for no PCR binding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pcrs: Option<Vec<i64>>,
}

impl TpmKey {
    /// The PCR list as written (either spelling), if any.
    pub fn pcrs_written(&self) -> Option<&[i64]> {
        self.options
            .as_ref()
            .and_then(|o| o.pcrs.as_deref())
            .or(self.pcrs.as_deref())
    }

    /// The PCRs in effect, sorted ascending and deduplicated.
    pub fn effective_pcrs(&self) -> Vec<u32> {
        sorted_pcrs(self.pcrs_written(), DEFAULT_TPM_PCRS)
    }
}
