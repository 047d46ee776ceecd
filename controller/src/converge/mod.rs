//! Observe → unlock once → plan → execute, for one volume.
//!
//! The KDF budget (docs/architecture.md): a converged volume costs exactly
//! one KDF run (the unlock); a change costs one more per enrolled key.
//! Every other managed slot is checked by its token's binding.

mod execute;
mod in_place;
pub use execute::NewRecoveryKey;
pub use in_place::{clean_up, doing, ProgressReport, Snapshot};
pub use ran::{Encrypted, OnlineRun, RunAt};
mod keys;
mod mark_seen;
pub use mark_seen::mark_seen;
mod observe;
mod opener;
pub use opener::{opener, Opener};
mod pbkdf;
pub mod plan;
mod ran;
mod replace;
mod rotate;
pub use replace::{replace_key, ReplaceError};
pub use rotate::rotate_volume_key;
mod tpm_allow;
mod tpm_pin;
pub use tpm_allow::allow_tpm_values;
pub use tpm_pin::change_tpm_pin;
#[cfg(test)]
mod tests;
mod typed;
mod unlock;
pub use unlock::{Attempt, Attempts, Failure};

use crate::device::{self, Access, Contents, DeviceError, LuksDevice};
use crate::luks2::binding::{Binder, VolumeKey};
use crate::luks2::check::{self, CheckError};
use crate::luks2::consts::MIN_DEVICE_SIZE;
use crate::luks2::header::Luks2Header;
use crate::volume::VolumeSpec;
use api_types::KeyslotId;
use api_types::{KeyKind, KeySource};
use plan::{DesiredSlot, Plan, PlanError};
use providers::{Passphrase, ProviderEnv, ProviderError};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// Whether to change the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Plan only; nothing is written.
    DryRun,
    /// Plan and execute.
    Apply,
}

impl Mode {
    /// `DryRun` when `dry_run` (a `--dry-run` flag), else `Apply`.
    pub fn dry_run_if(dry_run: bool) -> Self {
        if dry_run {
            Mode::DryRun
        } else {
            Mode::Apply
        }
    }
}

/// Why converging a volume failed. No variant carries key material.
#[derive(Debug, thiserror::Error)]
pub enum ConvergeError {
    /// The device holds something that is not LUKS2; volctl will not format it.
    #[error("{path} is not blank: found {found}; volctl formats only blank devices (wipe it first if its data may go)")]
    NotBlank {
        /// Path.
        path: String,
        /// What was found.
        found: String,
    },
    /// The device is too small to hold LUKS2 metadata and data.
    #[error("{path} is {size} bytes; a LUKS2 volume needs at least {min} bytes")]
    TooSmall {
        /// Path.
        path: String,
        /// Its size.
        size: u64,
        /// The minimum.
        min: u64,
    },
    /// The header is not one volctl would have written for this config.
    #[error("refusing the LUKS2 header on {path}: {reason}")]
    UntrustedHeader {
        /// Path.
        path: String,
        /// What does not match.
        #[source]
        reason: CheckError,
    },
    /// None of the configured keys opens the volume.
    #[error("no configured key opens {path}. Keyslots on the device: {slots}. Tried: {tried}")]
    NoKeyOpens {
        /// Path.
        path: String,
        /// Keyslots found, with kinds from their tokens.
        slots: String,
        /// What was tried and why each failed.
        tried: unlock::Attempts,
    },
    /// Only a typed key opens it, and none was given: asked and not
    /// answered rightly, or nobody could be asked. Nothing was written.
    #[error("{volume} is waiting for its key: {reason}")]
    WaitingForKey {
        /// Volume name.
        volume: String,
        /// Why no key was given.
        reason: String,
    },
    /// No safe plan.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// A provider failed while enrolling.
    #[error("slot {slot}: {source}")]
    Provider {
        /// Keyslot.
        slot: KeyslotId,
        /// Cause.
        source: ProviderError,
    },
    /// The device failed, or its header could not be read.
    #[error(transparent)]
    Device(DeviceError),
    /// Refused before anything was written, with the reason.
    #[error("{0}")]
    Refused(String),
    /// An in-place encryption cannot be done (nothing was written).
    #[error(transparent)]
    InPlace(#[from] crate::inplace::InPlaceError),
}

/// What a run found and did.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// Volume name.
    pub volume: String,
    /// Device path.
    pub device: String,
    /// Whether the device was blank.
    pub formatted: bool,
    /// The slot that unlocked, and its kind.
    pub unlocked_by: Option<(KeyslotId, KeySource)>,
    /// The plan.
    pub plan: Plan,
    /// Whether this was a dry run (`volctl plan`).
    pub dry_run: bool,
    /// Whether the plan was carried out.
    pub applied: bool,
    /// KDF runs made by this run.
    pub kdf_runs: u64,
    /// Header sequence id before and after.
    pub seqid: (Option<u64>, Option<u64>),
    /// Active keyslots after the run.
    pub keyslots: Vec<KeyslotId>,
    /// What an in-place encryption by this run did (`inPlace`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encrypted: Option<Encrypted>,
    /// A reencryption left to run online ([`RunAt::Online`]; never
    /// serialised, its passphrase zeroized on drop).
    #[serde(skip)]
    pub online: Option<OnlineRun>,
    /// Recovery keys enrolled by this run, for their one showing (never
    /// serialised, zeroized on drop).
    #[serde(skip)]
    pub recovery_keys: Vec<NewRecoveryKey>,
}

