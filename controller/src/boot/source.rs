//! Where the config in force comes from, and STATE's config files: the
//! applied config, a staged one (promoted at boot by an atomic rename).

use super::BootError;
use crate::node::atomic;
use crate::node::paths::{CONFIG_FILE, PENDING_FILE};
use api_types::Document;
use std::path::{Path, PathBuf};

/// Where this boot's config came from (shown in status).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    /// Files given with `-f`.
    BootArgs,
    /// STATE's encryption config from META, the rest from STATE.
    Meta,
    /// A staged config on STATE, promoted at this boot.
    Promoted,
    /// Delivered in maintenance mode.
    Maintenance,
}

impl std::fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ConfigSource::BootArgs => "boot arguments (-f)",
            ConfigSource::Meta => "STATE (encryption config from META)",
            ConfigSource::Promoted => "STATE (staged config promoted at this boot)",
            ConfigSource::Maintenance => "maintenance mode (apply-config --insecure)",
        })
    }
}

/// Parses the config files given at boot; returns the documents and the
/// text to store on STATE.
pub(super) fn load_files(files: &[PathBuf]) -> Result<Option<(Vec<Document>, String)>, BootError> {
    if files.is_empty() {
        return Ok(None);
    }
    crate::node::config_files::load(files)
        .map(Some)
        .map_err(BootError::Config)
}

pub(super) fn parse_config(name: &str, text: &str) -> Result<Vec<Document>, BootError> {
    crate::node::config_files::parse(name, text).map_err(BootError::Config)
}

/// Stores `text` as the applied config on STATE and drops any staged one
/// (a config given at boot wins).
pub(super) fn store_config(state_mount: &Path, text: &str) -> Result<(), BootError> {
    let path = state_mount.join(CONFIG_FILE);
    atomic::write_private(&path, text.as_bytes())
        .map_err(BootError::file("storing the config on STATE", &path))?;
    let _ = std::fs::remove_file(state_mount.join(PENDING_FILE));
    Ok(())
}

/// Promotes a staged config: it is validated, then renamed over the applied
/// one (an atomic step: a crash leaves the old or the new config in force).
pub(super) fn promote_pending(state_mount: &Path) -> Result<Option<Vec<Document>>, BootError> {
    let pending = state_mount.join(PENDING_FILE);
    let text = match std::fs::read_to_string(&pending) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(BootError::file("reading the staged config", &pending)(e)),
    };
    let docs = parse_config(&pending.display().to_string(), &text)?;
    std::fs::rename(&pending, state_mount.join(CONFIG_FILE))
        .and_then(|_| std::fs::File::open(state_mount)?.sync_all())
        .map_err(BootError::file("promoting the staged config", &pending))?;
    tracing::info!("staged config promoted");
    Ok(Some(docs))
}

/// The applied config on STATE; `NoConfig` when there is none.
pub(super) fn read_state_config(state_mount: &Path) -> Result<Vec<Document>, BootError> {
    let path = state_mount.join(CONFIG_FILE);
    match std::fs::read_to_string(&path) {
        Ok(t) => parse_config(&path.display().to_string(), &t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(BootError::NoConfig),
        Err(e) => Err(BootError::file("reading the config on STATE", &path)(e)),
    }
}
