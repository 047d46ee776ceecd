//! A software TPM for tests: `swtpm` on loopback, one per test, with its
//! own state directory and ports; killed on drop.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What [`Swtpm::extend_pcr`] measures into a PCR.
pub const MEASUREMENT: [u8; 32] = [0xab; 32];

/// A running swtpm.
pub struct Swtpm {
    child: Child,
    dir: tempfile::TempDir,
    /// Command port.
    pub port: u16,
}

/// `program` run so that it keeps none of this process's descriptors but
/// stdin, stdout and stderr (bash closes the rest, then execs it).
/// tpm2-tss opens its swtpm sockets without close-on-exec: a child started
/// by one test while another test held a connection kept that connection
/// open after the test dropped it; swtpm serves one client at a time, so
/// that test's next command waited for ever, and two such tests deadlocked
/// (seen: a providers TPM test hung for 20 minutes in `tpm2_pcrextend`).
fn isolated(program: &str) -> Command {
    let mut cmd = Command::new("bash");
    cmd.args([
        "-c",
        r#"for f in /proc/$$/fd/*; do n=${f##*/}; [ "$n" -gt 2 ] && eval "exec $n>&-"; done; exec "$0" "$@""#,
        program,
    ]);
    cmd
}

fn free_port_pair() -> u16 {
    loop {
        let a = TcpListener::bind("127.0.0.1:0").expect("bind");
        let p = a.local_addr().expect("addr").port();
        if p < 65535 && TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
            return p;
        }
    }
}

/// swtpm on `port` (and `port + 1` for control) over the state in `dir`,
/// once it accepts connections.
fn spawn(dir: &std::path::Path, port: u16) -> Child {
    let child = isolated("swtpm")
        .args(["socket", "--tpm2", "--flags", "not-need-init,startup-clear"])
        .args([
            "--server",
            &format!("type=tcp,port={port},bindaddr=127.0.0.1"),
        ])
        .args([
            "--ctrl",
            &format!("type=tcp,port={},bindaddr=127.0.0.1", port + 1),
        ])
        .args(["--tpmstate", &format!("dir={}", dir.display())])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("swtpm is installed (apt-get install swtpm)");
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "swtpm did not start (is it installed? apt-get install swtpm)"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

impl Swtpm {
    /// Starts swtpm (TPM 2.0, started up and ready).
    pub fn start() -> Swtpm {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port_pair();
        let child = spawn(dir.path(), port);
        Swtpm { child, dir, port }
    }

    /// Power-cycles it: the same TPM (its seeds, so what it sealed
    /// unseals), its PCRs back to zero, as after a reboot.
    pub fn reboot(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn(self.dir.path(), self.port);
    }

    /// The TCTI string for tss-esapi and tpm2-tools.
    pub fn tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }

    /// Extends a PCR (SHA-256 bank) with tpm2-tools, as a boot would.
    pub fn extend_pcr(&self, pcr: u32) {
        self.extend_pcr_by(pcr, &MEASUREMENT);
    }

    /// Sets the TPM's dictionary-attack parameters with tpm2-tools: lockout
    /// after `max_tries` failures, one failure forgotten every `recovery_s`
    /// seconds (0: no lockout at all).
    pub fn dictionary_lockout(&self, max_tries: u32, recovery_s: u32) {
        let st = isolated("timeout")
            .args(["60", "tpm2_dictionarylockout", "--setup-parameters"])
            .arg(format!("--max-tries={max_tries}"))
            .arg(format!("--recovery-time={recovery_s}"))
            .arg(format!("--lockout-recovery-time={recovery_s}"))
            .env("TPM2TOOLS_TCTI", self.tcti())
            .status()
            .expect("tpm2-tools is installed (apt-get install tpm2-tools)");
        assert!(st.success(), "tpm2_dictionarylockout failed");
    }

    /// Extends a PCR (SHA-256 bank) by `measurement` with tpm2-tools.
    pub fn extend_pcr_by(&self, pcr: u32, measurement: &[u8; 32]) {
        // A minute at most: a wait for ever would hang the tests.
        let st = isolated("timeout")
            .args(["60", "tpm2_pcrextend"])
            .arg(format!("{pcr}:sha256={}", hex::encode(measurement)))
            .env("TPM2TOOLS_TCTI", self.tcti())
            .status()
            .expect("tpm2-tools is installed (apt-get install tpm2-tools)");
        assert!(st.success(), "tpm2_pcrextend failed");
    }
}