impl Outcome {
    /// What keeps the volume from its configured state after this run: a
    /// configured key that could not be made, a removal waiting for it.
    pub fn incomplete(&self) -> Vec<&plan::Note> {
        self.plan
            .notes
            .iter()
            .filter(|n| {
                matches!(
                    n,
                    plan::Note::Unavailable { .. } | plan::Note::Deferred { .. }
                )
            })
            .collect()
    }
}

impl From<DeviceError> for ConvergeError {
    fn from(e: DeviceError) -> Self {
        match e {
            DeviceError::Untrusted { path, reason } => {
                ConvergeError::UntrustedHeader { path, reason }
            }
            other => ConvergeError::Device(other),
        }
    }
}

impl From<Mode> for Access {
    fn from(m: Mode) -> Access {
        match m {
            Mode::DryRun => Access::ReadOnly,
            Mode::Apply => Access::ReadWrite,
        }
    }
}

/// Opens `path` for converging `spec` in `mode`: read-only for a dry run;
/// every write and activation checks the header against the config.
pub fn open_device(
    spec: &VolumeSpec,
    path: &Path,
    mode: Mode,
) -> Result<Arc<dyn LuksDevice>, ConvergeError> {
    Ok(device::open(
        path,
        mode.into(),
        Some(spec.encryption.clone()),
    )?)
}

/// Converges one volume on `device`.
pub async fn converge(
    spec: &VolumeSpec,
    device: Arc<dyn LuksDevice>,
    env: &ProviderEnv,
    mode: Mode,
) -> Result<Outcome, ConvergeError> {
    converge_and_unlock(spec, device, env, mode, RunAt::Here)
        .await
        .map(|(o, _)| o)
}

/// What the observation and unlock found, before anything is written.
struct Prepared {
    header: Option<Luks2Header>,
    plan: Plan,
    volume_key: VolumeKey,
    unlocked_by: Option<(KeyslotId, KeySource)>,
    /// Keys already in hand for slots the plan enrols (the passphrase typed
    /// into a spare slot, finishing a cut passphrase change).
    premade: BTreeMap<KeyslotId, Passphrase>,
    /// The slot that opened the volume, and its passphrase.
    unlock: Option<(KeyslotId, Passphrase)>,
    /// Token data keys refreshed for their own slots (a TPM key narrowed
    /// after an allowed update), written by the plan's `WriteToken`.
    tokens: BTreeMap<KeyslotId, providers::KeyData>,
}

