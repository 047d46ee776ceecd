//! The every-write harness: an operation that writes a device is run with a
//! power cut at its write 1, 2, …, N (N: the writes an uncut run makes to
//! the device), in both modes (the cut write lands whole, or half); after
//! each cut a check of the state the cut left, then what a user runs next
//! and a check of its outcome, outside volctl. The cut is the injector
//! `tests/fault/cut_writes.c` (LD_PRELOAD), a test double for a power cut.
//!
//! Cut points are independent, so they run on two threads (each volctl in
//! a mount namespace of its own, [`isolated`]); a failing point does not
//! stop the sweep: every failure is collected and reported with its point,
//! so one run shows them all.

use super::run_ok;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// How the cut write lands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CutMode {
    /// Whole: the power fails right after it.
    Whole,
    /// Half of its bytes: the power fails during it.
    Torn,
}

impl CutMode {
    /// Both modes, in the order swept.
    pub const BOTH: [CutMode; 2] = [CutMode::Whole, CutMode::Torn];

    fn env(self) -> &'static str {
        match self {
            CutMode::Whole => "whole",
            CutMode::Torn => "torn",
        }
    }
}

/// A cut point: the power fails at write `at` (1-based) to the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cut {
    /// The write it fails at.
    pub at: usize,
    /// How that write lands.
    pub mode: CutMode,
}

impl std::fmt::Display for Cut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "write {} ({})", self.at, self.mode.env())
    }
}

/// The injector, built once from its C source into a scratch folder.
pub struct Injector {
    so: PathBuf,
    _dir: tempfile::TempDir,
}

impl Injector {
    /// Builds the shared library.
    pub fn build() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let so = super::cut_shim(dir.path());
        Injector { so, _dir: dir }
    }

    /// The library's path (for tests that arm commands themselves).
    pub fn path(&self) -> &Path {
        &self.so
    }

    /// Arms `cmd` to lose power at `cut` of its writes to `img`.
    pub fn arm(&self, cmd: &mut Command, img: &Path, cut: Cut) {
        cmd.env("LD_PRELOAD", &self.so)
            .env("VOLCTL_CUT_PATH", img)
            .env("VOLCTL_CUT_AFTER", (cut.at - 1).to_string())
            .env("VOLCTL_CUT_MODE", cut.mode.env());
    }

    /// Runs `cmd` uncut; returns its output and the writes it made to
    /// `img`.
    pub fn count(&self, mut cmd: Command, img: &Path) -> (Output, usize) {
        let file = tempfile::NamedTempFile::new().unwrap();
        cmd.env("LD_PRELOAD", &self.so)
            .env("VOLCTL_CUT_PATH", img)
            .env("VOLCTL_CUT_COUNT", file.path());
        let out = cmd.output().unwrap();
        let n = std::fs::read_to_string(file.path()).unwrap_or_default();
        (out, n.trim().parse().unwrap_or(0))
    }
}

/// One operation under the harness.
pub struct Operation<'a> {
    /// Its name, in the report.
    pub name: &'a str,
    /// The image before it (copied afresh for every cut point).
    pub base: &'a Path,
    /// Which writes to cut at.
    pub points: Points,
    /// Its command on an image.
    pub command: &'a (dyn Fn(&Path) -> Command + Sync),
    /// Checks the state a cut at `Cut` left, before anything runs again
    /// (e.g. the old or the new keys open it). Panics on a failure.
    pub after_cut: &'a (dyn Fn(&Path, &Path, Cut) + Sync),
    /// Runs what a user runs next and checks its outcome outside volctl
    /// (image, scratch folder, cut). Panics on a failure.
    pub next: &'a (dyn Fn(&Path, &Path, Cut) + Sync),
}

impl<'a> Operation<'a> {
    /// An operation cut at every one of its writes.
    pub fn every_write(
        name: &'a str,
        base: &'a Path,
        command: &'a (dyn Fn(&Path) -> Command + Sync),
        after_cut: &'a (dyn Fn(&Path, &Path, Cut) + Sync),
        next: &'a (dyn Fn(&Path, &Path, Cut) + Sync),
    ) -> Self {
        Operation {
            name,
            base,
            points: Points::Every,
            command,
            after_cut,
            next,
        }
    }
}

