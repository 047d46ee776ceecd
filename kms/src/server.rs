//! `volctl kms-server`: a stateless KMS. It holds no per-node state — every
//! sealed blob carries the id of the master key that sealed it and is bound
//! to the node UUID — so any number of replicas with the same key file can
//! serve behind a load balancer.

use crate::keyring::Keyring;
use crate::proto::kms_service_server::{KmsService, KmsServiceServer};
use crate::proto::{Request as KmsRequest, Response as KmsResponse};
use std::future::Future;
use std::sync::Arc;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status};

/// Largest secret the server seals (volctl sends 32 bytes).
pub const MAX_DATA: usize = 4096;

/// TLS material of the server.
#[derive(Clone)]
pub struct ServerTls {
    /// Certificate chain, PEM.
    pub cert_pem: Vec<u8>,
    /// Private key, PEM.
    pub key_pem: Vec<u8>,
    /// When set, clients must present a certificate signed by this CA.
    pub client_ca_pem: Option<Vec<u8>>,
}

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// TLS set-up failed.
    #[error("TLS: {0}")]
    Tls(String),
    /// Serving failed.
    #[error("serving: {0}")]
    Serve(String),
}

/// The gRPC service.
pub struct KmsServer {
    keyring: Arc<Keyring>,
}

impl KmsServer {
    /// A service sealing with `keyring`.
    pub fn new(keyring: Keyring) -> Self {
        KmsServer {
            keyring: Arc::new(keyring),
        }
    }
}

fn check(req: &KmsRequest) -> Result<(), Status> {
    if req.node_uuid.trim().is_empty() {
        return Err(Status::invalid_argument("node_uuid is empty"));
    }
    if req.data.is_empty() || req.data.len() > MAX_DATA {
        return Err(Status::invalid_argument(format!(
            "data must be 1–{MAX_DATA} bytes"
        )));
    }
    Ok(())
}

#[tonic::async_trait]
impl KmsService for KmsServer {
    async fn seal(&self, request: Request<KmsRequest>) -> Result<Response<KmsResponse>, Status> {
        let peer = request.remote_addr();
        let req = request.into_inner();
        check(&req)?;
        let data = self.keyring.seal(&req.node_uuid, &req.data);
        tracing::info!(op = "seal", node_uuid = %req.node_uuid, key_id = self.keyring.current_id(), ?peer, "sealed");
        Ok(Response::new(KmsResponse { data }))
    }

    async fn unseal(&self, request: Request<KmsRequest>) -> Result<Response<KmsResponse>, Status> {
        let peer = request.remote_addr();
        let req = request.into_inner();
        check(&req)?;
        match self.keyring.unseal(&req.node_uuid, &req.data) {
            Ok(data) => {
                tracing::info!(op = "unseal", node_uuid = %req.node_uuid, ?peer, "unsealed");
                Ok(Response::new(KmsResponse {
                    data: data.to_vec(),
                }))
            }
            Err(e) => {
                tracing::warn!(op = "unseal", node_uuid = %req.node_uuid, ?peer, error = %e, "refused");
                Err(Status::permission_denied(e.to_string()))
            }
        }
    }
}

/// Serves on `listener` until `shutdown` completes (in-flight requests finish).
pub async fn serve(
    listener: tokio::net::TcpListener,
    keyring: Keyring,
    tls: Option<ServerTls>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServerError> {
    let mut builder = Server::builder();
    if let Some(t) = tls {
        let mut cfg = ServerTlsConfig::new().identity(Identity::from_pem(t.cert_pem, t.key_pem));
        if let Some(ca) = t.client_ca_pem {
            cfg = cfg.client_ca_root(Certificate::from_pem(ca));
        }
        builder = builder
            .tls_config(cfg)
            .map_err(|e| ServerError::Tls(e.to_string()))?;
    }
    builder
        .add_service(KmsServiceServer::new(KmsServer::new(keyring)))
        .serve_with_incoming_shutdown(TcpIncoming::from(listener), shutdown)
        .await
        .map_err(|e| ServerError::Serve(e.to_string()))
}
