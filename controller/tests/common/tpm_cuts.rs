//! What the every-write sweeps of TPM token rewrites share (`tpm allow` and
//! its narrowing, `tpm pin change`): one swtpm reached without a resource
//! manager, so one user at a time (a lock file), and the state that must
//! hold after every cut: the fallback slot 1 opens by its static
//! passphrase, slot 0 by the key the TPM gives back, and the keyslots, the
//! volume key and the data area are the ones from before.

use super::cuts::data_area;
use super::{dump, opens, text, volume_key};
use providers::test_swtpm::Swtpm;
use providers::TpmOptions;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Slot 1's passphrase in these sweeps.
pub const FALLBACK: &str = "fallback-pass";

/// The lock file of `tpm`'s users.
pub fn tpm_lock(tpm: &Swtpm) -> PathBuf {
    std::env::temp_dir().join(format!("volctl-swtpm-{}.lock", tpm.port))
}

/// Runs `f` holding `tpm`'s lock.
pub fn locked<T>(tpm: &Swtpm, f: impl FnOnce() -> T) -> T {
    let lock = std::fs::File::create(tpm_lock(tpm)).unwrap();
    lock.lock().unwrap();
    f()
}

/// Where `tpm` is, for providers.
pub fn options(tpm: &Swtpm) -> TpmOptions {
    TpmOptions {
        tcti: tpm.tcti(),
        efivars_dir: "/nonexistent".into(),
    }
}

/// Slot 0's token data, as it is on the header.
pub fn tpm_token(img: &Path) -> providers::KeyData {
    let d = dump(img);
    let token = d["tokens"]
        .as_object()
        .unwrap()
        .values()
        .find(|t| t["keyslots"] == serde_json::json!(["0"]))
        .expect("slot 0's token")
        .clone();
    let kind = api_types::KeySource::from_name(token["kind"].as_str().unwrap()).unwrap();
    providers::KeyData::read(kind, &token["data"])
}

/// What must hold after every cut and every next run.
pub struct Before {
    keyslots: String,
    volume_key: String,
    data: Vec<u8>,
}

impl Before {
    /// The state of `img` now.
    pub fn of(img: &Path) -> Self {
        Before {
            keyslots: dump(img)["keyslots"].to_string(),
            volume_key: volume_key(img, 1, FALLBACK.as_bytes()),
            data: data_area(img),
        }
    }

    /// The same keyslots, volume key and data; slot 1 opens by the
    /// fallback, slot 0 by `slot_0` (what the TPM gave back).
    pub fn check(&self, img: &Path, slot_0: &[u8]) {
        assert!(opens(img, 1, FALLBACK.as_bytes()), "the fallback opens");
        assert!(opens(img, 0, slot_0), "the TPM key opens slot 0");
        assert_eq!(
            dump(img)["keyslots"].to_string(),
            self.keyslots,
            "keyslots changed"
        );
        assert_eq!(volume_key(img, 1, FALLBACK.as_bytes()), self.volume_key);
        assert_eq!(data_area(img), self.data, "the data area changed");
    }
}

/// Runs `c`, which must succeed; its JSON output.
pub fn run_ok(mut c: Command) -> serde_json::Value {
    let out = c.output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}
