//! The client behind `volctl -n NODE`: TLS 1.3 only, the node verified by
//! the CA in the client config (or, for a node in maintenance mode, by the
//! certificate fingerprint the admin pins), the admin's certificate or API
//! key presented, and every call bounded in time.

use crate::proto::node_client::NodeClient;
use crate::DEFAULT_PORT;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_rustls::rustls;
use tonic::transport::{Channel, Endpoint};
use zeroize::Zeroizing;

/// How the client knows it reached the right node.
#[derive(Debug, Clone)]
pub enum Trust {
    /// The node's certificate chains to this CA (PEM).
    Ca(Vec<u8>),
    /// The node's certificate has this SHA-256 fingerprint (maintenance mode).
    Pinned(String),
    /// Anything (maintenance mode without `--fingerprint`): the fingerprint
    /// seen is reported so the admin can check it.
    Unverified,
}

/// What the client presents and trusts.
#[derive(Clone)]
pub struct Credentials {
    /// How the node is verified.
    pub trust: Trust,
    /// Client certificate and key (PEM).
    pub identity: Option<(Vec<u8>, Zeroizing<Vec<u8>>)>,
    /// The API key, sent as `authorization: Bearer …` over TLS.
    pub api_key: Option<Zeroizing<String>>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("trust", &self.trust)
            .field("identity", &self.identity.as_ref().map(|_| "<certificate>"))
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// `-n` does not name a host.
    #[error("`{0}` is not HOST[:PORT]")]
    BadNode(String),
    /// The TLS setup is wrong (unreadable CA, certificate or key).
    #[error("TLS setup: {0}")]
    Tls(String),
    /// The node could not be reached, or its certificate did not verify.
    #[error("{node}: cannot connect: {reason}")]
    Connect {
        /// The node.
        node: String,
        /// Why.
        reason: String,
    },
    /// The node refused or failed the call.
    #[error("{node}: {reason}")]
    Call {
        /// The node.
        node: String,
        /// The node's message, with what its code means.
        reason: String,
    },
}

/// A connected node.
pub struct Remote {
    /// `host:port` as dialled.
    pub node: String,
    /// The certificate the node presented (DER).
    server_cert: Option<Vec<u8>>,
    /// This client's certificate (DER), when it presents one.
    client_cert: Option<Vec<u8>>,
    client: NodeClient<Channel>,
    api_key: Option<Zeroizing<String>>,
    timeout: Duration,
    presented_certificate: bool,
}

/// `HOST[:PORT]` → (host, port); IPv6 in brackets.
pub fn parse_node(node: &str) -> Result<(String, u16), ClientError> {
    let bad = || ClientError::BadNode(node.to_string());
    let (host, port) = if let Some(rest) = node.strip_prefix('[') {
        let (h, after) = rest.split_once(']').ok_or_else(bad)?;
        (h.to_string(), after.strip_prefix(':'))
    } else {
        match node.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h.to_string(), Some(p)),
            _ => (node.to_string(), None),
        }
    };
    let port = match port {
        Some(p) => p.parse().map_err(|_| bad())?,
        None => DEFAULT_PORT,
    };
    if host.is_empty() {
        return Err(bad());
    }
    Ok((host, port))
}

impl Remote {
    /// Connects to `node` within `timeout`.
    pub async fn connect(
        node: &str,
        creds: &Credentials,
        timeout: Duration,
    ) -> Result<Remote, ClientError> {
        let (host, port) = parse_node(node)?;
        let seen = Arc::new(Mutex::new(None));
        let config = Arc::new(client_config(creds, seen.clone())?);
        let server_name = rustls::pki_types::ServerName::try_from(host.clone())
            .map_err(|_| ClientError::BadNode(node.to_string()))?;
        let addr = format!("{host}:{port}");
        let connector = tower::service_fn(move |_: http::Uri| {
            let (config, server_name, addr) = (config.clone(), server_name.clone(), addr.clone());
            async move {
                let tcp = tokio::net::TcpStream::connect(&addr).await?;
                // A request is a few small writes: not one delayed-ACK wait each.
                tcp.set_nodelay(true)?;
                let tls = tokio_rustls::TlsConnector::from(config)
                    .connect(server_name, tcp)
                    .await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
            }
        });
        let shown = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let channel = Endpoint::from_shared(format!("http://{shown}"))
            .map_err(|e| ClientError::BadNode(format!("{node}: {e}")))?
            .connect_timeout(timeout)
            .timeout(timeout);
        let channel = tokio::time::timeout(timeout, channel.connect_with_connector(connector))
            .await
            .map_err(|_| ClientError::Connect {
                node: shown.clone(),
                reason: format!(
                    "no answer within {} s (is the node up and `volctl serve` running?)",
                    timeout.as_secs()
                ),
            })?
            .map_err(|e| ClientError::Connect {
                node: shown.clone(),
                reason: certificate_first(error_chain(&e)),
            })?;
        let server_cert = seen.lock().ok().and_then(|s| s.clone());
        Ok(Remote {
            node: shown,
            server_cert,
            client_cert: creds
                .identity
                .as_ref()
                .and_then(|(pem, _)| first_certificate(pem)),
            client: NodeClient::new(channel).max_decoding_message_size(crate::MAX_REQUEST * 4),
            api_key: creds.api_key.clone(),
            timeout,
            presented_certificate: creds.identity.is_some(),
        })
    }

