//! The phases that change partition tables: wipes `reset --reboot` left,
//! and the partitions a config asks for. Each reads the disks through the
//! snapshot and refreshes it only when it wrote a table.

use super::context::Boot;
use super::{source, PhaseFuture};
use crate::node::facts::Disk;
use crate::provision::{self, Action};
use api_types::Document;

/// A `reset --reboot` whose volume was in use left its wipe for now.
pub(super) fn pending_wipes<'a>(b: &'a mut Boot<'_>) -> PhaseFuture<'a> {
    Box::pin(async move {
        let Some(meta) = b.meta()?.cloned() else {
            return Ok(());
        };
        match crate::reset::pending_wipes(&*b.host, &b.snap, &meta) {
            Ok(done) if done.is_empty() => {}
            Ok(done) => {
                b.status.wiped = done;
                b.forget_meta();
                b.refresh();
            }
            Err(e) => b
                .status
                .problems
                .push(format!("a wipe left by reset --reboot failed: {e}")),
        }
        Ok(())
    })
}

/// The `-f` files, parsed once (an error in them stops the boot); a config
/// given at boot may ask for STATE itself, so its partitions come first.
pub(super) fn given_config<'a>(b: &'a mut Boot<'_>) -> PhaseFuture<'a> {
    Box::pin(async move {
        b.given = source::load_files(&b.opts.config_files)?;
        if let Some(given) = b.given.take() {
            lay_out(b, &given.0);
            b.given = Some(given);
        }
        Ok(())
    })
}

/// The config in force (perhaps STATE's own) may ask for more volumes.
pub(super) fn config_in_force<'a>(b: &'a mut Boot<'_>) -> PhaseFuture<'a> {
    Box::pin(async move {
        if let Some(docs) = b.docs.take() {
            lay_out(b, &docs);
            b.docs = Some(docs);
        }
        Ok(())
    })
}

/// Creates the partitions `docs` ask for that no disk has yet; what was
/// done goes to the status (and the snapshot is read again), and a volume
/// that fits nowhere becomes a problem (its volume is then reported
/// missing, the others go on).
/// The partition actions for every volume of `docs` that fits; a volume
/// that fits nowhere is a problem, and the others are placed without it.
fn plan_what_fits(docs: &[Document], disks: &[Disk], problems: &mut Vec<String>) -> Vec<Action> {
    let mut requests = provision::requests(docs);
    loop {
        match provision::plan(&requests, disks) {
            Ok(actions) => return actions,
            Err(no_room) => {
                let before = requests.len();
                requests.retain(|r| r.label != no_room.label);
                problems.push(no_room.to_string());
                // Each round drops a request; one it cannot name ends it.
                if requests.len() == before {
                    return Vec::new();
                }
            }
        }
    }
}

pub(super) fn lay_out(b: &mut Boot<'_>, docs: &[Document]) {
    if let Some((disk, why)) = b.snap.unreadable.first() {
        b.status
            .problems
            .push(format!("cannot read disk {}: {why}", disk.display()));
        return;
    }
    let actions = plan_what_fits(docs, &b.snap.disks, &mut b.status.problems);
    if actions.is_empty() {
        return;
    }
    for a in &actions {
        tracing::info!("{a}");
        match b.host.write_table(a) {
            Ok(()) => b.status.partitions_created.push(a.to_string()),
            Err(e) => {
                b.status.problems.push(e.to_string());
                break;
            }
        }
    }
    b.refresh();
}
