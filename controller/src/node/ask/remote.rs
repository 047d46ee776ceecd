//! Answers that come over the node API (`volctl -n NODE unlock --volume
//! V`): the boot registers each question it asks by volume; the API's
//! unlock call hands the admin's passphrase to the question waiting for
//! that volume, if one is.

use providers::ask::{AskError, Asker, Question};
use providers::Passphrase;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// The questions now waiting for a remote answer, by volume.
#[derive(Clone, Default)]
pub struct RemoteAnswers {
    waiting: Arc<Mutex<BTreeMap<String, oneshot::Sender<Passphrase>>>>,
}

impl RemoteAnswers {
    /// Hands `answer` to the question waiting for `volume`; false when
    /// none is.
    pub fn answer(&self, volume: &str, answer: Passphrase) -> bool {
        let tx = self.waiting.lock().ok().and_then(|mut w| w.remove(volume));
        tx.is_some_and(|tx| tx.send(answer).is_ok())
    }

    /// The volumes whose questions wait.
    pub fn waiting(&self) -> Vec<String> {
        self.waiting
            .lock()
            .map(|w| w.keys().cloned().collect())
            .unwrap_or_default()
    }

    fn register(&self, volume: &str) -> oneshot::Receiver<Passphrase> {
        let (tx, rx) = oneshot::channel();
        if let Ok(mut w) = self.waiting.lock() {
            w.insert(volume.to_string(), tx);
        }
        rx
    }

    fn withdraw(&self, volume: &str) {
        if let Ok(mut w) = self.waiting.lock() {
            w.remove(volume);
        }
    }
}

/// Asks by waiting for a remote answer.
pub struct RemoteAsker(pub RemoteAnswers);

/// The volume a question is about (`volctl:persistence` → `persistence`).
fn volume_of(q: &Question) -> &str {
    q.id.strip_prefix("volctl:").unwrap_or(&q.id)
}

#[async_trait::async_trait]
impl Asker for RemoteAsker {
    async fn ask(&self, q: &Question) -> Result<Passphrase, AskError> {
        let volume = volume_of(q).to_string();
        let rx = self.0.register(&volume);
        struct Unregister<'a>(&'a RemoteAnswers, &'a str);
        impl Drop for Unregister<'_> {
            fn drop(&mut self) {
                self.0.withdraw(self.1);
            }
        }
        let _gone = Unregister(&self.0, &volume);
        let got = match q.timeout {
            Some(t) => tokio::time::timeout(t, rx)
                .await
                .map_err(|_| AskError::Timeout(t))?,
            None => rx.await,
        };
        got.map_err(|_| AskError::Cancelled)
    }

    fn channel(&self) -> String {
        "the node API (volctl -n NODE unlock)".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_answer_reaches_the_question_of_its_volume_only() {
        let answers = RemoteAnswers::default();
        let asker = RemoteAsker(answers.clone());
        let q = Question {
            id: "volctl:persistence".into(),
            message: "Passphrase for persistence".into(),
            timeout: Some(std::time::Duration::from_secs(5)),
        };
        assert!(!answers.answer("persistence", Passphrase::new(b"early".to_vec())));
        let asking = asker.ask(&q);
        let answering = async {
            while answers.waiting().is_empty() {
                tokio::task::yield_now().await;
            }
            assert_eq!(answers.waiting(), ["persistence"]);
            assert!(!answers.answer("other", Passphrase::new(b"x".to_vec())));
            assert!(answers.answer("persistence", Passphrase::new(b"pw".to_vec())));
        };
        let (got, ()) = tokio::join!(asking, answering);
        assert_eq!(got.unwrap().expose(), b"pw");
        assert!(answers.waiting().is_empty(), "answered questions are gone");
    }
}
