//! A password agent for tests: the systemd ask-password protocol answered
//! from another process (`tests/agents/ask_password_agent.py`), as
//! `systemd-tty-ask-password-agent` or plymouth would.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};

/// The agent script.
pub const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/agents/ask_password_agent.py"
);

/// A password agent process answering from a list, and what it was asked.
pub struct Agent {
    child: Child,
    /// The folder it watches (`VOLCTL_ASK_PASSWORD_DIR`).
    pub dir: PathBuf,
    log: PathBuf,
}

impl Agent {
    /// Starts one in a new folder under `work`, answering `answers` in
    /// order.
    pub fn start(work: &Path, answers: &[&str]) -> Agent {
        let (dir, answers_file, log) = folder(work, answers);
        let child = Command::new("python3")
            .arg(SCRIPT)
            .arg(&dir)
            .arg(&answers_file)
            .arg(&log)
            .spawn()
            .expect("python3 runs the test agent");
        Agent { child, dir, log }
    }

    /// The questions asked so far.
    pub fn questions(&self) -> Vec<String> {
        questions(&self.log)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The questions logged in `log`.
pub fn questions(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

/// A fresh question folder under `work`, its answers file and its log.
fn folder(work: &Path, answers: &[&str]) -> (PathBuf, PathBuf, PathBuf) {
    let dir = work.join(format!("ask-{}", suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let answers_file = dir.with_extension("answers");
    std::fs::write(&answers_file, answers.join("\n") + "\n").unwrap();
    let log = dir.with_extension("log");
    (dir, answers_file, log)
}

fn suffix() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// `program`, isolated as [`super::cuts::isolated`], with an agent
/// answering `answers` started beside it (outside any `LD_PRELOAD` the
/// command is armed with) and gone when it exits; returns the command and
/// the agent's log of questions.
pub fn answered(program: &Path, work: &Path, answers: &[&str]) -> (Command, PathBuf) {
    answered_after(program, work, answers, "")
}

/// [`answered`], the shell first running `first` (e.g. taking a lock with
/// `flock`, as [`super::cuts::isolated_locked`] does).
pub fn answered_after(
    program: &Path,
    work: &Path,
    answers: &[&str],
    first: &str,
) -> (Command, PathBuf) {
    let (dir, answers_file, log) = folder(work, answers);
    let mut c = super::cuts::isolated_beside(
        program,
        &format!("{first} env -u LD_PRELOAD -u VOLCTL_CUT_COUNT python3 \"$VOLCTL_TEST_AGENT\" \"$VOLCTL_ASK_PASSWORD_DIR\" \"$VOLCTL_TEST_ANSWERS\" \"$VOLCTL_TEST_ASK_LOG\" &"),
    );
    c.env("VOLCTL_TEST_AGENT", SCRIPT)
        .env("VOLCTL_ASK_PASSWORD_DIR", &dir)
        .env("VOLCTL_TEST_ANSWERS", &answers_file)
        .env("VOLCTL_TEST_ASK_LOG", &log);
    (c, log)
}

/// `volctl VERB --volume persistence --device IMG -f CFG -o json
/// --tpm-tcti TCTI EXTRA…` on `tpm`, its questions answered by `agent`.
pub fn volctl_answered(
    verb: &str,
    img: &Path,
    cfg: &Path,
    tpm: &providers::test_swtpm::Swtpm,
    agent: &Agent,
    extra: &[&str],
) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_volctl"))
        .arg(verb)
        .args(["--volume", "persistence", "--device"])
        .arg(img)
        .arg("-f")
        .arg(cfg)
        .args(["-o", "json", "--tpm-tcti", &tpm.tcti()])
        .args(extra)
        .env("VOLCTL_ASK_PASSWORD_DIR", &agent.dir)
        .output()
        .unwrap()
}
