//! `volctl serve`: the node agent. A gRPC server (`volctl.node.v1.Node`,
//! [`node_api`]) on the hardened listener: TLS 1.3 only, client
//! certificates from the configured CA (their Organization is the role) or
//! the API key, bounded requests (size, time, concurrency). Each call runs
//! the same library code as the local verb ([`service`]).

mod service;
mod windows;

pub use crate::node::context::NodeContext;

use node_api::auth::Authenticator;
pub use service::NodeService;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use tls::listener::{self, ClientCerts, Limits};
pub use windows::BootWindows;
use zeroize::Zeroizing;

/// Calls served at once, over all connections.
pub const MAX_CONCURRENT_CALLS: usize = 32;
/// The longest a call may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// The server's TLS material and callers.
pub struct ServerIdentity {
    /// Certificate (PEM).
    pub cert_pem: Vec<u8>,
    /// Private key (PEM).
    pub key_pem: Zeroizing<Vec<u8>>,
    /// CA whose client certificates are accepted (PEM).
    pub client_ca_pem: Option<Vec<u8>>,
    /// The API key, if that mode is on.
    pub api_key: Option<Zeroizing<Vec<u8>>>,
}

/// The node API's files in STATE's `api/` folder (`volctl gen` makes them).
pub const API_DIR: &str = "api";

impl ServerIdentity {
    /// Reads the TLS material; the private key and API key must be private
    /// files (0600, ours).
    pub fn load(
        cert: &Path,
        key: &Path,
        client_ca: Option<&Path>,
        api_key: Option<&Path>,
    ) -> Result<Self, ServeError> {
        let read = |p: &Path| {
            std::fs::read(p).map_err(|e| ServeError::Tls(format!("{}: {e}", p.display())))
        };
        let secret = |p: &Path| {
            private_file::read_private(p, 64 << 10)
                .map_err(|e| ServeError::Tls(format!("{}: {e}", p.display())))
        };
        Ok(ServerIdentity {
            cert_pem: read(cert)?,
            key_pem: secret(key)?,
            client_ca_pem: client_ca.map(read).transpose()?,
            api_key: api_key.map(secret).transpose()?,
        })
    }

    /// The material in a STATE `api/` folder: `server.crt`, `server.key`,
    /// and `ca.crt` and `api.key` where they exist; `None` when the folder
    /// holds no server certificate.
    pub fn from_state(state: &Path) -> Option<Result<Self, ServeError>> {
        let dir = state.join(API_DIR);
        let cert = dir.join("server.crt");
        if !cert.exists() {
            return None;
        }
        let ca = Some(dir.join("ca.crt")).filter(|p| p.exists());
        let api_key = Some(dir.join("api.key")).filter(|p| p.exists());
        Some(Self::load(
            &cert,
            &dir.join("server.key"),
            ca.as_deref(),
            api_key.as_deref(),
        ))
    }
}

/// Why the server did not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The TLS material is unusable.
    #[error("TLS: {0}")]
    Tls(String),
    /// No way to authenticate anyone.
    #[error("give --client-ca (client certificates) or --api-key-file (an API key), or both")]
    NoCallers,
    /// The API key is unusable.
    #[error("API key: {0}")]
    ApiKey(String),
    /// The server failed.
    #[error("serving: {0}")]
    Serve(String),
}

/// Serves until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    id: ServerIdentity,
    node: NodeContext,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let (acceptor, auth) = prepare(id)?;
    let local: Option<SocketAddr> = listener.local_addr().ok();
    tracing::info!(?local, "serving the node API");
    run(
        listener,
        acceptor,
        NodeService::new(auth, node),
        limits,
        shutdown,
    )
    .await
}

/// While a boot asks for typed keys: the node API for admins, whose
/// `unlock` answers the boot's questions; served until `shutdown`.
pub fn serve_unlock(
    listener: tokio::net::TcpListener,
    id: ServerIdentity,
    node: NodeContext,
    answers: crate::node::ask::remote::RemoteAnswers,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let (acceptor, auth) = prepare(id)?;
    let service = NodeService::new(auth, node).answering(answers);
    tokio::spawn(async move {
        if let Err(e) = run(listener, acceptor, service, Limits::default(), shutdown).await {
            tracing::error!("node API during unlock: {e}");
        }
    });
    Ok(())
}

/// The TLS acceptor and the caller rules for `id`.
fn prepare(id: ServerIdentity) -> Result<(tokio_rustls::TlsAcceptor, Authenticator), ServeError> {
    let clients = match (&id.client_ca_pem, &id.api_key) {
        (None, None) => return Err(ServeError::NoCallers),
        (Some(ca), None) => ClientCerts::Required(ca),
        (Some(ca), Some(_)) => ClientCerts::Optional(ca),
        (None, Some(_)) => ClientCerts::None,
    };
    let acceptor =
        listener::tls_acceptor_with(&id.cert_pem, &id.key_pem, clients).map_err(ServeError::Tls)?;
    let auth = match id.api_key {
        Some(k) => Authenticator::with_api_key(k).map_err(ServeError::ApiKey)?,
        None => Authenticator::certificates(),
    };
    Ok((acceptor, auth))
}

/// Maintenance mode over the network: serves the maintenance face on
/// `listener` with a fresh self-signed certificate until `shutdown`;
/// returns the certificate's SHA-256 fingerprint once serving (the boot
/// prints it for the admin to pin).
pub fn serve_maintenance(
    listener: tokio::net::TcpListener,
    node: NodeContext,
    reason: &str,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<String, ServeError> {
    let cert = tls::pki::self_signed_server(&["volctl-maintenance".into()], &[])
        .map_err(|e| ServeError::Tls(e.to_string()))?;
    let acceptor = listener::tls_acceptor_with(
        cert.cert_pem.as_bytes(),
        cert.key_pem.as_bytes(),
        ClientCerts::None,
    )
    .map_err(ServeError::Tls)?;
    let service = NodeService::maintenance(node, reason);
    tokio::spawn(async move {
        if let Err(e) = run(listener, acceptor, service, Limits::default(), shutdown).await {
            tracing::error!("maintenance API: {e}");
        }
    });
    Ok(tls::identity::fingerprint(&cert.der))
}

/// Serves `service` on `listener` through `acceptor`, bounded.
pub(crate) async fn run(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    service: NodeService,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let svc = node_api::proto::node_server::NodeServer::new(service)
        .max_decoding_message_size(node_api::MAX_REQUEST);
    tonic::transport::Server::builder()
        .timeout(CALL_TIMEOUT)
        .concurrency_limit_per_connection(16)
        .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
            MAX_CONCURRENT_CALLS,
        ))
        .add_service(svc)
        .serve_with_incoming_shutdown(
            listener::incoming(listener, Some(acceptor), limits),
            shutdown,
        )
        .await
        .map_err(|e| ServeError::Serve(e.to_string()))
}