/// Converges one volume and returns its volume key too, so the caller can
/// activate it without another KDF run; a reencryption runs `run_at`.
pub async fn converge_and_unlock(
    spec: &VolumeSpec,
    device: Arc<dyn LuksDevice>,
    env: &ProviderEnv,
    mode: Mode,
    run_at: RunAt,
) -> Result<(Outcome, VolumeKey), ConvergeError> {
    let kdf_before = device.kdf_runs();
    let keys = keys::keys(spec, env);
    let desired: Vec<DesiredSlot> = keys.iter().map(keys::desired_slot).collect();
    let contents = blocking(&device, |d| d.contents()).await?;
    let mut p = match contents {
        Contents::Luks2(h) => prepare_existing(spec, *h, &keys, &desired, &device, env).await?,
        other => prepare_blank(spec, other, &desired, &device, mode).await?,
    };
    let applied = mode == Mode::Apply && !p.plan.is_empty();
    let mut ran = PlanRun::default();
    if applied {
        ran = run_plan(spec, &keys, &mut p, &device, run_at).await?;
    }
    if ran.header_rewritten {
        return Box::pin(plan_again(
            spec, device, env, mode, run_at, p, ran, kdf_before,
        ))
        .await;
    }
    let outcome = outcome(spec, &device, p.header.as_ref(), kdf_before, mode).await?;
    Ok((
        Outcome {
            formatted: p.header.is_none() && applied,
            unlocked_by: p.unlocked_by,
            plan: p.plan,
            applied,
            recovery_keys: ran.recovery_keys,
            encrypted: ran.encrypted,
            online: ran.online,
            ..outcome
        },
        p.volume_key,
    ))
}

/// After finishing a reencryption wrote the header anew (with the key that
/// opened it only): converges again, now an ordinary volume, so that the
/// other keys are enrolled by this same run; the outcome keeps both plans
/// and what the first did.
#[allow(clippy::too_many_arguments)]
async fn plan_again(
    spec: &VolumeSpec,
    device: Arc<dyn LuksDevice>,
    env: &ProviderEnv,
    mode: Mode,
    run_at: RunAt,
    first: Prepared,
    ran: PlanRun,
    kdf_before: u64,
) -> Result<(Outcome, VolumeKey), ConvergeError> {
    let (o, vk) = converge_and_unlock(spec, device.clone(), env, mode, run_at).await?;
    let mut plan = first.plan;
    // What the first plan deferred behind the reencryption was planned
    // again (and done, or deferred again, by the second).
    plan.notes
        .retain(|n| !matches!(n, plan::Note::AfterReencryption { .. }));
    plan.actions.extend(o.plan.actions);
    plan.notes.extend(o.plan.notes);
    Ok((
        Outcome {
            unlocked_by: first.unlocked_by,
            plan,
            applied: true,
            kdf_runs: device.kdf_runs() - kdf_before,
            recovery_keys: ran
                .recovery_keys
                .into_iter()
                .chain(o.recovery_keys)
                .collect(),
            encrypted: ran.encrypted,
            ..o
        },
        vk,
    ))
}

/// What carrying out a plan did beside its actions.
#[derive(Default)]
struct PlanRun {
    /// The recovery keys it enrolled.
    recovery_keys: Vec<NewRecoveryKey>,
    /// What an in-place encryption did.
    encrypted: Option<Encrypted>,
    /// A reencryption left to run online.
    online: Option<OnlineRun>,
    /// Finishing a reencryption wrote the header anew: plan again.
    header_rewritten: bool,
}

/// Carries out the prepared plan.
async fn run_plan(
    spec: &VolumeSpec,
    keys: &[keys::Key],
    p: &mut Prepared,
    device: &Arc<dyn LuksDevice>,
    run_at: RunAt,
) -> Result<PlanRun, ConvergeError> {
    let mut plan = std::mem::take(&mut p.plan);
    let mut executor = execute::Executor {
        spec,
        keys,
        header: p.header.as_ref(),
        volume_key: &p.volume_key,
        device,
        premade: std::mem::take(&mut p.premade),
        tokens: std::mem::take(&mut p.tokens),
        unlock: p.unlock.clone(),
        encrypted: None,
        run_at,
        online: None,
        header_rewritten: false,
    };
    let ran = executor.run(&mut plan).await;
    p.plan = plan;
    ran.map(|recovery_keys| PlanRun {
        recovery_keys,
        encrypted: executor.encrypted,
        online: executor.online,
        header_rewritten: executor.header_rewritten,
    })
}

