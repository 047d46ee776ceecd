//! The `encryption` block of a volume document and its keys.

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
}

impl Encryption {
    /// Whether a volume holding data is encrypted in place (`inPlace`).
    pub fn in_place(&self) -> bool {
        self.in_place == Some(true)
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
    /// A random key a person keeps: generated at enrolment, shown once,
    /// stored nowhere on the node but in its keyslot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery: Option<RecoveryKey>,
    /// A passphrase a person types when the volume is unlocked (asked
    /// twice at enrolment); written nowhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<PromptKey>,
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
    /// `https://host:port` (or `http://` for tests only).
    pub endpoint: String,
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
        let mut v: Vec<u32> = match self.pcrs_written() {
            Some(p) => p.iter().filter_map(|&x| u32::try_from(x).ok()).collect(),
            None => DEFAULT_TPM_PCRS.to_vec(),
        };
        v.sort_unstable();
        v.dedup();
        v
    }
}

/// The kind of a key, with its parameters.
#[derive(Debug, Clone, PartialEq)]
pub enum KeyKind {
    /// A passphrase from the config.
    Static {
        /// The passphrase.
        passphrase: SecretString,
    },
    /// Derived from the node UUID and the partition label.
    NodeId,
    /// Sealed by a KMS at `endpoint`.
    Kms {
        /// The KMS endpoint URL.
        endpoint: String,
    },
    /// Sealed to the TPM under a PCR policy.
    Tpm {
        /// Sorted PCR indexes.
        pcrs: Vec<u32>,
        /// Refuse enrolment without Secure Boot.
        check_secureboot: bool,
        /// Re-seal when the PCRs changed and another key opened the volume.
        auto_reseal: bool,
    },
    /// A recovery key: generated at enrolment, kept by a person.
    Recovery,
    /// A passphrase a person types.
    Prompt(PromptParams),
}

impl KeyKind {
    /// The kind's name as written in documents (`static`, `nodeID`, `kms`, `tpm`).
    pub fn name(&self) -> &'static str {
        self.source().name()
    }

    /// The kind, without its parameters.
    pub fn source(&self) -> KeySource {
        match self {
            KeyKind::Static { .. } => KeySource::Static,
            KeyKind::NodeId => KeySource::NodeId,
            KeyKind::Kms { .. } => KeySource::Kms,
            KeyKind::Tpm { .. } => KeySource::Tpm,
            KeyKind::Recovery => KeySource::Recovery,
            KeyKind::Prompt(_) => KeySource::Prompt,
        }
    }
}

/// A volume-key size. LUKS2 JSON and libcryptsetup count bytes; configs
/// and messages count bits: converted here, and only here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct KeySize {
    bytes: u32,
}

impl KeySize {
    /// From bits (a multiple of 8; rounded down otherwise).
    pub fn from_bits(bits: u32) -> Self {
        KeySize { bytes: bits / 8 }
    }

    /// From bytes, as LUKS2 JSON records it.
    pub fn from_bytes(bytes: u32) -> Self {
        KeySize { bytes }
    }

    /// In bits.
    pub fn bits(self) -> u32 {
        self.bytes * 8
    }

    /// In bytes.
    pub fn bytes(self) -> u32 {
        self.bytes
    }

    /// In bytes, as a buffer length.
    pub fn len(self) -> usize {
        usize::try_from(self.bytes).expect("a key size fits in usize")
    }

    /// Whether it is zero bytes.
    pub fn is_empty(self) -> bool {
        self.bytes == 0
    }
}

impl std::fmt::Display for KeySize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-bit", self.bits())
    }
}

/// Where a key comes from: the key kinds, without their parameters. Used
/// by the planner, tokens, providers and status instead of strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum KeySource {
    /// A passphrase from the config.
    #[serde(rename = "static")]
    Static,
    /// Derived from the node UUID.
    #[serde(rename = "nodeID")]
    NodeId,
    /// Sealed by a TPM.
    #[serde(rename = "tpm")]
    Tpm,
    /// Sealed by a KMS.
    #[serde(rename = "kms")]
    Kms,
    /// Kept by a person (shown once at enrolment).
    #[serde(rename = "recovery")]
    Recovery,
    /// Typed by a person at unlock.
    #[serde(rename = "prompt")]
    Prompt,
}

