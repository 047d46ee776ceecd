//! `volctl gen`: what an admin needs to manage nodes remotely — a CA, the
//! node's server certificate, admin and reader client certificates, client
//! configs, and optionally an API key. Private keys and client configs are
//! written 0600; no file is overwritten.

use crate::cli::output::outln;
use crate::cli::Exit;
use anyhow::{Context, Result};
use node_api::config::ClientConfig;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use tls::identity::Role;
use tls::pki::{Ca, Issued};

/// Examples shown by `--help`.
pub const HELP: &str = "Example:\n  volctl gen --out pki --san 10.0.0.5 --san node1.lan\n  volctl gen --out pki --san 127.0.0.1 --api-key\n\nThen copy ca.crt, server.crt and server.key to the node's STATE (api/ folder), and use\n  volctl --volctlconfig pki/admin.volctlconfig -n 10.0.0.5 status";

/// `volctl gen` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Directory to write into (made if missing; existing files are not overwritten).
    #[arg(long)]
    pub out: PathBuf,
    /// A name or address clients dial the node by; repeatable.
    #[arg(long = "san", required = true)]
    pub sans: Vec<String>,
    /// Also make an API key (api.key) for clients without a certificate.
    #[arg(long)]
    pub api_key: bool,
    /// Years the certificates are valid.
    #[arg(long, default_value_t = 1)]
    pub years: i32,
}

/// Writes the PKI and the client configs.
pub fn exec(args: Args) -> Result<Exit> {
    // 0700 whatever the umask: the folder holds the CA's private key.
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&args.out)
        .with_context(|| format!("making {}", args.out.display()))?;
    let (ips, names): (Vec<String>, Vec<String>) = args
        .sans
        .iter()
        .cloned()
        .partition(|s| s.parse::<IpAddr>().is_ok());
    let ips: Vec<IpAddr> = ips.iter().filter_map(|s| s.parse().ok()).collect();
    let ca = Ca::new("volctl CA")?;
    let server = ca.server(&names, &ips, args.years)?;
    let out = |name: &str| args.out.join(name);
    write(&out("ca.crt"), ca.cert_pem.as_bytes(), 0o644)?;
    write(&out("ca.key"), ca.key_pem().as_bytes(), 0o600)?;
    write_pair(&args.out, "server", &server)?;
    let endpoint = args.sans.first().cloned().into_iter().collect::<Vec<_>>();
    for role in [Role::Admin, Role::Reader] {
        let issued = ca.client(role.name(), role, args.years)?;
        write_pair(&args.out, role.name(), &issued)?;
        let cfg = ClientConfig {
            endpoints: endpoint.clone(),
            ca: Some(ca.cert_pem.clone()),
            crt: Some(issued.cert_pem.clone()),
            key: Some(issued.key_pem.clone()),
            api_key: None,
        };
        write(
            &out(&format!("{}.volctlconfig", role.name())),
            cfg.to_yaml().as_bytes(),
            0o600,
        )?;
    }
    if args.api_key {
        let key = api_key();
        write(
            &out("api.key"),
            format!("{}\n", key.as_str()).as_bytes(),
            0o600,
        )?;
    }
    outln!("wrote to {}:", args.out.display())?;
    outln!(
        "  for the node (STATE's api/ folder): ca.crt, server.crt, server.key (0600){}",
        if args.api_key { ", api.key (0600)" } else { "" }
    )?;
    outln!("  for admins: admin.volctlconfig (0600); for monitoring: reader.volctlconfig (0600)")?;
    outln!("  keep offline: ca.key (0600) signs new certificates")?;
    Ok(Exit::Success)
}

/// 256 random bits, URL-safe base64 (43 characters).
fn api_key() -> zeroize::Zeroizing<String> {
    use base64::Engine;
    let bytes: zeroize::Zeroizing<[u8; 32]> = zeroize::Zeroizing::new(rand::random());
    zeroize::Zeroizing::new(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes.as_ref()))
}

fn write_pair(dir: &Path, name: &str, issued: &Issued) -> Result<()> {
    write(
        &dir.join(format!("{name}.crt")),
        issued.cert_pem.as_bytes(),
        0o644,
    )?;
    write(
        &dir.join(format!("{name}.key")),
        issued.key_pem.as_bytes(),
        0o600,
    )
}

fn write(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("creating {} (it must not exist)", path.display()))?;
    f.write_all(data)?;
    f.sync_all()?;
    Ok(())
}