/// The outcome's facts read from the device after a run (plan and flags
/// are the caller's to fill in).
async fn outcome(
    spec: &VolumeSpec,
    device: &Arc<dyn LuksDevice>,
    before: Option<&Luks2Header>,
    kdf_before: u64,
    mode: Mode,
) -> Result<Outcome, ConvergeError> {
    let (seq_after, keyslots) = match blocking(device, |d| d.contents()).await? {
        Contents::Luks2(h) => (Some(h.seqid), h.keyslot_numbers()),
        _ => (None, vec![]),
    };
    Ok(Outcome {
        volume: spec.name.clone(),
        device: device.path().display().to_string(),
        formatted: false,
        unlocked_by: None,
        plan: Plan::default(),
        dry_run: mode == Mode::DryRun,
        applied: false,
        kdf_runs: device.kdf_runs() - kdf_before,
        seqid: (before.map(|h| h.seqid), seq_after),
        keyslots,
        recovery_keys: Vec::new(),
        encrypted: None,
        online: None,
    })
}

/// A device without a usable header: format it if it is blank (or the
/// remains of a cut first format) and large enough.
async fn prepare_blank(
    spec: &VolumeSpec,
    contents: Contents,
    desired: &[DesiredSlot],
    device: &Arc<dyn LuksDevice>,
    mode: Mode,
) -> Result<Prepared, ConvergeError> {
    let path = device.path().display().to_string();
    match contents {
        Contents::Foreign(found) if spec.encryption.in_place() => {
            return prepare_in_place(spec, &found, desired, device, mode).await
        }
        Contents::Foreign(found) => return Err(ConvergeError::NotBlank { path, found }),
        Contents::UnfinishedFormat(why) => {
            tracing::warn!(device = %path, "formatting again: {why}")
        }
        Contents::Blank | Contents::Luks2(_) => {}
    }
    let size = blocking(device, |d| d.size()).await?;
    if size < MIN_DEVICE_SIZE {
        return Err(ConvergeError::TooSmall {
            path,
            size,
            min: MIN_DEVICE_SIZE,
        });
    }
    Ok(Prepared {
        header: None,
        plan: plan::plan_format(desired, spec.recovery_only)?,
        volume_key: VolumeKey::new(random_bytes(spec.encryption.key_size().len())),
        unlocked_by: None,
        premade: BTreeMap::new(),
        unlock: None,
        tokens: BTreeMap::new(),
    })
}

/// A device holding a filesystem, with `inPlace`: plan its encryption in
/// place (nothing is written; refusals name the alternative). The time
/// estimate is measured for a plan only: a run reports its real rate.
async fn prepare_in_place(
    spec: &VolumeSpec,
    found: &str,
    desired: &[DesiredSlot],
    device: &Arc<dyn LuksDevice>,
    mode: Mode,
) -> Result<Prepared, ConvergeError> {
    let size = blocking(device, |d| d.size()).await?;
    let prep = crate::inplace::prepare(device.path(), found, size)?;
    let work = plan::Reencryption {
        filesystem: Some(prep.fs.name()),
        shrink_mib: prep.shrink_mib(),
        data_mib: prep.data_bytes() >> 20,
        eta_seconds: (mode == Mode::DryRun)
            .then(|| eta(spec, prep.data_bytes()))
            .flatten(),
    };
    Ok(Prepared {
        header: None,
        plan: plan::plan_in_place(desired, work, spec.recovery_only)?,
        volume_key: VolumeKey::new(random_bytes(spec.encryption.key_size().len())),
        unlocked_by: None,
        premade: BTreeMap::new(),
        unlock: None,
        tokens: BTreeMap::new(),
    })
}

/// Seconds `bytes` of reencryption take, from the cipher's speed here.
pub(crate) fn eta(spec: &VolumeSpec, bytes: u64) -> Option<u64> {
    let key = spec.encryption.key_size().len();
    crate::inplace::estimate::cipher_speed(spec.encryption.cipher(), key)
        .map(|s| s.seconds_for(bytes))
}

/// What an operation on an existing volume starts from.
struct Existing {
    /// The device's KDF runs before it.
    kdf_before: u64,
    /// The config's keys.
    keys: Vec<keys::Key>,
    /// The slots they want.
    desired: Vec<DesiredSlot>,
    /// The volume's header.
    header: Luks2Header,
}

