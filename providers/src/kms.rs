//! `kms`: a random 32-byte key sealed by a network KMS (`sidero.kms`
//! protocol). The passphrase is the key's base64; the token keeps the
//! sealed blob and the endpoint that sealed it (informational: unlocking
//! asks the config's endpoints, never one read from the disk).
//!
//! A key may name several replicas of one KMS (`endpoints`, the same
//! master key behind each): they are raced ([`race`]), so a dead replica
//! costs a boot a stagger, not its timeouts.

use crate::sealed_key::{bad_token, passphrase, random_key, Base64Bytes, KmsTokenData};
use crate::KeyData;
use crate::{Enrolled, KeyContext, KeyProvider, Passphrase, ProviderError};
use async_trait::async_trait;
use kms::client::{ClientError, ClientOptions, KmsClient};
use std::future::Future;
use std::time::Duration;
use tokio::task::JoinSet;

/// How long after asking one replica the next is asked, unless the first
/// has failed by then (happy eyeballs, RFC 8305's 250 ms).
pub const STAGGER: Duration = Duration::from_millis(250);

/// How long a KMS's answer is awaited.
#[derive(Debug, Clone, Copy)]
pub struct Wait {
    /// The key's own timeout (`kms.timeout`).
    pub per_key: Duration,
    /// When a boot stops waiting for key servers while it unlocks
    /// (`volctl boot --key-server-deadline`; `None`: not in a boot). It
    /// cuts unlocking short, never enrolment: a key sealed after a person
    /// typed a passphrase still gets its own timeout.
    pub boot_until: Option<std::time::Instant>,
}

/// How long this request waits, and whether the boot's deadline set it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Limit {
    /// The key's own timeout.
    Key(Duration),
    /// What is left of the boot's deadline, shorter than the key's own.
    Boot(Duration),
}

impl Limit {
    pub(crate) fn duration(self) -> Duration {
        match self {
            Limit::Key(d) | Limit::Boot(d) => d,
        }
    }
}

/// Why a boot asked no KMS, or stopped waiting for one.
pub const BOOT_DEADLINE: &str =
    "the boot's deadline for key servers has passed (volctl boot --key-server-deadline)";

impl Wait {
    /// The limit for an unlock now, or an error when the boot's deadline
    /// has already passed (nothing is asked then).
    fn for_unlock(&self, now: std::time::Instant) -> Result<Limit, ProviderError> {
        self.unlock_limit(now)
            .ok_or_else(|| unavailable(BOOT_DEADLINE.into()))
    }

    /// The limit for an unlock now, for any key server: the key's own
    /// timeout, cut to what is left of the boot's deadline; `None` once
    /// that has passed.
    pub(crate) fn unlock_limit(&self, now: std::time::Instant) -> Option<Limit> {
        let Some(until) = self.boot_until else {
            return Some(Limit::Key(self.per_key));
        };
        match until.saturating_duration_since(now) {
            left if left.is_zero() => None,
            left if left < self.per_key => Some(Limit::Boot(left)),
            _ => Some(Limit::Key(self.per_key)),
        }
    }
}

/// Keys sealed by a KMS.
pub struct KmsProvider {
    endpoints: Vec<String>,
    wait: Wait,
    node_uuid: crate::NodeUuid,
    options: ClientOptions,
    /// What the last race met on its way to an answer.
    report: crate::provider::LastReport,
    /// The last unseal whose server asked for a rewrap (to seal again in
    /// [`KeyProvider::refresh`]).
    stale: std::sync::Mutex<Option<Stale>>,
    /// `attest: true`: every request carries the TPM's quote.
    quoter: Option<kms::client::Quoter>,
}

/// The PCRs an attested request quotes: 7, the Secure Boot state (the
/// firmware's keys and what they allowed to boot), as a `tpm` key binds
/// by default.
pub const ATTEST_PCRS: [u32; 1] = [7];

/// A blob the server said is sealed under an old master-key version, and
/// the key it holds.
type Stale = (Vec<u8>, zeroize::Zeroizing<Vec<u8>>);

impl KmsProvider {
    /// A provider for the KMS at `endpoints` (replicas, asked in this
    /// order), an answer awaited as `wait` says, identifying the node by
    /// `node_uuid`.
    pub fn new(
        endpoints: &[String],
        wait: Wait,
        node_uuid: crate::NodeUuid,
        options: ClientOptions,
    ) -> Self {
        KmsProvider {
            endpoints: endpoints.to_vec(),
            wait,
            node_uuid,
            options,
            report: Default::default(),
            stale: Default::default(),
            quoter: None,
        }
    }

