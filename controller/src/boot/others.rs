//! The volumes after STATE, from the config in force: those that open
//! unattended (unlocked concurrently, bounded: argon2 takes memory; then
//! mounted in order, EPHEMERAL at /var before user volumes), then those
//! only a person opens (one question at a time), then existing volumes
//! (one may live on a disk another volume just opened).

use super::context::Boot;
use super::volume::{self, VolumeDef};
use super::volume::{Backing, VolumeError};
use super::{directory, disk_volume, existing, unlock, write_status, BootError, PhaseFuture};
use crate::host::HostHandle;
use crate::node::disks::Partition;
use crate::node::status::{Phase, VolumeStatus};
use api_types::Document;
use providers::ProviderEnv;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The managed volumes on partitions, in mounting order, split into
/// (unattended, typed only).
fn volume_defs(b: &Boot<'_>, docs: &[Document]) -> (Vec<VolumeDef>, Vec<VolumeDef>) {
    let mut defs: Vec<VolumeDef> = docs
        .iter()
        .filter(|d| {
            !d.is_state()
                && (d.managed() || disk_volume::is_disk_volume(d))
                && !matches!(d, Document::Existing(_))
        })
        .map(|d| {
            let mut def = VolumeDef::from_doc(d, &b.opts.state_mount).for_boot(b.opts);
            // STATE stays at its staging point until every volume is up.
            def.decrypt_dir = b.staging.join("decrypt");
            def.decrypt_dir_placed = b.opts.state_mount.join("decrypt");
            def
        })
        .collect();
    defs.sort_by_key(|d| (order(&d.name, d.label.starts_with("u-")), d.name.clone()));
    defs.into_iter().partition(|d| !d.typed_only())
}

/// Volumes volctl does not act on are reported; the ones that open
/// unattended are opened (at most `--parallel` KDFs at once) and mounted.
pub(super) fn unattended<'a>(b: &'a mut Boot<'_>) -> PhaseFuture<'a> {
    Box::pin(async move {
        let Some(docs) = b.docs.clone() else {
            return Ok(());
        };
        let skipped = docs
            .iter()
            .filter(|d| !d.is_state() && !d.managed())
            .filter(|d| !directory::is_directory(d) && !disk_volume::is_disk_volume(d));
        b.status.volumes.extend(skipped.map(not_managed));
        let (defs, _) = volume_defs(b, &docs);
        let env = Arc::new(b.env.clone());
        let parallel = b.opts.parallel;
        open_into_status(b, defs, &env, parallel).await?;
        // Directory volumes, once EPHEMERAL is mounted.
        for d in docs.iter().filter(|d| directory::is_directory(d)) {
            let st = directory::bring_up(&*b.host, d, &b.status);
            b.status.volumes.push(st);
        }
        Ok(())
    })
}

/// The volumes only a person can open: the status says they wait for their
/// key (the others are up by now), then they are asked for one at a time,
/// on the node API too while the round lasts (when STATE holds its
/// certificate).
pub(super) fn typed<'a>(b: &'a mut Boot<'_>) -> PhaseFuture<'a> {
    Box::pin(async move {
        let Some(docs) = b.docs.clone() else {
            return Ok(());
        };
        let (_, typed) = volume_defs(b, &docs);
        if typed.is_empty() {
            return Ok(());
        }
        let asking = b.status.volumes.len();
        b.status.volumes.extend(typed.iter().map(volume::waiting));
        write_status(b.opts, &b.status)?;
        b.status.volumes.truncate(asking);
        let remote = unlock::window(b.opts, &b.staging);
        let env = Arc::new(unlock::with_remote(&b.env, remote.as_ref()));
        open_into_status(b, typed, &env, 1).await
    })
}

