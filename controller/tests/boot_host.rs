//! The whole boot on this machine's kernel, with real parts where they
//! exist here: a disk image, its GPT, a loop device, mkfs.ext4 and mount.
//! STATE is plain (this kernel has no device-mapper; encrypted boots are
//! the VM suite's): the phases run in order, the first boot lays STATE
//! out, formats and mounts it and stores the config; the second finds it
//! by its label and reads the config back. Both count their GPT reads:
//! one per disk, and one more after the boot wrote a table.

use controller::boot::{boot, BootOptions};
use controller::node::context::NodeContext;
use controller::node::status::{BootStatus, Phase};
use std::path::{Path, PathBuf};

const CONFIG: &str = "apiVersion: v1alpha1\nkind: VolumeConfig\nname: STATE\n";

fn options(dir: &Path, disk: &Path, files: Vec<PathBuf>) -> BootOptions {
    BootOptions {
        node: NodeContext {
            disks: vec![disk.to_path_buf()],
            status_file: dir.join("run/status.json"),
            node_uuid: providers::node_uuid(
                Some("4c4c4544-0038-5910-8057-b4c04f4d3732"),
                Path::new("/nonexistent"),
            ),
            reboot_command: "false".into(),
            kms: Default::default(),
            tpm: Default::default(),
        },
        config_files: files,
        state_mount: dir.join("state"),
        parallel: 1,
        maintenance_timeout: Some(std::time::Duration::from_secs(1)),
        api: None,
        recovery_key_out: None,
        asker: None,
        until: Default::default(),
        key_server_deadline: controller::boot::KEY_SERVER_DEADLINE,
    }
}

/// A zeroed disk image of `mib` MiB in `dir`.
fn blank_disk(dir: &Path, mib: u64) -> PathBuf {
    let disk = dir.join("disk.img");
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(mib << 20)
        .unwrap();
    disk
}

/// A runtime on this thread (the GPT read counter is per thread).
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Boots on the current thread; returns the status and the GPT opens the
/// boot made (counted per thread).
fn boot_here(opts: &BootOptions) -> (BootStatus, usize) {
    let rt = runtime();
    let before = controller::parttable::read::opened();
    let status = rt.block_on(boot(opts)).unwrap();
    (status, controller::parttable::read::opened() - before)
}

/// Unmounts what the boot mounted (also when the test fails).
struct Closing(BootStatus);

impl Drop for Closing {
    fn drop(&mut self) {
        let (_, errors) = controller::node::close::close(&mut self.0);
        assert!(errors.is_empty() || std::thread::panicking(), "{errors:?}");
    }
}

#[test]
fn a_plain_state_is_laid_out_formatted_and_found_again_with_one_gpt_read_a_boot() {
    let dir = tempfile::tempdir().unwrap();
    let disk = blank_disk(dir.path(), 512);
    // The system disk as an installer leaves it: META only.
    let made = std::process::Command::new("sgdisk")
        .args(["-n1:0:+1M", "-c1:META"])
        .arg(&disk)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(made.success());
    let cfg = dir.path().join("config.yaml");
    std::fs::write(&cfg, CONFIG).unwrap();

    let (first, reads) = boot_here(&options(dir.path(), &disk, vec![cfg]));
    let first = Closing(first);
    let state = &first.0.volumes[0];
    assert_eq!(state.name, "STATE");
    assert_eq!(state.phase, Phase::Ready, "{:?}", first.0);
    assert!(!first.0.partitions_created.is_empty(), "{:?}", first.0);
    assert_eq!(
        reads, 2,
        "the disk read at the start and after its table was written"
    );
    let mount = dir.path().join("state");
    assert_eq!(state.mount_point.as_deref(), Some(mount.to_str().unwrap()));
    let stored = std::fs::read_to_string(mount.join("config.yaml")).unwrap();
    assert_eq!(stored, CONFIG, "the config is stored on STATE");
    let status_file = dir.path().join("run/status.json");
    assert!(status_file.exists(), "the status is written");
    drop(first);

    let (second, reads) = boot_here(&options(dir.path(), &disk, vec![]));
    let second = Closing(second);
    assert_eq!(second.0.volumes[0].phase, Phase::Ready, "{:?}", second.0);
    assert!(second.0.partitions_created.is_empty(), "{:?}", second.0);
    assert_eq!(reads, 1, "one GPT read when nothing is laid out");
    assert!(
        second.0.config_source.contains("STATE"),
        "{}",
        second.0.config_source
    );
}

#[test]
fn an_invalid_config_file_stops_the_boot_before_any_table_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let disk = blank_disk(dir.path(), 256);
    let cfg = dir.path().join("config.yaml");
    std::fs::write(
        &cfg,
        "apiVersion: v1alpha1\nkind: VolumeConfig\nname: STATE\nencryption: 7\n",
    )
    .unwrap();
    let rt = runtime();
    let e = rt
        .block_on(boot(&options(dir.path(), &disk, vec![cfg])))
        .unwrap_err()
        .to_string();
    assert!(e.contains("config.yaml") && e.contains("encryption"), "{e}");
    let untouched = std::fs::read(&disk).unwrap().iter().all(|&b| b == 0);
    assert!(untouched, "nothing was written to the disk");
}

#[test]
fn a_blank_node_without_a_config_waits_in_maintenance_mode_then_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let disk = blank_disk(dir.path(), 256);
    let opts = options(dir.path(), &disk, vec![]);
    let rt = runtime();
    let e = rt.block_on(boot(&opts)).unwrap_err();
    assert!(matches!(e, controller::boot::BootError::NoConfig), "{e}");
    let marker = dir.path().join("run/maintenance");
    assert!(!marker.exists(), "the marker goes when the wait ends");
}
