//! Unlock by a key a person types, once no unattended key opened the
//! volume: one question (`Passphrase for persistence`), answered by the
//! `prompt` passphrase or the recovery key, each answer tried only against
//! the slots of its own kind (a recovery key is checked for typos first, so
//! a mistyped one costs no KDF run); up to `tries` answers.
//!
//! A threshold with a `prompt` member takes the answer as that member's
//! passphrase; its share opens or not before any KDF run, so a mistyped
//! one costs none.
//!
//! A TPM key with a PIN is asked first, in a question of its own (`TPM PIN
//! for persistence`): a PIN goes to the TPM only (a wrong one costs no KDF
//! run, and the TPM counts it towards its lockout), so a passphrase is
//! never offered to the TPM as a PIN. An empty answer, a lockout, or the
//! tries used up move on to the passphrase question when the volume has
//! other typed keys.

use super::keys::Key;
use super::observe::token_of;
use super::plan::{ObservedKeyslots, ObservedSlot};
use super::{blocking, ConvergeError};
use crate::device::{DeviceError, LuksDevice};
use crate::luks2::binding::VolumeKey;
use crate::luks2::header::Luks2Header;
use api_types::{KeyKind, KeySize, KeySource, KeyslotId, PromptParams};
use providers::ask::{AskError, AskerHandle, Question};
use providers::{Passphrase, ProviderError};
use std::sync::Arc;

/// What a typed answer opened.
pub(super) struct Typed {
    pub slot: KeyslotId,
    pub volume_key: VolumeKey,
    pub passphrase: Passphrase,
}

/// Where the answers go, and how to ask.
pub(super) struct TypedUnlock<'a> {
    pub header: &'a Luks2Header,
    pub observed: &'a ObservedKeyslots,
    pub device: &'a Arc<dyn LuksDevice>,
    pub asker: Option<&'a AskerHandle>,
    pub volume: &'a str,
    pub params: PromptParams,
    /// The configured keys (a PIN is turned into a passphrase by its key).
    pub keys: &'a [Key],
}

/// What one PIN did.
enum PinTry {
    Opened(Typed),
    /// The TPM refused it: ask again.
    Wrong,
    /// No PIN can open it now (the TPM is locked out, its PCRs changed):
    /// why.
    Stop(String),
}

/// The prompt key's parameters (a key's, or a threshold member's), or the
/// defaults when only a recovery key is typed.
pub(super) fn params(kinds: impl IntoIterator<Item = KeyKind>) -> PromptParams {
    kinds
        .into_iter()
        .find_map(|k| match k {
            KeyKind::Prompt(p) => Some(p),
            KeyKind::Threshold { members, .. } => members.into_iter().find_map(|m| match m {
                KeyKind::Prompt(p) => Some(p),
                _ => None,
            }),
            _ => None,
        })
        .unwrap_or_default()
}

/// The slots a typed answer may open, by kind: those whose volctl token
/// says `prompt` or `recovery` (configured ones, and a spare left by a cut
/// passphrase change).
pub(super) fn typed_slots(observed: &ObservedKeyslots) -> Vec<(KeyslotId, KeySource)> {
    let mut v: Vec<(KeyslotId, KeySource)> = observed
        .slots
        .iter()
        .filter_map(|(s, o)| match o {
            ObservedSlot::Managed {
                kind,
                lock_to_state: false,
                ..
            } if kind.typed() => Some((*s, *kind)),
            _ => None,
        })
        .collect();
    v.sort_by_key(|(s, k)| (k.unlock_cost(), *s));
    v
}

/// The question asked again after an answer that opened nothing: it says
/// so and how many tries are left, in the question itself (no log line on
/// the console between two questions).
fn again(first: &Question, left: u32, after_wrong: bool) -> Question {
    if !after_wrong {
        return first.clone();
    }
    let left = if left == 1 {
        "1 try".to_string()
    } else {
        format!("{left} tries")
    };
    Question {
        message: format!("Not accepted, {left} left. {}", first.message),
        ..first.clone()
    }
}

