//! The boot sequence: find volumes by GPT label, bring STATE up first (its
//! encryption config comes from `-f` or from META), take the salt and the
//! applied config from STATE, then bring up EPHEMERAL, persistence and user
//! volumes — unlocking and converging concurrently (bounded), mounting in
//! order — and write a status file.
//!
//! A volume that cannot come up is reported with its phase and reason; the
//! others still come up. Nothing that holds data is ever formatted.

use crate::converge::{converge_and_unlock, open_device, Mode};
use crate::device::{self, Access, ActivationOptions, Contents};
use crate::node::disks::{self, DiskError, OpenPartition, Partition};
use crate::node::meta::{self, MetaError, TAG_STATE_ENCRYPTION};
use crate::node::status::{BootStatus, Phase, VolumeStatus};
use crate::node::{atomic, fs, salt};
use crate::render::action_line;
use crate::volume::VolumeSpec;
use api_types::{Document, Encryption, FilesystemType};
use providers::{ProviderEnv, StateSalt, STATE_SALT_LEN};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Default STATE mount point.
pub const DEFAULT_STATE_MOUNT: &str = "/var/lib/volctl/state";
/// The salt file on STATE.
pub const SALT_FILE: &str = "encryption-salt";
/// The applied config on STATE.
pub const CONFIG_FILE: &str = "config.yaml";
/// A staged config on STATE, promoted at the next boot.
pub const PENDING_FILE: &str = "config.pending.yaml";
/// Marker next to the status file while boot waits in maintenance mode.
pub const MAINTENANCE_MARKER: &str = "maintenance";
/// Where `apply-config --insecure` drops the config in maintenance mode.
pub const MAINTENANCE_CONFIG: &str = "maintenance-config.yaml";
/// dm-crypt name prefix: `luks2-<label>`.
pub const DM_PREFIX: &str = "luks2-";

/// What `volctl boot` was asked to do.
#[derive(Debug, Clone)]
pub struct BootOptions {
    /// Disks to search (empty: every disk of the system).
    pub disks: Vec<PathBuf>,
    /// Config files given at boot (empty: use STATE's).
    pub config_files: Vec<PathBuf>,
    /// STATE's mount point.
    pub state_mount: PathBuf,
    /// Status file to write.
    pub status_file: PathBuf,
    /// Node UUID for nodeID keys, or why it is unknown.
    pub node_uuid: Result<String, String>,
    /// How many volumes may unlock at once (argon2 memory bound).
    pub parallel: usize,
    /// How long maintenance mode waits for a config (`None`: for ever).
    pub maintenance_timeout: Option<std::time::Duration>,
    /// How to reach KMS servers.
    pub kms: providers::KmsClientOptions,
    /// Where the TPM is.
    pub tpm: providers::TpmOptions,
}

