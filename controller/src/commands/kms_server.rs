//! `volctl kms-server`: a stateless KMS for a fleet, or a new master key.

use crate::cli::prelude::runtime;
use crate::cli::Exit;
use anyhow::{bail, Context, Result};
use kms::keyring::Keyring;
use kms::listener::Limits;
use kms::server::ServerTls;
use std::path::PathBuf;
use std::time::Duration;

/// Examples shown by `--help`.
pub const HELP: &str = "Example:\n  volctl kms-server genkey >> /etc/volctl-kms/keys && chmod 600 /etc/volctl-kms/keys\n  volctl kms-server --listen 0.0.0.0:4050 --master-key-file /etc/volctl-kms/keys \\\n      --tls-cert tls.crt --tls-key tls.key [--client-ca clients-ca.crt]\n\nThe last key in the file seals; every key unseals (append a key to rotate). SIGTERM stops it gracefully.\nTLS 1.3 only; idle and half-open connections are closed; connections are capped below the fd limit.";

/// `volctl kms-server` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum KmsServerCommand {
    /// Print a new master-key line (KEY_ID:BASE64) to append to the key file.
    Genkey,
}

/// `volctl kms-server` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// `genkey`: print a new master-key line to append to the key file.
    #[command(subcommand)]
    pub command: Option<KmsServerCommand>,
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0:4050")]
    pub listen: String,
    /// Master key file (mode 0600): lines of KEY_ID:BASE64.
    #[arg(long, required = false)]
    pub master_key_file: Option<PathBuf>,
    /// TLS certificate chain (PEM).
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Require client certificates signed by this CA (PEM).
    #[arg(long, requires = "tls_cert")]
    pub client_ca: Option<PathBuf>,
    /// Serve without TLS (tests only: sealed keys cross the network in clear).
    #[arg(long, conflicts_with = "tls_cert")]
    pub plaintext: bool,
    /// Open connections at most (default: 512, or the file-descriptor
    /// limit less 32 when that is lower).
    #[arg(long)]
    pub max_connections: Option<usize>,
    /// Seconds a client has to finish the TLS handshake.
    #[arg(long, default_value_t = 10)]
    pub handshake_timeout: u64,
    /// Seconds a connection may stay silent before it is closed.
    #[arg(long, default_value_t = 60)]
    pub idle_timeout: u64,
    /// Where node records live: `stateless` (none: blobs sealed by the
    /// master key), `file:PATH` (one file, 0600) or
    /// `etcd://HOST:PORT[,HOST:PORT…][/PREFIX]` (replicas over etcd v3):
    /// a key per node, `volctl kms nodes | revoke | rotate | retire`.
    #[arg(long, default_value = "stateless", value_parser = parse_store)]
    pub store: Store,
    /// Which nodes a first seal enrols, with a store: `open` (any node
    /// the TLS settings let in) or `registered` (only those `volctl kms
    /// register` named).
    #[arg(long, value_enum, default_value_t = EnrolArg::Open)]
    pub enrol: EnrolArg,
    /// The CA of etcd's members (PEM): TLS to etcd (else plain HTTP, for a
    /// member on the same host or a private network only).
    #[arg(long)]
    pub etcd_ca: Option<PathBuf>,
    /// Client certificate for etcd (PEM), when etcd checks clients.
    #[arg(long, requires_all = ["etcd_ca", "etcd_key"])]
    pub etcd_cert: Option<PathBuf>,
    /// Its private key (PEM, 0600).
    #[arg(long, requires = "etcd_cert")]
    pub etcd_key: Option<PathBuf>,
}

/// `--enrol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EnrolArg {
    /// Any node.
    Open,
    /// Registered nodes only.
    Registered,
}

/// `--store`.
#[derive(Debug, Clone, PartialEq)]
pub enum Store {
    /// No records.
    Stateless,
    /// Records in one file.
    File(PathBuf),
    /// Records in etcd.
    Etcd(kms::fleet::etcd::EtcdAddress),
}

/// Why `--store` does not read.
#[derive(Debug, thiserror::Error)]
pub enum StoreArgError {
    /// An etcd address that does not read.
    #[error("{0}")]
    Etcd(String),
    /// Anything else.
    #[error("`{0}`: give `stateless`, `file:PATH` or `etcd://HOST:PORT[,HOST:PORT…]`")]
    Unknown(String),
}

