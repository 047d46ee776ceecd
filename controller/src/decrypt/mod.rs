//! Decryption in place (`volctl disable-encryption`): an encrypted
//! volume's data becomes plaintext at the start of its device, every byte
//! kept, the volume offline.
//!
//! libcryptsetup decrypts a volume whose data sits after its header only
//! with the header detached (`cryptsetup reencrypt --decrypt --header`):
//! the data moves back by the header's size, over the header's place. So
//! the header goes to a file first, and from the moment the device's own
//! copy is wiped that file is the only way to the data until the run
//! ends: on a node it lives on STATE (`/var/lib/volctl/state/decrypt/`),
//! encrypted and persistent; it holds what the device's header held
//! (keyslots, tokens), 0600.
//!
//! The steps ([`Step`]), each one write or one libcryptsetup operation,
//! and each cut-safe: a run started anew reads what the file and the
//! device show and goes on from there ([`next_step`]). The keys are the
//! config's, unchanged: any configured key opens the volume by the
//! device's header before the wipe and by the file's after it.

mod step;

pub use step::{next_step, DeviceSide, Step, StepRefusal};

use crate::converge::{self, ConvergeError, Mode, Opener, ProgressReport};
use crate::device::{self, Access, CryptsetupDevice, DetachedHeader, DeviceError, LuksDevice};
use crate::inplace::estimate::MibPerSec;
use crate::luks2::header::{self, Luks2Header, Probe};
use crate::volume::VolumeSpec;
use providers::ProviderEnv;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// Where a node keeps the header files of decryptions under way (on
/// STATE).
pub const NODE_HEADER_DIR: &str = "/var/lib/volctl/state/decrypt";

/// The folder of volume `volume`'s decryption, in `dir`: it holds the
/// header file while the decryption is under way, and nothing otherwise
/// (so a boot can tell by the folder alone).
pub fn volume_dir(dir: &Path, volume: &str) -> PathBuf {
    dir.join(volume)
}

/// The header file of volume `volume`'s decryption, in `dir`.
pub fn header_file(dir: &Path, volume: &str) -> PathBuf {
    volume_dir(dir, volume).join("luks2-header")
}

/// Where the header is exported to before it is renamed into place (beside
/// the volume's folder, so that the folder holds a whole header or none).
fn part_file(dir: &Path, volume: &str) -> PathBuf {
    dir.join(format!(".{volume}.luks2-header.part"))
}

/// Why a decryption did not run (or stopped).
#[derive(Debug, thiserror::Error)]
pub enum DecryptError {
    /// The state found allows no step; nothing was written.
    #[error("cannot decrypt {volume} on {device}: {source}")]
    Refused {
        /// The volume.
        volume: String,
        /// Its device.
        device: String,
        /// Why.
        #[source]
        source: StepRefusal,
    },
    /// STATE is never decrypted in place.
    #[error("STATE is not decrypted in place: it holds the header files of decryptions under way and the salt lockToState keys are bound to; nothing was written")]
    State,
    /// Finding the key, or reading the header, failed.
    #[error(transparent)]
    Converge(#[from] ConvergeError),
    /// A device operation failed.
    #[error(transparent)]
    Device(#[from] DeviceError),
    /// The header file or its folder.
    #[error("cannot {what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file or folder.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A worker thread failed.
    #[error("the {0} task failed")]
    Task(&'static str),
}

/// What a decryption did, or (dry run) would do.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DecryptOutcome {
    /// The volume.
    pub volume: String,
    /// Its device.
    pub device: String,
    /// The detached header file.
    pub header_file: String,
    /// The steps done (or, dry run, left), in order.
    pub steps: Vec<Step>,
    /// Whether anything was written.
    pub applied: bool,
    /// Data to decrypt, MiB (the device's size less the header's).
    pub data_mib: u64,
    /// Dry run: about how long the data takes at this machine's cipher
    /// speed.
    pub eta_seconds: Option<u64>,
    /// The run's rate, when data was decrypted now.
    pub rate: Option<MibPerSec>,
    /// KDF runs made.
    pub kdf_runs: u64,
    /// Online: the run left to go on through the device the volume is now
    /// active as (the data not yet decrypted).
    #[serde(skip)]
    pub online: Option<converge::OnlineRun>,
}

/// Where the data of a decryption is decrypted: here, the volume offline,
/// or online, through the device it is activated as meanwhile.
#[derive(Debug, Clone, Copy)]
pub enum RunData<'a> {
    /// Here, to its end.
    Here,
    /// Here, to its end, through the device `name` (`/dev/mapper/<name>`)
    /// the volume is active as already, opened by its own header and in
    /// use (libcryptsetup maps it anew as the data moves).
    Active {
        /// The dm-crypt device's name.
        name: &'a str,
    },
    /// Activated as `name` (`/dev/mapper/<name>`), the run left to an
    /// online run ([`DecryptOutcome::online`]).
    Online {
        /// The dm-crypt device's name.
        name: &'a str,
        /// Its activation options.
        options: &'a crate::device::ActivationOptions,
    },
}

/// One decryption: the volume, its device, its header file.
pub struct Decryption<'a> {
    spec: &'a VolumeSpec,
    device: Arc<CryptsetupDevice>,
    header: PathBuf,
    /// The folder of header files.
    dir: PathBuf,
    env: &'a ProviderEnv,
    opener: Option<Opener>,
    kdf_runs: u64,
    /// The device's size, read once at the start.
    size: u64,
}

