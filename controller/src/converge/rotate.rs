//! `volctl rotate-volume-key`: the data re-encrypted to a new volume key,
//! offline, every configured key working before, during and after.
//!
//! 1. The volume is unlocked and must be converged: every keyslot is a
//!    configured one (a slot volctl cannot enrol again would be lost) and
//!    every configured key can be produced now (a typed key other than the
//!    one just typed cannot: refused before anything is written).
//! 2. In a copy of the header: beside each configured slot, the old key
//!    under the same passphrase in a temporary keyslot; the configured slot
//!    enrolled again (same slot, same passphrase) with the new key; the
//!    tokens (new bindings, and the proof, keyed by the new key); the
//!    reencryption recorded. The copy replaces the header (secondary copy
//!    first): cut before, the old header is whole.
//! 3. The reencryption runs (`checksum` resilience). Every configured key
//!    opens the volume throughout (with the old key beside it, as
//!    libcryptsetup needs during a rotation), so a cut run resumes from
//!    whichever opens it; at the end libcryptsetup drops the old key's
//!    keyslots, and volctl the proof. Each key costs two KDF runs.

use super::execute::{token_parts, Executor, TokenParts};
use super::in_place::header_tokens;
use super::keys::Key;
use super::plan::{Action, Plan, Reencryption};
use super::ran::{Ran, RunAt};
use super::{blocking, outcome, random_bytes, ConvergeError, Mode, Outcome, Prepared};
use crate::device::{LuksDevice, RotationStart};
use crate::luks2::binding::{Binder, VolumeKey};
use crate::luks2::header::Luks2Header;
use crate::luks2::reencryption::{Operation, TemporarySlot};
use crate::volume::VolumeSpec;
use api_types::KeyslotId;
use providers::{Passphrase, ProviderEnv};
use std::sync::Arc;

/// Rotates the volume key of the volume on `device`; `mode` `DryRun`
/// plans only (one KDF run, nothing written).
pub async fn rotate_volume_key(
    spec: &VolumeSpec,
    device: Arc<dyn LuksDevice>,
    env: &ProviderEnv,
    mode: Mode,
    run_at: RunAt,
) -> Result<Outcome, ConvergeError> {
    let super::Existing {
        kdf_before,
        keys,
        desired,
        header: h,
    } = super::existing(spec, &device, env, refused).await?;
    let temporary = free_slots(&h, &keys)?;
    // Preparing unlocks the volume: one KDF run, timed for the estimate.
    let started = std::time::Instant::now();
    let mut p = super::prepare_existing(spec, h.clone(), &keys, &desired, &device, env).await?;
    let one_kdf = started.elapsed();
    ensure_converged(&p.plan, &h, &keys)?;
    let passphrases = produce(&keys, &h, &p).await?;
    let size = blocking(&device, |d| d.size()).await?;
    p.plan = rotation_plan(spec, &h, (&keys, one_kdf), size, mode);
    let (mut encrypted, mut online) = (None, None);
    if mode == Mode::Apply {
        let new_key = VolumeKey::new(random_bytes(spec.encryption.key_size().len()));
        start(
            spec,
            &keys,
            &h,
            &p,
            &device,
            &passphrases,
            &new_key,
            temporary,
        )
        .await?;
        let first = passphrases.into_iter().next();
        match finish(spec, &keys, &device, &new_key, first, run_at).await? {
            Ran::Done(e) | Ran::Rewritten(e) => encrypted = Some(e),
            Ran::Online(run) => online = Some(run),
        }
    }
    let o = outcome(spec, &device, Some(&h), kdf_before, mode).await?;
    Ok(Outcome {
        unlocked_by: p.unlocked_by,
        plan: p.plan,
        applied: mode == Mode::Apply,
        encrypted,
        online,
        ..o
    })
}

/// The KDF runs a rotation costs: its unlock, two a key (the old key in a
/// temporary slot, the new one in the configured slot), and libcryptsetup's
/// two to start and to run the reencryption (measured: 7 for two keys).
fn rotation_kdf_runs(keys: usize) -> u32 {
    u32::try_from(keys).unwrap_or(u32::MAX / 4) * 2 + 3
}

/// The one action: which slots are enrolled again, how much is rewritten
/// (with an estimate for a plan: the data at the cipher's speed here, and
/// the rotation's KDF runs, each as long as the plan's unlock).
fn rotation_plan(
    spec: &VolumeSpec,
    h: &Luks2Header,
    (keys, one_kdf): (&[Key], std::time::Duration),
    size: u64,
    mode: Mode,
) -> Plan {
    let data = size.saturating_sub(h.data_offset().unwrap_or(0));
    let kdf_runs = rotation_kdf_runs(keys.len());
    let kdf = one_kdf * kdf_runs;
    let kdf_seconds = kdf.as_secs() + u64::from(kdf.subsec_nanos() > 0);
    Plan {
        actions: vec![Action::RotateVolumeKey {
            slots: keys.iter().map(|k| k.spec.slot).collect(),
            work: Reencryption {
                filesystem: None,
                shrink_mib: 0,
                data_mib: data >> 20,
                eta_seconds: (mode == Mode::DryRun)
                    .then(|| super::eta(spec, data).map(|s| s + kdf_seconds))
                    .flatten(),
            },
        }],
        notes: vec![],
    }
}

