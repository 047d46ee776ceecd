//! Observe → unlock once → plan → execute, for one volume.
//!
//! The KDF budget (DESIGN.md section 5): a converged volume costs exactly
//! one KDF run (the unlock); a change costs one more per enrolled key.
//! Every other managed slot is checked by its token's binding.

use crate::device::probe as signatures;
use crate::device::{DeviceError, FormatParams, LuksDevice, PbkdfChoice, PbkdfCost, PbkdfKind};
use crate::luks2::binding::{Binder, VolumeKey};
use crate::luks2::check as header_check;
use crate::luks2::header::{self, HeaderError, Luks2Header, Probe};
use crate::luks2::token::VolctlToken;
use crate::volume::VolumeSpec;
use api_types::{PbkdfType, ResolvedKey};
use plan::{
    Action, BindingCheck, DesiredSlot, Note, ObservedKeyslots, ObservedSlot, Plan, PlanError,
};
use providers::{provider_for, KeyContext, KeyProvider, ProviderEnv, ProviderError};
use serde::Serialize;

pub mod plan;
use std::sync::Arc;

/// Whether to change the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Plan only; nothing is written.
    DryRun,
    /// Plan and execute.
    Apply,
}

/// Why converging a volume failed. No variant carries key material.
#[derive(Debug, thiserror::Error)]
pub enum ConvergeError {
    /// The header could not be read.
    #[error(transparent)]
    Header(#[from] HeaderError),
    /// The device is missing or cannot be opened for writing.
    #[error("cannot open {path}{}: {reason}", if *.write { " for writing" } else { "" })]
    Access {
        /// Path.
        path: String,
        /// Whether write access was needed.
        write: bool,
        /// Why.
        reason: String,
    },
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
        reason: String,
    },
    /// None of the configured keys opens the volume.
    #[error("no configured key opens {path}. Keyslots on the device: {slots}. Tried: {tried}")]
    NoKeyOpens {
        /// Path.
        path: String,
        /// Keyslots found, with kinds from their tokens.
        slots: String,
        /// What was tried and why each failed.
        tried: String,
    },
    /// No safe plan.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// A provider failed while enrolling.
    #[error("slot {slot}: {source}")]
    Provider {
        /// Keyslot.
        slot: u32,
        /// Cause.
        source: ProviderError,
    },
    /// libcryptsetup failed.
    #[error(transparent)]
    Device(#[from] DeviceError),
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
    pub unlocked_by: Option<(u32, String)>,
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
}

struct Key {
    spec: ResolvedKey,
    provider: Box<dyn KeyProvider>,
    ctx: KeyContext,
}

/// Converges one volume on `device`.
pub async fn converge(
    spec: &VolumeSpec,
    device: Arc<dyn LuksDevice>,
    env: &ProviderEnv,
    mode: Mode,
) -> Result<Outcome, ConvergeError> {
    converge_and_unlock(spec, device, env, mode)
        .await
        .map(|(o, _)| o)
}

/// Converges one volume and returns its volume key too, so the caller can
/// activate it without another KDF run.
pub async fn converge_and_unlock(
    spec: &VolumeSpec,
    device: Arc<dyn LuksDevice>,
    env: &ProviderEnv,
    mode: Mode,
) -> Result<(Outcome, VolumeKey), ConvergeError> {
    let path = device.path().display().to_string();
    check_access(&device, mode)?;
    let kdf_before = device.kdf_runs();
    let keys: Vec<Key> = spec
        .encryption
        .resolved_keys()
        .into_iter()
        .map(|k| Key {
            provider: provider_for(&k, env),
            ctx: KeyContext {
                volume_id: spec.label.clone(),
                slot: k.slot,
            },
            spec: k,
        })
        .collect();
    let desired: Vec<DesiredSlot> = keys.iter().map(desired_slot).collect();

    let header = match header::read(device.path())? {
        Probe::Luks2(h) => Some(*h),
        Probe::None => None,
    };
    let (plan, volume_key, unlocked_by, seq_before) = match &header {
        None => {
            if let Some(found) =
                signatures::find_signature(device.path()).map_err(|e| access(&path, false, e))?
            {
                return Err(ConvergeError::NotBlank { path, found });
            }
            let size = device_size(&device)?;
            if size < crate::luks2::consts::MIN_DEVICE_SIZE {
                return Err(ConvergeError::TooSmall {
                    path,
                    size,
                    min: crate::luks2::consts::MIN_DEVICE_SIZE,
                });
            }
            let vk = VolumeKey::new(random_bytes(spec.encryption.key_size_bits() as usize / 8));
            (plan::plan_format(&desired)?, vk, None, None)
        }
        Some(h) => {
            header_check::check(h, &spec.encryption).map_err(|reason| {
                ConvergeError::UntrustedHeader {
                    path: path.clone(),
                    reason,
                }
            })?;
            let mut observed = observe(h);
            let (slot, vk) = unlock(h, &keys, &desired, &observed, &device).await?;
            check_bindings(h, &mut observed, &keys, &Binder::new(&vk));
            let mut plan = plan::plan_converge(&desired, &observed, slot);
            plan.notes
                .extend(check_tpm_slots(h, &keys, &observed, slot).await);
            let kind = keys
                .iter()
                .find(|k| k.spec.slot == slot)
                .map(|k| k.spec.kind.name().to_string())
                .unwrap_or_default();
            (plan, vk, Some((slot, kind)), Some(h.seqid))
        }
    };
    let mut plan = plan;
    let applied = mode == Mode::Apply && !plan.is_empty();
    if applied {
        execute(
            spec,
            &mut plan,
            &keys,
            header.as_ref(),
            &volume_key,
            &device,
        )
        .await?;
    }
    let seq_after = match header::read(device.path())? {
        Probe::Luks2(h) => Some(h.seqid),
        Probe::None => None,
    };
    let outcome = Outcome {
        volume: spec.name.clone(),
        device: path,
        formatted: header.is_none() && applied,
        unlocked_by,
        plan,
        dry_run: mode == Mode::DryRun,
        applied,
        kdf_runs: device.kdf_runs() - kdf_before,
        seqid: (seq_before, seq_after),
    };
    Ok((outcome, volume_key))
}

fn access(path: &str, write: bool, e: std::io::Error) -> ConvergeError {
    ConvergeError::Access {
        path: path.to_string(),
        write,
        reason: e.to_string(),
    }
}

fn check_access(device: &Arc<dyn LuksDevice>, mode: Mode) -> Result<(), ConvergeError> {
    let write = mode == Mode::Apply;
    std::fs::OpenOptions::new()
        .read(true)
        .write(write)
        .open(device.path())
        .map(|_| ())
        .map_err(|e| access(&device.path().display().to_string(), write, e))
}

fn device_size(device: &Arc<dyn LuksDevice>) -> Result<u64, ConvergeError> {
    use std::io::{Seek, SeekFrom};
    let path = device.path().display().to_string();
    let mut f = std::fs::File::open(device.path()).map_err(|e| access(&path, false, e))?;
    f.seek(SeekFrom::End(0))
        .map_err(|e| access(&path, false, e))
}

fn random_bytes(n: usize) -> Vec<u8> {
    use rand::RngCore;
    let mut v = vec![0u8; n];
    rand::rngs::OsRng.fill_bytes(&mut v);
    v
}

fn desired_slot(k: &Key) -> DesiredSlot {
    DesiredSlot {
        slot: k.spec.slot,
        kind: k.spec.kind.name().to_string(),
        lock_to_state: k.spec.lock_to_state,
        derivable: k.provider.locally_derivable(),
        cost: k.provider.unlock_cost(),
        // A key whose binding material cannot be computed cannot be enrolled
        // or checked either (salt missing, UUID unreadable, kind not built in).
        available: k
            .provider
            .binding_material(&k.ctx)
            .map(|_| ())
            .map_err(|e| e.to_string()),
    }
}

/// The keyslots and volctl tokens of a header, bindings not yet checked.
fn observe(h: &Luks2Header) -> ObservedKeyslots {
    let active = h.keyslot_numbers();
    let mut o = ObservedKeyslots::default();
    for &s in &active {
        o.slots.insert(s, ObservedSlot::Unmanaged);
    }
    for (id, raw) in h.tokens() {
        let Some(parsed) = VolctlToken::parse(raw) else {
            continue;
        };
        let slot = parsed.as_ref().ok().and_then(VolctlToken::slot);
        match (parsed, slot) {
            (Ok(t), Some(s)) if matches!(o.slots.get(&s), Some(ObservedSlot::Unmanaged)) => {
                o.slots.insert(
                    s,
                    ObservedSlot::Managed {
                        token: id,
                        kind: t.kind.clone(),
                        lock_to_state: t.lock_to_state,
                        binding: BindingCheck::Unknown("not checked".into()),
                    },
                );
            }
            // Bound to no live keyslot, unreadable, or a second token for one slot.
            _ => o.orphan_tokens.push(id),
        }
    }
    o
}

fn token_of(h: &Luks2Header, observed: &ObservedKeyslots, slot: u32) -> Option<VolctlToken> {
    match observed.slots.get(&slot) {
        Some(ObservedSlot::Managed { token, .. }) => h
            .tokens()
            .find(|(id, _)| id == token)
            .and_then(|(_, raw)| VolctlToken::parse(raw)?.ok()),
        _ => None,
    }
}

/// Tries configured keys, each against its own slot only, cheapest first,
/// until one yields the volume key. One KDF run per attempt.
async fn unlock(
    h: &Luks2Header,
    keys: &[Key],
    desired: &[DesiredSlot],
    observed: &ObservedKeyslots,
    device: &Arc<dyn LuksDevice>,
) -> Result<(u32, VolumeKey), ConvergeError> {
    let mut tried = Vec::new();
    for slot in plan::unlock_order(desired, observed) {
        let key = keys
            .iter()
            .find(|k| k.spec.slot == slot)
            .expect("unlock order names configured slots");
        let data = token_of(h, observed, slot)
            .map(|t| t.data)
            .unwrap_or_else(|| serde_json::json!({}));
        let pass = match key.provider.recover(&key.ctx, &data).await {
            Ok(p) => p,
            Err(e) => {
                tried.push(format!("slot {slot} ({}): {e}", key.spec.kind.name()));
                continue;
            }
        };
        let size = h.keyslot(slot).map(|k| k.key_size as usize).unwrap_or(64);
        let dev = device.clone();
        let res = tokio::task::spawn_blocking(move || dev.volume_key(slot, size, pass.expose()))
            .await
            .expect("unlock task panicked");
        match res {
            Ok(vk) => {
                tracing::info!(slot, kind = key.spec.kind.name(), "unlocked");
                return Ok((slot, vk));
            }
            Err(DeviceError::WrongKey { .. }) => {
                tried.push(format!("slot {slot} ({}): wrong key", key.spec.kind.name()))
            }
            Err(e) => return Err(e.into()),
        }
    }
    for d in desired {
        if let Err(r) = &d.available {
            tried.push(format!("slot {} ({}): {r}", d.slot, d.kind));
        }
    }
    let slots = observed
        .slots
        .iter()
        .map(|(s, o)| match o {
            ObservedSlot::Managed { kind, .. } => format!("{s} ({kind})"),
            ObservedSlot::Unmanaged => format!("{s} (not enrolled by volctl)"),
        })
        .collect::<Vec<_>>()
        .join(", ");
    Err(ConvergeError::NoKeyOpens {
        path: device.path().display().to_string(),
        slots: if slots.is_empty() {
            "none".into()
        } else {
            slots
        },
        tried: if tried.is_empty() {
            "no configured key matches a keyslot's kind".into()
        } else {
            tried.join("; ")
        },
    })
}

/// Tries to unseal every TPM slot other than the one that unlocked: a TPM
/// unseal is cheap (no KDF), and a PCR change is better reported now than
/// found out when the key is needed.
async fn check_tpm_slots(
    h: &Luks2Header,
    keys: &[Key],
    observed: &ObservedKeyslots,
    unlocked: u32,
) -> Vec<Note> {
    let mut notes = Vec::new();
    for key in keys
        .iter()
        .filter(|k| k.spec.slot != unlocked && k.provider.kind() == "tpm")
    {
        let slot = key.spec.slot;
        if !matches!(
            observed.slots.get(&slot),
            Some(ObservedSlot::Managed {
                binding: BindingCheck::Match,
                ..
            })
        ) {
            continue;
        }
        let Some(token) = token_of(h, observed, slot) else {
            continue;
        };
        if let Err(e) = key.provider.recover(&key.ctx, &token.data).await {
            tracing::warn!(slot, "TPM key unusable: {e}");
            notes.push(Note::Unusable {
                slot,
                kind: "tpm".into(),
                reason: e.to_string(),
            });
        }
    }
    notes
}

/// Checks every managed slot that the config lists by its binding: no KDF.
fn check_bindings(h: &Luks2Header, observed: &mut ObservedKeyslots, keys: &[Key], binder: &Binder) {
    for key in keys {
        let slot = key.spec.slot;
        let Some(token) = token_of(h, observed, slot) else {
            continue;
        };
        let Some(ObservedSlot::Managed { binding, .. }) = observed.slots.get_mut(&slot) else {
            continue;
        };
        *binding = match key.provider.binding_material(&key.ctx) {
            Err(e) => BindingCheck::Unknown(e.to_string()),
            // The binding covers kind and lockToSTATE, so a change of either
            // shows up as a mismatch too.
            Ok(m)
                if binder.verify(
                    slot,
                    key.spec.kind.name(),
                    key.spec.lock_to_state,
                    m.expose(),
                    &token.binding,
                ) =>
            {
                BindingCheck::Match
            }
            Ok(_) => BindingCheck::Mismatch,
        };
    }
}

/// PBKDF costs for a new keyslot: the config's fixed costs; else the costs of
/// a keyslot already on the device (so adding a slot never re-benchmarks);
/// else, on a fresh header, libcryptsetup's benchmark (once).
fn pbkdf_for_new_slot(spec: &VolumeSpec, device: &Arc<dyn LuksDevice>) -> PbkdfChoice {
    if let Some(c) = config_pbkdf(spec) {
        return c;
    }
    let Ok(Probe::Luks2(h)) = header::read(device.path()) else {
        return PbkdfChoice::Benchmark;
    };
    let Some(ks) = h.json.keyslots.values().next() else {
        return PbkdfChoice::Benchmark;
    };
    let kdf = &ks.kdf;
    let kind = match kdf.kind.as_str() {
        "argon2id" => PbkdfKind::Argon2id,
        "argon2i" => PbkdfKind::Argon2i,
        _ => PbkdfKind::Pbkdf2,
    };
    PbkdfChoice::Fixed(PbkdfCost {
        kind,
        iterations: kdf.time.or(kdf.iterations).unwrap_or(4),
        memory_kib: kdf.memory.unwrap_or(0),
        parallelism: kdf.cpus.unwrap_or(1),
    })
}

/// The config's fixed PBKDF costs, if it sets them.
fn config_pbkdf(spec: &VolumeSpec) -> Option<PbkdfChoice> {
    let p = spec.encryption.pbkdf.as_ref()?;
    let (kind, argon) = match p.kind {
        PbkdfType::Argon2id => (PbkdfKind::Argon2id, true),
        PbkdfType::Argon2i => (PbkdfKind::Argon2i, true),
        PbkdfType::Pbkdf2 => (PbkdfKind::Pbkdf2, false),
    };
    Some(PbkdfChoice::Fixed(PbkdfCost {
        kind,
        iterations: p.iterations,
        memory_kib: if argon { p.memory_ki_b.unwrap_or(0) } else { 0 },
        parallelism: if argon { p.parallelism.unwrap_or(1) } else { 1 },
    }))
}

async fn blocking<T: Send + 'static>(
    device: &Arc<dyn LuksDevice>,
    f: impl FnOnce(&dyn LuksDevice) -> Result<T, DeviceError> + Send + 'static,
) -> Result<T, ConvergeError> {
    let dev = device.clone();
    Ok(tokio::task::spawn_blocking(move || f(dev.as_ref()))
        .await
        .expect("device task panicked")?)
}

