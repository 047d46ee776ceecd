//! `volctl kms`: administer a KMS server's node records (a server started
//! with `--store`) over its TLS, with an admin client certificate.

use crate::cli::prelude::runtime;
use crate::cli::Exit;
use anyhow::{Context, Result};
use kms::admin_proto::{
    AllowRequest, NodesRequest, RegisterRequest, RetireRequest, RevokeRequest, RotateRequest,
};
use std::path::PathBuf;

/// Examples shown by `--help`.
pub const HELP: &str = "Examples:\n  volctl kms nodes --server https://kms:4050 --ca ca.pem --cert admin.pem --key admin-key.pem\n  volctl kms register --node 4c4c4544-0038-5910-8057-b4c04f4d3732 [--node …] --server … --ca … --cert … --key …\n  volctl kms revoke --node 4c4c4544-0038-5910-8057-b4c04f4d3732 --server … --ca … --cert … --key …\n  volctl kms allow --node 4c4c4544-0038-5910-8057-b4c04f4d3732 --pcr 7=2a93… …   (a planned update of an attested node)\n  volctl kms rotate …     (after appending a key to the key file of every replica)\n  volctl kms retire --version 3f9a1c2e …";

/// UUIDs sent in one `register` request.
const REGISTER_BATCH: usize = 64;

/// How to reach the server.
#[derive(Debug, clap::Args)]
pub struct Conn {
    /// The KMS server, `https://host:port`.
    #[arg(long)]
    pub server: String,
    /// The CA that signed the server's certificate (PEM).
    #[arg(long)]
    pub ca: PathBuf,
    /// An admin client certificate (PEM, Organization `admin`).
    #[arg(long)]
    pub cert: PathBuf,
    /// Its private key (PEM).
    #[arg(long)]
    pub key: PathBuf,
}

