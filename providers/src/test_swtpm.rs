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
    _dir: tempfile::TempDir,
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

impl Swtpm {
    /// Starts swtpm (TPM 2.0, started up and ready).
    pub fn start() -> Swtpm {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port_pair();
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
            .args(["--tpmstate", &format!("dir={}", dir.path().display())])
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
        Swtpm {
            child,
            _dir: dir,
            port,
        }
    }

    /// The TCTI string for tss-esapi and tpm2-tools.
    pub fn tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }

    /// Extends a PCR (SHA-256 bank) with tpm2-tools, as a boot would.
    pub fn extend_pcr(&self, pcr: u32) {
        // A minute at most: a wait for ever would hang the tests.
        let st = isolated("timeout")
            .args(["60", "tpm2_pcrextend"])
            .arg(format!("{pcr}:sha256={}", hex::encode(MEASUREMENT)))
            .env("TPM2TOOLS_TCTI", self.tcti())
            .status()
            .expect("tpm2-tools is installed (apt-get install tpm2-tools)");
        assert!(st.success(), "tpm2_pcrextend failed");
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
