//! Unlock once: try configured keys, each only against its own slot,
//! cheapest kind first (the keys that ask a server all at once, last),
//! until one yields the volume key (one KDF run per attempt); then probe
//! TPM slots (cheap, no KDF) so a PCR change is reported before the key is
//! needed.

use super::keys::{key_for, Key};
use super::observe::token_of;
use super::plan::{self, BindingCheck, DesiredSlot, Note, ObservedKeyslots, ObservedSlot};
use super::{blocking, ConvergeError};
use crate::device::{DeviceError, LuksDevice};
use crate::luks2::binding::VolumeKey;
use crate::luks2::header::Luks2Header;
use api_types::KeyslotId;
use api_types::{KeySize, KeySource};
use futures_util::stream::{FuturesUnordered, StreamExt};
use providers::KeyData;
use providers::Passphrase;
use std::sync::Arc;

/// The slot that opened the volume, the volume key, the passphrase, and
/// what its key met on the way, if it has something to say.
type Unlocked = (KeyslotId, VolumeKey, Passphrase, Option<Note>);

/// Tries the configured keys, cheapest first: keys made here one after
/// another, then the keys that ask a server all at once, each answer
/// tried (one KDF run) as it comes, so a server that does not answer
/// costs nothing while another does.
pub(super) async fn unlock(
    h: &Luks2Header,
    keys: &[Key],
    desired: &[DesiredSlot],
    observed: &ObservedKeyslots,
    device: &Arc<dyn LuksDevice>,
) -> Result<Unlocked, ConvergeError> {
    let order = plan::unlock_order(desired, observed);
    let (here, served): (Vec<KeyslotId>, Vec<KeyslotId>) = order
        .iter()
        .partition(|s| !key_for(keys, **s).spec.kind.source().asks_a_server());
    let mut tried = Vec::new();
    for slot in here {
        let key = key_for(keys, slot);
        match recover(h, observed, key).await {
            Ok(pass) => {
                if let Some(vk) = open_with(h, device, key, pass.clone(), &mut tried).await? {
                    return Ok((slot, vk, pass, opened_note(key, Vec::new())));
                }
            }
            Err(e) => tried.push(unavailable(key, e)),
        }
    }
    if let Some(opened) = ask_servers(h, keys, observed, device, &served, &mut tried).await? {
        return Ok(opened);
    }
    tried.sort_by_key(|a| order.iter().position(|s| *s == a.slot));
    Err(no_key_opens(device, desired, observed, tried))
}

/// Asks every key in `slots` at once and tries each answer as it comes;
/// the note of the key that opened the volume says what the others did.
async fn ask_servers(
    h: &Luks2Header,
    keys: &[Key],
    observed: &ObservedKeyslots,
    device: &Arc<dyn LuksDevice>,
    slots: &[KeyslotId],
    tried: &mut Vec<Attempt>,
) -> Result<Option<Unlocked>, ConvergeError> {
    let mut asking: FuturesUnordered<_> = slots
        .iter()
        .map(|&slot| async move {
            let key = key_for(keys, slot);
            (key, recover(h, observed, key).await)
        })
        .collect();
    let mut answered = Vec::new();
    while let Some((key, got)) = asking.next().await {
        answered.push(key.spec.slot);
        match got {
            Ok(pass) => {
                if let Some(vk) = open_with(h, device, key, pass.clone(), tried).await? {
                    let others = others_asked(keys, slots, &answered, tried);
                    let note = opened_note(key, others);
                    return Ok(Some((key.spec.slot, vk, pass, note)));
                }
            }
            Err(e) => tried.push(unavailable(key, e)),
        }
    }
    Ok(None)
}

/// What the keys asked at the same time as the one that opened the
/// volume did: failed (in `tried`), or not answered yet.
fn others_asked(
    keys: &[Key],
    asked: &[KeyslotId],
    answered: &[KeyslotId],
    tried: &[Attempt],
) -> Vec<String> {
    let failed = tried
        .iter()
        .filter(|a| asked.contains(&a.slot))
        .map(ToString::to_string);
    let waiting = asked.iter().filter(|s| !answered.contains(s)).map(|s| {
        let kind = key_for(keys, *s).spec.kind.source();
        format!("slot {s} ({kind})")
    });
    providers::others_did(failed, waiting)
}

/// `key`'s passphrase, from its provider and its slot's token.
async fn recover(
    h: &Luks2Header,
    observed: &ObservedKeyslots,
    key: &Key,
) -> Result<Passphrase, providers::ProviderError> {
    let slot = key.spec.slot;
    let data = match observed.slots.get(&slot) {
        Some(ObservedSlot::Clevis { token, sss: false }) => h
            .clevis_tang(*token)
            .map_or(KeyData::Nothing, KeyData::Tang),
        Some(ObservedSlot::Clevis { token, sss: true }) => h
            .clevis_sss(*token)
            .map_or(KeyData::Nothing, KeyData::ClevisSss),
        _ => token_of(h, observed, slot).map_or(KeyData::Nothing, |t| t.data.key),
    };
    key.provider.recover(&key.ctx, &data).await
}