/// `volctl kms` verbs.
#[derive(Debug, clap::Subcommand)]
pub enum Args {
    /// List every node: UUID, state, key version, first and last seen.
    Nodes(Conn),
    /// Register nodes so that they may enrol (a server started with
    /// `--enrol registered`).
    Register {
        /// A node's UUID (repeat for several).
        #[arg(long = "node", required = true)]
        nodes: Vec<String>,
        #[command(flatten)]
        conn: Conn,
    },
    /// Revoke a node: its keys are destroyed, nothing it sealed opens again.
    Revoke {
        /// The node's UUID.
        #[arg(long)]
        node: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Make another master-key version current (default: the key file's
    /// newest); nodes rewrap on their next converge.
    Rotate {
        /// The master-key id to make current.
        #[arg(long)]
        to: Option<String>,
        #[command(flatten)]
        conn: Conn,
    },
    /// Allow an attested node's quotes to report these PCR values (a
    /// planned firmware or boot update); its next quote with them makes
    /// them its policy.
    Allow {
        /// The node's UUID.
        #[arg(long)]
        node: String,
        /// A PCR and the SHA-256 value it will have: `7=<64 hex digits>`.
        #[arg(long = "pcr", value_name = "N=HEX", required = true, value_parser = super::tpm::parse_pcr)]
        pcrs: Vec<(u32, providers::tpm::policy::Sha256Digest)>,
        #[command(flatten)]
        conn: Conn,
    },
    /// Retire a master-key version: the node keys it wraps are destroyed
    /// (refused while an active node still uses it).
    Retire {
        /// The master-key id.
        #[arg(long)]
        version: String,
        #[command(flatten)]
        conn: Conn,
    },
}

/// Runs the verb against the server.
pub fn exec(args: Args) -> Result<Exit> {
    runtime()?.block_on(run(args))
}

async fn run(args: Args) -> Result<Exit> {
    let conn = match &args {
        Args::Nodes(c) => c,
        Args::Register { conn, .. }
        | Args::Allow { conn, .. }
        | Args::Revoke { conn, .. }
        | Args::Rotate { conn, .. }
        | Args::Retire { conn, .. } => conn,
    };
    let mut client = kms::admin::connect(&conn.server, options(conn)?).await?;
    let server = conn.server.clone();
    let said = ask(&mut client, args)
        .await
        .map_err(|s| anyhow::anyhow!("{server}: {}", s.message()))?;
    print!("{said}");
    Ok(Exit::Success)
}

type Admin = kms::admin_proto::admin_client::AdminClient<tonic::transport::Channel>;

/// Asks the server; what to print.
async fn ask(client: &mut Admin, args: Args) -> Result<String, tonic::Status> {
    Ok(match args {
        Args::Nodes(_) => nodes_table(&client.nodes(NodesRequest {}).await?.into_inner()),
        Args::Register { nodes, .. } => register(client, &nodes).await?,
        Args::Allow { node, pcrs, .. } => allow(client, node, pcrs).await?,
        Args::Revoke { node, .. } => {
            let req = RevokeRequest {
                node_uuid: node.clone(),
            };
            client.revoke(req).await?;
            format!("revoked {node}: its keys are destroyed; nothing it sealed opens again\n")
        }
        Args::Rotate { to, .. } => {
            let req = RotateRequest {
                to: to.unwrap_or_default(),
            };
            let r = client.rotate(req).await?.into_inner();
            format!(
                "rotated: {} → {} (nodes rewrap on their next converge)\n",
                r.previous, r.current
            )
        }
        Args::Retire { version, .. } => {
            let req = RetireRequest {
                version: version.clone(),
            };
            client.retire(req).await?;
            format!("retired {version}: the node keys it wrapped are destroyed\n")
        }
    })
}

async fn register(client: &mut Admin, nodes: &[String]) -> Result<String, tonic::Status> {
    // The admin service reads requests of 4 KiB at most.
    for batch in nodes.chunks(REGISTER_BATCH) {
        let req = RegisterRequest {
            node_uuids: batch.to_vec(),
        };
        client.register(req).await?;
    }
    Ok(format!(
        "registered {} node(s): they may enrol\n",
        nodes.len()
    ))
}

async fn allow(
    client: &mut Admin,
    node: String,
    pcrs: Vec<(u32, providers::tpm::policy::Sha256Digest)>,
) -> Result<String, tonic::Status> {
    let shown: Vec<String> = pcrs.iter().map(|(n, _)| n.to_string()).collect();
    let req = AllowRequest {
        node_uuid: node.clone(),
        pcrs: pcrs.into_iter().map(|(n, v)| (n, v.to_vec())).collect(),
    };
    client.allow(req).await?;
    Ok(format!(
        "allowed for {node}: PCR {} as given; its next quote with them makes them its policy\n",
        shown.join(", ")
    ))
}

fn options(conn: &Conn) -> Result<kms::client::ClientOptions> {
    let read = |p: &PathBuf| std::fs::read(p).with_context(|| p.display().to_string());
    Ok(kms::client::ClientOptions {
        ca_pem: Some(read(&conn.ca)?),
        identity_pem: Some((read(&conn.cert)?, read(&conn.key)?)),
        ..Default::default()
    })
}

/// The nodes as a table, the current version above it.
fn nodes_table(r: &kms::admin_proto::NodesResponse) -> String {
    let mut out = format!("current master-key version: {}\n", r.current);
    out.push_str(&format!(
        "{:<36}  {:<8}  {:<12}  {:<20}  {}\n",
        "UUID", "STATE", "KEY VERSION", "LAST SEEN", "ATTESTED"
    ));
    for n in &r.nodes {
        out.push_str(&format!(
            "{:<36}  {:<8}  {:<12}  {:<20}  {}\n",
            n.uuid,
            n.state,
            if n.key_version.is_empty() {
                "-"
            } else {
                &n.key_version
            },
            utc(n.last_seen),
            if n.attestation_key.is_empty() {
                "no".to_string()
            } else {
                format!(
                    "yes ({})",
                    &n.attestation_key[..16.min(n.attestation_key.len())]
                )
            }
        ));
    }
    out
}

/// Seconds since the epoch as `YYYY-MM-DD hh:mm:ss` (UTC).
fn utc(secs: u64) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    i64::try_from(secs)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_else(|| "-".into())
}
