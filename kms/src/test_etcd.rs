//! Real `etcd` members on 127.0.0.1 for tests and benchmarks (Debian's
//! `etcd-server` package): one member, or a cluster whose members can be
//! killed one by one.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// An etcd cluster of real processes, each with its own data directory.
pub struct EtcdCluster {
    members: Vec<Option<Child>>,
    /// `127.0.0.1:PORT` of each member's client listener.
    pub endpoints: Vec<String>,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("a free port");
    l.local_addr().expect("its address").port()
}

impl EtcdCluster {
    /// Starts `n` members and waits until the cluster answers.
    pub fn start(n: usize) -> EtcdCluster {
        // In memory when it can (etcd syncs every write; tests check the
        // store's logic, not the platter).
        let dir = tempfile::tempdir_in("/dev/shm")
            .or_else(|_| tempfile::tempdir())
            .expect("a temporary folder");
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let initial: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}"))
            .collect();
        let members = ports
            .iter()
            .enumerate()
            .map(|(i, ports)| Some(member(dir.path(), i, *ports, &initial.join(","))))
            .collect();
        let cluster = EtcdCluster {
            members,
            endpoints: ports
                .iter()
                .map(|(c, _)| format!("127.0.0.1:{c}"))
                .collect(),
            _dir: dir,
        };
        cluster.wait_healthy();
        cluster
    }

    /// `etcd://…` naming every member, for `--store`.
    pub fn store_arg(&self) -> String {
        format!("etcd://{}", self.endpoints.join(","))
    }

    /// Kills member `i` (SIGKILL), as a crashed machine.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = Command::new("etcdctl")
                .env("ETCDCTL_API", "3")
                .args([
                    "--endpoints",
                    &self.endpoints.join(","),
                    "endpoint",
                    "health",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return;
            }
            assert!(Instant::now() < deadline, "etcd did not become healthy");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn member(dir: &Path, i: usize, (client, peer): (u16, u16), initial: &str) -> Child {
    let data = dir.join(format!("m{i}"));
    Command::new("etcd")
        .args(["--name", &format!("m{i}")])
        .arg("--data-dir")
        .arg(&data)
        .args([
            "--listen-client-urls",
            &format!("http://127.0.0.1:{client}"),
        ])
        .args([
            "--advertise-client-urls",
            &format!("http://127.0.0.1:{client}"),
        ])
        .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer}")])
        .args([
            "--initial-advertise-peer-urls",
            &format!("http://127.0.0.1:{peer}"),
        ])
        .args(["--initial-cluster", initial])
        .args(["--initial-cluster-state", "new"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("etcd (apt install etcd-server etcd-client)")
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}