impl KeySource {
    /// The document name (`static`, `nodeID`, `kms`, `tpm`).
    pub fn name(self) -> &'static str {
        match self {
            KeySource::Static => "static",
            KeySource::NodeId => "nodeID",
            KeySource::Kms => "kms",
            KeySource::Tpm => "tpm",
            KeySource::Recovery => "recovery",
            KeySource::Prompt => "prompt",
        }
    }

    /// The kind by its document name.
    pub fn from_name(name: &str) -> Option<Self> {
        [
            KeySource::Static,
            KeySource::NodeId,
            KeySource::Kms,
            KeySource::Tpm,
            KeySource::Recovery,
            KeySource::Prompt,
        ]
        .into_iter()
        .find(|k| k.name() == name)
    }

    /// Unlock cost rank, lower first: local and cheap (static, nodeID), then
    /// a local device (TPM), then the network (KMS).
    pub fn unlock_cost(self) -> u8 {
        match self {
            KeySource::Static => 0,
            KeySource::NodeId => 1,
            KeySource::Tpm => 2,
            KeySource::Kms => 3,
            // Never tried unattended: a person types them.
            KeySource::Prompt => u8::MAX - 1,
            KeySource::Recovery => u8::MAX,
        }
    }

    /// Whether volctl can produce the key without a person (prompt and
    /// recovery keys are typed).
    pub fn opens_unattended(self) -> bool {
        !self.typed()
    }

    /// Whether a person types this key (asked for through the prompt).
    pub fn typed(self) -> bool {
        matches!(self, KeySource::Recovery | KeySource::Prompt)
    }

    /// Whether the passphrase can be computed from the config alone, so the
    /// key can take over a slot that has no volctl token.
    pub fn locally_derivable(self) -> bool {
        matches!(self, KeySource::Static | KeySource::NodeId)
    }
}

impl std::fmt::Display for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A validated key: slot, kind and the lockToSTATE flag.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedKey {
    /// Keyslot number.
    pub slot: KeyslotId,
    /// Kind and parameters.
    pub kind: KeyKind,
    /// Whether the STATE salt is mixed in.
    pub lock_to_state: bool,
}

impl KeySpec {
    /// The kinds set on this key, by their document names.
    pub fn kinds_set(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.static_key.is_some() {
            v.push("static");
        }
        if self.node_id.is_some() {
            v.push("nodeID");
        }
        if self.kms.is_some() {
            v.push("kms");
        }
        if self.tpm.is_some() {
            v.push("tpm");
        }
        if self.recovery.is_some() {
            v.push("recovery");
        }
        if self.prompt.is_some() {
            v.push("prompt");
        }
        v
    }

    /// Whether lockToSTATE is on (either spelling).
    pub fn lock_to_state(&self) -> bool {
        self.lock_to_state
            .or(self.lock_to_state_talos)
            .unwrap_or(false)
    }

    /// The resolved key, or `None` when the key is invalid (no kind, two kinds, bad slot).
    pub fn resolve(&self) -> Option<ResolvedKey> {
        if self.kinds_set().len() != 1 || !(0..=MAX_SLOT).contains(&self.slot) {
            return None;
        }
        let kind = if let Some(s) = &self.static_key {
            KeyKind::Static {
                passphrase: s.passphrase.clone(),
            }
        } else if self.node_id.is_some() {
            KeyKind::NodeId
        } else if let Some(k) = &self.kms {
            KeyKind::Kms {
                endpoint: k.endpoint.clone(),
            }
        } else if self.recovery.is_some() {
            KeyKind::Recovery
        } else if let Some(p) = &self.prompt {
            KeyKind::Prompt(p.params())
        } else {
            let t = self.tpm.as_ref()?;
            KeyKind::Tpm {
                pcrs: t.effective_pcrs(),
                check_secureboot: t.check_secureboot_status_on_enroll.unwrap_or(false),
                auto_reseal: t.auto_reseal.unwrap_or(true),
            }
        };
        Some(ResolvedKey {
            slot: u32::try_from(self.slot).ok().and_then(KeyslotId::new)?,
            kind,
            lock_to_state: self.lock_to_state(),
        })
    }
}
