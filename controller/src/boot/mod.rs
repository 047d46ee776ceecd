//! The boot sequence: find volumes by GPT label, bring STATE up first (its
//! encryption config comes from `-f` or from META), take the salt and the
//! applied config from STATE, then bring up EPHEMERAL, persistence and user
//! volumes — unlocking and converging concurrently (bounded), mounting in
//! order — and write a status file.
//!
//! - [`volume`]: one volume's phases and the error policy;
//! - [`state`]: STATE's config choice, salt, re-converge, META mirror;
//! - [`source`]: where the config in force comes from; STATE's config files;
//! - [`maintenance`]: waiting in maintenance mode (the hand-off is `node::maintenance`);
//! - [`windows`]: the node API windows the boot asks for (served by `serve/`);
//!
//! A volume that cannot come up is reported with its phase and reason; the
//! others still come up. Nothing that holds data is ever formatted.

mod existing;
pub mod maintenance;
pub mod source;
mod state;
#[cfg(test)]
mod tests;
mod unlock;
mod volume;
pub mod windows;

pub use source::ConfigSource;

use crate::node::disks::{self, DiskError, Partition};
use crate::node::meta::MetaError;
use crate::node::status::{BootStatus, Phase, VolumeStatus};
use api_types::Document;
use providers::{ProviderEnv, RecoveryHandover};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use volume::VolumeDef;

/// What `volctl boot` was asked to do.
#[derive(Debug, Clone)]
pub struct BootOptions {
    /// The node: disks to search (empty: every disk of the system), the
    /// status file to write, the node UUID, KMS and TPM access. Its
    /// reboot command is `false`: the boot never reboots on request.
    pub node: crate::node::context::NodeContext,
    /// Config files given at boot (empty: use STATE's).
    pub config_files: Vec<PathBuf>,
    /// STATE's mount point.
    pub state_mount: PathBuf,
    /// How many volumes may unlock at once (argon2 memory bound).
    pub parallel: usize,
    /// How long maintenance mode waits for a config (`None`: for ever).
    pub maintenance_timeout: Option<std::time::Duration>,
    /// Where the boot serves the node API while it waits for a person:
    /// maintenance mode (a config) and typed keys (remote unlock). `None`:
    /// only local answers.
    pub api: Option<windows::ApiListen>,
    /// A 0600 file, made before the boot, that receives recovery keys the
    /// boot enrols; without it no recovery key is enrolled at boot.
    pub recovery_key_out: Option<PathBuf>,
    /// How to ask a person for typed keys (`None`: nobody to ask).
    pub asker: Option<providers::ask::AskerHandle>,
}

impl BootOptions {
    /// The node as the node API's handlers see it while the boot serves
    /// them (maintenance, remote unlock); the boot never reboots on request.
    pub(crate) fn node_context(&self) -> crate::node::context::NodeContext {
        self.node.clone()
    }
}