/// Carries out `plan`. Every step is one header write (enrolling is a
/// keyslot write then a token write; a crash between them leaves a slot
/// without token, which the next run replaces or adopts).
async fn execute(
    spec: &VolumeSpec,
    plan: &mut Plan,
    keys: &[Key],
    header: Option<&Luks2Header>,
    vk: &VolumeKey,
    device: &Arc<dyn LuksDevice>,
) -> Result<(), ConvergeError> {
    let binder = Binder::new(vk);
    let key_for = |slot: u32| {
        keys.iter()
            .find(|k| k.spec.slot == slot)
            .expect("plan names configured slots")
    };
    let old_token = |slot: u32| -> Option<u32> {
        let h = header?;
        h.tokens()
            .find(
                |(_, raw)| matches!(VolctlToken::parse(raw), Some(Ok(t)) if t.slot() == Some(slot)),
            )
            .map(|(id, _)| id)
    };
    // Make every new key before writing anything: a key whose source is
    // down (KMS unreachable, TPM missing) is reported and its slot left as
    // it is, and a blank device is never formatted without a key.
    let mut enrolled = std::collections::BTreeMap::new();
    let mut skipped = Vec::new();
    for action in &plan.actions {
        if let Action::Add { slot, kind, .. } | Action::Replace { slot, kind, .. } = action {
            let key = key_for(*slot);
            match key.provider.enroll(&key.ctx).await {
                Ok(e) => {
                    enrolled.insert(*slot, e);
                }
                Err(e) => {
                    tracing::warn!(volume = %spec.name, slot, "cannot enrol: {e}");
                    skipped.push(Note::Unavailable {
                        slot: *slot,
                        kind: kind.clone(),
                        reason: e.to_string(),
                    });
                }
            }
        }
    }
    if !skipped.is_empty() {
        plan.actions.retain(|a| !matches!(a, Action::Add { slot, .. } | Action::Replace { slot, .. } if !enrolled.contains_key(slot)));
        plan.notes.extend(skipped);
        if plan.actions.first() == Some(&Action::Format) && enrolled.is_empty() {
            return Err(PlanError::NothingToEnrol(
                "no key could be made; nothing was written".into(),
            )
            .into());
        }
    }
    for action in plan.actions.clone() {
        tracing::info!(volume = %spec.name, ?action, "executing");
        match action {
            Action::Format => {
                let params = FormatParams {
                    cipher: spec.encryption.cipher().to_string(),
                    sector_size: spec.encryption.block_size.unwrap_or(0),
                    label: spec.label.clone(),
                    pbkdf: config_pbkdf(spec).unwrap_or(PbkdfChoice::Benchmark),
                };
                let vk = vk.clone();
                blocking(device, move |d| d.format(&params, &vk)).await?;
            }
            Action::Add { slot, .. } => {
                let e = enrolled.remove(&slot).expect("enrolled above");
                add_slot(spec, key_for(slot), e, vk, &binder, device).await?;
            }
            Action::Replace { slot, .. } => {
                let e = enrolled.remove(&slot).expect("enrolled above");
                blocking(device, move |d| d.destroy_keyslot(slot)).await?;
                if let Some(t) = old_token(slot) {
                    blocking(device, move |d| d.remove_token(t)).await?;
                }
                add_slot(spec, key_for(slot), e, vk, &binder, device).await?;
            }
            Action::WriteToken { slot, .. } => {
                let key = key_for(slot);
                let data = header
                    .and_then(|h| {
                        h.tokens().find_map(|(_, raw)| {
                            VolctlToken::parse(raw)?
                                .ok()
                                .filter(|t| t.slot() == Some(slot))
                        })
                    })
                    .map(|t| t.data)
                    .unwrap_or_else(|| serde_json::json!({}));
                let json = token_json(key, data, &binder)?;
                let id = old_token(slot);
                blocking(device, move |d| d.set_token(id, &json)).await?;
            }
            Action::Remove { slot, .. } => {
                blocking(device, move |d| d.destroy_keyslot(slot)).await?;
                if let Some(t) = old_token(slot) {
                    blocking(device, move |d| d.remove_token(t)).await?;
                }
            }
            Action::RemoveOrphanToken { token } => {
                blocking(device, move |d| d.remove_token(token)).await?;
            }
        }
    }
    Ok(())
}

