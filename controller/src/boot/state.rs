//! STATE, brought up before anything else: which encryption config opens
//! it (the config given at boot wins over META's copy; none at all means
//! maintenance mode), its salt, re-converging it to the config in force
//! once that is read from STATE, mirroring its config to META, and moving
//! it from its staging mount to its place.

use super::source::ConfigSource;
use super::volume::VolumeDef;
use super::{maintenance, BootError, BootOptions};
use crate::converge::{converge_and_unlock, Mode, RunAt};
use crate::device::{Access, Contents};
use crate::host::Host;
use crate::node::disks::Partition;
use crate::node::meta::{Meta, TAG_STATE_ENCRYPTION};
use crate::node::paths::SALT_FILE;
use crate::node::status::{BootStatus, Phase, VolumeStatus};
use crate::node::{atomic, salt};
use crate::volume::VolumeSpec;
use api_types::{Document, Encryption};
use providers::{ProviderEnv, StateSalt, STATE_SALT_LEN};
use std::collections::BTreeMap;
use std::path::Path;

/// How STATE is opened this boot.
pub(super) struct StateChoice {
    /// STATE's definition (its encryption config).
    pub def: VolumeDef,
    /// Where the config comes from.
    pub source: ConfigSource,
    /// The config given at boot (or delivered in maintenance mode), and its text.
    pub given: Option<(Vec<Document>, String)>,
    /// STATE's encryption config as META holds it.
    pub meta: Option<Encryption>,
}

/// Chooses STATE's encryption config: the config given at boot, else
/// META's copy; with neither and a blank STATE, waits in maintenance mode.
pub(super) async fn choose(
    opts: &BootOptions,
    host: &dyn Host,
    mut given: Option<(Vec<Document>, String)>,
    (parts, meta): (&BTreeMap<String, Partition>, Option<&Meta>),
) -> Result<StateChoice, BootError> {
    let meta = meta.map(state_encryption).transpose()?.flatten();
    let mut source = ConfigSource::BootArgs;
    if given.is_none() && meta.is_none() && parts.get("STATE").is_none_or(|p| is_blank(host, p)) {
        given = Some(
            maintenance::wait_for_config(opts, "STATE is blank and no config was given").await?,
        );
        source = ConfigSource::Maintenance;
    }
    let def = match &given {
        Some((docs, _)) => docs
            .iter()
            .find(|d| d.is_state())
            .map(|d| VolumeDef::from_doc(d, &opts.state_mount).for_boot(opts))
            .unwrap_or_else(|| VolumeDef::state(None, &opts.state_mount).for_boot(opts)),
        None => {
            source = ConfigSource::Meta;
            VolumeDef::state(meta.clone(), &opts.state_mount).for_boot(opts)
        }
    };
    Ok(StateChoice {
        def,
        source,
        given,
        meta,
    })
}

/// STATE's encryption config as META holds it.
fn state_encryption(m: &Meta) -> Result<Option<Encryption>, BootError> {
    match m.records.get(&TAG_STATE_ENCRYPTION) {
        None => Ok(None),
        Some(v) => serde_json::from_slice(v)
            .map(Some)
            .map_err(BootError::MetaConfig),
    }
}

fn is_blank(host: &dyn Host, p: &Partition) -> bool {
    host.attach(p).is_ok_and(|o| holds_nothing(host, &o.path))
}

/// Whether the device holds nothing volctl must keep: blank, or the
/// remains of volctl's own first format cut short (asked of the device
/// seam, so both readings of "nothing" are the ones converge uses).
fn holds_nothing(host: &dyn Host, path: &Path) -> bool {
    host.luks(path, Access::ReadOnly, None)
        .and_then(|d| d.contents())
        .is_ok_and(|c| matches!(c, Contents::Blank | Contents::UnfinishedFormat(_)))
}