    /// The SHA-256 fingerprint of the certificate the node presented.
    pub fn fingerprint(&self) -> Option<String> {
        self.server_cert.as_deref().map(tls::identity::fingerprint)
    }

    /// Warnings for the node's certificate and this client's that expire
    /// within 30 days (or have expired).
    pub fn expiry_warnings(&self) -> Vec<String> {
        let now = time::OffsetDateTime::now_utc();
        [
            ("the node's", &self.server_cert),
            ("this client's", &self.client_cert),
        ]
        .into_iter()
        .filter_map(|(whose, der)| tls::identity::expiry_warning(whose, der.as_deref()?, now))
        .collect()
    }

    /// The gRPC client and a request carrying the credentials.
    pub fn call<T>(&mut self, msg: T) -> (&mut NodeClient<Channel>, tonic::Request<T>) {
        let mut req = tonic::Request::new(msg);
        req.set_timeout(self.timeout);
        if let Some(key) = &self.api_key {
            if let Ok(v) = format!("Bearer {}", key.as_str()).parse() {
                req.metadata_mut().insert("authorization", v);
            }
        }
        (&mut self.client, req)
    }

    /// A refusal or failure, as the admin reads it.
    pub fn failed(&self, s: &tonic::Status) -> ClientError {
        use tonic::Code;
        let what = match s.code() {
            Code::Unauthenticated => "not authenticated",
            Code::PermissionDenied => "refused",
            Code::InvalidArgument | Code::FailedPrecondition => "refused",
            Code::ResourceExhausted | Code::OutOfRange => "too large or too many calls",
            Code::Unavailable => "unavailable",
            Code::DeadlineExceeded => "timed out",
            _ => "failed",
        };
        let chain = std::error::Error::source(s)
            .map(error_chain)
            .unwrap_or_default();
        let transport = matches!(
            s.code(),
            Code::Unknown | Code::Unavailable | Code::Cancelled
        );
        let dropped = transport
            && [
                "alert",
                "connection closed",
                "broken pipe",
                "connection reset",
                "canceled",
            ]
            .iter()
            .any(|w| chain.contains(w) || s.message().contains(w));
        if dropped && self.presented_certificate {
            // TLS 1.3: the node checks the client certificate after the
            // client thinks the handshake is done, then closes the connection.
            return ClientError::Call {
                node: self.node.clone(),
                reason: "the node closed the connection: it refused this client's certificate (from another CA, expired, or not a client certificate; the node's log says which), or it is shutting down".into(),
            };
        }
        ClientError::Call {
            node: self.node.clone(),
            reason: if chain.is_empty() {
                format!("{what}: {}", s.message())
            } else {
                format!("{what}: {}: {chain}", s.message())
            },
        }
    }
}

/// A connection error that is about the node's certificate (ours, from
/// [`explained`]) says that alone, without the transport's wrapping.
fn certificate_first(chain: String) -> String {
    match chain.find("the node's certificate") {
        Some(at) => chain[at..].to_string(),
        None => chain,
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let t = s.to_string();
        if !out.contains(&t) {
            out.push_str(": ");
            out.push_str(&t);
        }
        src = s.source();
    }
    out
}

/// The first certificate of a PEM bundle (DER).
fn first_certificate(pem: &[u8]) -> Option<Vec<u8>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let der = CertificateDer::pem_slice_iter(pem).next()?.ok()?;
    Some(der.to_vec())
}

fn client_config(
    creds: &Credentials,
    seen: Arc<Mutex<Option<Vec<u8>>>>,
) -> Result<rustls::ClientConfig, ClientError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = RecordingVerifier {
        inner: verify(&creds.trust, &provider)?,
        seen,
        provider: provider.clone(),
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| tls_error("TLS 1.3", &e))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    let mut cfg = match &creds.identity {
        Some((cert, key)) => {
            let (certs, key) = identity(cert, key)?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| tls_error("client certificate", &e))?
        }
        None => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(cfg)
}

