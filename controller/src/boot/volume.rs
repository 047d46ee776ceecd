//! One volume's way up, as a phase machine:
//! `Missing → Located → Provisioned → Opened → Ready`. Each transition is
//! one function; a failure is a [`VolumeError`], and what it means for the
//! volume (its phase) is decided in one place, [`VolumeError::phase`].
//! Nothing that holds data is ever formatted.

use super::Until;
use crate::converge::{converge_and_unlock, ConvergeError, Mode, OnlineRun, RunAt};
use crate::decrypt::RunData;
use crate::device::{Access, ActivationOptions, Contents, DeviceError, LuksDevice};
use crate::host::{Host, HostHandle};
use crate::luks2::binding::VolumeKey;
use crate::luks2::reencryption::Operation;
use crate::node::disks::{DiskError, OpenPartition, Partition};
use crate::node::fs;
use crate::node::online;
use crate::node::paths::DM_PREFIX;
use crate::node::recovery_held::HeldKeys;
use crate::node::recovery_out::RecoveryOut;
use crate::node::status::{Phase, VolumeStatus};
use crate::node::swap;
use crate::volume::VolumeSpec;
use api_types::{Document, Encryption, FilesystemType};
use providers::ProviderEnv;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One volume to bring up.
#[derive(Debug, Clone)]
pub(super) struct VolumeDef {
    pub name: String,
    pub label: String,
    pub encryption: Option<Encryption>,
    /// `decryptInPlace`: the keys that open it until it is decrypted in
    /// place (then `encryption` is `None`: it is plain from then on).
    pub decrypt: Option<Encryption>,
    /// Where a decryption in place keeps its header file (on STATE)
    /// during the boot.
    pub decrypt_dir: PathBuf,
    /// Where that is once STATE is in place (an online run outlives the
    /// boot).
    pub decrypt_dir_placed: PathBuf,
    pub fs: FilesystemType,
    pub mount: PathBuf,
    pub mount_options: fs::MountOptions,
    /// `provisioning.grow`: grow the filesystem into a grown partition.
    pub grow: bool,
    /// What its opened device holds: a filesystem, swap, or its user's data.
    pub content: Content,
    /// Where it lives: a partition, or a whole disk.
    pub backing: Backing,
    /// Its mount point is inside EPHEMERAL's (`/var/lib/etcd`,
    /// `/var/mnt/<name>`), where a directory volume keeps its data: it is
    /// never mounted over a directory that holds files.
    pub guarded: bool,
    /// Where recovery keys this boot enrols go.
    pub recovery_out: RecoveryDest,
    /// The run-time directory, where an online reencryption keeps its
    /// progress (`None`: a reencryption runs before the volume opens).
    pub run_dir: Option<PathBuf>,
    /// Mounted, or only opened.
    pub until: Until,
}

/// What a volume's opened device holds, which says what the boot does
/// with it once it is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Content {
    /// A filesystem: made when the device is blank, then mounted.
    Filesystem,
    /// A raw volume: whatever its user puts there, never formatted or
    /// mounted.
    Raw,
    /// A swap volume: swap made when the device is blank, then enabled.
    Swap,
}

impl Content {
    fn of(doc: &Document) -> Self {
        match doc {
            Document::Raw(_) => Content::Raw,
            Document::Swap(_) => Content::Swap,
            _ => Content::Filesystem,
        }
    }
}

/// Where a volume lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Backing {
    /// The partition carrying its label.
    Partition,
    /// The whole disk its selector picks (`volumeType: disk`).
    WholeDisk {
        /// The disk selector.
        selector: String,
    },
}

impl Backing {
    fn of(doc: &Document) -> Self {
        if super::disk_volume::is_disk_volume(doc) {
            Backing::WholeDisk {
                selector: super::disk_volume::selector_of(doc),
            }
        } else {
            Backing::Partition
        }
    }
}

/// Where a boot puts the recovery keys it enrols.
#[derive(Debug, Clone, Default)]
pub(super) enum RecoveryDest {
    /// Nowhere (no recovery key is enrolled: the provider is told so).
    #[default]
    Nowhere,
    /// Appended to the boot's key file (`--recovery-key-out`).
    File(PathBuf),
    /// Held in the run-time directory for one `recovery-key fetch`.
    Held(HeldKeys),
}