fn parse_store(text: &str) -> std::result::Result<Store, StoreArgError> {
    match text.split_once(':') {
        None if text == "stateless" => Ok(Store::Stateless),
        Some(("file", path)) if !path.is_empty() => Ok(Store::File(path.into())),
        Some(("etcd", rest)) => match rest.strip_prefix("//") {
            Some(rest) => kms::fleet::etcd::EtcdAddress::parse(rest)
                .map(Store::Etcd)
                .map_err(StoreArgError::Etcd),
            None => Err(StoreArgError::Unknown(text.into())),
        },
        _ => Err(StoreArgError::Unknown(text.into())),
    }
}

/// The backend `args.store` names, over `keyring`.
async fn backend(args: &Args, keyring: Keyring) -> Result<kms::server::Backend> {
    use kms::fleet::store::NodeStore;
    let keyring = std::sync::Arc::new(keyring);
    let store: std::sync::Arc<dyn NodeStore> = match &args.store {
        Store::Stateless if args.enrol == EnrolArg::Registered => {
            bail!("--enrol registered needs node records: give --store file:PATH or etcd://…")
        }
        Store::Stateless => return Ok(kms::server::Backend::Stateless(keyring)),
        Store::File(path) => std::sync::Arc::new(kms::fleet::store::FileStore::open(path)?),
        Store::Etcd(address) => std::sync::Arc::new(
            kms::fleet::etcd::EtcdStore::connect(address, etcd_tls(args)?)
                .await
                .with_context(|| {
                    format!("connecting to etcd at {}", address.endpoints.join(","))
                })?,
        ),
    };
    let enrolment = match args.enrol {
        EnrolArg::Open => kms::fleet::Enrolment::Open,
        EnrolArg::Registered => kms::fleet::Enrolment::Registered,
    };
    Ok(kms::server::Backend::Fleet(std::sync::Arc::new(
        kms::fleet::Fleet::new(keyring, store).with_enrolment(enrolment),
    )))
}

/// TLS to etcd, when `--etcd-ca` is given.
fn etcd_tls(args: &Args) -> Result<Option<kms::fleet::etcd::EtcdTls>> {
    let Some(ca) = &args.etcd_ca else {
        return Ok(None);
    };
    let read = |p: &PathBuf| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
    let identity = match (&args.etcd_cert, &args.etcd_key) {
        (Some(c), Some(k)) => Some((read(c)?, crate::cli::remote::read_secret(k)?)),
        _ => None,
    };
    Ok(Some(kms::fleet::etcd::EtcdTls {
        ca_pem: read(ca)?,
        identity,
    }))
}

/// Serves until SIGTERM, or prints a new key.
pub fn exec(args: Args) -> Result<Exit> {
    if let Some(KmsServerCommand::Genkey) = args.command {
        println!("{}", Keyring::generate_line());
        return Ok(Exit::Success);
    }
    let keys = args
        .master_key_file
        .as_ref()
        .context("--master-key-file is required")?;
    let keyring = Keyring::load(keys)?;
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(c), Some(k)) => Some(ServerTls::from_files(c, k, args.client_ca.as_deref())?),
        _ if args.plaintext => None,
        _ => bail!("give --tls-cert and --tls-key (or --plaintext, for tests only)"),
    };
    let limits = Limits {
        max_connections: args
            .max_connections
            .unwrap_or_else(kms::listener::default_max_connections),
        handshake_timeout: Duration::from_secs(args.handshake_timeout),
        idle_timeout: Duration::from_secs(args.idle_timeout),
        ..Limits::default()
    };
    let key_id = keyring.current_id().to_string();
    runtime()?.block_on(async {
        let backend = backend(&args, keyring).await?;
        serve(&args.listen, (backend, &key_id), tls, limits).await
    })?;
    Ok(Exit::Success)
}

async fn serve(
    listen: &str,
    (backend, key_id): (kms::server::Backend, &str),
    tls: Option<ServerTls>,
    limits: Limits,
) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let addr = listener.local_addr()?;
    let records = matches!(backend, kms::server::Backend::Fleet(_));
    tracing::info!(%addr, tls = tls.is_some(), key_id, records, "KMS server listening");
    eprintln!("volctl kms-server listening on {addr}");
    kms::server::serve_with_limits(listener, backend, tls, limits, shutdown_signal()).await?;
    eprintln!("volctl kms-server stopped");
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
