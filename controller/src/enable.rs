//! `volctl enable-encryption`: the first-boot "encrypt my data" step of an
//! appliance (NeuralDrive's wizard). Adds an `encryption` block with a
//! `prompt` key (and a `recovery` key) to the volume's document in STATE's
//! config, then: a blank partition is formatted now (the new passphrase is
//! asked twice, the recovery key handed over) and the config becomes the
//! one in force; a partition that holds data is not touched, and the config
//! is staged for the wipe flow (docs/migration.md).

use crate::apply;
use crate::converge::{converge, open_device, ConvergeError, Mode, Outcome};
use crate::device::{Contents, DeviceError};
use crate::node::atomic;
use crate::node::paths::{CONFIG_FILE, PENDING_FILE};
use crate::node::status::BootStatus;
use crate::volume::VolumeSpec;
use api_types::{Document, PbkdfSpec, PbkdfType};
use providers::ProviderEnv;
use std::path::PathBuf;

/// What `enable-encryption` was asked to do.
#[derive(Debug, Clone)]
pub struct EnableOptions {
    /// The volume (document name or partition label).
    pub volume: String,
    /// Also a recovery key (slot 9).
    pub recovery_key: bool,
    /// A partition that holds ext4 is encrypted in place at the next boot
    /// (`inPlace: true`) instead of waiting for a wipe.
    pub in_place: bool,
    /// The boot's status file (where STATE is, which device the volume is).
    pub status_file: PathBuf,
}

/// What happened.
#[derive(Debug)]
pub enum Enabled {
    /// Formatted now with the new keys; the config is in force.
    Encrypted(Box<Outcome>),
    /// The partition holds data: nothing was written to it; the config is
    /// staged and takes effect after a wipe.
    Staged {
        /// What the partition holds.
        found: String,
    },
}

