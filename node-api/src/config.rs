//! The client config (`volctl gen` writes it; 0600, it holds a private
//! key): the nodes to talk to, the CA that signs their certificates, and
//! the admin's certificate and key, or an API key. Found at
//! `--volctlconfig F`, else `$VOLCTLCONFIG`, else `~/.volctl/config`.
//!
//! ```yaml
//! endpoints: [10.0.0.5]
//! ca: |
//!   -----BEGIN CERTIFICATE-----
//! crt: |
//!   -----BEGIN CERTIFICATE-----
//! key: |
//!   -----BEGIN PRIVATE KEY-----
//! ```

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// The environment variable naming the client config.
pub const CONFIG_ENV: &str = "VOLCTLCONFIG";
/// The largest config file read.
const MAX_CONFIG: u64 = 256 << 10;

/// A client config.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClientConfig {
    /// Nodes used when `-n` is not given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<String>,
    /// CA certificate that signs the nodes' certificates (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<String>,
    /// Client certificate (PEM); its Organization is the role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crt: Option<String>,
    /// Client private key (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// An API key instead of a client certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("endpoints", &self.endpoints)
            .field("ca", &self.ca.is_some())
            .field("crt", &self.crt.is_some())
            .field("key", &self.key.as_ref().map(|_| "<redacted>"))
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Drop for ClientConfig {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        if let Some(k) = self.key.as_mut() {
            k.zeroize();
        }
        if let Some(k) = self.api_key.as_mut() {
            k.zeroize();
        }
    }
}

/// Why the client config could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Unreadable, or not a private file.
    #[error("client config {path}: {reason}")]
    Read {
        /// Path.
        path: String,
        /// Why.
        reason: String,
    },
}

/// Where the client config is: the flag, else `$VOLCTLCONFIG`, else
/// `~/.volctl/config` (`None` when none of them exists).
pub fn locate(flag: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = flag {
        return Some(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os(CONFIG_ENV) {
        return Some(PathBuf::from(p));
    }
    let home = std::env::var_os("HOME")?;
    let p = Path::new(&home).join(".volctl/config");
    p.exists().then_some(p)
}

impl ClientConfig {
    /// Reads a client config; it must be a private file (0600, ours).
    pub fn load(path: &Path) -> Result<ClientConfig, ConfigError> {
        let err = |reason: String| ConfigError::Read {
            path: path.display().to_string(),
            reason,
        };
        let bytes = private_file::read_private(path, MAX_CONFIG).map_err(|e| err(e.to_string()))?;
        let text = Zeroizing::new(String::from_utf8_lossy(&bytes).into_owned());
        serde_yaml::from_str(&text).map_err(|e| err(e.to_string()))
    }

    /// The config as YAML (secret: write it 0600).
    pub fn to_yaml(&self) -> Zeroizing<String> {
        Zeroizing::new(serde_yaml::to_string(self).expect("a client config serialises"))
    }
}
