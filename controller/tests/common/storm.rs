//! A storm of simulated nodes against real `volctl kms-server` processes:
//! each node is a client task with its own UUID and its own client
//! certificate; every node seals its secret, then all unseal at once.
//! Used by the `kms_storm` test (a small storm) and the `kms_storm` bench
//! (1,000 nodes, `make bench`).

use super::KmsServer;
use kms::client::{ClientOptions, KmsClient};
use kms::test_pki::TestPki;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One simulated node.
pub struct SimNode {
    /// Its UUID.
    pub uuid: String,
    identity: (Vec<u8>, Vec<u8>),
    /// What it sealed (its secret is its UUID's bytes).
    pub blob: Vec<u8>,
}

/// `n` nodes, each with a client certificate of its own.
pub fn nodes(pki: &TestPki, n: usize) -> Vec<SimNode> {
    (0..n)
        .map(|i| {
            let uuid = format!("5e1f0000-0000-4000-8000-{i:012}");
            SimNode {
                identity: pki.client(&uuid),
                uuid,
                blob: Vec::new(),
            }
        })
        .collect()
}

fn client(endpoint: &str, pki: &TestPki, node: &SimNode) -> KmsClient {
    KmsClient::new(
        endpoint,
        ClientOptions {
            ca_pem: Some(pki.ca_pem.clone()),
            identity_pem: Some(node.identity.clone()),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(20),
            attempts: 4,
            backoff: Duration::from_millis(200),
        },
    )
}

/// `https://localhost:PORT` of each server.
pub fn endpoints(servers: &[&KmsServer]) -> Vec<String> {
    servers
        .iter()
        .map(|s| format!("https://localhost:{}", s.port))
        .collect()
}

/// Every node seals its secret through `endpoints` (node i through
/// endpoint i mod their number), `at_once` at a time.
pub fn seal_all(
    rt: &tokio::runtime::Runtime,
    pki: &TestPki,
    nodes: &mut [SimNode],
    endpoints: &[String],
) {
    use futures_util::StreamExt;
    let blobs: Vec<Vec<u8>> = rt.block_on(
        futures_util::stream::iter(nodes.iter().enumerate())
            .map(|(i, n)| {
                let c = client(&endpoints[i % endpoints.len()], pki, n);
                async move { c.seal(&n.uuid, n.uuid.as_bytes()).await.expect("seal") }
            })
            .buffered(64)
            .collect(),
    );
    for (n, b) in nodes.iter_mut().zip(blobs) {
        n.blob = b;
    }
}

/// What a storm measured.
pub struct Figures {
    /// Nodes that got their own secret back.
    pub unsealed: usize,
    /// The errors of the others (and wrong secrets).
    pub failed: Vec<String>,
    /// From the first request to the last answer.
    pub wall: Duration,
    /// Per-node latency: median and 99th percentile.
    pub p50: Duration,
    /// See `p50`.
    pub p99: Duration,
}

impl Figures {
    /// Unseals per second.
    pub fn throughput(&self) -> f64 {
        self.unsealed as f64 / self.wall.as_secs_f64()
    }

    /// One line for a table.
    pub fn line(&self, what: &str, peak_rss_mib: f64) -> String {
        format!(
            "{what:<44} {:>5}/{:<5} {:>8.0}/s  p50 {:>6.0} ms  p99 {:>6.0} ms  server peak RSS {peak_rss_mib:>6.1} MiB",
            self.unsealed,
            self.unsealed + self.failed.len(),
            self.throughput(),
            self.p50.as_secs_f64() * 1e3,
            self.p99.as_secs_f64() * 1e3,
        )
    }
}

/// Every node unseals at once, from the replicas in turn from endpoint
/// i mod their number (node i), raced as volctl races replicas. When half the nodes have
/// their answer, `midway` runs (kills a replica, a store member…).
pub fn unseal_all(
    rt: &tokio::runtime::Runtime,
    pki: &TestPki,
    nodes: &[SimNode],
    endpoints: &[String],
    midway: Option<Box<dyn FnOnce() + Send>>,
) -> Figures {
    let done = Arc::new(AtomicUsize::new(0));
    let midway = Arc::new(Mutex::new(midway));
    let half = nodes.len() / 2;
    let start = Instant::now();
    let results: Vec<(Duration, Result<(), String>)> = rt.block_on(async {
        let tasks: Vec<_> = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let clients: Vec<(String, KmsClient)> = (0..endpoints.len())
                    .map(|k| {
                        let e = &endpoints[(i + k) % endpoints.len()];
                        (e.clone(), client(e, pki, n))
                    })
                    .collect();
                let (uuid, blob) = (n.uuid.clone(), n.blob.clone());
                let (done, midway) = (done.clone(), midway.clone());
                tokio::spawn(async move {
                    let t = Instant::now();
                    let result = unseal_raced(clients, &uuid, &blob).await;
                    if done.fetch_add(1, Ordering::SeqCst) + 1 == half {
                        if let Some(f) = midway.lock().unwrap().take() {
                            tokio::task::spawn_blocking(f);
                        }
                    }
                    (t.elapsed(), result)
                })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.expect("a node task"));
        }
        out
    });
    let wall = start.elapsed();
    let mut latencies: Vec<Duration> = results.iter().map(|r| r.0).collect();
    latencies.sort();
    // The q-th quantile, q in percent.
    let at = |q: usize| latencies[(latencies.len() * q / 100).min(latencies.len() - 1)];
    let failed: Vec<String> = results.into_iter().filter_map(|r| r.1.err()).collect();
    Figures {
        unsealed: nodes.len() - failed.len(),
        failed,
        wall,
        p50: at(50),
        p99: at(99),
    }
}

/// Unseals as a node with replicas does (`kms: {endpoints: […]}`): the
/// replicas raced by volctl's own [`providers::kms_race`] (the next one
/// asked 250 ms later, or at once when those asked have failed).
async fn unseal_raced(
    clients: Vec<(String, KmsClient)>,
    uuid: &str,
    blob: &[u8],
) -> Result<(), String> {
    let attempts = clients
        .into_iter()
        .map(|(endpoint, c)| {
            let (uuid, blob) = (uuid.to_string(), blob.to_vec());
            (endpoint, async move { c.unseal(&uuid, &blob).await })
        })
        .collect();
    match providers::kms_race(attempts, providers::KMS_STAGGER, Duration::from_secs(60)).await {
        Ok(won) if won.answer.as_slice() == uuid.as_bytes() => Ok(()),
        Ok(_) => Err(format!("{uuid}: another node's secret")),
        Err(e) => Err(format!("{uuid}: {e}")),
    }
}

/// The peak resident memory of process `pid` (VmHWM), in MiB.
pub fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}