/// Errors that stop the whole boot.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// Disks could not be read.
    #[error(transparent)]
    Disks(#[from] DiskError),
    /// The config is invalid.
    #[error("the config is invalid:\n{0}")]
    Config(#[from] crate::node::config_files::InvalidConfig),
    /// META could not be read.
    #[error(transparent)]
    Meta(#[from] MetaError),
    /// META's record of STATE's encryption config does not parse.
    #[error("META's STATE encryption config is unreadable: {0}")]
    MetaConfig(serde_json::Error),
    /// No config anywhere and STATE is blank.
    #[error("no config: none given with -f, no STATE encryption config on META, STATE holds none, and none arrived in maintenance mode")]
    NoConfig,
    /// I/O error.
    #[error("{0}")]
    Io(String),
}

/// Runs the boot sequence.
pub async fn boot(opts: &BootOptions) -> Result<BootStatus, BootError> {
    crate::inplace::show_progress_on(crate::node::console::write);
    let disks = disks::given_or_system(&opts.node.disks);
    let mut status = BootStatus::default();
    // A `reset --reboot` whose volume was in use left its wipe for now.
    match crate::reset::pending_wipes(&disks) {
        Ok(done) => status.wiped = done,
        Err(e) => status
            .problems
            .push(format!("a wipe left by reset --reboot failed: {e}")),
    }
    // The `-f` files, parsed once: an error in them stops the boot.
    let given = source::load_files(&opts.config_files)?;
    if let Some((docs, _)) = &given {
        // A config given at boot may ask for STATE itself: lay it out first.
        lay_out(&disks, docs, &mut status);
    }
    let parts = disks::by_label(&disks)?;
    let choice = state::choose(opts, given, &parts).await?;
    // STATE is mounted at a staging point first and moved to its place last,
    // so that a volume mounted above it (EPHEMERAL at /var) cannot hide it.
    let staging = crate::node::paths::run_dir(&opts.node.status_file).join("staging-STATE");
    let mut env = ProviderEnv {
        recovery_handover: match opts.recovery_key_out {
            Some(_) => RecoveryHandover::Person,
            None => RecoveryHandover::Held,
        },
        asker: opts.asker.clone(),
        node_uuid: opts.node.node_uuid.clone(),
        state_salt: None,
        kms: opts.node.kms.clone(),
        tpm: opts.node.tpm.clone(),
    };
    let target = choice.def.mount.clone();
    let (source, docs) =
        bring_up_state(opts, &parts, choice, &staging, &mut env, &mut status).await?;
    status.config_source = source.to_string();
    if let Some(docs) = docs {
        // The config in force (perhaps STATE's own) may ask for more volumes.
        lay_out(&disks, &docs, &mut status);
        let parts = disks::by_label(&disks)?;
        bring_up_others(opts, &parts, &docs, env, &staging, &mut status).await?;
    }
    state::place(&mut status, &staging, &target);
    write_status(opts, &status)?;
    Ok(status)
}

/// Creates the partitions `docs` ask for that no disk has yet; what was
/// done goes to the status, and a volume that fits nowhere becomes a
/// problem (its volume is then reported missing, the others go on).
fn lay_out(disks: &[PathBuf], docs: &[Document], status: &mut BootStatus) {
    match crate::provision::provision(docs, disks) {
        Ok(actions) => status
            .partitions_created
            .extend(actions.iter().map(ToString::to_string)),
        Err(e) => status.problems.push(e.to_string()),
    }
}

/// Brings STATE up at `staging`; then takes the salt and the config in
/// force from it and converges STATE itself to that config.
async fn bring_up_state(
    opts: &BootOptions,
    parts: &BTreeMap<String, Partition>,
    choice: state::StateChoice,
    staging: &Path,
    env: &mut ProviderEnv,
    status: &mut BootStatus,
) -> Result<(ConfigSource, Option<Vec<Document>>), BootError> {
    let staged = VolumeDef {
        mount: staging.to_path_buf(),
        ..choice.def.clone()
    };
    let (st, opened) = volume::open(&staged, parts.get("STATE"), env).await;
    let st = volume::finish(&staged, st, opened);
    let (ready, created) = (st.phase == Phase::Ready, st.created);
    status.volumes.push(st);
    if !ready {
        return Ok((choice.source, choice.given.map(|(d, _)| d)));
    }
    env.state_salt = state::salt(staging, created)?;
    let (source, docs) =
        config_in_force(opts, staging, choice.given, choice.source, status).await?;
    if let Some(d) = &docs {
        let want = d
            .iter()
            .find(|d| d.is_state())
            .and_then(|d| d.encryption().cloned());
        if want != choice.def.encryption {
            state::reconverge(&mut status.volumes[0], want.as_ref(), env).await;
        }
        state::sync_meta(parts, want.as_ref(), choice.meta.as_ref())?;
    }
    Ok((source, docs))
}

/// The config in force, read from STATE: the one given at boot (stored),
/// a staged one (promoted), the applied one, or one delivered in
/// maintenance mode when STATE holds none.
async fn config_in_force(
    opts: &BootOptions,
    staging: &Path,
    given: Option<(Vec<Document>, String)>,
    source: ConfigSource,
    status: &mut BootStatus,
) -> Result<(ConfigSource, Option<Vec<Document>>), BootError> {
    if let Some((d, text)) = given {
        source::store_config(staging, &text)?;
        return Ok((source, Some(d)));
    }
    match source::promote_pending(staging) {
        Ok(Some(d)) => return Ok((ConfigSource::Promoted, Some(d))),
        Ok(None) => {}
        Err(e) => {
            status.problems.push(e.to_string());
            return Ok((source, None));
        }
    }
    match source::read_state_config(staging) {
        Ok(d) => Ok((source, Some(d))),
        Err(BootError::NoConfig) => {
            let (d, text) = maintenance::wait_for_config(opts, "STATE holds no config").await?;
            source::store_config(staging, &text)?;
            Ok((ConfigSource::Maintenance, Some(d)))
        }
        Err(e) => {
            status.problems.push(e.to_string());
            Ok((source, None))
        }
    }
}

/// Everything but STATE: unlocked concurrently (bounded: argon2 takes
/// memory), then mounted in order (EPHEMERAL at /var before user volumes).
async fn bring_up_others(
    opts: &BootOptions,
    parts: &BTreeMap<String, Partition>,
    docs: &[Document],
    env: ProviderEnv,
    state: &Path,
    status: &mut BootStatus,
) -> Result<(), BootError> {
    let (on_partitions, others): (Vec<&Document>, Vec<&Document>) = docs
        .iter()
        .filter(|d| !d.is_state())
        .partition(|d| d.managed());
    status.volumes.extend(others.into_iter().map(not_managed));
    let (existing, on_partitions): (Vec<&Document>, Vec<&Document>) = on_partitions
        .into_iter()
        .partition(|d| matches!(d, Document::Existing(_)));
    let mut defs: Vec<VolumeDef> = on_partitions
        .into_iter()
        .map(|d| VolumeDef::from_doc(d, &opts.state_mount).for_boot(opts))
        .collect();
    defs.sort_by_key(|d| (order(&d.name, d.label.starts_with("u-")), d.name.clone()));
    // Volumes only a person can open come last, one question at a time, so
    // the others are up (and the status says who is waiting) meanwhile.
    let (typed, unattended): (Vec<VolumeDef>, Vec<VolumeDef>) =
        defs.into_iter().partition(VolumeDef::typed_only);
    let env = Arc::new(env);
    status
        .volumes
        .extend(open_all(unattended, parts, &env, opts.parallel).await?);
    if !typed.is_empty() {
        bring_up_typed(opts, parts, typed, &env, state, status).await?;
    }
    // Existing volumes last: one may live on a disk another volume just opened.
    let disks = disks::given_or_system(&opts.node.disks);
    for doc in existing {
        if let Document::Existing(e) = doc {
            status.volumes.push(existing::bring_up(e, &disks));
        }
    }
    Ok(())
}

/// The volumes only a person can open: the status says they wait for their
/// key (the others are up by now), then they are asked for one at a time,
/// on the node API too while the round lasts (when STATE holds its
/// certificate).
async fn bring_up_typed(
    opts: &BootOptions,
    parts: &BTreeMap<String, Partition>,
    typed: Vec<VolumeDef>,
    env: &ProviderEnv,
    state: &Path,
    status: &mut BootStatus,
) -> Result<(), BootError> {
    let asking = status.volumes.len();
    status.volumes.extend(typed.iter().map(volume::waiting));
    write_status(opts, status)?;
    status.volumes.truncate(asking);
    let remote = unlock::window(opts, state);
    let env = Arc::new(unlock::with_remote(env, remote.as_ref()));
    status
        .volumes
        .extend(open_all(typed, parts, &env, 1).await?);
    Ok(())
}

/// Opens `defs` (at most `parallel` unlocking at once), then mounts them in
/// order.
async fn open_all(
    defs: Vec<VolumeDef>,
    parts: &BTreeMap<String, Partition>,
    env: &Arc<ProviderEnv>,
    parallel: usize,
) -> Result<Vec<VolumeStatus>, BootError> {
    let sem = Arc::new(tokio::sync::Semaphore::new(parallel.max(1)));
    let mut tasks = Vec::new();
    for def in defs {
        let part = parts.get(&def.label).cloned();
        let (sem, env) = (sem.clone(), env.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await.expect("semaphore open");
            let (st, opened) = volume::open(&def, part.as_ref(), &env).await;
            (def, st, opened)
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        let (def, st, opened) = t
            .await
            .map_err(|e| BootError::Io(format!("volume task failed: {e}")))?;
        out.push(volume::finish(&def, st, opened));
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

fn write_status(opts: &BootOptions, status: &BootStatus) -> Result<(), BootError> {
    status
        .save(&opts.node.status_file)
        .map_err(|e| BootError::Io(format!("writing {}: {e}", opts.node.status_file.display())))
}