/// Reads what an operation on the volume on `device` starts from.
/// `refused` says why when the device holds no LUKS2 volume yet.
async fn existing(
    spec: &VolumeSpec,
    device: &Arc<dyn LuksDevice>,
    env: &ProviderEnv,
    refused: fn(&str) -> ConvergeError,
) -> Result<Existing, ConvergeError> {
    let kdf_before = device.kdf_runs();
    let keys = keys::keys(spec, env);
    let desired = keys.iter().map(keys::desired_slot).collect();
    let Contents::Luks2(header) = blocking(device, |d| d.contents()).await? else {
        return Err(refused("it is not a LUKS2 volume yet"));
    };
    let header = *header;
    Ok(Existing {
        kdf_before,
        keys,
        desired,
        header,
    })
}

/// A LUKS2 volume: check its header, unlock once, check every other slot by
/// its token, and plan.
async fn prepare_existing(
    spec: &VolumeSpec,
    h: Luks2Header,
    keys: &[keys::Key],
    desired: &[DesiredSlot],
    device: &Arc<dyn LuksDevice>,
    env: &ProviderEnv,
) -> Result<Prepared, ConvergeError> {
    check::check(&h.json, &spec.encryption).map_err(|reason| ConvergeError::UntrustedHeader {
        path: device.path().display().to_string(),
        reason,
    })?;
    let mut observed = observe::observe(&h);
    let unlocked = unlock_any(spec, &h, keys, desired, &observed, device, env).await?;
    let (slot, vk) = (unlocked.slot, unlocked.volume_key);
    let pending = pending_reencryption(spec, &h, &vk, device).await?;
    let binder = Binder::new(&vk);
    observe::authenticate(&h, &mut observed, &binder);
    observe::check_bindings(&h, &mut observed, keys, &binder);
    let mut plan = plan::plan_converge(desired, &observed, slot);
    plan.notes.extend(unlocked.note.clone());
    if let Some(action) = pending {
        plan.actions.insert(0, action);
    }
    let probe = unlock::probe_sealed_slots(&h, keys, &observed, slot).await;
    plan.notes.extend(probe.notes);
    reseal_changed(&mut plan, keys, probe.pcr_changed);
    let mut tokens = refreshed_tokens(&mut plan, keys, probe.refreshed);
    if let Some(plan::ObservedSlot::Clevis { token, sss: false }) = observed.slots.get(&slot) {
        // An adopted clevis slot's token names the Tang key clevis's JWE
        // belongs to (the JWE itself stays in clevis's token).
        tokens.extend(
            h.clevis_tang(*token)
                .map(|t| (slot, providers::KeyData::Tang(t))),
        );
    }
    let kind = keys
        .iter()
        .find(|k| k.spec.slot == slot)
        .map(|k| k.spec.kind.source())
        .or_else(|| observed.kind_of(slot));
    let mut premade = BTreeMap::new();
    if let (true, Some(of)) = (unlocked.typed, typed::spare_for(&h, &observed, slot)) {
        if desired.iter().any(|d| d.slot == of && Some(d.kind) == kind) {
            plan.finish_replacement(of, slot, observed.slots.contains_key(&of), kind);
            premade.insert(of, unlocked.passphrase.clone());
        }
    }
    Ok(Prepared {
        header: Some(h),
        plan,
        volume_key: vk,
        unlocked_by: kind.map(|k| (slot, k)),
        premade,
        unlock: Some((slot, unlocked.passphrase)),
        tokens,
    })
}

/// What is left of a reencryption volctl started, once its proof
/// verifies with the volume key (before anything is written or activated):
/// its rest, or the cleanup after it. A reencryption volctl cannot prove it
/// started is refused.
async fn pending_reencryption(
    spec: &VolumeSpec,
    h: &Luks2Header,
    vk: &VolumeKey,
    device: &Arc<dyn LuksDevice>,
) -> Result<Option<plan::Action>, ConvergeError> {
    use crate::luks2::reencryption;
    let token = reencryption::find_token(h);
    if token.is_none() && !h.in_reencryption() {
        return Ok(None);
    }
    let proven = token.is_some() && reencryption::proven(h, vk);
    let Some((_, token)) = token.filter(|_| proven) else {
        return Err(ConvergeError::UntrustedHeader {
            path: device.path().display().to_string(),
            reason: CheckError::Reencryption(
                "its volctl-reencrypt token does not verify with this volume's key (forged, or copied from another volume)".into(),
            ),
        });
    };
    let operation = token.operation;
    if !h.in_reencryption() {
        return Ok(Some(plan::Action::FinishReencryption { operation }));
    }
    let size = blocking(device, |d| d.size()).await?;
    let left = reencryption::pending_bytes(&h.json, size);
    let work = plan::Reencryption {
        filesystem: None,
        shrink_mib: 0,
        data_mib: left >> 20,
        eta_seconds: eta(spec, left),
    };
    Ok(Some(plan::Action::ResumeReencryption { operation, work }))
}

