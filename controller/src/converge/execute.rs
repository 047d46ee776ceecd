//! Carries a plan out. Every new key is made first (a KMS or TPM that is
//! down leaves its slot as it is, and then nothing is removed either); then
//! each action is one or two header writes, in the plan's order. Enrolling
//! is a keyslot write then a token write: a crash between them leaves a
//! slot without a token, which the next run replaces or adopts.

use super::keys::{key_for, Key};
use super::plan::{may_format, Action, Note, Plan, RecoveryOnly};
use super::{blocking, pbkdf, ConvergeError};
use crate::device::{Contents, FormatParams, LuksDevice, PbkdfChoice, TokenChange};
use crate::luks2::binding::{Binder, VolumeKey};
use crate::luks2::header::Luks2Header;
use crate::luks2::token::{TokenData, TokenId, VolctlToken};
use crate::volume::VolumeSpec;
use api_types::{KeySource, KeyslotId};
use providers::{Enrolled, KeyData, Passphrase};
use std::collections::BTreeMap;
use std::sync::Arc;

/// A recovery key this run enrolled: to be shown once to whoever ran it,
/// and never stored.
#[derive(Debug, Clone)]
pub struct NewRecoveryKey {
    /// Its keyslot.
    pub slot: KeyslotId,
    /// The key, exactly as a person types it.
    pub key: Passphrase,
}

/// What the executor works with.
pub(super) struct Executor<'a> {
    pub spec: &'a VolumeSpec,
    pub keys: &'a [Key],
    pub header: Option<&'a Luks2Header>,
    pub volume_key: &'a VolumeKey,
    pub device: &'a Arc<dyn LuksDevice>,
    /// Keys already in hand, by the slot they are for (asked for no more).
    pub premade: BTreeMap<KeyslotId, Passphrase>,
    /// New token data for slots whose keys refreshed it (else a rewritten
    /// token keeps the data it has).
    pub tokens: BTreeMap<KeyslotId, providers::KeyData>,
    /// The slot that opened the volume and its passphrase (a resumed
    /// encryption starts by it).
    pub unlock: Option<(KeyslotId, Passphrase)>,
    /// What an in-place encryption this run made did.
    pub encrypted: Option<super::ran::Encrypted>,
    /// Where a reencryption runs.
    pub run_at: super::ran::RunAt,
    /// A reencryption left to run online.
    pub online: Option<super::ran::OnlineRun>,
    /// Whether finishing a reencryption wrote the header anew (with the
    /// key that opened it only): the caller plans again.
    pub header_rewritten: bool,
}

