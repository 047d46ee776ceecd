//! STATE's phases: its encryption config chosen, STATE brought up at its
//! staging point (salt, the config in force, STATE re-converged to it, the
//! META mirror), and, last of the boot, moved into place.

use super::context::Boot;
use super::source::{self, ConfigSource};
use super::volume::{self, VolumeDef};
use super::{layout, maintenance, state, write_status, BootError, PhaseFuture, Until};
use crate::node::meta::{self, TAG_STATE_ENCRYPTION};
use crate::node::status::{BootStatus, Phase};
use api_types::{Document, Encryption};
use std::path::Path;

/// Chooses STATE's encryption config: given, META's copy, or (nothing at
/// all and a blank STATE) delivered in maintenance mode.
pub(super) fn choose<'a>(b: &'a mut Boot<'_>) -> PhaseFuture<'a> {
    Box::pin(async move {
        let parts = b.snap.by_label()?;
        let (given, host) = (b.given.take(), b.host.clone());
        let meta = b.meta()?.cloned();
        let choice = state::choose(b.opts, &*host, given, (&parts, meta.as_ref())).await?;
        if let (ConfigSource::Maintenance, Some((docs, _))) = (choice.source, &choice.given) {
            // Delivered only now: its partitions (STATE's too) are laid out
            // as a config given at boot would have been.
            layout::lay_out(b, docs);
        }
        b.state_target = choice.def.mount.clone();
        b.state = Some(choice);
        Ok(())
    })
}

/// Brings STATE up at the staging point; then takes the salt and the
/// config in force from it and converges STATE itself to that config.
/// When STATE does not come up, the config given at boot (if any) is the
/// one in force for the other volumes.
pub(super) fn bring_up<'a>(b: &'a mut Boot<'_>) -> PhaseFuture<'a> {
    Box::pin(async move {
        let choice = b.state.take().expect("the STATE choice comes first");
        let parts = b.snap.by_label()?;
        // Mounted even when the boot only opens volumes: its salt and
        // config are read from it (it is unmounted again last).
        let staged = VolumeDef {
            mount: b.staging.clone(),
            until: Until::Mounted,
            ..choice.def.clone()
        };
        let host = b.host.clone();
        let (st, opened) = volume::open(&host, &staged, parts.get("STATE"), &b.env).await;
        let st = volume::finish(&*host, &staged, None, st, opened);
        let (ready, created) = (st.phase == Phase::Ready, st.created);
        b.status.volumes.push(st);
        if !ready {
            b.status.config_source = choice.source.to_string();
            b.docs = choice.given.map(|(d, _)| d);
            return Ok(());
        }
        b.env.state_salt = state::salt(&b.staging, created)?;
        let (source, docs) = config_in_force(b, choice.given, choice.source).await?;
        b.status.config_source = source.to_string();
        if let Some(d) = &docs {
            let want = d
                .iter()
                .find(|d| d.is_state())
                .and_then(|d| d.encryption().cloned());
            if want != choice.def.encryption {
                state::reconverge(&*host, &mut b.status.volumes[0], want.as_ref(), &b.env).await;
            }
            if want != choice.meta {
                mirror_to_meta(b, want.as_ref())?;
            }
        }
        b.docs = docs;
        Ok(())
    })
}

/// Mirrors STATE's encryption config to META when META holds another.
fn mirror_to_meta(b: &mut Boot<'_>, want: Option<&Encryption>) -> Result<(), BootError> {
    let change = b
        .meta()?
        .and_then(|m| meta::state_encryption_change(m, want));
    if let Some(value) = change {
        b.set_meta(TAG_STATE_ENCRYPTION, value)?;
        tracing::info!("STATE encryption config mirrored to META");
    }
    Ok(())
}

/// The config in force, read from STATE: the one given at boot (stored),
/// a staged one (promoted), the applied one, or one delivered in
/// maintenance mode when STATE holds none.
async fn config_in_force(
    b: &mut Boot<'_>,
    given: Option<(Vec<Document>, String)>,
    source: ConfigSource,
) -> Result<(ConfigSource, Option<Vec<Document>>), BootError> {
    let staging = b.staging.clone();
    if let Some((d, text)) = given {
        source::store_config(&staging, &text)?;
        return Ok((source, Some(d)));
    }
    match source::promote_pending(&staging) {
        Ok(Some(d)) => return Ok((ConfigSource::Promoted, Some(d))),
        Ok(None) => {}
        Err(e) => return Ok((source, problem(&mut b.status, e))),
    }
    match source::read_state_config(&staging) {
        Ok(d) => Ok((source, Some(d))),
        Err(BootError::NoConfig) => {
            let (d, text) = maintenance::wait_for_config(b.opts, "STATE holds no config").await?;
            source::store_config(&staging, &text)?;
            Ok((ConfigSource::Maintenance, Some(d)))
        }
        Err(e) => Ok((source, problem(&mut b.status, e))),
    }
}

/// Reports `e` as a boot problem: no config is in force.
fn problem(status: &mut BootStatus, e: BootError) -> Option<Vec<Document>> {
    status.problems.push(e.to_string());
    None
}

/// Moves STATE from its staging point to its place, last (nothing mounted
/// later can hide it), or unmounts it when the boot only opens volumes;
/// writes the status.
pub(super) fn place<'a>(b: &'a mut Boot<'_>) -> PhaseFuture<'a> {
    Box::pin(async move {
        if !b.status.volumes.is_empty() {
            let target = match b.opts.until {
                Until::Mounted => Some(Path::new(&b.state_target)),
                Until::Opened => None,
            };
            state::place(&*b.host, &mut b.status, &b.staging, target);
        }
        write_status(b.opts, &b.status)
    })
}