/// TPM slots whose PCRs changed are re-sealed when their config allows it.
fn reseal_changed(plan: &mut Plan, keys: &[keys::Key], changed: Vec<KeyslotId>) {
    for slot in changed {
        let key = keys::key_for(keys, slot);
        if matches!(
            key.spec.kind,
            KeyKind::Tpm {
                auto_reseal: true,
                ..
            }
        ) {
            plan.reseal(slot, key.spec.lock_to_state);
        }
    }
}

/// Slots whose keys asked for new token data: a `WriteToken` each.
fn refreshed_tokens(
    plan: &mut Plan,
    keys: &[keys::Key],
    refreshed: Vec<(KeyslotId, providers::KeyData, String)>,
) -> BTreeMap<KeyslotId, providers::KeyData> {
    let mut tokens = BTreeMap::new();
    for (slot, data, reason) in refreshed {
        let key = keys::key_for(keys, slot);
        plan.rewrite_token(slot, key.spec.kind.source(), key.spec.lock_to_state, reason);
        tokens.insert(slot, data);
    }
    tokens
}

/// What opened the volume.
struct Unlocked {
    slot: KeyslotId,
    volume_key: VolumeKey,
    /// The passphrase that opened it.
    passphrase: Passphrase,
    /// Whether a person typed it.
    typed: bool,
    /// What its key met on the way.
    note: Option<plan::Note>,
}

/// Unattended keys first; when none opens and the header has typed slots,
/// a person is asked.
async fn unlock_any(
    spec: &VolumeSpec,
    h: &Luks2Header,
    keys: &[keys::Key],
    desired: &[DesiredSlot],
    observed: &plan::ObservedKeyslots,
    device: &Arc<dyn LuksDevice>,
    env: &ProviderEnv,
) -> Result<Unlocked, ConvergeError> {
    let tried = match unlock::unlock(h, keys, desired, observed, device).await {
        Ok((slot, volume_key, passphrase, note)) => {
            return Ok(Unlocked {
                slot,
                volume_key,
                passphrase,
                typed: false,
                note,
            })
        }
        Err(ConvergeError::NoKeyOpens { tried, .. })
            if !typed::typed_slots(observed).is_empty() =>
        {
            tried
        }
        Err(e) => return Err(e),
    };
    tracing::info!(volume = %spec.name, "no unattended key opens it ({tried}); asking for a typed key");
    let t = typed::TypedUnlock {
        header: h,
        observed,
        device,
        asker: env.asker.as_ref(),
        volume: &spec.name,
        params: typed::params(keys.iter().map(|k| k.spec.kind.clone())),
        keys,
    }
    .run()
    .await
    .map_err(|e| match e {
        // Why the unattended keys did not open it is part of the answer.
        ConvergeError::WaitingForKey { volume, reason } if !tried.0.is_empty() => {
            ConvergeError::WaitingForKey {
                volume,
                reason: format!("{reason}; no unattended key opened it: {tried}"),
            }
        }
        e => e,
    })?;
    Ok(Unlocked {
        slot: t.slot,
        volume_key: t.volume_key,
        passphrase: t.passphrase,
        typed: true,
        note: None,
    })
}

use crate::io::random_bytes;

/// Runs a device call on a blocking thread (libcryptsetup blocks, and a
/// KDF run takes long).
async fn blocking<T: Send + 'static>(
    device: &Arc<dyn LuksDevice>,
    f: impl FnOnce(&dyn LuksDevice) -> Result<T, DeviceError> + Send + 'static,
) -> Result<T, ConvergeError> {
    let dev = device.clone();
    Ok(tokio::task::spawn_blocking(move || f(dev.as_ref()))
        .await
        .expect("device task panicked")?)
}