impl Executor<'_> {
    /// Carries out `plan`, dropping what cannot be done now into its notes.
    /// Returns the recovery keys it enrolled, for their one showing.
    pub async fn run(&mut self, plan: &mut Plan) -> Result<Vec<NewRecoveryKey>, ConvergeError> {
        if self.run_at == super::ran::RunAt::Online {
            plan.defer_behind_online_reencryption();
        }
        let mut enrolled = self.make_keys(plan).await?;
        let mut recovery = Vec::new();
        let binder = Binder::new(self.volume_key);
        let mut costs = pbkdf::for_new_slot(self.spec, self.header);
        let formatting = plan.actions.first() == Some(&Action::Format);
        for action in plan.actions.clone() {
            tracing::info!(volume = %self.spec.name, ?action, "executing");
            let keys = Keys {
                enrolled: &mut enrolled,
                binder: &binder,
                costs: &mut costs,
            };
            recovery.extend(self.step(action, keys).await?);
        }
        if formatting {
            blocking(self.device, |d| d.format_finished()).await?;
        }
        Ok(recovery)
    }

    /// Carries out one action; returns the recovery key it enrolled, if
    /// it enrolled one.
    async fn step(
        &mut self,
        action: Action,
        keys: Keys<'_>,
    ) -> Result<Option<NewRecoveryKey>, ConvergeError> {
        let Keys {
            enrolled,
            binder,
            costs,
        } = keys;
        match action {
            Action::Format => self.format().await?,
            Action::Add { slot, .. }
            | Action::Replace { slot, .. }
            | Action::Reseal { slot, .. } => {
                let (_, kind) = action.new_keys()[0];
                let e = enrolled
                    .remove(&slot)
                    .expect("made before the first action");
                let shown = (kind == KeySource::Recovery).then(|| e.passphrase.clone());
                if !matches!(action, Action::Add { .. }) {
                    self.remove(slot).await?;
                }
                self.add((slot, slot), own(e), binder, costs).await?;
                return Ok(shown.map(|key| NewRecoveryKey { slot, key }));
            }
            Action::AddSpare { slot, replaces, .. } => {
                let e = enrolled
                    .get(&replaces)
                    .expect("made before the first action");
                self.add((slot, replaces), spare(e, replaces), binder, costs)
                    .await?;
            }
            Action::WriteToken { slot, .. } => self.rewrite_token(slot, binder).await?,
            Action::MarkSeen { slot } => self.mark_seen(slot).await?,
            Action::Remove { slot, .. } | Action::RemoveSpare { slot, .. } => {
                self.remove(slot).await?
            }
            Action::EncryptInPlace { slots, .. } => {
                let ran = self.encrypt_in_place(&slots, enrolled).await?;
                self.record(ran);
            }
            Action::ResumeReencryption { operation, .. } => {
                let ran = self.finish(operation, None).await?;
                self.record(ran);
            }
            Action::FinishReencryption { .. } => self.clean_up().await?,
            Action::RotateVolumeKey { .. } => {
                unreachable!("a rotation is planned and run by `rotate_volume_key`")
            }
            Action::RemoveOrphanToken { token } => {
                blocking(self.device, move |d| d.token(TokenChange::Remove(token))).await?;
            }
        }
        Ok(None)
    }

    /// Removes the `held` mark of recovery slot `slot`.
    async fn mark_seen(&self, slot: KeyslotId) -> Result<(), ConvergeError> {
        blocking(self.device, move |d| {
            super::mark_seen::mark_seen(d, slot).map(|_| ())
        })
        .await
    }

    /// Keeps what a reencryption did, or what is left to run online.
    fn record(&mut self, ran: super::ran::Ran) {
        match ran {
            super::ran::Ran::Done(e) => self.encrypted = Some(e),
            super::ran::Ran::Rewritten(e) => {
                self.encrypted = Some(e);
                self.header_rewritten = true;
            }
            super::ran::Ran::Online(run) => self.online = Some(run),
        }
    }

    /// Makes every new key before anything is written. A key whose source
    /// is down is reported and its slot left as it is; then no slot is
    /// removed either, so the volume never ends with fewer keys than either
    /// config meant; a blank device is never formatted without a key.
    async fn make_keys(
        &self,
        plan: &mut Plan,
    ) -> Result<BTreeMap<KeyslotId, Enrolled>, ConvergeError> {
        let mut enrolled = BTreeMap::new();
        let mut skipped = Vec::new();
        for (slot, kind) in plan.actions.iter().flat_map(Action::new_keys) {
            if enrolled.contains_key(&slot) {
                continue;
            }
            match self.make_key(slot).await {
                Ok(e) => {
                    enrolled.insert(slot, e);
                }
                Err(e) => {
                    tracing::warn!(volume = %self.spec.name, slot = slot.get(), "cannot enrol: {e}");
                    skipped.push(Note::Unavailable {
                        slot,
                        kind,
                        reason: e.to_string(),
                    });
                }
            }
        }
        if !skipped.is_empty() {
            drop_unmade(plan, &enrolled, skipped, self.spec.recovery_only)?;
        }
        Ok(enrolled)
    }

    /// The key configured for `slot`: in hand already, or made now.
    async fn make_key(&self, slot: KeyslotId) -> Result<Enrolled, providers::ProviderError> {
        match self.premade.get(&slot) {
            Some(p) => Ok(Enrolled {
                passphrase: p.clone(),
                token_data: KeyData::Nothing,
            }),
            None => {
                let key = key_for(self.keys, slot);
                key.provider.enroll(&key.ctx).await
            }
        }
    }

    /// The new header's parameters, from the config.
    pub(super) fn format_params(&self) -> FormatParams {
        FormatParams {
            cipher: self.spec.encryption.cipher().to_string(),
            sector_size: self.spec.encryption.block_size.unwrap_or(0),
            label: self.spec.label.clone(),
            pbkdf: pbkdf::from_config(self.spec).unwrap_or(PbkdfChoice::Benchmark),
        }
    }

    async fn format(&self) -> Result<(), ConvergeError> {
        let params = self.format_params();
        let vk = self.volume_key.clone();
        blocking(self.device, move |d| d.format(&params, &vk)).await
    }

    /// Writes the key configured for slot `of` to the (empty) `slot` (the
    /// same slot, or a spare): keyslot first, then its token. After a
    /// benchmarked first slot, later slots reuse its costs.
    async fn add(
        &self,
        (slot, of): (KeyslotId, KeyslotId),
        (pass, data): (Passphrase, TokenData),
        binder: &Binder,
        costs: &mut PbkdfChoice,
    ) -> Result<(), ConvergeError> {
        let key = key_for(self.keys, of);
        let (vk, pbkdf) = (self.volume_key.clone(), *costs);
        let salt = blocking(self.device, move |d| {
            d.add_keyslot(slot, &vk, pass.expose(), pbkdf)
        })
        .await?;
        let parts = token_parts(key, slot, data, binder)?;
        // clevis reads the first token listing the keyslot: its own first,
        // and none left from a slot this number had before.
        if let Some(clevis) = parts.clevis() {
            for stale in self.stale_clevis_tokens(slot).await? {
                blocking(self.device, move |d| d.token(TokenChange::Remove(stale))).await?;
            }
            blocking(self.device, move |d| d.token(TokenChange::Add(&clevis))).await?;
        }
        let json = parts.with_owner(binder, &salt);
        blocking(self.device, move |d| d.token(TokenChange::Add(&json))).await?;
        if *costs == PbkdfChoice::Benchmark {
            let device = self.device.clone();
            if let Ok(Contents::Luks2(h)) = blocking(&device, |d| d.contents()).await {
                *costs = pbkdf::for_new_slot(self.spec, Some(&h));
            }
        }
        Ok(())
    }

    /// Destroys a keyslot, then its token (looked up in the header as it is
    /// now: a spare's token was written by this run).
    async fn remove(&self, slot: KeyslotId) -> Result<(), ConvergeError> {
        let now = match blocking(self.device, |d| d.contents()).await? {
            Contents::Luks2(h) => Some(*h),
            _ => None,
        };
        blocking(self.device, move |d| d.destroy_keyslot(slot)).await?;
        if let Some(t) = now.as_ref().and_then(|h| token_in(h, slot)) {
            blocking(self.device, move |d| d.token(TokenChange::Remove(t))).await?;
        }
        for t in now
            .as_ref()
            .map(|h| h.clevis_tokens(slot))
            .unwrap_or_default()
        {
            blocking(self.device, move |d| d.token(TokenChange::Remove(t))).await?;
        }
        Ok(())
    }

    /// Rewrites the token of a slot whose key is proven, keeping its data.
    async fn rewrite_token(&self, slot: KeyslotId, binder: &Binder) -> Result<(), ConvergeError> {
        let h = self
            .header
            .expect("tokens are rewritten on existing headers only");
        let mut data = h.volctl_token_data(slot);
        if let Some(key) = self.tokens.get(&slot) {
            data.key = key.clone();
        }
        let salt = h
            .keyslot(slot)
            .map(|k| k.kdf.salt().to_string())
            .unwrap_or_default();
        let parts = token_parts(key_for(self.keys, slot), slot, data, binder)?;
        // clevis's first (clevis reads the first token naming the keyslot);
        // volctl's token holds no JWE, so a cut between the two leaves the
        // clevis token's JWE the slot's, old or new, and both open it.
        if let Some(clevis) = parts.clevis() {
            let old = h.clevis_tokens(slot).first().copied();
            replace_or_add(self.device, old, clevis).await?;
        }
        let json = parts.with_owner(binder, &salt);
        replace_or_add(self.device, self.token_id(slot), json).await?;
        Ok(())
    }

    /// Clevis tokens that name `slot` in the header as it is now (a cut
    /// removal can leave one behind its keyslot).
    async fn stale_clevis_tokens(&self, slot: KeyslotId) -> Result<Vec<TokenId>, ConvergeError> {
        Ok(match blocking(self.device, |d| d.contents()).await? {
            Contents::Luks2(h) => h.clevis_tokens(slot),
            _ => Vec::new(),
        })
    }

    fn old_token(&self, slot: KeyslotId) -> Option<(TokenId, VolctlToken)> {
        self.header?.volctl_token(slot)
    }

    fn token_id(&self, slot: KeyslotId) -> Option<TokenId> {
        self.old_token(slot).map(|(id, _)| id)
    }
}

