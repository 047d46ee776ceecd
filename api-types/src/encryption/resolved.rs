//! The keys of an `encryption` block resolved: one typed key per slot
//! (`ResolvedKey`: its kind with parameters, `KeySource`, `KeySize`), what
//! volctl acts on once the document is read.

use super::*;

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
    /// Sealed by a KMS at one of `endpoints` (replicas of one KMS).
    Kms {
        /// The KMS endpoint URLs, in the order they are asked.
        endpoints: Vec<String>,
        /// How long to wait for an answer from any of them.
        deadline: std::time::Duration,
        /// Every request carries the TPM's quote (`attest: true`).
        attest: bool,
    },
    /// Encrypted to a Tang server's exchange key (clevis's tang pin).
    Tang {
        /// The server's URL.
        url: String,
        /// The pinned thumbprint of its signing key (`None`: trust on
        /// first use).
        thumbprint: Option<String>,
        /// How long to wait for the server.
        deadline: std::time::Duration,
    },
    /// Sealed to the TPM under a PCR policy.
    Tpm {
        /// Sorted PCR indexes.
        pcrs: Vec<u32>,
        /// Refuse enrolment without Secure Boot.
        check_secureboot: bool,
        /// Re-seal when the PCRs changed and another key opened the volume.
        auto_reseal: bool,
        /// Signatures of PCR values that open it too (`signedPolicy`).
        signed: Option<SignedPcrPolicy>,
        /// A PIN a person types at every unlock, beside the TPM (`pin`).
        pin: bool,
    },
    /// A recovery key: generated at enrolment, kept by a person.
    Recovery,
    /// A passphrase a person types.
    Prompt(PromptParams),
    /// A random passphrase split among `members` (Shamir), `required` of
    /// which give it back.
    Threshold {
        /// How many members must answer.
        required: u8,
        /// The members' kinds (each opens unattended; none is a threshold).
        members: Vec<KeyKind>,
    },
}

/// A `tpm` key's signed PCR policy, resolved: where the public key and the
/// signatures are, and which PCRs the signatures cover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedPcrPolicy {
    /// The PEM public key file.
    pub public_key: std::path::PathBuf,
    /// systemd's JSON signature file.
    pub signature: std::path::PathBuf,
    /// The signed PCRs, ascending.
    pub pcrs: Vec<u32>,
}

impl From<&crate::encryption::SignedPolicy> for SignedPcrPolicy {
    fn from(p: &crate::encryption::SignedPolicy) -> Self {
        SignedPcrPolicy {
            public_key: p.public_key_path().into(),
            signature: p.signature_path().into(),
            pcrs: p.effective_pcrs(),
        }
    }
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
            KeyKind::Tang { .. } => KeySource::Tang,
            KeyKind::Tpm { pin: true, .. } => KeySource::TpmPin,
            KeyKind::Tpm { .. } => KeySource::Tpm,
            KeyKind::Recovery => KeySource::Recovery,
            KeyKind::Prompt(_) => KeySource::Prompt,
            KeyKind::Threshold { members, .. }
                if members.iter().any(|m| matches!(m, KeyKind::Prompt(_))) =>
            {
                KeySource::ThresholdPrompt
            }
            KeyKind::Threshold { .. } => KeySource::Threshold,
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
    /// Sealed to the TPM, and a PIN typed at every unlock (`tpm: {pin: true}`).
    #[serde(rename = "tpm+pin")]
    TpmPin,
    /// A threshold with a `prompt` member: a person types its passphrase,
    /// the other members give their shares.
    #[serde(rename = "threshold+prompt")]
    ThresholdPrompt,
    /// Sealed by a KMS.
    #[serde(rename = "kms")]
    Kms,
    /// Encrypted to a Tang server.
    #[serde(rename = "tang")]
    Tang,
    /// Kept by a person (shown once at enrolment).
    #[serde(rename = "recovery")]
    Recovery,
    /// Typed by a person at unlock.
    #[serde(rename = "prompt")]
    Prompt,
    /// Split among member keys, some of which give it back.
    #[serde(rename = "threshold")]
    Threshold,
}

