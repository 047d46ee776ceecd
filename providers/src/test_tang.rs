//! A Tang server for tests: the Debian `tang` package's `tangd` behind
//! `socat … fork EXEC:` on a loopback port, over its own key directory;
//! killed on drop.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian installs Tang's programs.
const LIBEXEC: &str = "/usr/libexec";

/// A running `tangd`.
pub struct Tangd {
    child: Option<Child>,
    dir: tempfile::TempDir,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl Tangd {
    /// A server with fresh keys (`tangd-keygen`).
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        run(Command::new(format!("{LIBEXEC}/tangd-keygen")).arg(dir.path()));
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut t = Tangd {
            child: None,
            dir,
            port,
        };
        t.resume();
        t
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Its key directory.
    pub fn keys(&self) -> &Path {
        self.dir.path()
    }

    /// The thumbprint of its (advertised) signing key, as `tang-show-keys`
    /// prints it.
    pub fn thumbprint(&self) -> String {
        self.advertised("verify")
    }

    /// The thumbprint of its (advertised) exchange key: the `kid` of a
    /// JWE bound to it.
    pub fn exchange_thumbprint(&self) -> String {
        self.advertised("deriveKey")
    }

    /// The thumbprint of the advertised key whose `key_ops` has `op`.
    fn advertised(&self, op: &str) -> String {
        for file in self.key_files().iter().filter(|f| !hidden(f)) {
            let jwk = std::fs::read_to_string(file).expect("read a key");
            if jwk.contains(&format!("\"{op}\"")) {
                return run(Command::new("jose").args(["jwk", "thp", "-i"]).arg(file))
                    .trim()
                    .to_string();
            }
        }
        panic!("no advertised key for {op}");
    }

    fn key_files(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.dir.path())
            .expect("read the key directory")
            .map(|e| e.expect("entry").path())
            .collect()
    }

    /// Rotates its keys (`tangd-rotate-keys`): new keys advertised, the
    /// old ones hidden but still answering.
    pub fn rotate(&self) {
        run(Command::new(format!("{LIBEXEC}/tangd-rotate-keys"))
            .arg("-d")
            .arg(self.dir.path()));
    }

    /// Deletes the hidden (rotated-out) keys: bindings to them no longer open.
    pub fn forget_rotated(&self) {
        for f in self.key_files().into_iter().filter(|f| hidden(f)) {
            std::fs::remove_file(f).expect("remove an old key");
        }
    }

    /// Stops serving (the port refuses connections).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Serves again, on the same port and keys.
    pub fn resume(&mut self) {
        let exec = format!("EXEC:{LIBEXEC}/tangd {}", self.dir.path().display());
        let child = Command::new("socat")
            .arg(format!(
                "TCP-LISTEN:{},bind=127.0.0.1,reuseaddr,fork",
                self.port
            ))
            .arg(exec)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("socat (apt install socat tang)");
        self.child = Some(child);
        let until = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < until, "tangd did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Tangd {
    fn drop(&mut self) {
        self.stop();
    }
}

fn hidden(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.'))
}

/// Runs `cmd`, panicking with its stderr unless it succeeds; its stdout.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}
