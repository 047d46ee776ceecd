//! `volctl kms-server`: stateless (every sealed blob carries the id of the
//! master key that sealed it and is bound to the node UUID, so any number
//! of replicas with the same key file serve behind a load balancer), or
//! with node records in a store ([`crate::fleet`]): a key per node,
//! revocation, rotation with rewrap, and the admin service.

use crate::fleet::store::StoreError;
use crate::fleet::{Evidence, FleetError};
use crate::keyring::Keyring;
use crate::listener::{self, Limits};
use crate::proto::kms_service_server::{KmsService, KmsServiceServer};
use crate::proto::{
    ChallengeRequest, ChallengeResponse, Request as KmsRequest, Response as KmsResponse,
};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tonic::transport::Server;
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

impl ServerTls {
    /// Reads the PEM files: certificate chain, key, and optionally the CA
    /// whose client certificates are accepted.
    pub fn from_files(
        cert: &std::path::Path,
        key: &std::path::Path,
        client_ca: Option<&std::path::Path>,
    ) -> std::io::Result<Self> {
        let read = |p: &std::path::Path| {
            std::fs::read(p)
                .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", p.display())))
        };
        Ok(ServerTls {
            cert_pem: read(cert)?,
            key_pem: read(key)?,
            client_ca_pem: client_ca.map(read).transpose()?,
        })
    }
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

/// What seals: the master keys alone, or node records over a store.
#[derive(Clone)]
pub enum Backend {
    /// The stateless server.
    Stateless(Arc<Keyring>),
    /// Node records (`--store`).
    Fleet(Arc<crate::fleet::Fleet>),
}

/// The gRPC service.
pub struct KmsServer {
    backend: Backend,
}

impl KmsServer {
    /// A stateless service sealing with `keyring`.
    pub fn new(keyring: Keyring) -> Self {
        Self::with(Backend::Stateless(Arc::new(keyring)))
    }

    /// A service over `backend`.
    pub fn with(backend: Backend) -> Self {
        KmsServer { backend }
    }
}

/// What an unseal gives back, whichever backend answered.
struct Opened {
    data: Vec<u8>,
    key_version: String,
    rewrap: bool,
}

/// Why a stateless server answers no attestation.
const NO_RECORDS: &str = "this KMS keeps no node records, so it checks no attestation: run it with --store (file:PATH or etcd://…)";

impl Backend {
    async fn seal(
        &self,
        uuid: &str,
        data: &[u8],
        evidence: Option<Evidence>,
    ) -> Result<(Vec<u8>, String), FleetError> {
        match self {
            Backend::Stateless(_) if evidence.is_some() => {
                Err(FleetError::Attestation(NO_RECORDS.into()))
            }
            Backend::Stateless(k) => Ok((k.seal(uuid, data), k.current_id().to_string())),
            Backend::Fleet(f) => {
                let (f, uuid, data) = (f.clone(), uuid.to_string(), data.to_vec());
                let blob =
                    on_store(move || f.seal_attested(&uuid, &data, evidence.as_ref())).await?;
                // The version is in the blob: no second read of the store.
                let version = crate::keyring::blob_key_id(&blob).to_string();
                Ok((blob, version))
            }
        }
    }

    async fn unseal(
        &self,
        uuid: &str,
        blob: &[u8],
        evidence: Option<Evidence>,
    ) -> Result<Opened, FleetError> {
        match self {
            Backend::Stateless(_) if evidence.is_some() => {
                Err(FleetError::Attestation(NO_RECORDS.into()))
            }
            Backend::Stateless(k) => {
                k.unseal(uuid, blob)
                    .map_err(FleetError::from)
                    .map(|d| Opened {
                        data: d.to_vec(),
                        key_version: crate::keyring::blob_key_id(blob).to_string(),
                        rewrap: false,
                    })
            }
            Backend::Fleet(f) => {
                let (f, uuid, blob) = (f.clone(), uuid.to_string(), blob.to_vec());
                on_store(move || {
                    let u = f.unseal_attested(&uuid, &blob, evidence.as_ref())?;
                    Ok(Opened {
                        data: u.data.to_vec(),
                        key_version: u.key_version,
                        rewrap: u.stale,
                    })
                })
                .await
            }
        }
    }
}

/// Runs a store operation on a blocking thread (the file store syncs).
async fn on_store<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, FleetError> + Send + 'static,
) -> Result<T, FleetError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| FleetError::Store(StoreError::Backend(format!("a store task failed: {e}"))))?
}