/// Errors that stop the whole boot.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// Disks could not be read.
    #[error(transparent)]
    Disks(#[from] DiskError),
    /// The config is invalid.
    #[error("the config is invalid:\n{0}")]
    Config(String),
    /// META could not be read.
    #[error(transparent)]
    Meta(#[from] MetaError),
    /// No config anywhere and STATE is blank.
    #[error("no config: none given with -f, no STATE encryption config on META, STATE holds none, and none arrived in maintenance mode")]
    NoConfig,
    /// I/O error.
    #[error("{0}")]
    Io(String),
}

/// One volume to bring up.
#[derive(Debug, Clone)]
struct VolumeDef {
    name: String,
    label: String,
    encryption: Option<Encryption>,
    fs: FilesystemType,
    mount: PathBuf,
}

impl VolumeDef {
    fn from_doc(doc: &Document, state_mount: &Path) -> Self {
        let default_mount = match doc {
            Document::Volume(v) if v.name == "STATE" => state_mount.to_path_buf(),
            Document::Volume(v) if v.name == "EPHEMERAL" => PathBuf::from("/var"),
            Document::Volume(_) => PathBuf::from("/persistence"),
            Document::User(u) => PathBuf::from("/var/mnt").join(&u.name),
        };
        VolumeDef {
            name: doc.name().to_string(),
            label: doc.partition_label(),
            encryption: doc.encryption().cloned(),
            fs: doc.filesystem().map(|f| f.kind).unwrap_or_default(),
            mount: doc
                .mount()
                .map(|m| PathBuf::from(&m.path))
                .unwrap_or(default_mount),
        }
    }

    fn state(encryption: Option<Encryption>, state_mount: &Path) -> Self {
        VolumeDef {
            name: "STATE".into(),
            label: "STATE".into(),
            encryption,
            fs: FilesystemType::Ext4,
            mount: state_mount.to_path_buf(),
        }
    }
}

/// A volume after unlocking: what to mount, or its final status.
struct Opened {
    status: VolumeStatus,
    fs_device: Option<PathBuf>,
    _partition: Option<OpenPartition>,
}

/// Runs the boot sequence.
pub async fn boot(opts: &BootOptions) -> Result<BootStatus, BootError> {
    let disks = if opts.disks.is_empty() {
        disks::system_disks()
    } else {
        opts.disks.clone()
    };
    let parts = disks::by_label(&disks)?;
    let mut given = load_files(&opts.config_files)?;
    let mut status = BootStatus::default();

    // STATE's encryption: the config given at boot wins over META's copy.
    let meta_state = match parts.get("META") {
        Some(p) => read_meta_state(p)?,
        None => None,
    };
    let mut source = "boot arguments (-f)";
    if given.is_none() && meta_state.is_none() && parts.get("STATE").is_none_or(is_blank) {
        // Nothing says how STATE is encrypted: maintenance mode.
        given = Some(wait_for_config(opts, "STATE is blank and no config was given").await?);
        source = "maintenance mode (apply-config --insecure)";
    }
    let state_def = match (&given, &meta_state) {
        (Some((docs, _)), _) => docs
            .iter()
            .find(|d| d.is_state())
            .map(|d| VolumeDef::from_doc(d, &opts.state_mount))
            .unwrap_or_else(|| VolumeDef::state(None, &opts.state_mount)),
        (None, enc) => {
            source = "STATE (encryption config from META)";
            VolumeDef::state(enc.clone(), &opts.state_mount)
        }
    };

    // STATE is mounted at a staging point first and moved to its place last,
    // so that a volume mounted above it (EPHEMERAL at /var) cannot hide it.
    let staging = state_dir(opts).join("staging-STATE");
    let staged_def = VolumeDef {
        mount: staging.clone(),
        ..state_def.clone()
    };
    let mut env = ProviderEnv {
        node_uuid: opts.node_uuid.clone(),
        state_salt: None,
        kms: opts.kms.clone(),
        tpm: opts.tpm.clone(),
    };
    let state = finish(
        open_volume(&staged_def, parts.get("STATE"), &env).await,
        &staged_def,
    );
    let state_ready = state.phase == Phase::Ready;
    let state_created = state.created;
    status.volumes.push(state);

    // The salt and the config in force live on STATE.
    let mut docs = given.as_ref().map(|(d, _)| d.clone());
    if state_ready {
        env.state_salt = state_salt(&staging, state_created)?;
        let stored = match given {
            Some((d, text)) => {
                store_config(&staging, &text)?;
                Some(d)
            }
            None => match promote_pending(&staging) {
                Ok(Some(d)) => {
                    source = "STATE (staged config promoted at this boot)";
                    Some(d)
                }
                Ok(None) => match read_state_config(&staging) {
                    Ok(d) => Some(d),
                    Err(BootError::NoConfig) => {
                        let (d, text) = wait_for_config(opts, "STATE holds no config").await?;
                        source = "maintenance mode (apply-config --insecure)";
                        store_config(&staging, &text)?;
                        Some(d)
                    }
                    Err(e) => {
                        status.problems.push(e.to_string());
                        None
                    }
                },
                Err(e) => {
                    status.problems.push(e.to_string());
                    None
                }
            },
        };
        docs = stored;
        // The config in force may carry new keys for STATE itself.
        if let Some(d) = &docs {
            let want = d
                .iter()
                .find(|d| d.is_state())
                .and_then(|d| d.encryption().cloned());
            if want != state_def.encryption {
                reconverge_state(&mut status.volumes[0], want.as_ref(), &env).await;
            }
            if let Some(p) = parts.get("META") {
                sync_meta(p, want.as_ref(), meta_state.as_ref())?;
            }
        }
    }
    status.config_source = source.to_string();
    let Some(docs) = docs else {
        place_state(&mut status, &staging, &state_def.mount);
        write_status(opts, &status)?;
        return Ok(status);
    };

    // Everything else: unlock concurrently (bounded), then mount in order.
    let mut defs: Vec<VolumeDef> = docs
        .iter()
        .filter(|d| !d.is_state())
        .map(|d| VolumeDef::from_doc(d, &opts.state_mount))
        .collect();
    defs.sort_by_key(|d| (order(&d.name, d.label.starts_with("u-")), d.name.clone()));
    let sem = Arc::new(tokio::sync::Semaphore::new(opts.parallel.max(1)));
    let env = Arc::new(env);
    let mut tasks = Vec::new();
    for def in defs {
        let part = parts.get(&def.label).cloned();
        let (sem, env) = (sem.clone(), env.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await.expect("semaphore open");
            (open_volume(&def, part.as_ref(), &env).await, def)
        }));
    }
    for t in tasks {
        let (opened, def) = t
            .await
            .map_err(|e| BootError::Io(format!("volume task failed: {e}")))?;
        status.volumes.push(finish(opened, &def));
    }
    place_state(&mut status, &staging, &state_def.mount);
    write_status(opts, &status)?;
    Ok(status)
}