impl<'a> Decryption<'a> {
    /// The decryption of `spec` on `device`, its header file in `dir`.
    pub fn new(spec: &'a VolumeSpec, device: &Path, dir: &Path, env: &'a ProviderEnv) -> Self {
        Decryption {
            spec,
            device: Arc::new(CryptsetupDevice::new(
                device,
                Access::ReadWrite,
                Some(spec.encryption.clone()),
            )),
            header: header_file(dir, &spec.name),
            dir: dir.to_path_buf(),
            env,
            opener: None,
            kdf_runs: 0,
            size: 0,
        }
    }

    /// Whether there is anything to decrypt: a LUKS2 header on the device,
    /// or a header file (a decryption under way, or done but for the
    /// file's removal).
    pub fn pending(&self) -> Result<bool, DecryptError> {
        Ok(self.header.exists()
            || matches!(device_side(self.device.path())?, DeviceSide::Luks2 { .. }))
    }

    /// Runs every step left (`Mode::Apply`), or shows them (`DryRun`: the
    /// key that opens it is found, one KDF run; nothing is written).
    pub async fn run(self, mode: Mode) -> Result<DecryptOutcome, DecryptError> {
        self.run_data(mode, RunData::Here).await
    }

    /// Like [`Self::run`], the data decrypted `data`: online, the steps
    /// before the data's are taken, the volume activated, and the rest
    /// left to [`DecryptOutcome::online`] (`None` when nothing was left).
    pub async fn run_data(
        mut self,
        mode: Mode,
        data: RunData<'_>,
    ) -> Result<DecryptOutcome, DecryptError> {
        if self.spec.name == "STATE" {
            return Err(DecryptError::State);
        }
        let first = self.next().await?;
        let mut outcome = self.outcome(first).await?;
        if mode == Mode::DryRun {
            return self.dry_run(first, outcome).await;
        }
        let mut step = first;
        loop {
            match self.take(step, data).await? {
                Taken::Rate(rate) => outcome.rate = Some(rate),
                Taken::Online(run) => {
                    outcome.online = Some(run);
                    outcome.steps.push(step);
                    break;
                }
                Taken::Done => {}
            }
            outcome.steps.push(step);
            if step == Step::Record && !matches!(data, RunData::Online { .. }) {
                outcome.steps.push(Step::Run);
            }
            if step == Step::Finish {
                break;
            }
            step = self.next().await?;
        }
        outcome.applied = true;
        outcome.kdf_runs = self.kdf_runs + self.device.kdf_runs();
        Ok(outcome)
    }

    /// The steps left, none taken (the key that opens it found first,
    /// unless only the file's removal is left).
    async fn dry_run(
        mut self,
        first: Step,
        mut outcome: DecryptOutcome,
    ) -> Result<DecryptOutcome, DecryptError> {
        // Finishing needs no key (the header file may hold none by then).
        if first != Step::Finish {
            self.opener().await?;
        }
        outcome.steps = first.and_after().collect();
        outcome.eta_seconds = converge::eta(self.spec, outcome.data_mib << 20);
        outcome.kdf_runs = self.kdf_runs;
        Ok(outcome)
    }