/// Whether `s` is a UUID: 8-4-4-4-12 hex digits. Only such a value is
/// accepted (and so ever logged): no newlines, escapes or megabytes.
pub fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn check(req: &KmsRequest) -> Result<(), Status> {
    if !is_uuid(&req.node_uuid) {
        return Err(Status::invalid_argument(
            "node_uuid must be a UUID (8-4-4-4-12 hex digits)",
        ));
    }
    if req.data.is_empty() || req.data.len() > MAX_DATA {
        return Err(Status::invalid_argument(format!(
            "data must be 1–{MAX_DATA} bytes"
        )));
    }
    Ok(())
}

/// The largest part of an attestation read (a P-256 key, quote and
/// signature are a few hundred bytes).
const MAX_ATTESTATION_PART: usize = 1024;

/// The request's attestation, bounded.
fn evidence(req: &KmsRequest) -> Result<Option<Evidence>, Status> {
    let Some(a) = &req.attestation else {
        return Ok(None);
    };
    if [&a.ak_public, &a.quote, &a.signature]
        .iter()
        .any(|p| p.is_empty() || p.len() > MAX_ATTESTATION_PART)
    {
        return Err(Status::invalid_argument(format!(
            "each part of an attestation must be 1–{MAX_ATTESTATION_PART} bytes"
        )));
    }
    Ok(Some(Evidence {
        ak_public: a.ak_public.clone(),
        quote: a.quote.clone(),
        signature: a.signature.clone(),
    }))
}

/// The status a failure is answered with: the store failing is the
/// server's trouble (`UNAVAILABLE`: the node retries, and says the KMS is
/// unavailable); anything else is a refusal.
fn status_of(e: &FleetError) -> Status {
    match e {
        FleetError::Store(_) => Status::unavailable(e.to_string()),
        _ => Status::permission_denied(e.to_string()),
    }
}

/// Logs a failed request (a refusal, or the store failing: the node is
/// told to retry, and nobody was refused) and the status it is answered.
fn answer_failure(op: &str, uuid: &str, peer: &str, e: &FleetError) -> Status {
    match e {
        FleetError::Store(_) => {
            tracing::warn!(op, node_uuid = %uuid, %peer, error = %e, "failed: the node store did not answer")
        }
        _ => tracing::warn!(op, node_uuid = %uuid, %peer, error = %e, "refused"),
    }
    status_of(e)
}

/// The caller's address for a log line (`-` when unknown).
fn peer_of<T>(request: &Request<T>) -> String {
    crate::listener::remote_addr(request).map_or_else(|| "-".into(), |a| a.to_string())
}

#[tonic::async_trait]
impl KmsService for KmsServer {
    async fn challenge(
        &self,
        request: Request<ChallengeRequest>,
    ) -> Result<Response<ChallengeResponse>, Status> {
        let uuid = request.into_inner().node_uuid;
        if !is_uuid(&uuid) {
            return Err(Status::invalid_argument(
                "node_uuid must be a UUID (8-4-4-4-12 hex digits)",
            ));
        }
        let Backend::Fleet(f) = &self.backend else {
            return Err(Status::failed_precondition(NO_RECORDS));
        };
        let f = f.clone();
        let nonce = on_store(move || f.challenge(&uuid))
            .await
            .map_err(|e| status_of(&e))?;
        Ok(Response::new(ChallengeResponse { nonce }))
    }

