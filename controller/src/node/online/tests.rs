use super::*;
use crate::converge::{OnlineRun, Snapshot};
use crate::inplace::estimate::MibPerSec;
use crate::luks2::reencryption::Operation;

fn progress(state: RunState, pid: u32) -> Progress {
    Progress {
        operation: Operation::Encrypt,
        state,
        at: Snapshot {
            done_bytes: 300 << 20,
            total_bytes: 1000 << 20,
            rate: Some(MibPerSec(150.0)),
            eta_seconds: Some(5),
        },
        pid,
        error: None,
        file: PathBuf::new(),
    }
}

#[test]
fn a_running_line_has_percent_rate_and_time_left() {
    assert_eq!(
        progress(RunState::Running, 1).line("persistence"),
        "persistence: encrypting in place 30% (300/1000 MiB, 150 MiB/s, about 5 s left)"
    );
    assert!(progress(RunState::Stopped, 1)
        .line("p")
        .ends_with("(stopped; the next boot resumes it)"));
}

#[test]
fn the_run_process_gets_the_key_on_stdin_never_in_its_arguments() {
    let job = Job {
        volume: "persistence".into(),
        device: "/dev/vda4".into(),
        active: "luks2-persistence".into(),
        run_dir: "/run/volctl".into(),
        header: None,
    };
    let run = OnlineRun {
        operation: Operation::RotateVolumeKey,
        old: api_types::KeyslotId::new(31),
        new: api_types::KeyslotId::new(0),
        passphrase: providers::Passphrase::new(b"sekrit".to_vec()),
    };
    let args = job.args(&run).join(" ");
    assert_eq!(
        args,
        "--volume persistence --device /dev/vda4 --active-name luks2-persistence --run-dir /run/volctl --operation rotate-volume-key --old 31 --new 0"
    );
    assert!(!args.contains("sekrit"));
    assert_eq!(run.activation_slot(), None, "a rotation opens by the pair");
}

#[test]
fn a_run_whose_process_is_gone_reads_as_stopped() {
    let d = tempfile::tempdir().unwrap();
    let job = Job {
        volume: "persistence".into(),
        device: "/dev/null".into(),
        active: "x".into(),
        run_dir: d.path().into(),
        header: None,
    };
    // No such process (above Linux's largest pid).
    job.record(&progress(RunState::Running, 1 << 23));
    let p = progress_of(d.path(), "persistence").unwrap();
    assert_eq!(p.state, RunState::Stopped);
    // This test's own process is the same program: going.
    job.record(&progress(RunState::Running, std::process::id()));
    let p = progress_of(d.path(), "persistence").unwrap();
    assert_eq!(p.state, RunState::Running);
    job.record(&progress(RunState::Done, 1));
    assert_eq!(
        progress_of(d.path(), "persistence").unwrap().state,
        RunState::Done
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(job.progress_path())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(progress_of(d.path(), "other").is_none());
}