/// Existing volumes (`ExistingVolumeConfig`), found by their selectors on
/// the snapshot's disks. A given disk that could not be read at the start
/// (an image file on a volume this boot just mounted) is read again first.
pub(super) fn existing<'a>(b: &'a mut Boot<'_>) -> PhaseFuture<'a> {
    Box::pin(async move {
        let Some(docs) = b.docs.clone() else {
            return Ok(());
        };
        let wanted: Vec<_> = docs
            .iter()
            .filter(|d| d.managed())
            .filter_map(|d| match d {
                Document::Existing(e) => Some(e),
                _ => None,
            })
            .collect();
        if !wanted.is_empty() && !b.snap.unreadable.is_empty() {
            b.refresh();
        }
        for e in wanted {
            b.status
                .volumes
                .push(existing::bring_up(&*b.host, e, &b.snap));
        }
        Ok(())
    })
}

/// Opens `defs` on the snapshot's partitions (at most `parallel` unlocking
/// at once), mounts them in order, and adds their statuses.
async fn open_into_status(
    b: &mut Boot<'_>,
    defs: Vec<VolumeDef>,
    env: &Arc<ProviderEnv>,
    parallel: usize,
) -> Result<(), BootError> {
    let parts = b.snap.by_label()?;
    let places = defs.iter().map(|d| place(b, d, &parts)).collect();
    let opened = open_all(&b.host, defs, places, env, parallel).await?;
    b.status.volumes.extend(opened);
    Ok(())
}

/// Where `def` lives on the snapshot's disks: the partition carrying its
/// label (`None`: no such partition), or the whole disk its selector picks.
fn place(
    b: &Boot<'_>,
    def: &VolumeDef,
    parts: &BTreeMap<String, Partition>,
) -> Result<Option<Partition>, VolumeError> {
    match &def.backing {
        Backing::Partition => Ok(parts.get(&def.label).cloned()),
        Backing::WholeDisk { selector } => {
            Ok(Some(disk_volume::pick(&b.snap, selector, &def.label)?))
        }
    }
}

/// Opens `defs` at their `places` (at most `parallel` unlocking at once),
/// then mounts them in order.
async fn open_all(
    host: &HostHandle,
    defs: Vec<VolumeDef>,
    places: Vec<Result<Option<Partition>, VolumeError>>,
    env: &Arc<ProviderEnv>,
    parallel: usize,
) -> Result<Vec<VolumeStatus>, BootError> {
    let sem = Arc::new(tokio::sync::Semaphore::new(parallel.max(1)));
    let mut tasks = Vec::new();
    for (def, place) in defs.into_iter().zip(places) {
        let (sem, env, host) = (sem.clone(), env.clone(), host.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await.expect("semaphore open");
            let (st, opened) = match place {
                Ok(part) => volume::open(&host, &def, part.as_ref(), &env).await,
                Err(e) => (def.status(), Err(e)),
            };
            (def, st, opened)
        }));
    }
    let (mut out, mut ephemeral_down) = (Vec::new(), None);
    for t in tasks {
        let (def, st, opened) = t.await.map_err(BootError::Task)?;
        let st = volume::finish(&**host, &def, ephemeral_down.as_deref(), st, opened);
        // What would be mounted under a failed EPHEMERAL must not land on
        // the root filesystem instead (EPHEMERAL comes first).
        if def.name == "EPHEMERAL" && st.phase == Phase::Failed {
            ephemeral_down = Some(def.mount.clone());
        }
        out.push(st);
    }
    Ok(out)
}

/// The status of a volume whose `volumeType` volctl accepts but does not act on.
fn not_managed(doc: &Document) -> VolumeStatus {
    let mut st = VolumeStatus::new(
        doc.name(),
        &doc.partition_label(),
        doc.encryption().is_some(),
    );
    st.phase = Phase::NotManaged;
    st.error = Some(crate::volume::not_managed_reason(doc));
    st
}

fn order(name: &str, user: bool) -> u8 {
    match (name, user) {
        (_, true) => 3,
        ("EPHEMERAL", _) => 1,
        _ => 2,
    }
}