    async fn seal(&self, request: Request<KmsRequest>) -> Result<Response<KmsResponse>, Status> {
        let peer = peer_of(&request);
        let req = request.into_inner();
        check(&req)?;
        let evidence = evidence(&req)?;
        match self.backend.seal(&req.node_uuid, &req.data, evidence).await {
            Ok((data, key_id)) => {
                tracing::info!(op = "seal", node_uuid = %req.node_uuid, %key_id, %peer, "sealed");
                Ok(Response::new(KmsResponse {
                    data,
                    key_version: key_id,
                    rewrap: false,
                }))
            }
            Err(e) => Err(answer_failure("seal", &req.node_uuid, &peer, &e)),
        }
    }

    async fn unseal(&self, request: Request<KmsRequest>) -> Result<Response<KmsResponse>, Status> {
        let peer = peer_of(&request);
        let req = request.into_inner();
        check(&req)?;
        let evidence = evidence(&req)?;
        match self
            .backend
            .unseal(&req.node_uuid, &req.data, evidence)
            .await
        {
            Ok(o) => {
                tracing::info!(op = "unseal", node_uuid = %req.node_uuid, key_id = %o.key_version, rewrap = o.rewrap, %peer, "unsealed");
                Ok(Response::new(KmsResponse {
                    data: o.data,
                    key_version: o.key_version,
                    rewrap: o.rewrap,
                }))
            }
            Err(e) => Err(answer_failure("unseal", &req.node_uuid, &peer, &e)),
        }
    }
}

/// Serves on `listener` until `shutdown` completes (in-flight requests
/// finish), with the default connection [`Limits`].
pub async fn serve(
    listener: tokio::net::TcpListener,
    keyring: Keyring,
    tls: Option<ServerTls>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServerError> {
    let backend = Backend::Stateless(Arc::new(keyring));
    serve_with_limits(listener, backend, tls, Limits::default(), shutdown).await
}

/// Serves on `listener` with the given connection limits: TLS 1.3 only, a
/// handshake deadline, an idle timeout, a cap on connections, bounded
/// requests (size, time, concurrency per connection).
pub async fn serve_with_limits(
    listener: tokio::net::TcpListener,
    backend: Backend,
    tls: Option<ServerTls>,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServerError> {
    let acceptor = tls
        .map(|t| listener::tls_acceptor(&t.cert_pem, &t.key_pem, t.client_ca_pem.as_deref()))
        .transpose()
        .map_err(ServerError::Tls)?;
    // The admin service exists only over node records.
    let admin = match &backend {
        Backend::Fleet(f) => Some(
            crate::admin_proto::admin_server::AdminServer::new(crate::admin::AdminService::new(
                f.clone(),
            ))
            .max_decoding_message_size(4096),
        ),
        Backend::Stateless(_) => None,
    };
    let service =
        KmsServiceServer::new(KmsServer::with(backend)).max_decoding_message_size(MAX_DATA + 1024);
    Server::builder()
        .timeout(Duration::from_secs(30))
        .concurrency_limit_per_connection(16)
        .add_service(service)
        .add_optional_service(admin)
        .serve_with_incoming_shutdown(listener::incoming(listener, acceptor, limits), shutdown)
        .await
        .map_err(|e| ServerError::Serve(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::is_uuid;

    #[test]
    fn only_uuids_are_node_uuids() {
        assert!(is_uuid("4c4c4544-0038-5910-8057-b4c04f4d3732"));
        assert!(is_uuid("4C4C4544-0038-5910-8057-B4C04F4D3732"));
        for bad in [
            "",
            "4c4c4544-0038-5910-8057-b4c04f4d373",
            "4c4c4544-0038-5910-8057-b4c04f4d3732\n2026 forged audit line",
            "4c4c4544-0038-5910-8057-b4c04f4d3732-00",
            "\u{1b}[2J4c4c4544-0038-5910-8057-b4c04f4d37",
            "zzzzzzzz-0038-5910-8057-b4c04f4d3732",
        ] {
            assert!(!is_uuid(bad), "{bad:?}");
        }
    }
}