impl VolumeDef {
    pub fn from_doc(doc: &Document, state_mount: &Path) -> Self {
        let mount = doc
            .mount_point()
            .map_or_else(|| state_mount.to_path_buf(), PathBuf::from);
        VolumeDef {
            guarded: !doc.is_state() && mount.starts_with("/var") && mount != Path::new("/var"),
            name: doc.name().to_string(),
            label: doc.partition_label(),
            encryption: doc.encryption().filter(|e| !e.decrypt_in_place()).cloned(),
            decrypt: doc.encryption().filter(|e| e.decrypt_in_place()).cloned(),
            decrypt_dir: state_mount.join("decrypt"),
            decrypt_dir_placed: state_mount.join("decrypt"),
            fs: doc.filesystem_type(),
            mount,
            mount_options: fs::MountOptions::for_document(doc),
            grow: doc.provisioning().and_then(|p| p.grow).unwrap_or(false),
            content: Content::of(doc),
            backing: Backing::of(doc),
            recovery_out: RecoveryDest::Nowhere,
            run_dir: None,
            until: Until::Mounted,
        }
    }

    /// The same volume as this boot brings it up: handing recovery keys to
    /// the boot's key file (or holding them for a fetch when there is
    /// none), running a reencryption online.
    pub fn for_boot(mut self, opts: &super::BootOptions) -> Self {
        let run_dir = crate::node::paths::run_dir(&opts.node.status_file);
        self.recovery_out = match &opts.recovery_key_out {
            Some(path) => RecoveryDest::File(path.clone()),
            None => RecoveryDest::Held(HeldKeys::in_run_dir(&run_dir)),
        };
        self.run_dir = (opts.until == Until::Mounted).then_some(run_dir);
        self.until = opts.until;
        self
    }

    fn run_at(&self) -> RunAt {
        if self.run_dir.is_some() {
            RunAt::Online
        } else {
            RunAt::Here
        }
    }

    pub fn state(encryption: Option<Encryption>, state_mount: &Path) -> Self {
        VolumeDef {
            name: "STATE".into(),
            label: "STATE".into(),
            encryption,
            decrypt: None,
            decrypt_dir: state_mount.join("decrypt"),
            decrypt_dir_placed: state_mount.join("decrypt"),
            fs: FilesystemType::Ext4,
            mount: state_mount.to_path_buf(),
            mount_options: fs::MountOptions::default(),
            grow: false,
            content: Content::Filesystem,
            backing: Backing::Partition,
            guarded: false,
            recovery_out: RecoveryDest::Nowhere,
            run_dir: None,
            until: Until::Mounted,
        }
    }

    /// Whether only a person can open it: encrypted (or to be decrypted in
    /// place: its keys open it until then), and every key typed.
    pub fn typed_only(&self) -> bool {
        self.encryption
            .as_ref()
            .or(self.decrypt.as_ref())
            .is_some_and(|e| {
                let keys = e.resolved_keys();
                !keys.is_empty() && keys.iter().all(|k| k.kind.source().typed())
            })
    }

    /// Its status before anything is done.
    pub fn status(&self) -> VolumeStatus {
        VolumeStatus::new(&self.name, &self.label, self.encryption.is_some())
    }

    fn mapper_name(&self) -> String {
        format!("{DM_PREFIX}{}", self.label)
    }

    /// Its dm-crypt device, `/dev/mapper/<mapper name>`.
    fn mapped_path(&self) -> PathBuf {
        Path::new("/dev/mapper").join(self.mapper_name())
    }
}