/// Drops what needs a key that could not be made, and every removal (so
/// the volume never ends with fewer keys than either config meant); a
/// blank device is not formatted without a key.
fn drop_unmade(
    plan: &mut Plan,
    enrolled: &BTreeMap<KeyslotId, Enrolled>,
    mut skipped: Vec<Note>,
    rule: RecoveryOnly,
) -> Result<(), ConvergeError> {
    let formatting = plan.actions.first() == Some(&Action::Format);
    if formatting {
        refuse_format_without_daily_key(plan, enrolled, &skipped, rule)?;
    }
    plan.actions.retain(|a| match a {
        Action::Remove { slot, .. } => {
            skipped.push(Note::Deferred {
                slot: *slot,
                reason: "removed once every key of the config is enrolled".into(),
            });
            false
        }
        other => other.key_slot().is_none_or(|s| enrolled.contains_key(&s)),
    });
    plan.notes.extend(skipped);
    Ok(())
}

/// A blank device is formatted only when a key it is meant to open with
/// every day (any configured kind but `recovery`) could be made: a volume
/// left with only its recovery key opens at no later unattended boot. A
/// config with no such key at all (recovery keys only) is formatted.
fn refuse_format_without_daily_key(
    plan: &Plan,
    enrolled: &BTreeMap<KeyslotId, Enrolled>,
    skipped: &[Note],
    rule: RecoveryOnly,
) -> Result<(), ConvergeError> {
    let planned: Vec<(KeyslotId, KeySource)> =
        plan.actions.iter().flat_map(Action::new_keys).collect();
    let made = planned
        .iter()
        .filter(|(slot, _)| enrolled.contains_key(slot))
        .map(|(_, kind)| *kind);
    let why = || {
        let lines: Vec<String> = skipped.iter().map(ToString::to_string).collect();
        lines.join("; ")
    };
    Ok(may_format(
        planned.iter().map(|(_, k)| *k),
        made,
        rule,
        why,
    )?)
}