/// Why encryption was not enabled. Nothing was written in any of these.
#[derive(Debug, thiserror::Error)]
pub enum EnableError {
    /// The boot status or STATE's config could not be read.
    #[error("{0}")]
    Node(String),
    /// The volume is not in the config as a plain volume.
    #[error("{0}")]
    Config(String),
    /// The partition already holds LUKS2.
    #[error("{0}'s partition already holds a LUKS2 header; to change its passphrase use `volctl passphrase change`")]
    AlreadyLuks(String),
    /// Formatting failed (no passphrase given, two different answers).
    #[error(transparent)]
    Converge(#[from] ConvergeError),
}

impl From<DeviceError> for EnableError {
    fn from(e: DeviceError) -> Self {
        EnableError::Converge(e.into())
    }
}

/// The slot of the typed passphrase and of the recovery key.
const PROMPT_SLOT: u32 = 0;
const RECOVERY_SLOT: u32 = 9;

/// Enables encryption on `opts.volume`; `env` says how to ask for the
/// passphrase and whether a recovery key can be handed over.
pub async fn enable_encryption(
    opts: &EnableOptions,
    env: &ProviderEnv,
) -> Result<Enabled, EnableError> {
    let node = |e: String| EnableError::Node(e);
    let status = BootStatus::load(&opts.status_file).map_err(|e| {
        node(format!(
            "{}: {e} (has `volctl boot` run?)",
            opts.status_file.display()
        ))
    })?;
    let state = apply::state_mount(&status).map_err(|e| node(e.to_string()))?;
    let config = state.join(CONFIG_FILE);
    let text =
        std::fs::read_to_string(&config).map_err(|e| node(format!("{}: {e}", config.display())))?;
    let new_text = add_encryption(&text, &opts.volume, opts.recovery_key, opts.in_place)?;
    let docs = parse(&new_text)?;
    let spec = VolumeSpec::from_documents(&docs, &opts.volume)
        .map_err(|e| EnableError::Config(e.to_string()))?;
    let device = status
        .volumes
        .iter()
        .find(|v| v.name == spec.name)
        .and_then(|v| v.device.clone())
        .ok_or_else(|| {
            node(format!(
                "the last boot found no partition for {}",
                spec.name
            ))
        })?;
    let dev = open_device(&spec, std::path::Path::new(&device), Mode::Apply)?;
    let store = |file: &str| {
        atomic::write_private(&state.join(file), new_text.as_bytes())
            .map_err(|e| node(format!("{}: {e}", state.join(file).display())))
    };
    match dev.contents()? {
        Contents::Blank | Contents::UnfinishedFormat(_) => {
            let outcome = converge(&spec, dev, env, Mode::Apply).await?;
            store(CONFIG_FILE)?;
            Ok(Enabled::Encrypted(Box::new(outcome)))
        }
        Contents::Foreign(found) => {
            store(PENDING_FILE)?;
            Ok(Enabled::Staged { found })
        }
        Contents::Luks2(_) => Err(EnableError::AlreadyLuks(spec.name)),
    }
}

fn parse(text: &str) -> Result<Vec<Document>, EnableError> {
    let p = api_types::parse_str(CONFIG_FILE, text);
    if p.has_errors() {
        let errs: Vec<String> = p.errors().map(|d| d.to_string()).collect();
        return Err(EnableError::Config(errs.join("\n")));
    }
    Ok(p.documents)
}

/// `text` with an `encryption` block (prompt, and recovery) appended to the
/// document of `volume`, with the PBKDF costs the config's other volumes
/// set, if any.
pub fn add_encryption(
    text: &str,
    volume: &str,
    recovery: bool,
    in_place: bool,
) -> Result<String, EnableError> {
    let config = |m: String| EnableError::Config(m);
    let docs = parse(text)?;
    let doc = docs
        .iter()
        .find(|d| d.name() == volume || d.partition_label() == volume)
        .ok_or_else(|| config(format!("STATE's config has no document for `{volume}`")))?;
    if doc.encryption().is_some() {
        return Err(config(format!(
            "{volume} is encrypted already; to change its passphrase use `volctl passphrase change`"
        )));
    }
    if doc.encryption_block().is_some() {
        return Err(config(format!(
            "{volume}'s document has an `encryption` block without a provider; complete it in the config instead"
        )));
    }
    let pbkdf = docs
        .iter()
        .filter_map(|d| d.encryption().and_then(|e| e.pbkdf.clone()))
        .next();
    let block = encryption_block(pbkdf.as_ref(), recovery, in_place);
    let mut chunks: Vec<String> = split_documents(text);
    let at = chunks
        .iter()
        .position(|c| parse(c).is_ok_and(|d| d.iter().any(|d| d.name() == doc.name())))
        .ok_or_else(|| config(format!("cannot find {volume}'s document in the text")))?;
    let chunk = &mut chunks[at];
    if !chunk.ends_with('\n') {
        chunk.push('\n');
    }
    chunk.push_str(&block);
    Ok(chunks.join("---\n"))
}

/// The documents of a YAML stream, split at `---` lines.
fn split_documents(text: &str) -> Vec<String> {
    let mut chunks = vec![String::new()];
    for line in text.split_inclusive('\n') {
        if line.trim_end() == "---" {
            chunks.push(String::new());
        } else if let Some(last) = chunks.last_mut() {
            last.push_str(line);
        }
    }
    chunks
}

fn encryption_block(pbkdf: Option<&PbkdfSpec>, recovery: bool, in_place: bool) -> String {
    let mut b = String::from("encryption:\n  provider: luks2\n");
    if in_place {
        b.push_str("  inPlace: true\n");
    }
    if let Some(p) = pbkdf {
        let kind = match p.kind {
            PbkdfType::Argon2id => "argon2id",
            PbkdfType::Argon2i => "argon2i",
            PbkdfType::Pbkdf2 => "pbkdf2",
        };
        let mut fields = vec![format!("type: {kind}")];
        fields.extend(p.memory_ki_b.map(|m| format!("memoryKiB: {m}")));
        fields.push(format!("iterations: {}", p.iterations));
        fields.extend(p.parallelism.map(|n| format!("parallelism: {n}")));
        b.push_str(&format!("  pbkdf: {{{}}}\n", fields.join(", ")));
    }
    b.push_str(&format!(
        "  keys:\n    - slot: {PROMPT_SLOT}\n      prompt: {{}}\n"
    ));
    if recovery {
        b.push_str(&format!(
            "    - slot: {RECOVERY_SLOT}\n      recovery: {{}}\n"
        ));
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "apiVersion: v1alpha1\nkind: VolumeConfig\nname: STATE\nencryption:\n  provider: luks2\n  pbkdf: {type: argon2id, memoryKiB: 32, iterations: 4}\n  keys:\n    - slot: 0\n      nodeID: {}\n---\napiVersion: v1alpha1\nkind: VolumeConfig\nname: persistence\nmount:\n  path: /persistence\n";

    #[test]
    fn the_block_goes_into_the_volume_s_document_with_the_config_s_costs() {
        let out = add_encryption(CONFIG, "persistence", true, false).unwrap();
        let docs = parse(&out).unwrap();
        let spec = VolumeSpec::from_documents(&docs, "persistence").unwrap();
        assert!(!spec.encryption.in_place());
        let in_place = add_encryption(CONFIG, "persistence", true, true).unwrap();
        let docs = parse(&in_place).unwrap();
        assert!(VolumeSpec::from_documents(&docs, "persistence")
            .unwrap()
            .encryption
            .in_place());
        let kinds: Vec<&str> = spec
            .encryption
            .resolved_keys()
            .iter()
            .map(|k| k.kind.name())
            .collect();
        assert_eq!(kinds, ["prompt", "recovery"]);
        assert_eq!(spec.encryption.pbkdf.unwrap().memory_ki_b, Some(32));
        assert!(
            out.starts_with(CONFIG),
            "the rest is kept as written:\n{out}"
        );
    }

    #[test]
    fn an_encrypted_or_missing_volume_is_refused() {
        let e = add_encryption(CONFIG, "STATE", false, false).unwrap_err();
        assert!(e.to_string().contains("encrypted already"), "{e}");
        let e = add_encryption(CONFIG, "data", false, false).unwrap_err();
        assert!(e.to_string().contains("no document for `data`"), "{e}");
    }
}
