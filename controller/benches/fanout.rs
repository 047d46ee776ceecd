//! Benchmark: `volctl -n … status` across 200 `volctl serve` processes on
//! loopback (distinct ports, one test PKI), side by side with one node,
//! with the nodes called one after another (`--parallel 1`, what `-n` did
//! before), with the default (32 at once) and with all at once.
//!
//! Run: `make bench` (or `cargo bench -p volctl-controller --bench
//! fanout`); VOLCTL_BENCH_NODES sets the number of nodes.

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const RUNS: usize = 3;

fn main() {
    let n: usize = std::env::var("VOLCTL_BENCH_NODES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    let pki_arg = pki.display().to_string();
    let o = common::volctl(&["gen", "--out", &pki_arg, "--san", "127.0.0.1"]);
    assert!(o.status.success(), "{}", common::text(&o.stderr));
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let status = dir.path().join("status.json");
    common::booted_status(&status, &state, &[]);
    let nodes: Vec<(String, Child)> = (0..n).map(|_| serve(&pki, &status)).collect();
    let addrs: Vec<String> = nodes.iter().map(|(a, _)| a.clone()).collect();
    for a in &addrs {
        wait_listening(a);
    }
    let config = pki.join("admin.volctlconfig").display().to_string();
    println!("volctl -n … status over {n} `volctl serve` processes on loopback (median of {RUNS})");
    let one = median(|| status_of(&config, &addrs[..1], None));
    println!("{:<36} {:>8.0} ms", "1 node", ms(one));
    for (what, parallel) in [
        ("one after another (--parallel 1)", Some(1)),
        ("default (32 at once)", None),
        ("all at once (--parallel N)", Some(n)),
    ] {
        let t = median(|| status_of(&config, &addrs, parallel));
        println!(
            "{n} nodes, {what:<32} {:>8.0} ms  {:>5.1}× one node",
            ms(t),
            t.as_secs_f64() / one.as_secs_f64()
        );
    }
    for (_, mut c) in nodes {
        let _ = c.kill();
        let _ = c.wait();
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median(mut f: impl FnMut() -> Duration) -> Duration {
    let mut t: Vec<Duration> = (0..RUNS).map(|_| f()).collect();
    t.sort();
    t[RUNS / 2]
}

/// `volctl -n A,B,… status`: its wall time; every node must answer.
fn status_of(config: &str, addrs: &[String], parallel: Option<usize>) -> Duration {
    let nodes = addrs.join(",");
    let mut args = vec!["--volctlconfig", config, "-n", &nodes];
    let p = parallel.map(|p| p.to_string());
    if let Some(p) = &p {
        args.extend(["--parallel", p]);
    }
    args.push("status");
    let t = Instant::now();
    let o = Command::new(env!("CARGO_BIN_EXE_volctl"))
        .args(&args)
        .env_remove("VOLCTLCONFIG")
        .output()
        .unwrap();
    let took = t.elapsed();
    assert!(o.status.success(), "{}", common::text(&o.stderr));
    let answered = common::text(&o.stdout)
        .lines()
        .filter(|l| l.starts_with("NODE "))
        .count();
    assert_eq!(answered, addrs.len(), "every node answered");
    took
}

fn serve(pki: &Path, status: &Path) -> (String, Child) {
    let addr = format!("127.0.0.1:{}", common::free_port());
    let child = common::volctl_serve(&addr, status, pki, &[], Stdio::null());
    (addr, child)
}

fn wait_listening(addr: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "volctl serve at {addr} did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