fn token_json(
    key: &Key,
    data: serde_json::Value,
    binder: &Binder,
) -> Result<serde_json::Value, ConvergeError> {
    let slot = key.spec.slot;
    let material = key
        .provider
        .binding_material(&key.ctx)
        .map_err(|source| ConvergeError::Provider { slot, source })?;
    let binding = binder.compute(
        slot,
        key.spec.kind.name(),
        key.spec.lock_to_state,
        material.expose(),
    );
    let token = VolctlToken::new(
        slot,
        key.spec.kind.name(),
        key.spec.lock_to_state,
        data,
        binding,
    );
    Ok(serde_json::to_value(token).expect("token serialises"))
}

/// Writes an enrolled key to its (empty) slot: keyslot first, then its token.
async fn add_slot(
    spec: &VolumeSpec,
    key: &Key,
    enrolled: providers::Enrolled,
    vk: &VolumeKey,
    binder: &Binder,
    device: &Arc<dyn LuksDevice>,
) -> Result<(), ConvergeError> {
    let slot = key.spec.slot;
    let json = token_json(key, enrolled.token_data, binder)?;
    let pbkdf = pbkdf_for_new_slot(spec, device);
    let (vk, pass) = (vk.clone(), enrolled.passphrase);
    blocking(device, move |d| {
        d.add_keyslot(slot, &vk, pass.expose(), pbkdf)
    })
    .await?;
    blocking(device, move |d| d.set_token(None, &json)).await?;
    Ok(())
}