impl TypedUnlock<'_> {
    fn waiting(&self, reason: impl Into<String>) -> ConvergeError {
        ConvergeError::WaitingForKey {
            volume: self.volume.to_string(),
            reason: reason.into(),
        }
    }

    fn question(&self, slots: &[(KeyslotId, KeySource)]) -> Question {
        let has = |k| slots.iter().any(|(_, kind)| *kind == k);
        let typed = has(KeySource::Prompt) || has(KeySource::ThresholdPrompt);
        let what = match (typed, has(KeySource::Recovery)) {
            (true, true) => "Passphrase (or recovery key)",
            (false, true) => "Recovery key",
            _ => "Passphrase",
        };
        Question {
            id: format!("volctl:{}", self.volume),
            message: self
                .params
                .message
                .clone()
                .unwrap_or_else(|| format!("{what} for {}", self.volume)),
            timeout: self.params.timeout,
        }
    }

    /// Asks until an answer opens a typed slot, or the tries run out: the
    /// PIN first, when a TPM key asks one, then the passphrase.
    pub async fn run(&self) -> Result<Typed, ConvergeError> {
        let slots = typed_slots(self.observed);
        let Some(asker) = self.asker else {
            return Err(self.waiting(
                "its keys are typed and nobody can be asked here (no ask-password agent directory, no console)",
            ));
        };
        let (pins, others): (Vec<_>, Vec<_>) = slots
            .into_iter()
            .partition(|(_, k)| *k == KeySource::TpmPin);
        if pins.is_empty() {
            return self.passphrase_round(asker, &others).await;
        }
        let pin_slots: Vec<KeyslotId> = pins.iter().map(|(s, _)| *s).collect();
        match self.pin_round(asker, &pin_slots, !others.is_empty()).await {
            Ok(opened) => Ok(opened),
            Err(e) if others.is_empty() => Err(e),
            Err(e) => {
                tracing::warn!(volume = %self.volume, "no PIN opened it ({e}); asking for the passphrase");
                self.passphrase_round(asker, &others).await
            }
        }
    }

    /// Up to `tries` PINs, each tried against the PIN slots.
    async fn pin_round(
        &self,
        asker: &AskerHandle,
        slots: &[KeyslotId],
        fallback: bool,
    ) -> Result<Typed, ConvergeError> {
        let first = Question {
            id: format!("volctl:{}", self.volume),
            message: match fallback {
                true => format!("TPM PIN for {} (empty: the passphrase)", self.volume),
                false => format!("TPM PIN for {}", self.volume),
            },
            timeout: self.params.timeout,
        };
        let tries = self.params.tries.max(1);
        for attempt in 1..=tries {
            let answer = self
                .ask(asker, &again(&first, tries - attempt + 1, attempt > 1))
                .await?;
            if answer.expose().is_empty() && fallback {
                return Err(self.waiting("the PIN was left empty"));
            }
            match self.try_pin(slots, &answer).await? {
                PinTry::Opened(t) => return Ok(t),
                PinTry::Wrong => {}
                PinTry::Stop(why) => return Err(self.waiting(why)),
            }
        }
        Err(self.waiting(format!(
            "{tries} wrong PIN(s) on {}; nothing was written",
            asker.channel()
        )))
    }

    /// One PIN against each PIN slot: the TPM unseals that slot's
    /// passphrase with it (a wrong PIN costs no KDF run), which then opens
    /// the keyslot (one KDF run).
    async fn try_pin(
        &self,
        slots: &[KeyslotId],
        pin: &Passphrase,
    ) -> Result<PinTry, ConvergeError> {
        for &slot in slots {
            let key = self.keys.iter().find(|k| k.spec.slot == slot);
            let (Some(key), Some(token)) = (key, token_of(self.header, self.observed, slot)) else {
                continue;
            };
            match key
                .provider
                .recover_typed(&key.ctx, &token.data.key, pin)
                .await
            {
                Ok(pass) => {
                    if let Some(volume_key) = self.open_slot(slot, &pass).await? {
                        tracing::info!(volume = %self.volume, slot = slot.get(), "unlocked by the TPM and a PIN");
                        return Ok(PinTry::Opened(Typed {
                            slot,
                            volume_key,
                            passphrase: pass,
                        }));
                    }
                }
                Err(ProviderError::WrongPin) => {}
                Err(e) => return Ok(PinTry::Stop(format!("slot {slot} (tpm+pin): {e}"))),
            }
        }
        Ok(PinTry::Wrong)
    }

    async fn ask(&self, asker: &AskerHandle, q: &Question) -> Result<Passphrase, ConvergeError> {
        asker.ask(q).await.map_err(|e| match e {
            AskError::Unavailable(r) => self.waiting(format!("cannot ask: {r}")),
            other => self.waiting(other.to_string()),
        })
    }

    /// Up to `tries` passphrases or recovery keys against their slots.
    async fn passphrase_round(
        &self,
        asker: &AskerHandle,
        slots: &[(KeyslotId, KeySource)],
    ) -> Result<Typed, ConvergeError> {
        let first = self.question(slots);
        let tries = self.params.tries.max(1);
        for attempt in 1..=tries {
            let q = again(&first, tries - attempt + 1, attempt > 1);
            let answer = self.ask(asker, &q).await?;
            if let Some(opened) = self.try_answer(slots, answer).await? {
                return Ok(opened);
            }
            tracing::debug!(volume = %self.volume, attempt, tries, "the answer opens no typed keyslot");
        }
        Err(self.waiting(format!(
            "{tries} wrong answer(s) on {}; nothing was written",
            asker.channel()
        )))
    }

    /// One answer against the slots of its kind: as a recovery key when it
    /// reads as one, as a passphrase on the prompt slots.
    async fn try_answer(
        &self,
        slots: &[(KeyslotId, KeySource)],
        answer: Passphrase,
    ) -> Result<Option<Typed>, ConvergeError> {
        let text = std::str::from_utf8(answer.expose()).ok();
        let recovery = text.map(providers::recovery::parse);
        // What reads as a recovery key (its check group matches) is one:
        // the recovery slots first, so it costs one KDF run. What has a
        // recovery key's shape but fails the check is a mistyped one: no
        // KDF run at all.
        let mut attempts: Vec<(KeyslotId, Passphrase)> = Vec::new();
        match &recovery {
            Some(Ok(key)) => {
                attempts.extend(of_kind(slots, KeySource::Recovery).map(|s| (s, key.clone())))
            }
            Some(Err(why)) if text.is_some_and(providers::recovery::looks_like) => {
                tracing::warn!(volume = %self.volume, "a recovery key with a typo: {why}");
                return Ok(None);
            }
            _ => {}
        }
        // A threshold's share opens or not before any KDF run: first.
        for slot in of_kind(slots, KeySource::ThresholdPrompt) {
            if let Some(pass) = self.threshold_passphrase(slot, &answer).await {
                attempts.push((slot, pass));
            }
        }
        attempts.extend(of_kind(slots, KeySource::Prompt).map(|s| (s, answer.clone())));
        if attempts.is_empty() {
            if let Some(Err(why)) = &recovery {
                tracing::warn!(volume = %self.volume, "not a recovery key: {why}");
            }
        }
        for (slot, pass) in attempts {
            if let Some(vk) = self.open_slot(slot, &pass).await? {
                tracing::info!(volume = %self.volume, slot = slot.get(), "unlocked by a typed key");
                return Ok(Some(Typed {
                    slot,
                    volume_key: vk,
                    passphrase: pass,
                }));
            }
        }
        Ok(None)
    }

    /// The passphrase of threshold slot `slot` with `answer` as its
    /// typed member's, when the shares open (no KDF run either way).
    async fn threshold_passphrase(
        &self,
        slot: KeyslotId,
        answer: &Passphrase,
    ) -> Option<Passphrase> {
        let key = self.keys.iter().find(|k| k.spec.slot == slot)?;
        let token = token_of(self.header, self.observed, slot)?;
        match key
            .provider
            .recover_typed(&key.ctx, &token.data.key, answer)
            .await
        {
            Ok(pass) => Some(pass),
            Err(e) => {
                tracing::info!(volume = %self.volume, slot = slot.get(), "the answer does not open the threshold: {e}");
                None
            }
        }
    }

    async fn open_slot(
        &self,
        slot: KeyslotId,
        pass: &Passphrase,
    ) -> Result<Option<VolumeKey>, ConvergeError> {
        let size = self
            .header
            .keyslot(slot)
            .map_or(KeySize::from_bits(512), |k| k.size());
        let pass = pass.clone();
        match blocking(self.device, move |d| {
            d.volume_key(slot, size, pass.expose())
        })
        .await
        {
            Ok(vk) => Ok(Some(vk)),
            Err(ConvergeError::Device(DeviceError::WrongKey { .. })) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

fn of_kind(
    slots: &[(KeyslotId, KeySource)],
    kind: KeySource,
) -> impl Iterator<Item = KeyslotId> + '_ {
    slots
        .iter()
        .filter(move |(_, k)| *k == kind)
        .map(|(s, _)| *s)
}

/// The slot a spare holds a copy of, when `slot` is one.
pub(super) fn spare_for(
    h: &Luks2Header,
    observed: &ObservedKeyslots,
    slot: KeyslotId,
) -> Option<KeyslotId> {
    token_of(h, observed, slot)?.data.replaces
}

#[cfg(test)]
mod again_tests {
    use super::{again, Question};

    #[test]
    fn a_question_asked_again_says_how_many_tries_are_left() {
        let q = Question {
            id: "volctl:persistence".into(),
            message: "Passphrase for persistence".into(),
            timeout: None,
        };
        assert_eq!(again(&q, 3, false).message, "Passphrase for persistence");
        assert_eq!(
            again(&q, 2, true).message,
            "Not accepted, 2 tries left. Passphrase for persistence"
        );
        assert_eq!(
            again(&q, 1, true).message,
            "Not accepted, 1 try left. Passphrase for persistence"
        );
        assert_eq!(again(&q, 1, true).id, q.id);
    }
}