    /// The outcome before any step, with the size of the data.
    async fn outcome(&mut self, first: Step) -> Result<DecryptOutcome, DecryptError> {
        let dev = self.device.clone();
        let size = off_thread("size", move || dev.size()).await??;
        self.size = size;
        let from = if first == Step::Export {
            self.device.path().to_path_buf()
        } else {
            self.header.clone()
        };
        let shift = device::data_shift(&from);
        Ok(DecryptOutcome {
            volume: self.spec.name.clone(),
            device: self.device.path().display().to_string(),
            header_file: self.header.display().to_string(),
            steps: vec![],
            applied: false,
            data_mib: size.saturating_sub(shift) >> 20,
            eta_seconds: None,
            rate: None,
            kdf_runs: 0,
            online: None,
        })
    }

    /// The next step, from what the file and the device show now.
    async fn next(&self) -> Result<Step, DecryptError> {
        let file = self.file_side()?;
        let device = device_side(self.device.path())?;
        next_step(file.as_ref(), &device).map_err(|source| DecryptError::Refused {
            volume: self.spec.name.clone(),
            device: self.device.path().display().to_string(),
            source,
        })
    }

    fn file_side(&self) -> Result<Option<DetachedHeader>, DecryptError> {
        if !self.header.exists() {
            return Ok(None);
        }
        Ok(device::read_detached(&self.header)?)
    }

    /// Takes `step`, the data decrypted `data`.
    async fn take(&mut self, step: Step, data: RunData<'_>) -> Result<Taken, DecryptError> {
        tracing::info!(volume = %self.spec.name, ?step, "decryption in place");
        let dev = self.device.clone();
        match (step, data) {
            (Step::Export, _) => self.export().await?,
            (Step::Wipe, _) => off_thread("wipe", move || dev.wipe_metadata()).await??,
            (Step::Record | Step::Run, RunData::Here) => {
                return self.decrypt_data(step, None).await.map(Taken::Rate)
            }
            (Step::Record | Step::Run, RunData::Active { name }) => {
                return self.decrypt_data(step, Some(name)).await.map(Taken::Rate)
            }
            (Step::Record, RunData::Online { .. }) => {
                let ((slot, pass), hdr) = (self.opener().await?, self.header.clone());
                off_thread("record", move || {
                    dev.record_decryption(&hdr, (slot, pass.expose()))
                })
                .await??;
            }
            (Step::Run, RunData::Online { name, options }) => {
                return self.activate(name, options).await.map(Taken::Online)
            }
            (Step::Finish, _) => remove_synced(&self.header)?,
        }
        Ok(Taken::Done)
    }

    /// Activates the volume as `name` by the header file, mid-decryption;
    /// the run left to go on online.
    async fn activate(
        &mut self,
        name: &str,
        options: &crate::device::ActivationOptions,
    ) -> Result<converge::OnlineRun, DecryptError> {
        let (slot, pass) = self.opener().await?;
        let (dev, hdr, n, o, p) = (
            self.device.clone(),
            self.header.clone(),
            name.to_string(),
            options.clone(),
            pass.clone(),
        );
        off_thread("activation", move || {
            dev.activate_decrypting(&hdr, &n, (slot, p.expose()), &o)
        })
        .await??;
        Ok(converge::OnlineRun {
            operation: crate::luks2::reencryption::Operation::Decrypt,
            old: Some(slot),
            new: None,
            passphrase: pass,
        })
    }

    /// Exports the header beside its place, synced, then renames it there:
    /// the file is whole or absent.
    async fn export(&self) -> Result<(), DecryptError> {
        let dir = self.header.parent().unwrap_or(Path::new("."));
        make_private_dir(dir)?;
        let part = part_file(&self.dir, &self.spec.name);
        if part.exists() {
            std::fs::remove_file(&part).map_err(io("remove", &part))?;
        }
        let (dev, to) = (self.device.clone(), part.clone());
        off_thread("export", move || dev.export_header(&to)).await??;
        std::fs::rename(&part, &self.header).map_err(io("rename", &part))?;
        sync_dir(dir)
    }