    /// The same, every request with a quote of [`ATTEST_PCRS`] by the TPM
    /// at `tcti` over the server's nonce (`attest: true`).
    pub fn with_attestation(self, tcti: String) -> Self {
        let quoter: kms::client::Quoter = std::sync::Arc::new(move |nonce: Vec<u8>| {
            crate::tpm::quote::quote(&tcti, &ATTEST_PCRS, &nonce)
                .map(|q| kms::client::Attestation {
                    ak_public: q.ak_public,
                    quote: q.quote,
                    signature: q.signature,
                })
                .map_err(|e| e.to_string())
        });
        KmsProvider {
            quoter: Some(quoter),
            ..self
        }
    }

    /// Seals `secret` for this node at whichever replica answers first
    /// (with a quote when attested): the token that keeps it.
    async fn seal(&self, secret: &[u8]) -> Result<KmsTokenData, ProviderError> {
        let uuid = self.uuid()?;
        let (endpoint, blob) = self
            .race(
                |client| {
                    let (uuid, quoter) = (uuid.clone(), self.quoter.clone());
                    let secret = zeroize::Zeroizing::new(secret.to_vec());
                    async move {
                        match &quoter {
                            Some(q) => client.seal_attested(&uuid, &secret, q).await,
                            None => client.seal(&uuid, &secret).await,
                        }
                    }
                },
                Limit::Key(self.wait.per_key),
            )
            .await?;
        Ok(KmsTokenData {
            endpoint,
            sealed_data: Base64Bytes(blob),
        })
    }

    fn uuid(&self) -> Result<String, ProviderError> {
        self.node_uuid
            .as_deref()
            .map(str::to_string)
            .map_err(|r| unavailable(format!("the node UUID is needed: {r}")))
    }

    /// Races `op` over the endpoints for `limit` at most: the replica that
    /// answered, and its answer; what the others did is kept for
    /// [`KeyProvider::report`].
    async fn race<T, F, Fut>(&self, op: F, limit: Limit) -> Result<(String, T), ProviderError>
    where
        T: Send + 'static,
        F: Fn(KmsClient) -> Fut,
        Fut: Future<Output = Result<T, ClientError>> + Send + 'static,
    {
        let attempts = self.endpoints.iter().map(|e| {
            let client = KmsClient::new(e, self.options.clone());
            (e.clone(), op(client))
        });
        let won = race(attempts.collect(), STAGGER, limit.duration())
            .await
            .map_err(|e| match (limit, e) {
                (Limit::Boot(_), ProviderError::Unavailable { kind, reason }) => {
                    ProviderError::Unavailable {
                        kind,
                        reason: format!("{reason}; {BOOT_DEADLINE}"),
                    }
                }
                (_, e) => e,
            })?;
        self.report.set(won.report.clone());
        Ok((won.endpoint, won.answer))
    }
}

fn unavailable(reason: String) -> ProviderError {
    ProviderError::Unavailable {
        kind: api_types::KeySource::Kms,
        reason,
    }
}

/// The answer of a race, and who gave it.
#[derive(Debug)]
pub struct Won<T> {
    /// The endpoint that answered.
    pub endpoint: String,
    /// Its answer.
    pub answer: T,
    /// When another endpoint was asked before it and did not answer: who
    /// answered, and what each of the others did.
    pub report: Option<String>,
}

/// Runs `attempts` (an endpoint and the request to it), the first at once
/// and each next one `stagger` after the one before, or at once when every
/// one started has failed; the first success wins and the others are
/// dropped. Fails when all have failed, or after `deadline`, naming each
/// endpoint and what it did.
pub async fn race<T, Fut>(
    attempts: Vec<(String, Fut)>,
    stagger: Duration,
    deadline: Duration,
) -> Result<Won<T>, ProviderError>
where
    T: Send + 'static,
    Fut: Future<Output = Result<T, ClientError>> + Send + 'static,
{
    let total = attempts.len();
    let mut waiting = attempts.into_iter();
    let mut running = JoinSet::new();
    // (endpoint, why) of every attempt that failed.
    let mut failed: Vec<(String, String)> = Vec::new();
    let mut asked: Vec<String> = Vec::new();
    let give_up = tokio::time::sleep(deadline);
    tokio::pin!(give_up);
    loop {
        if running.is_empty() || asked.is_empty() {
            if let Some((endpoint, fut)) = waiting.next() {
                asked.push(endpoint.clone());
                running.spawn(async move { (endpoint, fut.await) });
            }
        }
        if running.is_empty() {
            return Err(unavailable(no_answer(&reasons(&failed), total)));
        }
        let next_start = tokio::time::sleep(stagger);
        tokio::select! {
            Some(done) = running.join_next() => match done {
                Ok((endpoint, Ok(answer))) => {
                    let report = report(&endpoint, &asked, &failed);
                    if let Some(r) = &report {
                        tracing::info!("{r}");
                    }
                    return Ok(Won { endpoint, answer, report });
                }
                Ok((endpoint, Err(e))) => failed.push((endpoint, e.to_string())),
                Err(e) => failed.push((String::new(), format!("a request task failed: {e}"))),
            },
            () = next_start, if waiting.len() > 0 => {
                if let Some((endpoint, fut)) = waiting.next() {
                    asked.push(endpoint.clone());
                    running.spawn(async move { (endpoint, fut.await) });
                }
            }
            () = &mut give_up => {
                let mut why = reasons(&failed);
                why.extend(
                    asked
                        .iter()
                        .filter(|e| !failed.iter().any(|(f, _)| f == *e))
                        .map(|e| format!("{e}: no answer within {deadline:?}")),
                );
                return Err(unavailable(no_answer(&why, total)));
            }
        }
    }
}

