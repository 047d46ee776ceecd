//! `-n/--nodes` and the client's credentials: the flags win over the client
//! config file (`--volctlconfig`, `$VOLCTLCONFIG`, `~/.volctl/config`).

use anyhow::{bail, Context, Result};
use clap::Args;
use node_api::client::{Credentials, Trust};
use node_api::config::{self, ClientConfig};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// The largest certificate, key or API key file read.
const MAX_FILE: u64 = 64 << 10;

/// The `--help` heading of the client's flags (they matter with `-n`).
const CLIENT: &str = "Remote (with -n/--nodes)";

/// Where a command runs: here, or on the nodes named. Given before the
/// verb (`volctl -n NODE status`) or after a verb that can run remotely
/// (`volctl status -n NODE`); the other verbs do not take them.
#[derive(Debug, Default, Args)]
pub struct RemoteArgs {
    /// Run the verb on these nodes over the node API (HOST[:PORT], default port 50000; comma-separated or repeated).
    #[arg(short = 'n', long = "nodes", help_heading = CLIENT, value_delimiter = ',')]
    pub nodes: Vec<String>,
    /// Client config file (default: $VOLCTLCONFIG, then ~/.volctl/config).
    #[arg(long, help_heading = CLIENT)]
    pub volctlconfig: Option<PathBuf>,
    /// CA certificate that signs the nodes' certificates (overrides the config file).
    #[arg(long, help_heading = CLIENT)]
    pub ca: Option<PathBuf>,
    /// Client certificate (its Organization is the role: admin or reader).
    #[arg(long, help_heading = CLIENT)]
    pub cert: Option<PathBuf>,
    /// Client private key (0600).
    #[arg(long, help_heading = CLIENT)]
    pub key: Option<PathBuf>,
    /// API key file (0600) to present to the node (made by `volctl gen --api-key`).
    #[arg(long, help_heading = CLIENT)]
    pub api_key_file: Option<PathBuf>,
    /// Seconds to wait for a node (default 10).
    #[arg(long, help_heading = CLIENT, value_name = "SECONDS")]
    pub timeout: Option<u64>,
    /// Nodes called at once (default 32).
    #[arg(long, help_heading = CLIENT, value_name = "N")]
    pub parallel: Option<usize>,
}

/// Reads a secret file (0600, ours).
pub fn read_secret(path: &Path) -> Result<Zeroizing<Vec<u8>>> {
    private_file::read_private(path, MAX_FILE)
        .with_context(|| format!("reading {}", path.display()))
}

fn read_public(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// Seconds to wait for a node when `--timeout` does not say.
const TIMEOUT_SECONDS: u64 = 10;

impl RemoteArgs {
    /// The flags given before the verb, and those given after it: a flag
    /// after the verb wins, the nodes add up.
    pub fn merged(self, after: RemoteArgs) -> RemoteArgs {
        let mut nodes = self.nodes;
        nodes.extend(after.nodes);
        RemoteArgs {
            nodes,
            volctlconfig: after.volctlconfig.or(self.volctlconfig),
            ca: after.ca.or(self.ca),
            cert: after.cert.or(self.cert),
            key: after.key.or(self.key),
            api_key_file: after.api_key_file.or(self.api_key_file),
            timeout: after.timeout.or(self.timeout),
            parallel: after.parallel.or(self.parallel),
        }
    }

    /// The first client flag given, if any (without -n they mean nothing).
    pub fn first_given(&self) -> Option<&'static str> {
        [
            ("--volctlconfig", self.volctlconfig.is_some()),
            ("--ca", self.ca.is_some()),
            ("--cert", self.cert.is_some()),
            ("--key", self.key.is_some()),
            ("--api-key-file", self.api_key_file.is_some()),
            ("--timeout", self.timeout.is_some()),
            ("--parallel", self.parallel.is_some()),
        ]
        .into_iter()
        .find_map(|(flag, set)| set.then_some(flag))
    }

    /// The call timeout.
    pub fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.timeout.unwrap_or(TIMEOUT_SECONDS).max(1))
    }

    fn config(&self) -> Result<ClientConfig> {
        match config::locate(self.volctlconfig.as_deref()) {
            Some(p) => Ok(ClientConfig::load(&p)?),
            None => Ok(ClientConfig::default()),
        }
    }

    /// The credentials for an authenticated call.
    pub fn credentials(&self) -> Result<Credentials> {
        let cfg = self.config()?;
        let ca = match &self.ca {
            Some(p) => read_public(p)?,
            None => match &cfg.ca {
                Some(c) => c.as_bytes().to_vec(),
                None => bail!("no CA to verify the node by: give --ca, or a client config (`volctl gen` writes one) with --volctlconfig"),
            },
        };
        let identity = match (&self.cert, &self.key) {
            (Some(c), Some(k)) => Some((read_public(c)?, read_secret(k)?)),
            (Some(_), None) | (None, Some(_)) => bail!("--cert and --key go together"),
            (None, None) => match (&cfg.crt, &cfg.key) {
                (Some(c), Some(k)) => {
                    Some((c.as_bytes().to_vec(), Zeroizing::new(k.as_bytes().to_vec())))
                }
                _ => None,
            },
        };
        let api_key = match &self.api_key_file {
            Some(p) => Some(Zeroizing::new(
                String::from_utf8_lossy(&read_secret(p)?).trim().to_string(),
            )),
            None => cfg.api_key.clone().map(Zeroizing::new),
        };
        if identity.is_none() && api_key.is_none() {
            bail!("no client certificate and no API key: give --cert/--key, --api-key-file, or a client config");
        }
        Ok(Credentials {
            trust: Trust::Ca(ca),
            identity,
            api_key,
        })
    }

    /// The credentials for a node in maintenance mode: nothing presented,
    /// the node pinned by `fingerprint` when given.
    pub fn maintenance(&self, fingerprint: Option<&str>) -> Result<Credentials> {
        let trust = match fingerprint {
            Some(f) => {
                Trust::Pinned(tls::identity::normalise_fingerprint(f).with_context(|| {
                    format!("`{f}` is not a SHA-256 fingerprint (64 hex digits)")
                })?)
            }
            None => Trust::Unverified,
        };
        Ok(Credentials {
            trust,
            identity: None,
            api_key: None,
        })
    }
}