fn refused(why: &str) -> ConvergeError {
    ConvergeError::Refused(format!(
        "cannot rotate the volume key: {why}; nothing was written"
    ))
}

/// A keyslot neither in use nor configured for each configured key.
fn free_slots(h: &Luks2Header, keys: &[Key]) -> Result<Vec<KeyslotId>, ConvergeError> {
    let taken = h.occupied_slots();
    let free: Vec<KeyslotId> = (0..KeyslotId::COUNT)
        .rev()
        .filter_map(KeyslotId::new)
        .filter(|s| !taken.contains(s) && keys.iter().all(|k| k.spec.slot != *s))
        .take(keys.len())
        .collect();
    if free.len() < keys.len() {
        return Err(refused(&format!(
            "it needs {} free keyslots for the old key beside each configured one",
            keys.len()
        )));
    }
    Ok(free)
}

/// Nothing to converge, and no keyslot the config does not list.
fn ensure_converged(plan: &Plan, h: &Luks2Header, keys: &[Key]) -> Result<(), ConvergeError> {
    let worth_a_look = plan
        .notes
        .iter()
        .any(|n| !matches!(n, super::plan::Note::Opened { .. }));
    if !plan.actions.is_empty() || worth_a_look {
        return Err(refused(
            "the volume is not converged (run `volctl converge` first, and look at its notes)",
        ));
    }
    if let Some(extra) = h
        .keyslot_numbers()
        .into_iter()
        .find(|s| keys.iter().all(|k| k.spec.slot != *s))
    {
        return Err(refused(&format!(
            "keyslot {extra} is not in the config, and a rotation keeps only keys it can enrol again"
        )));
    }
    Ok(())
}

/// Every configured key's passphrase, before anything is written: the one
/// that opened the volume, the others from their providers.
async fn produce(
    keys: &[Key],
    h: &Luks2Header,
    p: &Prepared,
) -> Result<Vec<(KeyslotId, Passphrase)>, ConvergeError> {
    let mut out = Vec::new();
    for key in keys {
        let slot = key.spec.slot;
        let pass = match &p.unlock {
            Some((opened, pass)) if *opened == slot => pass.clone(),
            _ => {
                let data = h.volctl_token_data(slot).key;
                key.provider.recover(&key.ctx, &data).await.map_err(|e| {
                    refused(&format!(
                        "the key of slot {slot} cannot be produced now ({e})"
                    ))
                })?
            }
        };
        out.push((slot, pass));
    }
    Ok(out)
}

/// Writes the rotation's header (see the module docs).
#[allow(clippy::too_many_arguments)]
async fn start(
    spec: &VolumeSpec,
    keys: &[Key],
    h: &Luks2Header,
    p: &Prepared,
    device: &Arc<dyn LuksDevice>,
    passphrases: &[(KeyslotId, Passphrase)],
    new_key: &VolumeKey,
    temporary: Vec<KeyslotId>,
) -> Result<(), ConvergeError> {
    let binder = Binder::new(new_key);
    let parts = keys
        .iter()
        .map(|k| token_parts(k, k.spec.slot, h.volctl_token_data(k.spec.slot), &binder))
        .collect::<Result<Vec<TokenParts>, _>>()?;
    let pbkdf = super::pbkdf::for_new_slot(spec, Some(h));
    let (old_key, new_key) = (p.volume_key.clone(), new_key.clone());
    let passphrases = passphrases.to_vec();
    blocking(device, move |d| {
        let temp: Vec<TemporarySlot> = temporary
            .iter()
            .zip(&parts)
            .map(|(slot, p)| TemporarySlot {
                slot: *slot,
                of: p.slot,
            })
            .collect();
        let tokens = |h: &Luks2Header| {
            header_tokens(
                h,
                &parts,
                &new_key,
                Operation::RotateVolumeKey,
                temp.clone(),
            )
        };
        let pairs: Vec<(KeyslotId, &[u8])> =
            passphrases.iter().map(|(s, p)| (*s, p.expose())).collect();
        d.start_rotation(&RotationStart {
            old_key: &old_key,
            new_key: &new_key,
            keys: &pairs,
            pbkdf,
            temporary: &temporary,
            tokens: &tokens,
        })
    })
    .await
}

/// Runs the recorded rotation to its end by `first` (a configured key),
/// or leaves it to run online.
async fn finish(
    spec: &VolumeSpec,
    keys: &[Key],
    device: &Arc<dyn LuksDevice>,
    new_key: &VolumeKey,
    first: Option<(KeyslotId, Passphrase)>,
    run_at: RunAt,
) -> Result<Ran, ConvergeError> {
    let executor = Executor {
        spec,
        keys,
        header: None,
        volume_key: new_key,
        device,
        premade: Default::default(),
        tokens: Default::default(),
        unlock: None,
        encrypted: None,
        run_at,
        online: None,
        header_rewritten: false,
    };
    executor.finish(Operation::RotateVolumeKey, first).await
}