fn tls_error(what: &str, e: &dyn std::fmt::Display) -> ClientError {
    ClientError::Tls(format!("{what}: {e}"))
}

/// How the node's certificate is checked.
fn verify(
    trust: &Trust,
    provider: &Arc<rustls::crypto::CryptoProvider>,
) -> Result<Verify, ClientError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    Ok(match trust {
        Trust::Ca(pem) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(pem) {
                roots
                    .add(c.map_err(|e| tls_error("CA", &e))?)
                    .map_err(|e| tls_error("CA", &e))?;
            }
            let v = rustls::client::WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots),
                provider.clone(),
            )
            .build()
            .map_err(|e| tls_error("CA", &e))?;
            let names = CertificateDer::pem_slice_iter(pem)
                .flatten()
                .filter_map(|c| tls::identity::common_name(&c))
                .collect::<Vec<_>>()
                .join("`, `");
            Verify::WebPki(v, names)
        }
        Trust::Pinned(f) => Verify::Pinned(f.clone()),
        Trust::Unverified => Verify::Any,
    })
}

/// The client certificate chain and key, from PEM.
fn identity(
    cert: &[u8],
    key: &[u8],
) -> Result<
    (
        Vec<rustls::pki_types::CertificateDer<'static>>,
        rustls::pki_types::PrivateKeyDer<'static>,
    ),
    ClientError,
> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_slice_iter(cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_error("client certificate", &e))?;
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| tls_error("client key", &e))?;
    Ok((certs, key))
}

/// A CA verification failure, as the admin reads it: which CA signed the
/// node's certificate and which one the client was given; when it expired.
fn explained(e: rustls::Error, end_entity: &[u8], ca: &str) -> rustls::Error {
    use rustls::CertificateError as C;
    let issuer = tls::identity::issuer_name(end_entity).unwrap_or_else(|| "?".into());
    match e {
        rustls::Error::InvalidCertificate(C::UnknownIssuer | C::BadSignature) => {
            rustls::Error::General(format!(
                "the node's certificate is not signed by the CA in --ca (or the client config): it was issued by `{issuer}`, the CA given is `{ca}`"
            ))
        }
        rustls::Error::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => {
            let until = tls::identity::valid_until(end_entity);
            rustls::Error::General(format!(
                "the node's certificate expired on {until}; reissue it from the same CA with `volctl gen --renew` (docs/remote.md)"
            ))
        }
        other => other,
    }
}

#[derive(Debug)]
enum Verify {
    /// By CA; the CA's name, for errors.
    WebPki(Arc<rustls::client::WebPkiServerVerifier>, String),
    Pinned(String),
    Any,
}

/// Verifies the node's certificate (by CA, by pinned fingerprint, or not
/// at all) and records its fingerprint.
#[derive(Debug)]
struct RecordingVerifier {
    inner: Verify,
    seen: Arc<Mutex<Option<Vec<u8>>>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl rustls::client::danger::ServerCertVerifier for RecordingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        intermediates: &[rustls::pki_types::CertificateDer<'_>],
        server_name: &rustls::pki_types::ServerName<'_>,
        ocsp: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        let fp = tls::identity::fingerprint(end_entity);
        if let Ok(mut s) = self.seen.lock() {
            *s = Some(end_entity.to_vec());
        }
        match &self.inner {
            Verify::WebPki(v, ca) => v
                .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
                .map_err(|e| explained(e, end_entity, ca)),
            Verify::Pinned(want) if *want == fp => {
                Ok(rustls::client::danger::ServerCertVerified::assertion())
            }
            Verify::Pinned(want) => Err(rustls::Error::General(format!(
                "the node's certificate fingerprint is {fp}, not the pinned {want}: another node, or someone in between"
            ))),
            Verify::Any => Ok(rustls::client::danger::ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &rustls::pki_types::CertificateDer<'_>,
        _dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("TLS 1.2 is not used".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::parse_node;

    #[test]
    fn nodes_are_host_and_optional_port() {
        assert_eq!(parse_node("10.0.0.5").unwrap(), ("10.0.0.5".into(), 50000));
        assert_eq!(parse_node("node1:4000").unwrap(), ("node1".into(), 4000));
        assert_eq!(parse_node("[::1]:5").unwrap(), ("::1".into(), 5));
        assert_eq!(parse_node("::1").unwrap(), ("::1".into(), 50000));
        assert!(parse_node("h:x").is_err());
        assert!(parse_node(":5").is_err());
    }
}