/// Which of an operation's writes a sweep cuts at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Points {
    /// Every one.
    Every,
    /// The first `head`, the last `tail`, and every `stride`-th between:
    /// for an operation of thousands of writes (libcryptsetup's checksum
    /// recovery writes each 4 KiB block of a hotzone on its own).
    Sampled {
        /// Writes cut at the start.
        head: usize,
        /// Writes cut at the end.
        tail: usize,
        /// The stride between.
        stride: usize,
    },
}

impl Points {
    /// The writes to cut at, of `n`.
    fn of(self, n: usize) -> Vec<usize> {
        match self {
            Points::Every => (1..=n).collect(),
            Points::Sampled { head, tail, stride } => (1..=n)
                .filter(|&at| at <= head || at + tail > n || at % stride.max(1) == 0)
                .collect(),
        }
    }
}

/// What a sweep found.
#[derive(Debug)]
pub struct Report {
    /// The operation.
    pub name: String,
    /// Writes an uncut run makes to the device.
    pub writes: usize,
    /// Cut points run (both modes).
    pub points: usize,
    /// How they were chosen.
    pub chosen: Points,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let which = match self.chosen {
            Points::Every => "every write".to_string(),
            Points::Sampled { head, tail, stride } => {
                format!("the first {head}, the last {tail} and every {stride}th write")
            }
        };
        write!(
            f,
            "every-write: {}: {} writes, {} cut points ({which}, whole and torn), all recovered",
            self.name, self.writes, self.points
        )
    }
}

/// A copy of `base` in `dir` (sparse).
pub fn copy_image(base: &Path, dir: &Path) -> PathBuf {
    let img = dir.join("disk.img");
    run_ok(
        Command::new("cp")
            .arg("--sparse=always")
            .arg(base)
            .arg(&img),
    );
    img
}

/// A command that runs `program` with a private, empty /run/cryptsetup (a
/// mount namespace of its own): libcryptsetup locks a reencryption by the
/// header's UUID there, and the copies of one image that the cut points
/// run on share their UUID, so without this two points would collide.
pub fn isolated(program: &Path) -> Command {
    isolated_beside(program, "")
}

/// [`isolated`], the shell running `beside` (a command line ending in
/// `&`, or nothing) before it becomes `program`.
pub fn isolated_beside(program: &Path, beside: &str) -> Command {
    let mut c = Command::new("unshare");
    c.args(["-m", "sh", "-c"])
        .arg(format!(
            "mount -t tmpfs volctl-test /run/cryptsetup && {{ {beside} exec \"$0\" \"$@\"; }}"
        ))
        .arg(program);
    c
}

/// [`isolated`], run while holding the lock file `lock` (`flock`): for
/// cut points that share one device the kernel does not arbitrate, e.g. a
/// swtpm reached without a resource manager (two processes' objects at
/// once fill its object slots).
pub fn isolated_locked(program: &Path, lock: &Path) -> Command {
    // The shell takes the lock on a descriptor `program` inherits (no
    // process of its own stays between: the injector counts the writes of
    // the process it ends in).
    isolated_beside(program, &lock_first(lock))
}

/// The shell line that takes the lock file `lock` on a descriptor the
/// program inherits, having closed every descriptor but 0–2 it inherited:
/// tpm2-tss opens its swtpm connections without close-on-exec, so a child
/// started while another thread of the test held one kept it open while
/// waiting for the lock; swtpm serves one connection at a time, so the
/// lock's holder then waited for the TPM for ever (seen: the PIN-change
/// sweep hung at its first cut point). `sh` (dash) names descriptors by one
/// digit, so 3–9 are closed: a test process holds a handful.
pub fn lock_first(lock: &Path) -> String {
    format!(
        "for n in 3 4 5 6 7 8 9; do eval \"exec $n>&-\"; done; exec 9>'{}'; flock 9;",
        lock.display()
    )
}