/// Moves STATE from its staging mount to its mount point.
fn place_state(status: &mut BootStatus, staging: &Path, target: &Path) {
    let st = &mut status.volumes[0];
    if st.phase != Phase::Ready {
        return;
    }
    match fs::move_mount(staging, target) {
        Ok(()) => st.mount_point = Some(target.display().to_string()),
        Err(e) => {
            st.error = Some(format!("STATE stays at {}: {e}", staging.display()));
        }
    }
}

/// The directory of the status file: runtime state (`/run/volctl`).
fn state_dir(opts: &BootOptions) -> PathBuf {
    opts.status_file
        .parent()
        .unwrap_or(Path::new("/run/volctl"))
        .to_path_buf()
}

/// Stores `text` as the applied config on STATE and drops any staged one
/// (a config given at boot wins).
fn store_config(state_mount: &Path, text: &str) -> Result<(), BootError> {
    atomic::write_private(&state_mount.join(CONFIG_FILE), text.as_bytes())
        .map_err(|e| BootError::Io(format!("storing the config on STATE: {e}")))?;
    let _ = std::fs::remove_file(state_mount.join(PENDING_FILE));
    Ok(())
}

/// Promotes a staged config: it is validated, then renamed over the applied
/// one (an atomic step: a crash leaves the old or the new config in force).
fn promote_pending(state_mount: &Path) -> Result<Option<Vec<Document>>, BootError> {
    let pending = state_mount.join(PENDING_FILE);
    let text = match std::fs::read_to_string(&pending) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(BootError::Io(format!("{}: {e}", pending.display()))),
    };
    let docs = parse_config(&pending.display().to_string(), &text)?;
    std::fs::rename(&pending, state_mount.join(CONFIG_FILE))
        .and_then(|_| std::fs::File::open(state_mount)?.sync_all())
        .map_err(|e| BootError::Io(format!("promoting the staged config: {e}")))?;
    tracing::info!("staged config promoted");
    Ok(Some(docs))
}