/// Why a volume did not come up.
#[derive(Debug, thiserror::Error)]
pub(super) enum VolumeError {
    /// No partition carries the label.
    #[error("no partition labelled `{0}`")]
    Missing(String),
    /// No disk holds a disk volume.
    #[error(transparent)]
    NoDisk(#[from] super::disk_volume::NoDisk),
    /// The partition could not be attached.
    #[error(transparent)]
    Partition(#[from] DiskError),
    /// The device could not be read.
    #[error(transparent)]
    Device(#[from] DeviceError),
    /// A plain volume whose partition holds a LUKS2 header.
    #[error("the partition holds a LUKS2 header but the config does not encrypt this volume; volctl will not use it as plain (wipe it to change)")]
    PlainHoldsLuks,
    /// Encrypting it needs a wipe first.
    #[error("holds {found}, but the config encrypts this volume; back up its data, then run `volctl reset --system-labels-to-wipe {label}`")]
    NeedsWipe {
        /// What it holds.
        found: String,
        /// Its label.
        label: String,
    },
    /// Its keyslots could not be converged (or it could not be unlocked).
    #[error(transparent)]
    Converge(ConvergeError),
    /// The filesystem could not be made or mounted.
    #[error("{0}")]
    Filesystem(String),
    /// A worker task failed.
    #[error("{0} task failed")]
    Task(&'static str),
    /// Its mount point holds files that mounting it would hide.
    #[error("{} holds files (a directory volume's data?); mounting this volume there would hide them, and a volume's backing does not move: move the files away first, or keep the volume a directory", .0.display())]
    WouldHide(PathBuf),
    /// It is mounted under EPHEMERAL's mount point, and EPHEMERAL is not
    /// mounted: mounted now it would land on the root filesystem.
    #[error("it is mounted under {}, where EPHEMERAL is not mounted; it is left unmounted", .0.display())]
    EphemeralDown(PathBuf),
    /// A decryption in place of it is under way (its header file is on
    /// STATE) while the config encrypts it: opened or converged by its
    /// device, its data could be lost.
    #[error("a decryption in place of this volume is under way (its header is in {}); volctl leaves it as it is: finish it with `decryptInPlace: true` in its encryption block, or `volctl disable-encryption`", .0.display())]
    DecryptionUnderWay(PathBuf),
    /// Its decryption in place failed (or was refused).
    #[error(transparent)]
    Decrypt(#[from] crate::decrypt::DecryptError),
    /// Its dm-crypt name is taken by a mapping of another device.
    #[error("/dev/mapper/{name} is open on {}, not on this volume's partition; close it (`cryptsetup close {name}`)", backing.display())]
    MappedElsewhere {
        /// The mapping's name.
        name: String,
        /// The device it maps.
        backing: PathBuf,
    },
}

impl VolumeError {
    /// What the failure means for the volume: the one error policy.
    pub fn phase(&self) -> Phase {
        match self {
            VolumeError::Missing(_) | VolumeError::NoDisk(_) => Phase::Missing,
            VolumeError::NeedsWipe { .. } => Phase::WaitingForWipe,
            VolumeError::Converge(ConvergeError::WaitingForKey { .. }) => Phase::WaitingForKey,
            _ => Phase::Failed,
        }
    }
}

/// A volume after unlocking: what to mount, and the attached partition.
pub(super) struct Opened {
    pub fs_device: PathBuf,
    pub _partition: OpenPartition,
    /// A reencryption to run online once it is mounted.
    pub online: Option<OnlineRun>,
}

/// Records `e` in `st` with the phase it means.
pub(super) fn fail(st: &mut VolumeStatus, e: &VolumeError) {
    st.phase = e.phase();
    st.error = Some(e.to_string());
}

/// Missing → Located: attaches the partition carrying the volume's label.
pub(super) fn locate(
    host: &dyn Host,
    def: &VolumeDef,
    part: Option<&Partition>,
    st: &mut VolumeStatus,
) -> Result<OpenPartition, VolumeError> {
    let part = part.ok_or_else(|| VolumeError::Missing(def.label.clone()))?;
    st.partition = Some(part.describe());
    st.phase = Phase::Located;
    let open = host.attach(part)?;
    st.device = Some(open.path.display().to_string());
    Ok(open)
}

/// Located → Provisioned: formats a blank device or converges its keyslots
/// to the config (one KDF run when nothing changes); returns the volume key
/// and a reencryption left to run online.
pub(super) async fn provision(
    def: &VolumeDef,
    enc: &Encryption,
    device: Arc<dyn LuksDevice>,
    env: &ProviderEnv,
    st: &mut VolumeStatus,
) -> Result<(VolumeKey, Option<OnlineRun>), VolumeError> {
    let spec = VolumeSpec::new(&def.name, &def.label, enc.clone());
    let device_path = device.path().to_path_buf();
    let (outcome, vk) = converge_and_unlock(&spec, device, env, Mode::Apply, def.run_at())
        .await
        .map_err(|e| match e {
            ConvergeError::NotBlank { found, .. } => VolumeError::NeedsWipe {
                found,
                label: def.label.clone(),
            },
            other => VolumeError::Converge(other),
        })?;
    st.created = outcome.formatted;
    st.unlocked_by = outcome.unlocked_by;
    st.kdf_runs = outcome.kdf_runs;
    st.changes = outcome
        .plan
        .actions
        .iter()
        .map(ToString::to_string)
        .collect();
    st.notes = outcome.plan.notes.iter().map(ToString::to_string).collect();
    st.keyslots = outcome.keyslots;
    st.encrypted_in_place = outcome.encrypted;
    st.resealed = outcome
        .plan
        .actions
        .iter()
        .filter_map(|a| match a {
            crate::converge::plan::Action::Reseal { slot, .. } => Some(*slot),
            _ => None,
        })
        .collect();
    if !outcome.recovery_keys.is_empty() {
        st.changes
            .push(hand_over(def, &device_path, &outcome.recovery_keys));
    }
    st.phase = Phase::Provisioned;
    Ok((vk, outcome.online))
}

/// Hands the recovery keys a boot enrolled to their destination; says
/// where they went (no secret).
fn hand_over(def: &VolumeDef, device: &Path, keys: &[crate::converge::NewRecoveryKey]) -> String {
    match &def.recovery_out {
        RecoveryDest::File(path) => {
            match RecoveryOut::append(path).and_then(|mut out| out.deliver(&def.name, keys)) {
                Ok(_) => format!("recovery key written to {}", path.display()),
                Err(e) => format!(
                    "could not write the recovery key to {}: {e}",
                    path.display()
                ),
            }
        }
        RecoveryDest::Held(held) => match held.hold(&def.name, device, keys) {
            Ok(()) => format!(
                "recovery key held for one `volctl recovery-key fetch --volume {}`",
                def.name
            ),
            Err(e) => format!("could not hold the recovery key for a fetch: {e}"),
        },
        RecoveryDest::Nowhere => "a recovery key was enrolled with nowhere to go".into(),
    }
}

/// Provisioned → Opened: activates dm-crypt by volume key (no KDF run),
/// or, mid-reencryption, by the passphrase that runs it (libcryptsetup
/// maps the reencryption's segments then); the device checks the header
/// it loads once more first.
pub(super) async fn activate(
    def: &VolumeDef,
    enc: &Encryption,
    device: Arc<dyn LuksDevice>,
    (vk, online): (VolumeKey, Option<&OnlineRun>),
    st: &mut VolumeStatus,
) -> Result<PathBuf, VolumeError> {
    let name = def.mapper_name();
    let options = ActivationOptions::of(enc);
    let n = name.clone();
    let by_passphrase = online.map(|r| (r.activation_slot(), r.passphrase.clone(), r.operation));
    let kdf_before = device.kdf_runs();
    let d = device.clone();
    tokio::task::spawn_blocking(move || match by_passphrase {
        Some((slot, pass, op)) => d.activate_reencrypting(&n, (slot, pass.expose()), op, &options),
        None => d.activate(&n, &vk, &options),
    })
    .await
    .map_err(|_| VolumeError::Task("activation"))??;
    st.kdf_runs += device.kdf_runs() - kdf_before;
    let mapped = def.mapped_path();
    st.mapped_device = Some(mapped.display().to_string());
    st.phase = Phase::Opened;
    Ok(mapped)
}

/// Opened → Ready: makes the filesystem if there is none, and mounts it.
pub(super) fn mount(
    host: &dyn Host,
    dev: &Path,
    def: &VolumeDef,
    ephemeral_down: Option<&Path>,
    st: &mut VolumeStatus,
) -> Result<(), VolumeError> {
    if let Some(at) = ephemeral_down.filter(|at| def.mount.starts_with(at)) {
        return Err(VolumeError::EphemeralDown(at.to_path_buf()));
    }
    if def.guarded && host.holds_files(&def.mount) {
        return Err(VolumeError::WouldHide(def.mount.clone()));
    }
    let made = make_if_blank(
        host,
        dev,
        st,
        |found| {
            (!found.starts_with(fs::probe_name(def.fs))).then(|| {
                format!(
                    "holds {found}, but the config asks for {}; volctl will not reformat it",
                    fs::fstype(def.fs)
                )
            })
        },
        || host.mkfs(dev, def.fs, &def.label),
    )?;
    host.mount(dev, &def.mount, def.fs, def.mount_options)
        .map_err(|e| VolumeError::Filesystem(e.to_string()))?;
    st.mount_point = Some(def.mount.display().to_string());
    // A filesystem made now fills its device; one found (also one just
    // encrypted in place, which left room for the header) may not.
    if def.grow && !made {
        grow_filesystem(host, dev, def, st);
    }
    st.phase = Phase::Ready;
    Ok(())
}

/// Makes what the opened device should hold (`make`) when it is blank,
/// else checks that it holds that (`check`: why it does not, if it does
/// not): nothing is ever made over something else. Whether it was made.
fn make_if_blank(
    host: &dyn Host,
    dev: &Path,
    st: &mut VolumeStatus,
    check: impl FnOnce(&str) -> Option<String>,
    make: impl FnOnce() -> Result<(), fs::FsError>,
) -> Result<bool, VolumeError> {
    let found = host
        .probe_fs(dev)
        .map_err(|e| VolumeError::Filesystem(format!("cannot probe {}: {e}", dev.display())))?;
    match found {
        None => {
            make().map_err(|e| VolumeError::Filesystem(e.to_string()))?;
            st.created = true;
            Ok(true)
        }
        Some(found) => check(&found).map_or(Ok(false), |why| Err(VolumeError::Filesystem(why))),
    }
}

/// Opened → Ready for a swap volume: swap made when the device is blank
/// (never over anything else), then enabled.
fn enable_swap(
    host: &dyn Host,
    dev: &Path,
    def: &VolumeDef,
    st: &mut VolumeStatus,
) -> Result<(), VolumeError> {
    make_if_blank(
        host,
        dev,
        st,
        |found| {
            (!swap::is_swap(found))
                .then(|| format!("holds {found}, not swap; volctl will not make swap over it"))
        },
        || host.make_swap(dev, &def.label),
    )?;
    host.swap_on(dev)
        .map_err(|e| VolumeError::Filesystem(e.to_string()))?;
    st.swap = true;
    st.phase = Phase::Ready;
    Ok(())
}

/// `grow: true`: the partition may have grown this boot (provisioning ran
/// before the volume was opened, so dm-crypt already maps all of it); the
/// filesystem follows, online. A failure is reported, not fatal: the
/// volume is usable at its old size.
fn grow_filesystem(host: &dyn Host, dev: &Path, def: &VolumeDef, st: &mut VolumeStatus) {
    use crate::units::MIB;
    match host.grow(dev, &def.mount, def.fs) {
        Ok((before, after)) if after > before => st.changes.push(format!(
            "grew the filesystem from {} MiB to {} MiB",
            before / MIB,
            after / MIB
        )),
        Ok(_) => {}
        Err(e) => st
            .changes
            .push(format!("could not grow the filesystem: {e}")),
    }
}

/// What a plain (unencrypted) volume's partition holds must not be LUKS2.
async fn check_plain(device: Arc<dyn LuksDevice>) -> Result<(), VolumeError> {
    let contents = tokio::task::spawn_blocking(move || device.contents())
        .await
        .map_err(|_| VolumeError::Task("probe"))??;
    match contents {
        Contents::Luks2(_) => Err(VolumeError::PlainHoldsLuks),
        _ => Ok(()),
    }
}

/// A volume the config wants plain (`decryptInPlace`) that is still
/// encrypted, or part decrypted: decrypted in place, resumed where a cut
/// run stopped, before it is mounted (offline; progress on the console),
/// or, when the boot hands runs on ([`VolumeDef::run_at`]), activated
/// mid-decryption and mounted while its data is decrypted online: the run
/// left is returned.
async fn decrypt_first(
    host: &dyn Host,
    def: &VolumeDef,
    keys: &Encryption,
    node: &Path,
    env: &ProviderEnv,
    st: &mut VolumeStatus,
) -> Result<Option<OnlineRun>, VolumeError> {
    let spec = VolumeSpec::new(&def.name, &def.label, keys.clone());
    let name = def.mapper_name();
    let options = ActivationOptions::of(keys);
    let data = match def.run_at() {
        RunAt::Online => RunData::Online {
            name: &name,
            options: &options,
        },
        RunAt::Here => RunData::Here,
    };
    let Some(done) = host
        .decrypt_in_place(&spec, node, &def.decrypt_dir, env, data)
        .await?
    else {
        return Ok(None);
    };
    st.kdf_runs += done.kdf_runs;
    let resumed = if done.steps.first() == Some(&crate::decrypt::Step::Export) {
        ""
    } else {
        ", resumed where a cut left it"
    };
    if done.online.is_some() {
        st.mapped_device = Some(def.mapped_path().display().to_string());
        st.phase = Phase::Opened;
    } else {
        st.changes.push(format!(
            "decrypted in place ({} MiB{resumed}; its header was kept on STATE meanwhile)",
            done.data_mib
        ));
    }
    Ok(done.online)
}

/// What the status says of a swap volume made again.
const SWAP_REMADE: &str = "no configured key opens this swap volume: its header wiped and swap made again (swap keeps nothing across boots)";

/// A swap volume none of whose configured keys opens it (they changed, or
/// STATE's salt did): what swap held is gone at every boot anyway, so its
/// LUKS2 header is wiped for a new one. Only a LUKS2 header comes here:
/// anything else on the partition is refused before a key is tried.
fn remake_swap(
    host: &dyn Host,
    def: &VolumeDef,
    part: Option<&Partition>,
    node: &Path,
) -> Result<Arc<dyn LuksDevice>, VolumeError> {
    let size = part.map_or(0, |p| p.size);
    host.wipe(node, size, crate::host::WipeMode::Fast)
        .map_err(|e| VolumeError::Filesystem(format!("cannot wipe {}: {e}", node.display())))?;
    Ok(host.luks(node, Access::ReadWrite, def.encryption.clone())?)
}

/// Locates, provisions and opens one volume (no mount yet).
pub(super) async fn open_volume(
    host: &dyn Host,
    def: &VolumeDef,
    part: Option<&Partition>,
    env: &ProviderEnv,
    st: &mut VolumeStatus,
) -> Result<Opened, VolumeError> {
    let partition = locate(host, def, part, st)?;
    let decrypting = crate::decrypt::volume_dir(&def.decrypt_dir, &def.name);
    if def.encryption.is_some() && host.holds_files(&decrypting) {
        return Err(VolumeError::DecryptionUnderWay(decrypting));
    }
    if let Some(fs_device) = adopt(host, def, &partition.path, st)? {
        return Ok(Opened {
            fs_device,
            _partition: partition,
            online: None,
        });
    }
    let device = host.luks(&partition.path, Access::ReadWrite, def.encryption.clone())?;
    let Some(enc) = &def.encryption else {
        if let Some(keys) = &def.decrypt {
            if let Some(run) = decrypt_first(host, def, keys, &partition.path, env, st).await? {
                return Ok(Opened {
                    fs_device: def.mapped_path(),
                    _partition: partition,
                    online: Some(run),
                });
            }
        }
        check_plain(device).await?;
        return Ok(Opened {
            fs_device: partition.path.clone(),
            _partition: partition,
            online: None,
        });
    };
    let (device, (vk, online)) = match provision(def, enc, device.clone(), env, st).await {
        Err(VolumeError::Converge(ConvergeError::NoKeyOpens { .. }))
            if def.content == Content::Swap =>
        {
            let device = remake_swap(host, def, part, &partition.path)?;
            let provisioned = provision(def, enc, device.clone(), env, st).await?;
            st.changes.insert(0, SWAP_REMADE.into());
            (device, provisioned)
        }
        provisioned => (device, provisioned?),
    };
    let fs_device = activate(def, enc, device, (vk, online.as_ref()), st).await?;
    Ok(Opened {
        fs_device,
        _partition: partition,
        online,
    })
}

/// Located → Opened, when the volume's mapping is already active on its
/// partition (the initramfs opened it, `volctl boot --open-only`): no KDF
/// run, no question, no header write. Its keyslots were converged by the
/// boot that opened it.
fn adopt(
    host: &dyn Host,
    def: &VolumeDef,
    partition: &Path,
    st: &mut VolumeStatus,
) -> Result<Option<PathBuf>, VolumeError> {
    if def.encryption.is_none() {
        return Ok(None);
    }
    let name = def.mapper_name();
    let Some(backing) = host.mapping(&name) else {
        return Ok(None);
    };
    if !crate::host::same_device(&backing, partition) {
        return Err(VolumeError::MappedElsewhere { name, backing });
    }
    let mapped = def.mapped_path();
    st.mapped_device = Some(mapped.display().to_string());
    st.opened_before = true;
    st.phase = Phase::Opened;
    Ok(Some(mapped))
}

/// Opens one volume: its status so far and the result.
pub(super) async fn open(
    host: &HostHandle,
    def: &VolumeDef,
    part: Option<&Partition>,
    env: &ProviderEnv,
) -> (VolumeStatus, Result<Opened, VolumeError>) {
    let mut st = def.status();
    let opened = open_volume(&**host, def, part, env, &mut st).await;
    (st, opened)
}

/// The status of a volume while its key is asked for.
pub(super) fn waiting(def: &VolumeDef) -> VolumeStatus {
    let mut st = def.status();
    st.phase = Phase::WaitingForKey;
    st.error = Some("asking for its passphrase".into());
    st
}

/// Mounts an opened volume (Ready), or records why it did not come up.
pub(super) fn finish(
    host: &dyn Host,
    def: &VolumeDef,
    ephemeral_down: Option<&Path>,
    mut st: VolumeStatus,
    opened: Result<Opened, VolumeError>,
) -> VolumeStatus {
    let ready = opened.and_then(|o| {
        match (def.content, def.until) {
            // A raw volume is ready once its device is there (opened when
            // encrypted); what is on it is its user's business.
            (Content::Raw, _) => st.phase = Phase::Ready,
            // The boot of the real root mounts it (or enables it).
            (_, Until::Opened) => st.phase = Phase::Opened,
            (Content::Filesystem, Until::Mounted) => {
                mount(host, &o.fs_device, def, ephemeral_down, &mut st)?
            }
            (Content::Swap, Until::Mounted) => enable_swap(host, &o.fs_device, def, &mut st)?,
        }
        if let Some(run) = &o.online {
            run_online(def, run, &mut st);
        }
        Ok(())
    });
    if let Err(e) = ready {
        fail(&mut st, &e);
    }
    st
}

/// Hands a reencryption to its own process, the volume in use meanwhile;
/// says so in the status (a failure to start it too: the volume is usable,
/// the next boot tries again).
fn run_online(def: &VolumeDef, run: &OnlineRun, st: &mut VolumeStatus) {
    let (Some(run_dir), Some(device)) = (&def.run_dir, &st.device) else {
        return;
    };
    let job = online::Job {
        volume: def.name.clone(),
        device: PathBuf::from(device),
        active: def.mapper_name(),
        run_dir: run_dir.clone(),
        header: (run.operation == Operation::Decrypt).then(|| online::HeaderFile {
            open_at: crate::decrypt::header_file(&def.decrypt_dir, &def.name),
            placed: crate::decrypt::header_file(&def.decrypt_dir_placed, &def.name),
        }),
    };
    let console = crate::inplace::progress_on_console();
    st.changes.push(match job.spawn(run, console) {
        Ok(pid) => format!(
            "{} online (process {pid}); `volctl status` shows its progress",
            crate::converge::doing(run.operation)
        ),
        Err(e) => format!("could not start the online reencryption: {e}"),
    });
    st.reencryption = online::progress_of(run_dir, &def.name);
}