fn unavailable(key: &Key, e: providers::ProviderError) -> Attempt {
    Attempt::new(
        key.spec.slot,
        key.spec.kind.source(),
        Failure::Unavailable(e),
    )
}

/// Runs the KDF of `key`'s slot with `pass`: the volume key, or `None`
/// when the slot refused it (recorded in `tried`).
async fn open_with(
    h: &Luks2Header,
    device: &Arc<dyn LuksDevice>,
    key: &Key,
    pass: Passphrase,
    tried: &mut Vec<Attempt>,
) -> Result<Option<VolumeKey>, ConvergeError> {
    let (slot, kind) = (key.spec.slot, key.spec.kind.source());
    let size = h
        .keyslot(slot)
        .map_or(KeySize::from_bits(512), |k| k.size());
    match blocking(device, move |d| d.volume_key(slot, size, pass.expose())).await {
        Ok(vk) => {
            tracing::info!(slot = slot.get(), kind = %kind, "unlocked");
            Ok(Some(vk))
        }
        Err(ConvergeError::Device(DeviceError::WrongKey { .. })) => {
            tried.push(Attempt::new(slot, kind, Failure::WrongKey));
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// What the key that opened the volume met on its way
/// ([`providers::KeyProvider::report`]) and what the other keys asked at
/// the same time did, if anything.
fn opened_note(key: &Key, others: Vec<String>) -> Option<Note> {
    let report: Vec<String> = key.provider.report().into_iter().chain(others).collect();
    (!report.is_empty()).then(|| Note::Opened {
        slot: key.spec.slot,
        kind: key.spec.kind.source(),
        report: report.join("; "),
    })
}

fn no_key_opens(
    device: &Arc<dyn LuksDevice>,
    desired: &[DesiredSlot],
    observed: &ObservedKeyslots,
    mut tried: Vec<Attempt>,
) -> ConvergeError {
    for d in desired {
        if let Err(r) = &d.available {
            tried.push(Attempt::new(d.slot, d.kind, Failure::NotMade(r.clone())));
        }
    }
    let slots = observed
        .slots
        .iter()
        .map(|(s, o)| match o {
            ObservedSlot::Managed { kind, .. } => format!("{s} ({kind})"),
            ObservedSlot::Unmanaged => format!("{s} (not enrolled by volctl)"),
            ObservedSlot::Clevis { sss: false, .. } => format!("{s} (bound by clevis to Tang)"),
            ObservedSlot::Clevis { sss: true, .. } => {
                format!("{s} (bound by clevis, sss over Tang)")
            }
        })
        .collect::<Vec<_>>()
        .join(", ");
    ConvergeError::NoKeyOpens {
        path: device.path().display().to_string(),
        slots: if slots.is_empty() {
            "none".into()
        } else {
            slots
        },
        tried: Attempts(tried),
    }
}

/// One configured key tried against its own slot, and why it did not
/// open the volume.
#[derive(Debug, thiserror::Error)]
#[error("slot {slot} ({kind}): {failure}")]
pub struct Attempt {
    /// The keyslot.
    pub slot: KeyslotId,
    /// The key's kind.
    pub kind: KeySource,
    /// Why not.
    pub failure: Failure,
}

impl Attempt {
    fn new(slot: KeyslotId, kind: KeySource, failure: Failure) -> Self {
        Attempt {
            slot,
            kind,
            failure,
        }
    }
}

/// Why a configured key did not open its slot: a retry policy tells a key
/// that may come back (a KMS down, a TPM whose PCRs changed) from one that
/// will not.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// Its provider could not produce it now (its source kept).
    #[error(transparent)]
    Unavailable(providers::ProviderError),
    /// Known not to be makeable before trying (salt missing, UUID
    /// unreadable): the planner's note.
    #[error("{0}")]
    NotMade(String),
    /// Made, and the keyslot refused it.
    #[error("wrong key")]
    WrongKey,
}

impl Failure {
    /// Whether trying again later may open the volume (the key's source
    /// was not there), as opposed to a key the slot refused.
    pub fn may_come_back(&self) -> bool {
        !matches!(self, Failure::WrongKey)
    }
}

/// Every key tried, in order; shown joined by `; `.
#[derive(Debug, Default)]
pub struct Attempts(pub Vec<Attempt>);

impl std::fmt::Display for Attempts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            return f.write_str("no configured key matches a keyslot's kind");
        }
        let lines: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&lines.join("; "))
    }
}

/// What probing the TPM and Tang slots found: notes, the slots whose PCRs
/// changed (candidates for re-sealing), and new token data.
#[derive(Default)]
pub(super) struct SealedProbe {
    pub notes: Vec<Note>,
    pub pcr_changed: Vec<KeyslotId>,
    /// Slots whose keys asked for new token data, and why.
    pub refreshed: Vec<(KeyslotId, providers::KeyData, String)>,
}

/// Why a TPM key's token is rewritten when its key refreshes it.
pub(super) const NARROWED: &str = "the TPM key narrowed to the PCR values the machine has now, an update `volctl tpm allow` allowed ahead (the other values no longer open it)";

