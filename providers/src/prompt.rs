//! `prompt`: a passphrase a person types. Asked twice at enrolment (the two
//! must match), never written anywhere. At unlock the engine asks for it
//! itself (one question may be answered by a recovery key too), so
//! [`KeyProvider::recover`] is never the way in.

use crate::ask::{AskError, AskerHandle, Question, MAX_ANSWER};
use crate::KeyData;
use crate::{Enrolled, KeyContext, KeyProvider, Passphrase, ProviderError};
use api_types::{KeySource, PromptParams};
use async_trait::async_trait;

/// The provider of one `prompt` key.
pub struct PromptProvider {
    /// How to reach a person, if anyone can be reached.
    pub asker: Option<AskerHandle>,
    /// The key's parameters.
    pub params: PromptParams,
}

/// A new secret (`what`: `passphrase`, `TPM PIN`) for `volume`, asked
/// twice: the two answers must match and be neither empty nor longer than
/// `cryptsetup` reads; `params.tries` rounds at most. Shared by every key
/// whose secret a person chooses.
pub(crate) async fn ask_new_secret(
    asker: Option<&AskerHandle>,
    params: &PromptParams,
    volume: &str,
    what: &str,
    kind: KeySource,
) -> Result<Passphrase, ProviderError> {
    let unavailable = |reason: String| ProviderError::Unavailable { kind, reason };
    let Some(asker) = asker else {
        return Err(unavailable(
            "nobody to ask: no ask-password agent directory and no console".into(),
        ));
    };
    let ask = |message: String| async move {
        let q = Question {
            id: String::new(),
            message,
            timeout: params.timeout,
        };
        asker.ask(&q).await.map_err(|e| match e {
            AskError::Unavailable(r) => unavailable(r),
            other => unavailable(other.to_string()),
        })
    };
    let mut last = String::new();
    for _ in 0..params.tries.max(1) {
        let first = ask(format!("New {what} for {volume}")).await?;
        if let Some(why) = refuse_new_secret(first.expose(), what) {
            tracing::warn!(volume, "{why}");
            last = why;
            continue;
        }
        let again = ask(format!("Repeat the {what} for {volume}")).await?;
        if first.expose() == again.expose() {
            return Ok(first);
        }
        last = format!("the two {what}s differ");
        tracing::warn!(volume, "{last}");
    }
    Err(ProviderError::NotConfirmed { reason: last })
}

/// Why a new secret cannot be used, if it cannot: empty, or longer than
/// `cryptsetup` reads from a terminal.
pub fn refuse_new_secret(p: &[u8], what: &str) -> Option<String> {
    if p.is_empty() {
        Some(format!("the {what} is empty"))
    } else if p.len() > MAX_ANSWER {
        Some(format!(
            "the {what} is longer than {MAX_ANSWER} bytes, which cryptsetup cannot read"
        ))
    } else {
        None
    }
}

#[async_trait]
impl KeyProvider for PromptProvider {
    fn kind(&self) -> KeySource {
        KeySource::Prompt
    }

    /// Asks for the new passphrase twice; up to `tries` times when the two
    /// differ or it is refused.
    async fn enroll(&self, ctx: &KeyContext) -> Result<Enrolled, ProviderError> {
        let passphrase = ask_new_secret(
            self.asker.as_ref(),
            &self.params,
            &ctx.volume_id,
            "passphrase",
            KeySource::Prompt,
        )
        .await?;
        Ok(Enrolled {
            passphrase,
            token_data: KeyData::Nothing,
        })
    }

    async fn recover(
        &self,
        _ctx: &KeyContext,
        _token_data: &KeyData,
    ) -> Result<Passphrase, ProviderError> {
        Err(ProviderError::Unavailable {
            kind: KeySource::Prompt,
            reason: "typed at the prompt, not recovered".into(),
        })
    }

    /// The kind only: the passphrase is nowhere to be read.
    fn binding_material(&self, _ctx: &KeyContext) -> Result<Passphrase, ProviderError> {
        Ok(Passphrase::new(b"prompt\0".to_vec()))
    }
}
