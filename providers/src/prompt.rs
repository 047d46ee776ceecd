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

impl PromptProvider {
    fn unavailable(reason: impl Into<String>) -> ProviderError {
        ProviderError::Unavailable {
            kind: KeySource::Prompt,
            reason: reason.into(),
        }
    }

    /// Asks one question, mapping a missing answer to a provider error.
    async fn ask(&self, asker: &AskerHandle, message: String) -> Result<Passphrase, ProviderError> {
        let q = Question {
            id: String::new(),
            message,
            timeout: self.params.timeout,
        };
        asker.ask(&q).await.map_err(|e| match e {
            AskError::Unavailable(r) => Self::unavailable(r),
            other => Self::unavailable(other.to_string()),
        })
    }
}

/// Why a new passphrase is not taken, if it is not.
pub fn refuse_new_passphrase(p: &[u8]) -> Option<&'static str> {
    if p.is_empty() {
        Some("the passphrase is empty")
    } else if p.len() > MAX_ANSWER {
        Some("the passphrase is longer than 512 bytes, which cryptsetup cannot read")
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
        let Some(asker) = &self.asker else {
            return Err(Self::unavailable(
                "nobody to ask: no ask-password agent directory and no console",
            ));
        };
        let mut last = "";
        for _ in 0..self.params.tries.max(1) {
            let first = self
                .ask(asker, format!("New passphrase for {}", ctx.volume_id))
                .await?;
            if let Some(why) = refuse_new_passphrase(first.expose()) {
                tracing::warn!(volume = %ctx.volume_id, "{why}");
                last = why;
                continue;
            }
            let again = self
                .ask(
                    asker,
                    format!("Repeat the passphrase for {}", ctx.volume_id),
                )
                .await?;
            if first.expose() == again.expose() {
                return Ok(Enrolled {
                    passphrase: first,
                    token_data: KeyData::Nothing,
                });
            }
            tracing::warn!(volume = %ctx.volume_id, "the two passphrases differ");
            last = "the two passphrases differ";
        }
        Err(ProviderError::NotConfirmed {
            reason: last.into(),
        })
    }

    async fn recover(
        &self,
        _ctx: &KeyContext,
        _token_data: &KeyData,
    ) -> Result<Passphrase, ProviderError> {
        Err(Self::unavailable("typed at the prompt, not recovered"))
    }

    /// The kind only: the passphrase is nowhere to be read.
    fn binding_material(&self, _ctx: &KeyContext) -> Result<Passphrase, ProviderError> {
        Ok(Passphrase::new(b"prompt\0".to_vec()))
    }
}
