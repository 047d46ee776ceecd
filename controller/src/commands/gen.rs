//! `volctl gen`: what an admin needs to manage nodes remotely — a CA, the
//! node's server certificate, admin and reader client certificates, client
//! configs, and optionally an API key. Private keys and client configs are
//! written 0600; no file is overwritten.

use crate::cli::output::outln;
use crate::cli::Exit;
use anyhow::{bail, Context, Result};
use node_api::config::ClientConfig;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use tls::identity::Role;
use tls::pki::{Ca, Issued};

/// Examples shown by `--help`.
pub const HELP: &str = "Example:\n  volctl gen --out pki --san 10.0.0.5 --san node1.lan\n  volctl gen --out pki --san 127.0.0.1 --api-key\n  volctl gen --out pki --san 10.0.0.5 --renew      # new certificates from pki/ca.crt and pki/ca.key\n\nThen copy ca.crt, server.crt and server.key to the node's STATE (api/ folder), and use\n  volctl --volctlconfig pki/admin.volctlconfig -n 10.0.0.5 status";

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
    /// Reissue the server and client certificates (and client configs) from
    /// the CA already in --out (ca.crt, ca.key), replacing the old ones;
    /// nodes and clients keep trusting the same CA.
    #[arg(long)]
    pub renew: bool,
    /// Not `gen`'s: the client's flag, refused with a word on --renew.
    #[arg(long, hide = true)]
    pub ca: Option<PathBuf>,
}

/// Writes the PKI and the client configs.
pub fn exec(args: Args) -> Result<Exit> {
    if args.ca.is_some() {
        bail!("--ca is a client flag (for `volctl -n NODE …`); `volctl gen` makes a new CA, or with --renew reissues certificates from the CA in --out (ca.crt, ca.key)");
    }
    // 0700 whatever the umask: the folder holds the CA's private key.
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&args.out)
        .with_context(|| format!("making {}", args.out.display()))?;
    let write = Writer {
        replace: args.renew,
    };
    let ca = if args.renew {
        existing_ca(&args.out)?
    } else {
        let ca = Ca::new(&unique_ca_name())?;
        write.file(&args.out.join("ca.crt"), ca.cert_pem.as_bytes(), 0o644)?;
        write.file(&args.out.join("ca.key"), ca.key_pem().as_bytes(), 0o600)?;
        ca
    };
    let server = issue(&args, &ca, &write)?;
    if args.api_key {
        let key = api_key();
        write.file(
            &args.out.join("api.key"),
            format!("{}\n", key.as_str()).as_bytes(),
            0o600,
        )?;
    }
    summary(&args, &server)?;
    Ok(Exit::Success)
}

/// The node's server certificate, the admin's and the reader's, and their
/// client configs; returns the server's.
fn issue(args: &Args, ca: &Ca, write: &Writer) -> Result<Issued> {
    let (ips, names): (Vec<String>, Vec<String>) = args
        .sans
        .iter()
        .cloned()
        .partition(|s| s.parse::<IpAddr>().is_ok());
    let ips: Vec<IpAddr> = ips.iter().filter_map(|s| s.parse().ok()).collect();
    let server = ca.server(&names, &ips, args.years)?;
    write.pair(&args.out, "server", &server)?;
    let endpoint = args.sans.first().cloned().into_iter().collect::<Vec<_>>();
    for role in [Role::Admin, Role::Reader] {
        let issued = ca.client(role.name(), role, args.years)?;
        write.pair(&args.out, role.name(), &issued)?;
        let cfg = ClientConfig {
            endpoints: endpoint.clone(),
            ca: Some(ca.cert_pem.clone()),
            crt: Some(issued.cert_pem.clone()),
            key: Some(issued.key_pem.clone()),
            api_key: None,
        };
        write.file(
            &args.out.join(format!("{}.volctlconfig", role.name())),
            cfg.to_yaml().as_bytes(),
            0o600,
        )?;
    }
    Ok(server)
}

/// What went where, and until when it is valid.
fn summary(args: &Args, server: &Issued) -> Result<()> {
    let what = if args.renew {
        "reissued from its CA"
    } else {
        "wrote"
    };
    let until = tls::identity::valid_until(&server.der);
    outln!("{what} to {} (valid until {until}):", args.out.display())?;
    outln!(
        "  for the node (STATE's api/ folder): ca.crt, server.crt, server.key (0600){}",
        if args.api_key { ", api.key (0600)" } else { "" }
    )?;
    outln!("  for admins: admin.volctlconfig (0600); for monitoring: reader.volctlconfig (0600)")?;
    outln!("  keep offline: ca.key (0600) signs new certificates")?;
    Ok(())
}

/// 256 random bits, URL-safe base64 (43 characters).
fn api_key() -> zeroize::Zeroizing<String> {
    use base64::Engine;
    let bytes: zeroize::Zeroizing<[u8; 32]> = zeroize::Zeroizing::new(rand::random());
    zeroize::Zeroizing::new(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes.as_ref()))
}

/// "volctl CA 3f9a1c2e": each CA its own name, so that a client given
/// another CA is told which one signed the node's certificate.
fn unique_ca_name() -> String {
    format!("volctl CA {}", hex::encode(rand::random::<[u8; 4]>()))
}

/// The CA `gen` wrote to `dir` before (`--renew`).
fn existing_ca(dir: &Path) -> Result<Ca> {
    let cert = dir.join("ca.crt");
    let cert_pem = std::fs::read_to_string(&cert)
        .with_context(|| format!("--renew reads the CA from {}", cert.display()))?;
    let key_pem = crate::cli::remote::read_secret(&dir.join("ca.key"))?;
    let key_pem = std::str::from_utf8(&key_pem).context("ca.key is not PEM")?;
    Ok(Ca::load(&cert_pem, key_pem)?)
}

/// Writes `gen`'s files: new ones only, or (`--renew`) replacing the old
/// ones atomically (a temporary file renamed over them).
struct Writer {
    replace: bool,
}

impl Writer {
    fn pair(&self, dir: &Path, name: &str, issued: &Issued) -> Result<()> {
        self.file(
            &dir.join(format!("{name}.crt")),
            issued.cert_pem.as_bytes(),
            0o644,
        )?;
        self.file(
            &dir.join(format!("{name}.key")),
            issued.key_pem.as_bytes(),
            0o600,
        )
    }

    fn file(&self, path: &Path, data: &[u8], mode: u32) -> Result<()> {
        if !self.replace {
            return create(path, data, mode)
                .with_context(|| format!("creating {} (it must not exist)", path.display()));
        }
        let tmp = PathBuf::from(format!("{}.new", path.display()));
        let _ = std::fs::remove_file(&tmp);
        create(&tmp, data, mode).with_context(|| format!("creating {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))
    }
}

fn create(path: &Path, data: &[u8], mode: u32) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    f.write_all(data)?;
    f.sync_all()
}