/// Counts the operation's writes, then cuts it at every one in both modes;
/// panics with every failing point listed.
pub fn sweep(inj: &Injector, op: &Operation<'_>) -> Report {
    let writes = count_writes(inj, op);
    assert!(writes > 0, "{}: the operation wrote nothing", op.name);
    let ats = op.points.of(writes);
    let points: Vec<Cut> = CutMode::BOTH
        .iter()
        .flat_map(|&mode| ats.iter().map(move |&at| Cut { at, mode }))
        .collect();
    let failures = run_points(inj, op, &points);
    assert!(
        failures.is_empty(),
        "{}: {} of {} cut points failed:\n{}",
        op.name,
        failures.len(),
        points.len(),
        failures.join("\n")
    );
    let report = Report {
        name: op.name.to_string(),
        writes,
        points: points.len(),
        chosen: op.points,
    };
    eprintln!("{report}");
    report
}

/// [`sweep`] with an injector of its own.
pub fn sweep_alone(op: &Operation<'_>) -> Report {
    sweep(&Injector::build(), op)
}

/// The writes an uncut run of `op` makes (it must succeed).
pub fn count_writes(inj: &Injector, op: &Operation<'_>) -> usize {
    let dir = tempfile::tempdir().unwrap();
    let img = copy_image(op.base, dir.path());
    let (out, n) = inj.count((op.command)(&img), &img);
    assert!(
        out.status.success(),
        "{}: the uncut run failed: {}",
        op.name,
        String::from_utf8_lossy(&out.stderr)
    );
    n
}

/// Runs every point of `points` on two threads; returns the failures.
fn run_points(inj: &Injector, op: &Operation<'_>, points: &[Cut]) -> Vec<String> {
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                while let Some(&cut) = points.get(next.fetch_add(1, Ordering::SeqCst)) {
                    if let Err(e) = run_point(inj, op, cut) {
                        failures.lock().unwrap().push(format!("  {cut}: {e}"));
                    }
                }
            });
        }
    });
    let mut f = failures.into_inner().unwrap();
    f.sort();
    f
}

/// The image `op` leaves when cut at `cut`, in `dir`.
pub fn cut_image(
    inj: &Injector,
    op: &Operation<'_>,
    cut: Cut,
    dir: &Path,
) -> Result<PathBuf, String> {
    let img = copy_image(op.base, dir);
    let mut cmd = (op.command)(&img);
    inj.arm(&mut cmd, &img, cut);
    let out = cmd.output().unwrap();
    if out.status.code() != Some(137) {
        return Err(format!(
            "not cut (exit {:?}): {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(img)
}

/// One cut point: cut, check, go on, check.
fn run_point(inj: &Injector, op: &Operation<'_>, cut: Cut) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let img = cut_image(inj, op, cut, dir.path())?;
    let checks = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        (op.after_cut)(&img, dir.path(), cut);
        (op.next)(&img, dir.path(), cut);
    }));
    checks.map_err(|e| {
        e.downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panicked".into())
    })
}

/// SHA-256 of the image from the data segment's offset to its end.
pub fn data_area(img: &Path) -> Vec<u8> {
    let at: usize = super::dump(img)["segments"]["0"]["offset"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    Sha256::digest(&std::fs::read(img).unwrap()[at..]).to_vec()
}

/// Fills the first 4 MiB of the data area with a pattern.
pub fn fill_data(img: &Path) {
    use std::os::unix::fs::FileExt;
    let at: u64 = super::dump(img)["segments"]["0"]["offset"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(img).unwrap();
    f.write_all_at(&super::patterned(4 << 20), at).unwrap();
}

/// A fresh sparse 40 MiB image under `dir/base`.
pub fn base_image(dir: &Path) -> PathBuf {
    let img = dir.join("base").join("disk.img");
    std::fs::create_dir_all(img.parent().unwrap()).unwrap();
    std::fs::File::create(&img)
        .unwrap()
        .set_len(40 << 20)
        .unwrap();
    img
}

/// `volctl converge` of EPHEMERAL on `img` with `cfg` (JSON output), the
/// node UUID set and no STATE salt, isolated for the injector.
pub fn converge_ephemeral(img: &Path, cfg: &Path) -> Command {
    let mut c = isolated(Path::new(env!("CARGO_BIN_EXE_volctl")));
    c.args(["converge", "--volume", "EPHEMERAL", "--device"])
        .arg(img)
        .arg("-f")
        .arg(cfg)
        .args(["-o", "json"])
        .env("VOLCTL_NODE_UUID", super::UUID)
        .env_remove("VOLCTL_STATE_SALT_FILE");
    c
}
