//! Benchmark: 1,000 simulated nodes (each a client task with its own UUID
//! and client certificate) unseal at once against `volctl kms-server`:
//! the stateless server (the anchor), node records in the file store, two
//! replicas over a 3-member etcd on loopback, and the same with one
//! replica and one etcd member killed half-way (every node must still
//! unseal: retries and failover to the other replica allowed, none
//! refused). Prints throughput, p50/p99 latency and each server's peak
//! memory, side by side.
//!
//! Run: `make bench` (or `cargo bench -p volctl-controller --bench
//! kms_storm`); VOLCTL_BENCH_NODES sets the number of nodes.

#[path = "../tests/common/mod.rs"]
mod common;

use common::storm::{self, Figures};
use common::KmsServer;
use std::sync::{Arc, Mutex};

fn main() {
    let n: usize = std::env::var("VOLCTL_BENCH_NODES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let pki = kms::test_pki::generate();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut nodes = storm::nodes(&pki, n);
    println!("kms storm: {n} nodes unsealing at once, TLS 1.3 with a client certificate each");
    println!("{:<44} {:>11} {:>10}", "server", "unsealed", "throughput");

    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem").display().to_string();
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let stateless = KmsServer::start_with(dir.path(), &pki, &["--client-ca", &ca]);
    let (f, rss) = storm_on(&rt, &pki, &mut nodes, &[&stateless]);
    report("stateless (anchor)", &f, &rss);
    drop(stateless);

    let dir = tempfile::tempdir().unwrap();
    let file = KmsServer::with_records(dir.path(), &pki, 0);
    let (f, rss) = storm_on(&rt, &pki, &mut nodes, &[&file]);
    report("file store", &f, &rss);
    drop(file);

    for kill in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let etcd = Arc::new(Mutex::new(kms::test_etcd::EtcdCluster::start(3)));
        let store = etcd.lock().unwrap().store_arg();
        let one = KmsServer::with_store(dir.path(), &pki, 0, &[&store]);
        let two = KmsServer::with_store(dir.path(), &pki, 0, &[&store]);
        let (f, rss) = if kill {
            let pids = [one.pid(), two.pid()];
            let killed = etcd.clone();
            let ends = storm::endpoints(&[&one, &two]);
            storm::seal_all(&rt, &pki, &mut nodes, &ends);
            let midway = Box::new(move || {
                drop(one);
                killed.lock().unwrap().kill(0);
            });
            let f = storm::unseal_all(&rt, &pki, &nodes, &ends, Some(midway));
            (f, vec![0.0, storm::peak_rss_mib(pids[1])])
        } else {
            storm_on(&rt, &pki, &mut nodes, &[&one, &two])
        };
        let what = match kill {
            false => "2 replicas over 3 etcd members",
            true => "  … 1 replica + 1 etcd member killed midway",
        };
        report(what, &f, &rss);
    }
}

/// Seals every node's secret through `servers`, then the storm; each
/// server's peak memory.
fn storm_on(
    rt: &tokio::runtime::Runtime,
    pki: &kms::test_pki::TestPki,
    nodes: &mut [storm::SimNode],
    servers: &[&KmsServer],
) -> (Figures, Vec<f64>) {
    let ends = storm::endpoints(servers);
    storm::seal_all(rt, pki, nodes, &ends);
    let f = storm::unseal_all(rt, pki, nodes, &ends, None);
    let rss = servers
        .iter()
        .map(|s| storm::peak_rss_mib(s.pid()))
        .collect();
    (f, rss)
}

fn report(what: &str, f: &Figures, rss: &[f64]) {
    let rss = rss.iter().copied().fold(0.0, f64::max);
    println!("{}", f.line(what, rss));
    for e in f.failed.iter().take(5) {
        println!("    failed: {e}");
    }
}
