//! The KMS client: Seal and Unseal over gRPC, TLS by default (system roots
//! or a given CA), plaintext only for `http://` endpoints; connect and
//! request timeouts, and a few retries with backoff for a KMS that is
//! starting or briefly unreachable at boot.

use crate::proto::kms_service_client::KmsServiceClient;
pub use crate::proto::Attestation;
use crate::proto::{ChallengeRequest, Request as KmsRequest};
use std::time::Duration;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};
use zeroize::Zeroizing;

/// Makes the node's TPM quote over a server's nonce (blocking: it talks
/// to the TPM); the error in words.
pub type Quoter = std::sync::Arc<dyn Fn(Vec<u8>) -> Result<Attestation, String> + Send + Sync>;

/// How one attempt failed.
enum Failure {
    /// Worth another attempt.
    Transient(String),
    /// Final.
    Final(ClientError),
}

/// Why a KMS call failed. Never carries key material.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The endpoint is not usable.
    #[error("bad KMS endpoint `{endpoint}`: {reason}")]
    Endpoint {
        /// Endpoint.
        endpoint: String,
        /// Why.
        reason: String,
    },
    /// Could not reach the KMS after the retries.
    #[error("KMS {endpoint} unreachable after {attempts} attempt(s): {reason}")]
    Unreachable {
        /// Endpoint.
        endpoint: String,
        /// Attempts made.
        attempts: u32,
        /// Last error.
        reason: String,
    },
    /// The node's TPM could not quote.
    #[error("the TPM quote for the KMS's attestation: {0}")]
    Quote(String),
    /// The KMS answered with an error.
    #[error("KMS {endpoint} refused {op}: {reason}")]
    Refused {
        /// Endpoint.
        endpoint: String,
        /// `seal` or `unseal`.
        op: &'static str,
        /// The server's message.
        reason: String,
    },
}

/// How to reach a KMS.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// CA certificates (PEM) to trust instead of the system roots.
    pub ca_pem: Option<Vec<u8>>,
    /// Client certificate and key (PEM), for servers that require one.
    pub identity_pem: Option<(Vec<u8>, Vec<u8>)>,
    /// Connection timeout.
    pub connect_timeout: Duration,
    /// Per-request timeout.
    pub request_timeout: Duration,
    /// Attempts for a connection or transport failure.
    pub attempts: u32,
    /// First backoff; doubled after each failed attempt.
    pub backoff: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            ca_pem: None,
            identity_pem: None,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            attempts: 3,
            backoff: Duration::from_millis(500),
        }
    }
}

/// A KMS at one endpoint.
#[derive(Debug, Clone)]
pub struct KmsClient {
    endpoint: String,
    options: ClientOptions,
}

impl KmsClient {
    /// A client for `endpoint` (`https://host:port`, or `http://` for tests).
    pub fn new(endpoint: &str, options: ClientOptions) -> Self {
        KmsClient {
            endpoint: endpoint.to_string(),
            options,
        }
    }