/// What enrolling actions share through a run: the keys made before the
/// first action, the binder, the KDF costs of new slots.
struct Keys<'a> {
    enrolled: &'a mut BTreeMap<KeyslotId, Enrolled>,
    binder: &'a Binder,
    costs: &'a mut PbkdfChoice,
}

/// The key of a spare slot: `e`'s, its token marked with the slot it
/// stands in for.
fn spare(e: &Enrolled, replaces: KeyslotId) -> (Passphrase, TokenData) {
    let data = TokenData {
        key: e.token_data.clone(),
        replaces: Some(replaces),
    };
    (e.passphrase.clone(), data)
}

/// The passphrase and token data of a key made for its own slot.
fn own(e: Enrolled) -> (Passphrase, TokenData) {
    (e.passphrase, TokenData::of(e.token_data))
}

/// Writes `json` over the token `old`, or as a new one.
async fn replace_or_add(
    device: &Arc<dyn LuksDevice>,
    old: Option<TokenId>,
    json: serde_json::Value,
) -> Result<TokenId, ConvergeError> {
    blocking(device, move |d| {
        d.token(match old {
            Some(id) => TokenChange::Replace(id, &json),
            None => TokenChange::Add(&json),
        })
    })
    .await
}

fn token_in(h: &Luks2Header, slot: KeyslotId) -> Option<TokenId> {
    h.volctl_token(slot).map(|(id, _)| id)
}

/// A token but for its owner tag, which covers the keyslot's salt (known
/// once the keyslot is written).
pub(super) struct TokenParts {
    pub slot: KeyslotId,
    kind: KeySource,
    lock_to_state: bool,
    data: TokenData,
    binding: String,
}

impl TokenParts {
    /// The `clevis` token clevis reads beside a `tang` slot, unless the
    /// passphrase is locked to STATE (clevis knows no STATE salt: the JWE
    /// alone is not the slot's passphrase).
    pub fn clevis(&self) -> Option<serde_json::Value> {
        self.clevis_jwe()
            .map(|jwe| crate::luks2::clevis::token(self.slot, jwe))
    }

    /// The JWE a clevis token beside this slot holds, when it has one.
    fn clevis_jwe(&self) -> Option<&providers::tang::jwe::ClevisJwe> {
        match (&self.data.key, self.lock_to_state) {
            (KeyData::Tang(t), false) => t.jwe.as_ref(),
            _ => None,
        }
    }

    /// The whole token, for the keyslot whose salt is `keyslot_salt`.
    pub fn with_owner(&self, binder: &Binder, keyslot_salt: &str) -> serde_json::Value {
        let owner = binder.owner(self.slot, keyslot_salt);
        let mut data = self.data.clone();
        // The JWE lives in the clevis token beside: one copy in the header.
        if let (KeyData::Tang(t), Some(_)) = (&mut data.key, self.clevis_jwe()) {
            t.jwe = None;
        }
        let token = VolctlToken::new(
            self.slot,
            self.kind,
            self.lock_to_state,
            data,
            self.binding.clone(),
            owner,
        );
        serde_json::to_value(token).expect("token serialises")
    }
}

/// The token of `slot` holding `key`, but for its owner tag.
pub(super) fn token_parts(
    key: &Key,
    slot: KeyslotId,
    data: TokenData,
    binder: &Binder,
) -> Result<TokenParts, ConvergeError> {
    let kind = key.spec.kind.source();
    let material = key
        .provider
        .binding_material(&key.ctx)
        .map_err(|source| ConvergeError::Provider { slot, source })?;
    Ok(TokenParts {
        slot,
        kind,
        lock_to_state: key.spec.lock_to_state,
        data,
        binding: binder.compute(slot, kind, key.spec.lock_to_state, material.expose()),
    })
}
