//! `--ask-timeout`: a command a person ran waits for a typed key at most
//! this long, on any channel (the config's own `timeout`, when shorter,
//! still wins).

use async_trait::async_trait;
use providers::ask::{AskError, Asker, AskerHandle, Question};
use providers::Passphrase;
use std::sync::Arc;
use std::time::Duration;

/// An asker whose questions wait at most `limit`.
struct Bounded {
    inner: AskerHandle,
    limit: Duration,
}

#[async_trait]
impl Asker for Bounded {
    async fn ask(&self, q: &Question) -> Result<Passphrase, AskError> {
        let mut q = q.clone();
        q.timeout = Some(q.timeout.map_or(self.limit, |t| t.min(self.limit)));
        self.inner.ask(&q).await
    }

    fn channel(&self) -> String {
        self.inner.channel()
    }
}

/// `asker`, its waits bounded by `limit` when one is given.
pub fn bounded(asker: Option<AskerHandle>, limit: Option<Duration>) -> Option<AskerHandle> {
    match (asker, limit) {
        (Some(inner), Some(limit)) => Some(AskerHandle(Arc::new(Bounded { inner, limit }))),
        (asker, _) => asker,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers nothing; records the timeout each question carried.
    struct Recorder(std::sync::Mutex<Vec<Option<Duration>>>);

    #[async_trait]
    impl Asker for Recorder {
        async fn ask(&self, q: &Question) -> Result<Passphrase, AskError> {
            self.0.lock().unwrap().push(q.timeout);
            Err(AskError::Timeout(q.timeout.unwrap_or_default()))
        }
        fn channel(&self) -> String {
            "a recorder".into()
        }
    }

    #[tokio::test]
    async fn the_shorter_of_the_config_s_timeout_and_the_command_line_s_applies() {
        let rec = Arc::new(Recorder(Default::default()));
        let asker = bounded(
            Some(AskerHandle(rec.clone())),
            Some(Duration::from_secs(30)),
        )
        .unwrap();
        for config in [None, Some(10), Some(60)] {
            let q = Question {
                id: "volctl:data".into(),
                message: "Passphrase for data".into(),
                timeout: config.map(Duration::from_secs),
            };
            assert!(asker.ask(&q).await.is_err());
        }
        let seen = rec.0.lock().unwrap().clone();
        let secs: Vec<u64> = seen.iter().map(|t| t.unwrap().as_secs()).collect();
        assert_eq!(secs, [30, 10, 30]);
        assert_eq!(asker.channel(), "a recorder");
        assert!(bounded(None, Some(Duration::from_secs(1))).is_none());
    }
}
