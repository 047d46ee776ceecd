//! The two requests of Tang's protocol over plain HTTP: `GET /adv[/thp]`
//! and `POST /rec/<kid>`. Answers are read up to [`MAX_ANSWER`] bytes; a
//! request waits as long as the key's [`Wait`] allows.

use super::jwk::{EcJwk, Thumbprint};
use crate::kms::Wait;
use crate::ProviderError;
use api_types::KeySource;
use std::io::Read;
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

    /// How long an unlock's request may wait: the key's timeout, cut to
    /// what is left of the boot's deadline; nothing is sent once it passed.
    fn unlock_limit(&self) -> Result<Duration, ProviderError> {
        let Some(until) = self.wait.boot_until else {
            return Ok(self.wait.per_key);
        };
        match until.saturating_duration_since(std::time::Instant::now()) {
            left if left.is_zero() => Err(self.unavailable(crate::KMS_BOOT_DEADLINE.into())),
            left => Ok(left.min(self.wait.per_key)),
        }
    }

    fn unavailable(&self, reason: String) -> ProviderError {
        ProviderError::Unavailable {
            kind: KeySource::Tang,
            reason: format!("Tang {}: {reason}", self.url),
        }
    }

    /// GET `url`, or POST `body` as a JWK, in a blocking thread, for as
    /// long as the key may wait.
    async fn call(&self, url: String, body: Option<Vec<u8>>) -> Result<Vec<u8>, Failure> {
        let limit = match body {
            // Unlocking: within the boot's deadline too.
            Some(_) => self.unlock_limit()?,
            None => self.wait.per_key,
        };
        let request = tokio::task::spawn_blocking(move || blocking_call(&url, body, limit));
        request
            .await
            .unwrap_or_else(|e| Err(Failure::Other(format!("the request task failed: {e}"))))
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

fn blocking_call(url: &str, body: Option<Vec<u8>>, limit: Duration) -> Result<Vec<u8>, Failure> {
    let agent = ureq::AgentBuilder::new()
        .timeout(limit)
        .redirects(0)
        .build();
    let answer = match body {
        None => agent.get(url).call(),
        Some(b) => agent
            .post(url)
            .set("Content-Type", "application/jwk+json")
            .send_bytes(&b),
    };
    let answer = answer.map_err(|e| match e {
        ureq::Error::Status(code, _) => Failure::Status(code),
        ureq::Error::Transport(t) => Failure::Other(format!("unreachable: {t}")),
    })?;
    let mut bytes = Vec::new();
    answer
        .into_reader()
        .take(MAX_ANSWER + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Failure::Other(format!("its answer broke off: {e}")))?;
    if bytes.len() as u64 > MAX_ANSWER {
        return Err(Failure::Other(format!(
            "its answer is longer than {MAX_ANSWER} bytes"
        )));
    }
    Ok(bytes)
}