/// A boot image's sections as systemd-stub measures them into PCR 11 and
/// `systemd-measure` signs them: (`.linux`, contents), (`.osrel`, …), …
pub type UkiSections<'a> = [(&'a str, &'a [u8])];

/// The phase systemd-pcrphase measures first (the one a volume opened in
/// the initrd sees).
pub const FIRST_PHASE: &str = "enter-initrd";

impl Swtpm {
    /// Measures a boot image into PCR 11 as systemd-stub does (per
    /// section, the SHA-256 of its name with its NUL, then of its
    /// contents), then [`FIRST_PHASE`] as systemd-pcrphase does.
    pub fn boot_uki(&self, sections: &UkiSections) {
        use sha2::Digest as _;
        for (name, contents) in sections {
            let mut named = name.as_bytes().to_vec();
            named.push(0);
            self.extend_pcr_by(11, &sha2::Sha256::digest(&named).into());
            self.extend_pcr_by(11, &sha2::Sha256::digest(contents).into());
        }
        self.extend_pcr_by(11, &sha2::Sha256::digest(FIRST_PHASE).into());
    }

    /// systemd's signature file for `sections` by the key pair `key` (its
    /// private and public PEM files), made by `systemd-measure sign`
    /// (Debian 12: /usr/lib/systemd/systemd-measure) with this TPM.
    pub fn sign_uki(&self, key: &PcrKeyPair, sections: &UkiSections) -> String {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cmd = isolated("timeout");
        cmd.args([
            "60",
            SYSTEMD_MEASURE,
            "sign",
            "--bank=sha256",
            "--json=short",
        ]);
        for (name, contents) in sections {
            let file = dir.path().join(name.trim_start_matches('.'));
            std::fs::write(&file, contents).expect("section file");
            cmd.arg(format!(
                "--{}={}",
                name.trim_start_matches('.'),
                file.display()
            ));
        }
        let out = cmd
            .arg(format!("--private-key={}", key.private.display()))
            .arg(format!("--public-key={}", key.public.display()))
            .arg(format!("--tpm2-device={}", self.tcti()))
            .output()
            .expect("systemd-measure runs (systemd 252)");
        assert!(
            out.status.success(),
            "systemd-measure sign: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("JSON")
    }
}

/// Where Debian 12 installs systemd-measure.
pub const SYSTEMD_MEASURE: &str = "/usr/lib/systemd/systemd-measure";

/// An RSA key pair for signing PCR policies, made by `openssl`.
pub struct PcrKeyPair {
    _dir: tempfile::TempDir,
    /// The private key (PEM).
    pub private: std::path::PathBuf,
    /// The public key (PEM `PUBLIC KEY`).
    pub public: std::path::PathBuf,
}

impl PcrKeyPair {
    /// A fresh 2048-bit RSA pair.
    pub fn generate() -> PcrKeyPair {
        let dir = tempfile::tempdir().expect("tempdir");
        let private = dir.path().join("private.pem");
        let public = dir.path().join("public.pem");
        for args in [
            vec!["genrsa", "-out", path_str(&private), "2048"],
            vec![
                "rsa",
                "-in",
                path_str(&private),
                "-pubout",
                "-out",
                path_str(&public),
            ],
        ] {
            let out = Command::new("openssl")
                .args(args)
                .output()
                .expect("openssl");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        PcrKeyPair {
            _dir: dir,
            private,
            public,
        }
    }
}

fn path_str(p: &std::path::Path) -> &str {
    p.to_str().expect("a UTF-8 temporary path")
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