/// Who answered and what the endpoints asked before it did, when any was
/// (`None` when the first one asked answered).
fn report(winner: &str, asked: &[String], failed: &[(String, String)]) -> Option<String> {
    let (mut gave_up, mut waiting) = (Vec::new(), Vec::new());
    for e in asked.iter().filter(|e| e.as_str() != winner) {
        match failed.iter().find(|(f, _)| f == e) {
            Some((_, why)) => gave_up.push(why.clone()),
            None => waiting.push(e),
        }
    }
    crate::provider::answered_report(winner, &crate::provider::others_did(gave_up, waiting))
}

fn reasons(failed: &[(String, String)]) -> Vec<String> {
    failed.iter().map(|(_, why)| why.clone()).collect()
}

/// Why no replica answered, one reason per endpoint.
fn no_answer(why: &[String], total: usize) -> String {
    match total {
        1 => why.join("; "),
        n => format!("none of the {n} KMS endpoints answered: {}", why.join("; ")),
    }
}

#[async_trait]
impl KeyProvider for KmsProvider {
    fn kind(&self) -> api_types::KeySource {
        api_types::KeySource::Kms
    }
    async fn enroll(&self, _ctx: &KeyContext) -> Result<Enrolled, ProviderError> {
        let key = random_key();
        Ok(Enrolled {
            token_data: KeyData::Kms(self.seal(key.as_ref()).await?),
            passphrase: passphrase(key.as_ref()),
        })
    }
    async fn recover(
        &self,
        _ctx: &KeyContext,
        token_data: &KeyData,
    ) -> Result<Passphrase, ProviderError> {
        let uuid = self.uuid()?;
        let KeyData::Kms(token) = token_data else {
            return Err(bad_token(api_types::KeySource::Kms, token_data));
        };
        // The config's endpoints, never the token's: whoever can write the
        // disk could otherwise send this node's unseal requests anywhere.
        let blob = token.sealed_data.0.clone();
        let limit = self.wait.for_unlock(std::time::Instant::now())?;
        let (_, reply) = self
            .race(
                |client| {
                    let (uuid, blob, quoter) = (uuid.clone(), blob.clone(), self.quoter.clone());
                    async move {
                        match &quoter {
                            Some(q) => client.unseal_attested(&uuid, &blob, q).await,
                            None => client.unseal_reply(&uuid, &blob).await,
                        }
                    }
                },
                limit,
            )
            .await?;
        let pass = passphrase(&reply.data);
        if reply.rewrap {
            *self.stale.lock().unwrap_or_else(|e| e.into_inner()) = Some((blob, reply.data));
        }
        Ok(pass)
    }