impl KeySource {
    /// The document name (`static`, `nodeID`, `kms`, `tpm`).
    pub fn name(self) -> &'static str {
        match self {
            KeySource::Static => "static",
            KeySource::NodeId => "nodeID",
            KeySource::Kms => "kms",
            KeySource::Tang => "tang",
            KeySource::Tpm => "tpm",
            KeySource::TpmPin => "tpm+pin",
            KeySource::ThresholdPrompt => "threshold+prompt",
            KeySource::Recovery => "recovery",
            KeySource::Prompt => "prompt",
            KeySource::Threshold => "threshold",
        }
    }

    /// The kind by its document name.
    pub fn from_name(name: &str) -> Option<Self> {
        [
            KeySource::Static,
            KeySource::NodeId,
            KeySource::Kms,
            KeySource::Tang,
            KeySource::Tpm,
            KeySource::TpmPin,
            KeySource::Recovery,
            KeySource::Prompt,
            KeySource::Threshold,
            KeySource::ThresholdPrompt,
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
            KeySource::Tang => 3,
            // Its members are asked at once, servers among them.
            KeySource::Threshold => 4,
            // Never tried unattended: a person types them (a wrong PIN
            // costs no KDF run, so PIN keys are asked first).
            KeySource::TpmPin => u8::MAX - 2,
            KeySource::Prompt | KeySource::ThresholdPrompt => u8::MAX - 1,
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
        matches!(
            self,
            KeySource::Recovery
                | KeySource::Prompt
                | KeySource::TpmPin
                | KeySource::ThresholdPrompt
        )
    }

    /// Whether producing the key asks a server over the network: such keys
    /// of one volume are asked all at once, not one after another.
    pub fn asks_a_server(self) -> bool {
        matches!(
            self,
            KeySource::Kms | KeySource::Tang | KeySource::Threshold
        )
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

/// The kinds that open unattended, as a key or a threshold's member
/// writes them.
struct Unattended<'a> {
    static_key: Option<&'a StaticKey>,
    node_id: bool,
    kms: Option<&'a KmsKey>,
    tang: Option<&'a TangKey>,
    tpm: Option<&'a TpmKey>,
}

impl Unattended<'_> {
    /// The kinds set, by their document names.
    fn kinds_set(&self) -> Vec<&'static str> {
        [
            (self.static_key.is_some(), "static"),
            (self.node_id, "nodeID"),
            (self.kms.is_some(), "kms"),
            (self.tang.is_some(), "tang"),
            (self.tpm.is_some(), "tpm"),
        ]
        .into_iter()
        .filter_map(|(set, name)| set.then_some(name))
        .collect()
    }

    /// The kind set, when one is (the first, when several are: validation
    /// reports that).
    fn kind(&self) -> Option<KeyKind> {
        if let Some(s) = self.static_key {
            return Some(KeyKind::Static {
                passphrase: s.passphrase.clone(),
            });
        }
        if self.node_id {
            return Some(KeyKind::NodeId);
        }
        if let Some(k) = self.kms {
            return Some(KeyKind::Kms {
                endpoints: k.all_endpoints(),
                deadline: k.deadline(),
                attest: k.attest,
            });
        }
        if let Some(t) = self.tang {
            return Some(KeyKind::Tang {
                url: t.url.clone(),
                thumbprint: t.thumbprint.clone(),
                deadline: t.deadline(),
            });
        }
        let t = self.tpm?;
        Some(KeyKind::Tpm {
            pcrs: t.effective_pcrs(),
            check_secureboot: t.check_secureboot_status_on_enroll.unwrap_or(false),
            auto_reseal: t.auto_reseal.unwrap_or(true),
            signed: t.signed_policy.as_ref().map(SignedPcrPolicy::from),
            pin: t.pin.unwrap_or(false),
        })
    }
}

impl MemberKey {
    fn unattended(&self) -> Unattended<'_> {
        Unattended {
            static_key: self.static_key.as_ref(),
            node_id: self.node_id.is_some(),
            kms: self.kms.as_ref(),
            tang: self.tang.as_ref(),
            tpm: self.tpm.as_ref(),
        }
    }

    /// The kinds set on this member, by their document names.
    pub fn kinds_set(&self) -> Vec<&'static str> {
        let mut v = self.unattended().kinds_set();
        if self.prompt.is_some() {
            v.push("prompt");
        }
        v
    }

    /// The member's kind, when exactly one is set.
    pub fn resolve(&self) -> Option<KeyKind> {
        if self.kinds_set().len() != 1 {
            return None;
        }
        match &self.prompt {
            Some(p) => Some(KeyKind::Prompt(p.params())),
            None => self.unattended().kind(),
        }
    }
}

impl ThresholdKey {
    /// The resolved kind, when `required` and every member are valid.
    pub fn resolve(&self) -> Option<KeyKind> {
        let members: Option<Vec<KeyKind>> = self.keys.iter().map(MemberKey::resolve).collect();
        let members = members?;
        let required = u8::try_from(self.required).ok()?;
        let prompts = members
            .iter()
            .filter(|m| matches!(m, KeyKind::Prompt(_)))
            .count();
        let fits = (1..=MAX_THRESHOLD_MEMBERS).contains(&members.len())
            && (1..=members.len()).contains(&usize::from(required))
            && prompts <= 1;
        fits.then_some(KeyKind::Threshold { required, members })
    }
}

impl KeySpec {
    fn unattended(&self) -> Unattended<'_> {
        Unattended {
            static_key: self.static_key.as_ref(),
            node_id: self.node_id.is_some(),
            kms: self.kms.as_ref(),
            tang: self.tang.as_ref(),
            tpm: self.tpm.as_ref(),
        }
    }

    /// The kinds set on this key, by their document names.
    pub fn kinds_set(&self) -> Vec<&'static str> {
        let mut v = self.unattended().kinds_set();
        for (set, name) in [
            (self.recovery.is_some(), "recovery"),
            (self.prompt.is_some(), "prompt"),
            (self.threshold.is_some(), "threshold"),
        ] {
            if set {
                v.push(name);
            }
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
        let kind = if self.recovery.is_some() {
            KeyKind::Recovery
        } else if let Some(p) = &self.prompt {
            KeyKind::Prompt(p.params())
        } else if let Some(t) = &self.threshold {
            t.resolve()?
        } else {
            self.unattended().kind()?
        };
        Some(ResolvedKey {
            slot: u32::try_from(self.slot).ok().and_then(KeyslotId::new)?,
            kind,
            lock_to_state: self.lock_to_state(),
        })
    }
}
