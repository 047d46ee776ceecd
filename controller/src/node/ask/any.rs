//! One question on several channels at once (the console and the node
//! API): the first answer wins and the other channels withdraw theirs.

use futures_util::future::select_ok;
use providers::ask::{AskError, Asker, AskerHandle, Question};
use providers::Passphrase;

/// Asks every channel; the first answer wins.
pub struct AnyOf(pub Vec<AskerHandle>);

#[async_trait::async_trait]
impl Asker for AnyOf {
    async fn ask(&self, q: &Question) -> Result<Passphrase, AskError> {
        if self.0.is_empty() {
            return Err(AskError::Unavailable("no channel to ask on".into()));
        }
        let asks = self.0.iter().map(|a| Box::pin(a.ask(q)));
        // A channel that cannot ask (no console) or was cancelled leaves
        // the others waiting; the last error is reported if all fail.
        select_ok(asks).await.map(|(answer, _rest)| answer)
    }

    fn channel(&self) -> String {
        self.0
            .iter()
            .map(|a| a.channel())
            .collect::<Vec<_>>()
            .join(" or ")
    }
}