    pub(crate) fn endpoint(&self) -> Result<Endpoint, ClientError> {
        let bad = |reason: String| ClientError::Endpoint {
            endpoint: self.endpoint.clone(),
            reason,
        };
        let mut ep = Endpoint::from_shared(self.endpoint.clone())
            .map_err(|e| bad(e.to_string()))?
            .connect_timeout(self.options.connect_timeout)
            .timeout(self.options.request_timeout);
        if self.endpoint.starts_with("https://") {
            // A given CA bundle is the trust anchor; otherwise the system roots.
            // The handshake has its own deadline: a peer that accepts TCP
            // and then says nothing must not hang a boot.
            let mut tls = match &self.options.ca_pem {
                Some(ca) => ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca)),
                None => ClientTlsConfig::new().with_native_roots(),
            }
            .timeout(self.options.connect_timeout);
            if let Some((cert, key)) = &self.options.identity_pem {
                tls = tls.identity(tonic::transport::Identity::from_pem(cert, key));
            }
            ep = ep.tls_config(tls).map_err(|e| bad(e.to_string()))?;
        } else {
            tracing::warn!(endpoint = %self.endpoint, "KMS over plain http: the sealed key crosses the network without TLS");
        }
        Ok(ep)
    }

    async fn call(
        &self,
        op: &'static str,
        node_uuid: &str,
        data: &[u8],
        quoter: Option<&Quoter>,
    ) -> Result<Reply, ClientError> {
        let ep = self.endpoint()?;
        let mut backoff = self.options.backoff;
        let mut last = String::new();
        // Every attempt is bounded as a whole, whatever stalls inside it.
        let attempt_deadline = self.options.connect_timeout + self.options.request_timeout;
        for attempt in 1..=self.options.attempts.max(1) {
            let connected = match tokio::time::timeout(attempt_deadline, ep.connect()).await {
                Ok(r) => r.map_err(|e| error_chain(&e)),
                Err(_) => Err(format!("no connection within {attempt_deadline:?}")),
            };
            match connected {
                Ok(channel) => {
                    let c = KmsServiceClient::new(channel);
                    match self.attempt(c, op, node_uuid, data, quoter).await {
                        Ok(reply) => return Ok(reply),
                        Err(Failure::Transient(why)) => last = why,
                        Err(Failure::Final(e)) => return Err(e),
                    }
                }
                Err(e) => last = e,
            }
            tracing::warn!(endpoint = %self.endpoint, attempt, error = %last, "KMS call failed");
            if attempt < self.options.attempts {
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
        }
        Err(ClientError::Unreachable {
            endpoint: self.endpoint.clone(),
            attempts: self.options.attempts.max(1),
            reason: last,
        })
    }

    /// One request on a connection (with a quote over a fresh nonce when
    /// `quoter` is given: a nonce is good once, so every attempt asks).
    async fn attempt(
        &self,
        mut c: KmsServiceClient<tonic::transport::Channel>,
        op: &'static str,
        node_uuid: &str,
        data: &[u8],
        quoter: Option<&Quoter>,
    ) -> Result<Reply, Failure> {
        let attestation = match quoter {
            Some(q) => Some(self.quote(&mut c, op, node_uuid, q).await?),
            None => None,
        };
        let req = KmsRequest {
            node_uuid: node_uuid.to_string(),
            data: data.to_vec(),
            attestation,
        };
        let res = if op == "seal" {
            c.seal(req).await
        } else {
            c.unseal(req).await
        };
        let r = res.map_err(|s| self.failure(op, &s))?.into_inner();
        Ok(Reply {
            data: Zeroizing::new(r.data),
            key_version: r.key_version,
            rewrap: r.rewrap,
        })
    }

    /// The server's nonce, quoted by the node's TPM.
    async fn quote(
        &self,
        c: &mut KmsServiceClient<tonic::transport::Channel>,
        op: &'static str,
        node_uuid: &str,
        quoter: &Quoter,
    ) -> Result<Attestation, Failure> {
        let nonce = c
            .challenge(ChallengeRequest {
                node_uuid: node_uuid.to_string(),
            })
            .await
            .map_err(|s| self.failure(op, &s))?
            .into_inner()
            .nonce;
        let q = quoter.clone();
        tokio::task::spawn_blocking(move || q(nonce))
            .await
            .map_err(|e| Failure::Final(ClientError::Quote(e.to_string())))?
            .map_err(|e| Failure::Final(ClientError::Quote(e)))
    }

    /// A failed call: worth another attempt, or the server's refusal.
    fn failure(&self, op: &'static str, s: &tonic::Status) -> Failure {
        if transient(s) {
            Failure::Transient(s.message().to_string())
        } else {
            Failure::Final(ClientError::Refused {
                endpoint: self.endpoint.clone(),
                op,
                reason: s.message().to_string(),
            })
        }
    }

    /// Seals `data` for `node_uuid`; returns the blob.
    pub async fn seal(&self, node_uuid: &str, data: &[u8]) -> Result<Vec<u8>, ClientError> {
        self.call("seal", node_uuid, data, None)
            .await
            .map(|r| r.data.to_vec())
    }

    /// Unseals a blob sealed for `node_uuid`.
    pub async fn unseal(
        &self,
        node_uuid: &str,
        blob: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, ClientError> {
        self.unseal_reply(node_uuid, blob).await.map(|r| r.data)
    }

    /// Unseals a blob sealed for `node_uuid`, with what the server says
    /// of the blob (a server with node records: its key version, and
    /// whether to seal again).
    pub async fn unseal_reply(&self, node_uuid: &str, blob: &[u8]) -> Result<Reply, ClientError> {
        self.call("unseal", node_uuid, blob, None).await
    }

    /// Seals `data` for `node_uuid` with a quote `quoter` makes over the
    /// server's nonce (a key with `attest: true`).
    pub async fn seal_attested(
        &self,
        node_uuid: &str,
        data: &[u8],
        quoter: &Quoter,
    ) -> Result<Vec<u8>, ClientError> {
        self.call("seal", node_uuid, data, Some(quoter))
            .await
            .map(|r| r.data.to_vec())
    }

    /// [`Self::unseal_reply`] with a quote `quoter` makes over the
    /// server's nonce.
    pub async fn unseal_attested(
        &self,
        node_uuid: &str,
        blob: &[u8],
        quoter: &Quoter,
    ) -> Result<Reply, ClientError> {
        self.call("unseal", node_uuid, blob, Some(quoter)).await
    }
}

/// A server's answer.
#[derive(Debug)]
pub struct Reply {
    /// The blob (seal) or the secret (unseal).
    pub data: Zeroizing<Vec<u8>>,
    /// The master-key version the blob uses (empty from a stateless server
    /// or another KMS).
    pub key_version: String,
    /// The server asks the node to seal again: its blob uses an old
    /// master-key version.
    pub rewrap: bool,
}

/// Whether a failed call is worth another attempt: the server was
/// unavailable (its store too) or late, or the connection broke mid-call
/// (tonic reports a transport failure as `UNKNOWN`: a server that died
/// while answering refused nothing). A server's refusal carries its own
/// code and is final.
fn transient(s: &tonic::Status) -> bool {
    matches!(
        s.code(),
        tonic::Code::Unavailable
            | tonic::Code::DeadlineExceeded
            | tonic::Code::Cancelled
            | tonic::Code::Unknown
    )
}

/// An error and its sources as one line. A source that merely repeats the
/// text before it (an `io::Error` wrapping a rustls error shows the same
/// words) is written once.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        let text = c.to_string();
        if !s.ends_with(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        src = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::error_chain;

    #[derive(Debug)]
    struct E(&'static str, Option<Box<E>>);
    impl std::fmt::Display for E {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }
    impl std::error::Error for E {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    #[test]
    fn error_chain_joins_sources_and_drops_repeats() {
        let e = E(
            "transport error",
            Some(Box::new(E(
                "corrupt message",
                Some(Box::new(E(
                    "corrupt message",
                    Some(Box::new(E("eof", None))),
                ))),
            ))),
        );
        assert_eq!(error_chain(&e), "transport error: corrupt message: eof");
    }
}