/// The STATE salt: made on a freshly formatted STATE, read otherwise.
pub(super) fn salt(state_mount: &Path, fresh: bool) -> Result<Option<StateSalt>, BootError> {
    let path = state_mount.join(SALT_FILE);
    if fresh {
        use rand::RngCore;
        let mut b = [0u8; STATE_SALT_LEN];
        rand::rngs::OsRng.fill_bytes(&mut b);
        atomic::write_private(&path, &b)
            .map_err(BootError::file("writing the STATE salt", &path))?;
        return Ok(Some(StateSalt::new(b)));
    }
    match salt::read_salt_file(&path) {
        Ok(s) => Ok(Some(s)),
        Err(e) => {
            tracing::warn!("{e}; lockToSTATE keys cannot be used this boot");
            Ok(None)
        }
    }
}

/// Converges STATE's keyslots to the config now in force (STATE was opened
/// with the keys known before its config could be read).
pub(super) async fn reconverge(
    host: &dyn Host,
    st: &mut VolumeStatus,
    want: Option<&Encryption>,
    env: &ProviderEnv,
) {
    let (Some(enc), Some(dev)) = (want, st.device.clone()) else {
        if want.is_some() != st.encrypted {
            st.error = Some("the config in force changes whether STATE is encrypted; that needs a wipe of STATE".into());
        }
        return;
    };
    let spec = VolumeSpec::new("STATE", "STATE", enc.clone());
    let converged = match host.luks(Path::new(&dev), Access::ReadWrite, Some(enc.clone())) {
        // STATE is active by now: a reencryption on it is left to the
        // online run the boot started (`RunAt::Online` hands it back, unrun).
        Ok(device) => converge_and_unlock(&spec, device, env, Mode::Apply, RunAt::Online).await,
        Err(e) => Err(e.into()),
    };
    match converged {
        Ok((o, _)) => {
            st.kdf_runs += o.kdf_runs;
            st.changes
                .extend(o.plan.actions.iter().map(ToString::to_string));
            st.keyslots = o.keyslots;
        }
        Err(e) => st.error = Some(format!("converging STATE to the config in force: {e}")),
    }
}

/// Moves STATE from its staging mount to its mount point.
pub(super) fn place(
    host: &dyn Host,
    status: &mut BootStatus,
    staging: &Path,
    target: Option<&Path>,
) {
    let st = &mut status.volumes[0];
    if st.phase != Phase::Ready {
        return;
    }
    let Some(target) = target else {
        // Only opened: the boot of the real root mounts it.
        match host.unmount(staging) {
            Ok(()) => {
                st.phase = Phase::Opened;
                st.mount_point = None;
            }
            Err(e) => st.error = Some(format!("STATE stays at {}: {e}", staging.display())),
        }
        return;
    };
    match host.move_mount(staging, target) {
        Ok(()) => st.mount_point = Some(target.display().to_string()),
        Err(e) => {
            st.error = Some(format!("STATE stays at {}: {e}", staging.display()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::holds_nothing;
    use crate::host::RealHost;
    use crate::luks2::consts::{FORMAT_MARK, FORMAT_MARK_FROM_END};
    use std::os::unix::fs::FileExt;

    fn image(dir: &tempfile::TempDir, name: &str, writes: &[(u64, &[u8])]) -> std::path::PathBuf {
        let p = dir.path().join(name);
        let f = std::fs::File::create(&p).unwrap();
        f.set_len(40 << 20).unwrap();
        for (at, bytes) in writes {
            f.write_all_at(bytes, *at).unwrap();
        }
        p
    }

    #[test]
    fn a_cut_first_format_counts_as_nothing_held_and_data_does_not() {
        let d = tempfile::tempdir().unwrap();
        let mark_at = (40 << 20) - FORMAT_MARK_FROM_END;
        assert!(holds_nothing(&RealHost, &image(&d, "blank", &[])));
        // libcryptsetup's random fill of the keyslot area, then the cut.
        let cut = image(
            &d,
            "cut",
            &[(32 << 10, &[0x5a; 4096]), (mark_at, FORMAT_MARK)],
        );
        assert!(holds_nothing(&RealHost, &cut));
        let data = image(&d, "data", &[(32 << 10, &[0x5a; 4096])]);
        assert!(!holds_nothing(&RealHost, &data));
        let ext4 = image(&d, "ext4", &[(1080, &[0x53, 0xef])]);
        assert!(!holds_nothing(&RealHost, &ext4));
    }
}
