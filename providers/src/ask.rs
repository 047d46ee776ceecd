//! The seam to a person: asking for a passphrase. The ways to ask (the
//! systemd ask-password protocol, the console) live with the node code in
//! the controller; keys and the unlock only see [`Asker`].

use crate::Passphrase;
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;

/// The longest answer taken: `cryptsetup` reads at most 512 characters.
pub const MAX_ANSWER: usize = 512;

/// One question to a person.
#[derive(Debug, Clone)]
pub struct Question {
    /// What it is for, for agents that group questions (`volctl:persistence`).
    pub id: String,
    /// The text shown (one line).
    pub message: String,
    /// How long to wait for an answer (`None`: for ever).
    pub timeout: Option<Duration>,
}

/// Why no answer came.
#[derive(Debug, thiserror::Error)]
pub enum AskError {
    /// Nobody answered in time.
    #[error("nobody answered within {} s", .0.as_secs())]
    Timeout(Duration),
    /// The person (or the agent) declined to answer.
    #[error("the question was cancelled")]
    Cancelled,
    /// There is no way to ask on this machine, or asking failed.
    #[error("cannot ask: {0}")]
    Unavailable(String),
}

/// A way to ask a person for a passphrase. Implementations never log the
/// answer.
#[async_trait]
pub trait Asker: Send + Sync {
    /// Asks once; the answer without its line end.
    async fn ask(&self, q: &Question) -> Result<Passphrase, AskError>;

    /// Where questions go, for messages (`the console`, `ask-password agents in /run/…`).
    fn channel(&self) -> String;
}

/// A shareable asker, as providers and the unlock hold it.
#[derive(Clone)]
pub struct AskerHandle(pub Arc<dyn Asker>);

impl std::fmt::Debug for AskerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Asker({})", self.0.channel())
    }
}

impl std::ops::Deref for AskerHandle {
    type Target = dyn Asker;
    fn deref(&self) -> &Self::Target {
        self.0.as_ref()
    }
}