    /// Records the decryption and runs it ([`Step::Record`]: one KDF run
    /// for both), or resumes it ([`Step::Run`]), to its end with progress;
    /// through the device `active` when the volume is in use.
    async fn decrypt_data(
        &mut self,
        step: Step,
        active: Option<&str>,
    ) -> Result<MibPerSec, DecryptError> {
        let (slot, pass) = self.opener().await?;
        let (dev, hdr, size) = (self.device.clone(), self.header.clone(), self.size);
        let active = active.map(str::to_string);
        let mut report =
            ProgressReport::labelled(self.spec.name.clone(), "decrypting in place", size);
        let started = Instant::now();
        off_thread("decrypt", move || {
            let progress = &mut |done, total| {
                report.step(done, total);
                true
            };
            match step {
                Step::Record => {
                    dev.start_decryption(&hdr, (slot, pass.expose()), active.as_deref(), progress)
                }
                _ => dev.run_decryption(&hdr, (slot, pass.expose()), active.as_deref(), progress),
            }
        })
        .await??;
        Ok(MibPerSec::of(size, started.elapsed()))
    }

    /// The key that opens the volume now: by the device's header before
    /// the wipe, by the file's after it (found once: one KDF run).
    async fn opener(
        &mut self,
    ) -> Result<(api_types::KeyslotId, providers::Passphrase), DecryptError> {
        if let Some(o) = &self.opener {
            return Ok((o.slot, o.passphrase.clone()));
        }
        let source = if self.header.exists() {
            self.header.clone()
        } else {
            self.device.path().to_path_buf()
        };
        // volctl's own reader: a header in decryption is libcryptsetup's
        // (no volctl proof token), in a file volctl made on STATE.
        let h = read_header(&source)?;
        let handle = device::open(&source, Access::ReadOnly, None)?;
        let found = converge::opener(self.spec, &h, &handle, self.env).await?;
        self.kdf_runs += handle.kdf_runs();
        let pair = (found.slot, found.passphrase.clone());
        self.opener = Some(found);
        Ok(pair)
    }
}

/// What taking a step gave.
enum Taken {
    /// Nothing to tell.
    Done,
    /// The data decrypted here, at this rate.
    Rate(MibPerSec),
    /// The volume activated, the run left to go on online.
    Online(converge::OnlineRun),
}

/// What the device shows: a LUKS2 header (either copy), or none.
fn device_side(path: &Path) -> Result<DeviceSide, DecryptError> {
    Ok(match probe(path)? {
        Probe::Luks2(h) => DeviceSide::Luks2 { uuid: h.uuid },
        Probe::None => DeviceSide::NotLuks,
    })
}

/// The LUKS2 header at `path`, by volctl's reader.
fn read_header(path: &Path) -> Result<Luks2Header, DecryptError> {
    match probe(path)? {
        Probe::Luks2(h) => Ok(*h),
        Probe::None => Err(unreadable(path, "no LUKS2 header".into())),
    }
}

fn probe(path: &Path) -> Result<Probe, DecryptError> {
    header::read(path).map_err(|e| unreadable(path, e.to_string()))
}

fn unreadable(path: &Path, reason: String) -> DecryptError {
    DeviceError::Failed {
        op: "read the header",
        path: path.display().to_string(),
        reason,
    }
    .into()
}

/// Runs `f` on a blocking thread.
async fn off_thread<T: Send + 'static>(
    what: &'static str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, DecryptError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| DecryptError::Task(what))
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> DecryptError {
    let path = path.display().to_string();
    move |source| DecryptError::Io { what, path, source }
}

/// Makes `dir` (0700) if it is missing.
fn make_private_dir(dir: &Path) -> Result<(), DecryptError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io("make the folder", dir))
}

/// Syncs folder `dir`, so that a rename or removal in it lasts.
fn sync_dir(dir: &Path) -> Result<(), DecryptError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("sync the folder", dir))
}

/// Removes `file` and syncs its folder.
pub fn remove_synced(file: &Path) -> Result<(), DecryptError> {
    std::fs::remove_file(file).map_err(io("remove", file))?;
    sync_dir(file.parent().unwrap_or(Path::new(".")))
}
