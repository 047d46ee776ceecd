//! The two requests of Tang's protocol over plain HTTP: `GET /adv[/thp]`
//! and `POST /rec/<kid>` (hyper, HTTP/1.1). Answers are read up to
//! [`MAX_ANSWER`] bytes; a request waits as long as the key's [`Wait`]
//! allows, and stops when dropped.

use super::jwk::{EcJwk, Thumbprint};
use crate::kms::Wait;
use crate::ProviderError;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use std::time::Duration;

/// The most bytes read from an answer (an advertisement is about 1 KiB).
pub const MAX_ANSWER: u64 = 64 * 1024;

/// A Tang server.
pub struct Server {
    url: String,
    wait: Wait,
}

impl Server {
    /// The server at `url` (no trailing slash).
    pub fn new(url: &str, wait: Wait) -> Self {
        Server {
            url: url.to_string(),
            wait,
        }
    }

    /// Its advertisement (`/adv/<pinned>` when a key is pinned, so a server
    /// that rotated its keys signs with the pinned one too).
    pub async fn advertisement(
        &self,
        pinned: Option<&Thumbprint>,
    ) -> Result<Vec<u8>, ProviderError> {
        let url = match pinned {
            Some(t) => format!("{}/adv/{t}", self.url),
            None => format!("{}/adv", self.url),
        };
        match (self.call(url, None).await, pinned) {
            (Err(Failure::Status(404)), Some(t)) => Err(self.unavailable(format!(
                "it has no signing key {t} (HTTP 404 for /adv/{t}); pin a thumbprint `tang-show-keys` prints on the server"
            ))),
            (answer, _) => answer.map_err(|e| self.unavailable(e.to_string())),
        }
    }

    /// The server's answer to the blinded key `x` for its exchange key `kid`.
    pub async fn recover(&self, kid: &Thumbprint, x: &EcJwk) -> Result<EcJwk, ProviderError> {
        let body = serde_json::to_vec(x).expect("a JWK serialises");
        let answer = self
            .call(format!("{}/rec/{kid}", self.url), Some(body))
            .await
            .map_err(|e| match e {
                Failure::Status(404) => self.unavailable(format!(
                    "it no longer has the exchange key {kid} this slot is bound to (HTTP 404): its old keys were deleted before the slot was rebound"
                )),
                e => self.unavailable(e.to_string()),
            })?;
        serde_json::from_slice(&answer)
            .map_err(|e| self.unavailable(format!("its answer is not a JWK: {e}")))
    }

    /// How long an unlock's request may wait (as a KMS's: the key's
    /// timeout, cut to what is left of the boot's deadline); nothing is
    /// sent once that has passed.
    fn unlock_limit(&self) -> Result<Duration, ProviderError> {
        self.wait
            .unlock_limit(std::time::Instant::now())
            .map(|l| l.duration())
            .ok_or_else(|| self.unavailable(crate::KMS_BOOT_DEADLINE.into()))
    }

    fn unavailable(&self, reason: String) -> ProviderError {
        super::unavailable(&self.url, reason)
    }

    /// GET `url`, or POST `body` as a JWK, for as long as the key may
    /// wait. Dropped (another key opened the volume first), it stops.
    async fn call(&self, url: String, body: Option<Vec<u8>>) -> Result<Vec<u8>, Failure> {
        let limit = match body {
            // Unlocking: within the boot's deadline too.
            Some(_) => self.unlock_limit()?,
            None => self.wait.per_key,
        };
        tokio::time::timeout(limit, request(&url, body))
            .await
            .unwrap_or_else(|_| Err(Failure::Other(format!("no answer within {limit:?}"))))
    }
}

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
enum Failure {
    /// The server answered with this status.
    #[error("it answered HTTP {0}")]
    Status(u16),
    /// Anything else: unreachable, cut off, too long, a deadline.
    #[error("{0}")]
    Other(String),
}

impl From<ProviderError> for Failure {
    fn from(e: ProviderError) -> Self {
        Failure::Other(match e {
            ProviderError::Unavailable { reason, .. } => reason,
            e => e.to_string(),
        })
    }
}

/// One HTTP/1.1 request on a connection of its own; the answer's body,
/// up to [`MAX_ANSWER`] bytes.
async fn request(url: &str, body: Option<Vec<u8>>) -> Result<Vec<u8>, Failure> {
    let other = |what: &str, e: &dyn std::fmt::Display| Failure::Other(format!("{what}: {e}"));
    let uri: http::Uri = url.parse().map_err(|e| other("not a URL", &e))?;
    let (host, port) = (uri.host().unwrap_or_default(), uri.port_u16().unwrap_or(80));
    let stream = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| other("unreachable", &e))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| other("unreachable", &e))?;
    let _connection = AbortOnDrop(tokio::spawn(connection));
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let authority = uri.authority().map_or(host, |a| a.as_str());
    let builder = http::Request::builder()
        .uri(path)
        .header(http::header::HOST, authority);
    let request = match body {
        None => builder
            .method(http::Method::GET)
            .body(Full::new(Bytes::new())),
        Some(b) => builder
            .method(http::Method::POST)
            .header(http::header::CONTENT_TYPE, "application/jwk+json")
            .body(Full::new(Bytes::from(b))),
    }
    .map_err(|e| other("a request", &e))?;
    let answer = sender
        .send_request(request)
        .await
        .map_err(|e| other("its answer broke off", &e))?;
    if !answer.status().is_success() {
        return Err(Failure::Status(answer.status().as_u16()));
    }
    let limit = usize::try_from(MAX_ANSWER).expect("a small limit");
    let bytes = Limited::new(answer.into_body(), limit)
        .collect()
        .await
        .map_err(|e| {
            other(
                &format!("its answer broke off or is longer than {MAX_ANSWER} bytes"),
                &e,
            )
        })?
        .to_bytes();
    Ok(bytes.to_vec())
}

/// Aborts the task it holds when dropped (the connection, once its
/// request is answered or given up).
struct AbortOnDrop(tokio::task::JoinHandle<Result<(), hyper::Error>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