    /// Seals the key again when the server said its blob uses an old
    /// master-key version (`volctl kms rotate`): a rewrap, no new keyslot.
    async fn refresh(
        &self,
        _ctx: &KeyContext,
        token_data: &KeyData,
    ) -> Result<Option<KeyData>, ProviderError> {
        let KeyData::Kms(token) = token_data else {
            return Ok(None);
        };
        let stale = self.stale.lock().unwrap_or_else(|e| e.into_inner()).take();
        let Some((_, key)) = stale.filter(|(b, _)| *b == token.sealed_data.0) else {
            return Ok(None);
        };
        Ok(Some(KeyData::Kms(self.seal(&key).await?)))
    }
    fn binding_material(&self, _ctx: &KeyContext) -> Result<Passphrase, ProviderError> {
        // One endpoint binds as it always has; replicas bind as a set (the
        // servers this node's unseal requests may go to), not by order.
        let mut endpoints = self.endpoints.clone();
        endpoints.sort();
        let mut m = Passphrase::new(b"kms\0".to_vec());
        m.append(endpoints.join("\n").as_bytes());
        Ok(m)
    }
    fn report(&self) -> Option<String> {
        self.report.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    fn refused(endpoint: &str) -> ClientError {
        ClientError::Unreachable {
            endpoint: endpoint.into(),
            attempts: 1,
            reason: "connection refused".into(),
        }
    }

    type Attempt = (
        String,
        std::pin::Pin<Box<dyn Future<Output = Result<u32, ClientError>> + Send>>,
    );

    fn answers_after(name: &str, ms: u64, r: Result<u32, ClientError>) -> Attempt {
        let fut = async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            r
        };
        (name.to_string(), Box::pin(fut))
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_first_replica_costs_one_stagger_and_a_failed_one_less() {
        let started = Instant::now();
        let silent = answers_after("dead", 3_600_000, Ok(0));
        let live = answers_after("live", 10, Ok(7));
        let won = race(vec![silent, live], STAGGER, Duration::from_secs(15))
            .await
            .unwrap();
        assert_eq!((won.endpoint.as_str(), won.answer), ("live", 7));
        assert_eq!(
            won.report.as_deref(),
            Some("live answered; dead: no answer yet")
        );
        assert_eq!(started.elapsed(), STAGGER + Duration::from_millis(10));

        let started = Instant::now();
        let failing = answers_after("down", 5, Err(refused("down")));
        let live = answers_after("live", 10, Ok(7));
        let won = race(vec![failing, live], STAGGER, Duration::from_secs(15))
            .await
            .unwrap();
        assert_eq!(won.endpoint, "live");
        let report = won.report.unwrap();
        assert!(
            report.starts_with("live answered; KMS down unreachable"),
            "{report}"
        );

        assert_eq!(
            started.elapsed(),
            Duration::from_millis(15),
            "asked at once after the failure"
        );
        let first = answers_after("first", 5, Ok(1));
        let won = race(vec![first], STAGGER, Duration::from_secs(15))
            .await
            .unwrap();
        assert_eq!(won.report, None, "nothing to tell");
    }

    #[test]
    fn the_boot_s_deadline_shortens_an_unlock_s_wait_and_once_passed_asks_nobody() {
        let now = std::time::Instant::now();
        let per_key = Duration::from_secs(15);
        let wait = |left: Option<u64>| Wait {
            per_key,
            boot_until: left.map(|s| now + Duration::from_secs(s)),
        };
        assert_eq!(wait(None).for_unlock(now).unwrap(), Limit::Key(per_key));
        assert_eq!(wait(Some(60)).for_unlock(now).unwrap(), Limit::Key(per_key));
        assert_eq!(
            wait(Some(4)).for_unlock(now).unwrap(),
            Limit::Boot(Duration::from_secs(4))
        );
        let later = now + Duration::from_secs(5);
        let e = wait(Some(4)).for_unlock(later).unwrap_err().to_string();
        assert!(e.contains(BOOT_DEADLINE), "{e}");
    }

    #[tokio::test]
    async fn an_unlock_after_the_boot_s_deadline_sends_no_request() {
        // A listener that counts connections: none may arrive.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let provider = KmsProvider::new(
            &[format!("https://127.0.0.1:{port}")],
            Wait {
                per_key: Duration::from_secs(15),
                boot_until: Some(std::time::Instant::now()),
            },
            Ok("a-node".into()),
            ClientOptions::default(),
        );
        let token = KeyData::Kms(KmsTokenData {
            endpoint: String::new(),
            sealed_data: Base64Bytes(vec![1, 2, 3]),
        });
        let ctx = KeyContext {
            volume_id: "EPHEMERAL".into(),
        };
        let e = provider.recover(&ctx, &token).await.unwrap_err();
        assert!(e.to_string().contains(BOOT_DEADLINE), "{e}");
        let accepted = tokio::time::timeout(Duration::from_millis(200), listener.accept()).await;
        assert!(accepted.is_err(), "a connection reached the KMS");
    }

    #[tokio::test(start_paused = true)]
    async fn nobody_answering_names_every_endpoint_at_the_deadline() {
        let started = Instant::now();
        let attempts = vec![
            answers_after("https://a:4050", 3_600_000, Ok(0)),
            answers_after("https://b:4050", 5, Err(refused("https://b:4050"))),
        ];
        let e = race(attempts, STAGGER, Duration::from_secs(2))
            .await
            .unwrap_err()
            .to_string();
        assert_eq!(started.elapsed(), Duration::from_secs(2));
        assert!(e.contains("none of the 2 KMS endpoints answered"), "{e}");
        assert!(e.contains("KMS https://b:4050 unreachable"), "{e}");
        assert!(e.contains("https://a:4050: no answer within 2s"), "{e}");
    }
}