/// Maintenance mode: wait until `volctl apply-config --insecure` delivers a
/// config (a file dropped next to the status file), validate it, go on.
async fn wait_for_config(
    opts: &BootOptions,
    reason: &str,
) -> Result<(Vec<Document>, String), BootError> {
    let dir = state_dir(opts);
    let marker = dir.join(MAINTENANCE_MARKER);
    let drop = dir.join(MAINTENANCE_CONFIG);
    atomic::write_private(&marker, reason.as_bytes())
        .map_err(|e| BootError::Io(format!("{}: {e}", marker.display())))?;
    eprintln!("maintenance mode: {reason}; waiting for `volctl apply-config --insecure -f CONFIG`");
    let started = std::time::Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(&drop) {
            let _ = std::fs::remove_file(&drop);
            match parse_config(&drop.display().to_string(), &text) {
                Ok(docs) => {
                    let _ = std::fs::remove_file(&marker);
                    eprintln!("maintenance mode: config received");
                    return Ok((docs, text));
                }
                Err(e) => eprintln!("maintenance mode: rejected a config: {e}"),
            }
        }
        if opts
            .maintenance_timeout
            .is_some_and(|t| started.elapsed() > t)
        {
            let _ = std::fs::remove_file(&marker);
            return Err(BootError::NoConfig);
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Converges STATE's keyslots to the config now in force (STATE was opened
/// with the keys known before its config could be read).
async fn reconverge_state(st: &mut VolumeStatus, want: Option<&Encryption>, env: &ProviderEnv) {
    let (Some(enc), Some(dev)) = (want, st.device.clone()) else {
        if want.is_some() != st.encrypted {
            st.error = Some("the config in force changes whether STATE is encrypted; that needs a wipe of STATE".into());
        }
        return;
    };
    let spec = VolumeSpec {
        name: "STATE".into(),
        label: "STATE".into(),
        encryption: enc.clone(),
    };
    let converged = match open_device(&spec, Path::new(&dev), Mode::Apply) {
        Ok(device) => converge_and_unlock(&spec, device, env, Mode::Apply).await,
        Err(e) => Err(e),
    };
    match converged {
        Ok((o, _)) => {
            st.kdf_runs += o.kdf_runs;
            st.changes.extend(o.plan.actions.iter().map(action_line));
            st.keyslots = o.keyslots;
        }
        Err(e) => st.error = Some(format!("converging STATE to the config in force: {e}")),
    }
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
        .save(&opts.status_file)
        .map_err(|e| BootError::Io(format!("writing {}: {e}", opts.status_file.display())))
}

/// Parses the config files given at boot; returns the documents and the
/// text to store on STATE.
fn load_files(files: &[PathBuf]) -> Result<Option<(Vec<Document>, String)>, BootError> {
    if files.is_empty() {
        return Ok(None);
    }
    crate::node::config_files::load(files)
        .map(Some)
        .map_err(BootError::Config)
}

fn parse_config(name: &str, text: &str) -> Result<Vec<Document>, BootError> {
    crate::node::config_files::parse(name, text).map_err(BootError::Config)
}

fn read_state_config(state_mount: &Path) -> Result<Vec<Document>, BootError> {
    let path = state_mount.join(CONFIG_FILE);
    match std::fs::read_to_string(&path) {
        Ok(t) => parse_config(&path.display().to_string(), &t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(BootError::NoConfig),
        Err(e) => Err(BootError::Io(format!("{}: {e}", path.display()))),
    }
}

fn read_meta_state(p: &Partition) -> Result<Option<Encryption>, BootError> {
    let open = OpenPartition::open(p)?;
    let m = meta::read(&open.path)?;
    match m.records.get(&TAG_STATE_ENCRYPTION) {
        None => Ok(None),
        Some(v) => serde_json::from_slice(v).map(Some).map_err(|e| {
            BootError::Config(format!("META's STATE encryption config is unreadable: {e}"))
        }),
    }
}

/// Mirrors STATE's encryption config to META when it changed.
fn sync_meta(
    p: &Partition,
    want: Option<&Encryption>,
    have: Option<&Encryption>,
) -> Result<(), BootError> {
    if want == have {
        return Ok(());
    }
    let open = OpenPartition::open(p)?;
    if meta::mirror_state_encryption(&open.path, want)? {
        tracing::info!("STATE encryption config mirrored to META");
    }
    Ok(())
}

/// The STATE salt: made on a freshly formatted STATE, read otherwise.
fn state_salt(state_mount: &Path, fresh: bool) -> Result<Option<StateSalt>, BootError> {
    let path = state_mount.join(SALT_FILE);
    if fresh {
        use rand::RngCore;
        let mut b = [0u8; STATE_SALT_LEN];
        rand::rngs::OsRng.fill_bytes(&mut b);
        atomic::write_private(&path, &b)
            .map_err(|e| BootError::Io(format!("writing the STATE salt: {e}")))?;
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

fn is_blank(p: &Partition) -> bool {
    OpenPartition::open(p)
        .ok()
        .and_then(|o| device::probe_foreign(&o.path).ok())
        .is_some_and(|s| s.is_none())
}

/// Locates, converges and opens one volume (no mount yet).
async fn open_volume(def: &VolumeDef, part: Option<&Partition>, env: &ProviderEnv) -> Opened {
    let mut st = VolumeStatus::new(&def.name, &def.label, def.encryption.is_some());
    let Some(part) = part else {
        st.error = Some(format!("no partition labelled `{}`", def.label));
        return Opened {
            status: st,
            fs_device: None,
            _partition: None,
        };
    };
    st.partition = Some(part.describe());
    st.phase = Phase::Located;
    let fail = |mut st: VolumeStatus, e: String| {
        st.phase = Phase::Failed;
        st.error = Some(e);
        Opened {
            status: st,
            fs_device: None,
            _partition: None,
        }
    };
    let open = match OpenPartition::open(part) {
        Ok(o) => o,
        Err(e) => return fail(st, e.to_string()),
    };
    st.device = Some(open.path.display().to_string());
    let device = match device::open(&open.path, Access::ReadWrite, def.encryption.clone()) {
        Ok(d) => d,
        Err(e) => return fail(st, e.to_string()),
    };
    let contents = match tokio::task::spawn_blocking({
        let device = device.clone();
        move || device.contents()
    })
    .await
    {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return fail(st, e.to_string()),
        Err(e) => return fail(st, format!("probe task failed: {e}")),
    };
    let Some(enc) = &def.encryption else {
        if let Contents::Luks2(_) = contents {
            return fail(st, "the partition holds a LUKS2 header but the config does not encrypt this volume; volctl will not use it as plain (wipe it to change)".into());
        }
        let dev = open.path.clone();
        return Opened {
            status: st,
            fs_device: Some(dev),
            _partition: Some(open),
        };
    };
    if let Contents::Foreign(found) = contents {
        st.phase = Phase::WaitingForWipe;
        st.error = Some(format!(
            "holds {found}, but the config encrypts this volume; back up its data, then run `volctl reset --system-labels-to-wipe {}`",
            def.label
        ));
        return Opened {
            status: st,
            fs_device: None,
            _partition: None,
        };
    }
    let spec = VolumeSpec {
        name: def.name.clone(),
        label: def.label.clone(),
        encryption: enc.clone(),
    };
    let (outcome, vk) = match converge_and_unlock(&spec, device.clone(), env, Mode::Apply).await {
        Ok(r) => r,
        Err(e) => return fail(st, e.to_string()),
    };
    st.created = outcome.formatted;
    st.unlocked_by = outcome.unlocked_by;
    st.kdf_runs = outcome.kdf_runs;
    st.changes = outcome.plan.actions.iter().map(action_line).collect();
    st.keyslots = outcome.keyslots.clone();
    st.phase = Phase::Provisioned;
    let name = format!("{DM_PREFIX}{}", def.label);
    let options = ActivationOptions {
        allow_discards: enc.allow_discards.unwrap_or(false),
        perf: enc.options.clone(),
    };
    let act = {
        let (device, name) = (device.clone(), name.clone());
        tokio::task::spawn_blocking(move || device.activate(&name, &vk, &options)).await
    };
    match act {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return fail(st, e.to_string()),
        Err(e) => return fail(st, format!("activation task failed: {e}")),
    }
    let mapped = PathBuf::from("/dev/mapper").join(&name);
    st.mapped_device = Some(mapped.display().to_string());
    st.phase = Phase::Opened;
    Opened {
        status: st,
        fs_device: Some(mapped),
        _partition: Some(open),
    }
}

/// Makes the filesystem if there is none, and mounts it.
fn finish(o: Opened, def: &VolumeDef) -> VolumeStatus {
    let mut st = o.status;
    let Some(dev) = o.fs_device else { return st };
    match make_fs_and_mount(&dev, def) {
        Ok(created) => {
            st.created |= created;
            st.mount_point = Some(def.mount.display().to_string());
            st.phase = Phase::Ready;
        }
        Err(e) => {
            st.phase = Phase::Failed;
            st.error = Some(e);
        }
    }
    st
}

/// Returns whether a filesystem was made.
fn make_fs_and_mount(dev: &Path, def: &VolumeDef) -> Result<bool, String> {
    let created = match device::probe_filesystem(dev)
        .map_err(|e| format!("cannot probe {}: {e}", dev.display()))?
    {
        None => {
            fs::mkfs(dev, def.fs, &def.label).map_err(|e| e.to_string())?;
            true
        }
        Some(found) => {
            let want = match def.fs {
                FilesystemType::Ext4 => "ext2/3/4",
                FilesystemType::Xfs => "XFS",
            };
            if !found.starts_with(want) {
                return Err(format!(
                    "holds {found}, but the config asks for {}; volctl will not reformat it",
                    fs::fstype(def.fs)
                ));
            }
            false
        }
    };
    fs::mount(dev, &def.mount, def.fs).map_err(|e| e.to_string())?;
    Ok(created)
}

/// Closes everything a boot opened, in reverse order of mounting (STATE,
/// moved into place last, first): unmount, then close the dm-crypt device.
/// The status is updated, so closing twice does nothing the second time.
/// Returns one line per step and the errors.
pub fn close(status: &mut BootStatus) -> (Vec<String>, Vec<String>) {
    let mut done = Vec::new();
    let mut errors = Vec::new();
    let n = status.volumes.len();
    let order: Vec<usize> = std::iter::once(0)
        .filter(|_| n > 0)
        .chain((1..n).rev())
        .collect();
    for i in order {
        if let Err(e) = close_volume(&mut status.volumes[i], &mut done) {
            errors.push(e);
        }
    }
    (done, errors)
}

/// Unmounts one volume, then closes its dm-crypt device (only once it is
/// unmounted); updates its status and appends one line per step to `done`.
pub fn close_volume(v: &mut VolumeStatus, done: &mut Vec<String>) -> Result<(), String> {
    if let Some(m) = v.mount_point.clone() {
        fs::umount(Path::new(&m)).map_err(|e| e.to_string())?;
        done.push(format!("unmounted {m}"));
        v.mount_point = None;
        v.phase = if v.mapped_device.is_some() {
            Phase::Opened
        } else {
            Phase::Located
        };
    }
    if v.mapped_device.is_some() {
        let name = format!("{DM_PREFIX}{}", v.label);
        crate::device::deactivate(&name).map_err(|e| e.to_string())?;
        done.push(format!("closed /dev/mapper/{name}"));
        v.mapped_device = None;
        v.phase = Phase::Provisioned;
    }
    Ok(())
}