/// Why a KMS key's token is rewritten when its key refreshes it.
pub(super) const REWRAPPED: &str = "rewrap: the KMS sealed this key under an old master-key version (volctl kms rotate); sealed again under the current one, the same key";

/// Why a Tang key's token is rewritten when its key refreshes it.
pub(super) const REBOUND: &str = "rebind: the Tang server advertises a new key (the same passphrase, bound to the new key; the old key may go from the server once every slot is rebound)";

/// How long a converge waits for a key server whose slot did not open the
/// volume (a Tang server: whether it rotated its keys; a KMS: whether the
/// blob is old): a dead server costs the run this, once, not its key's
/// timeout.
pub(super) const SERVER_REFRESH_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// Asks the server of a slot that did not open the volume whether its
/// token should change: a Tang key asks for the advertisement; a KMS key
/// unseals (the answer says whether to rewrap), then rewraps.
async fn ask_server(
    key: &Key,
    data: &providers::KeyData,
) -> Result<Option<providers::KeyData>, providers::ProviderError> {
    if key.provider.kind() == KeySource::Kms {
        key.provider.recover(&key.ctx, data).await?;
    }
    key.provider.refresh(&key.ctx, data).await
}

/// Tries to unseal every TPM slot other than the one that unlocked, and
/// asks every TPM key that unseals, and every Tang key, whether its token
/// should change (a key allowed an update narrows once the update came; a
/// Tang key rebinds once its server rotated its keys, a KMS key rewraps
/// once its server says its blob is old: key servers asked all at once,
/// each but the one that opened for [`SERVER_REFRESH_WAIT`] at most).
pub(super) async fn probe_sealed_slots(
    h: &Luks2Header,
    keys: &[Key],
    observed: &ObservedKeyslots,
    unlocked: KeyslotId,
) -> SealedProbe {
    let mut probe = SealedProbe::default();
    for (key, data) in in_sync(h, keys, observed, KeySource::Tpm) {
        let slot = key.spec.slot;
        if slot == unlocked || probe.unseals(key, slot, &data).await {
            let answer = key.provider.refresh(&key.ctx, &data).await;
            probe.refreshed_to(key, answer);
        }
    }
    let servers: Vec<_> = [KeySource::Kms, KeySource::Tang]
        .into_iter()
        .flat_map(|kind| in_sync(h, keys, observed, kind))
        .collect();
    let asked = servers.iter().map(|(key, data)| async move {
        let answer = match key.spec.slot == unlocked {
            true => key.provider.refresh(&key.ctx, data).await,
            false => tokio::time::timeout(SERVER_REFRESH_WAIT, ask_server(key, data))
                .await
                .unwrap_or(Ok(None)),
        };
        (*key, answer)
    });
    for (key, answer) in futures_util::future::join_all(asked).await {
        probe.refreshed_to(key, answer);
    }

    probe
}

/// The configured keys of `kind` whose slots hold them (binding proven),
/// with their token data.
fn in_sync<'k>(
    h: &Luks2Header,
    keys: &'k [Key],
    observed: &ObservedKeyslots,
    kind: KeySource,
) -> Vec<(&'k Key, providers::KeyData)> {
    keys.iter()
        .filter(|k| k.provider.kind() == kind)
        .filter(|k| {
            matches!(
                observed.slots.get(&k.spec.slot),
                Some(ObservedSlot::Managed {
                    binding: BindingCheck::Match,
                    ..
                })
            )
        })
        .filter_map(|k| Some((k, token_of(h, observed, k.spec.slot)?.data.key)))
        .collect()
}

impl SealedProbe {
    /// Whether the TPM unseals the key of `slot`; if not, why, in a note.
    async fn unseals(&mut self, key: &Key, slot: KeyslotId, data: &providers::KeyData) -> bool {
        let Err(e) = key.provider.recover(&key.ctx, data).await else {
            return true;
        };
        tracing::warn!(slot = slot.get(), "TPM key unusable: {e}");
        if matches!(e, providers::ProviderError::PcrMismatch { .. }) {
            self.pcr_changed.push(slot);
        }
        self.notes.push(Note::Unusable {
            slot,
            kind: KeySource::Tpm,
            reason: e.to_string(),
        });
        false
    }

    /// Keeps what `key`'s refresh answered: new token data and why (a
    /// failure is logged: the token it has still opens the volume).
    fn refreshed_to(
        &mut self,
        key: &Key,
        answer: Result<Option<providers::KeyData>, providers::ProviderError>,
    ) {
        let slot = key.spec.slot;
        match answer {
            Ok(Some(new)) => {
                let why = match key.provider.kind() {
                    KeySource::Tang => REBOUND,
                    KeySource::Kms => REWRAPPED,
                    _ => NARROWED,
                };
                self.refreshed.push((slot, new, why.to_string()));
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(
                slot = slot.get(),
                "{} key's token not refreshed: {e}",
                key.provider.kind()
            ),
        }
    }
}
