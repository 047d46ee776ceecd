//! Benchmark: the cost of a boot-time converge of an already converged
//! volume with N configured keys, volctl's way (one unlock, bindings for the
//! rest) against Talos's way (test-open every configured slot) and against
//! one `cryptsetup open --test-passphrase`.
//!
//! Run: `make bench` (or `cargo bench -p volctl-controller --bench converge`).
//! KDF cost: argon2id with VOLCTL_BENCH_MEMORY_KIB (default 65536) KiB and
//! 4 iterations, the same for every contender.

#[path = "../tests/common/mod.rs"]
mod common;

use api_types::parse_str;
use controller::converge::{converge, open_device, Mode};
use controller::volume::VolumeSpec;
use providers::ProviderEnv;
use std::time::{Duration, Instant};

const RUNS: usize = 3;

fn spec(n: usize, memory: u32) -> VolumeSpec {
    let mut y = format!("apiVersion: v1alpha1\nkind: VolumeConfig\nname: EPHEMERAL\nencryption:\n  provider: luks2\n  pbkdf: {{type: argon2id, memoryKiB: {memory}, iterations: 4}}\n  keys:\n");
    for i in 0..n {
        y.push_str(&format!(
            "    - {{slot: {i}, static: {{passphrase: pass-{i}}}}}\n"
        ));
    }
    let p = parse_str("bench.yaml", &y);
    VolumeSpec::from_documents(&p.documents, "EPHEMERAL").unwrap()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    let memory: u32 = std::env::var("VOLCTL_BENCH_MEMORY_KIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(65536);
    let env = ProviderEnv {
        recovery_handover: providers::RecoveryHandover::Nobody,
        asker: None,
        node_uuid: Ok(common::UUID.into()),
        state_salt: None,
        kms: Default::default(),
        tpm: Default::default(),
        key_servers_until: None,
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    println!("argon2id {memory} KiB, 4 iterations; median of {RUNS} runs");
    println!(
        "{:>4} | {:>22} | {:>26} | {:>24}",
        "keys", "volctl converge (KDFs)", "test-open every slot (KDFs)", "one cryptsetup test-open"
    );
    for n in [1usize, 2, 4, 8] {
        let img = dir.path().join(format!("bench-{n}.img"));
        std::fs::File::create(&img)
            .unwrap()
            .set_len(40 << 20)
            .unwrap();
        let s = spec(n, memory);
        rt.block_on(converge(
            &s,
            open_device(&s, &img, Mode::Apply).unwrap(),
            &env,
            Mode::Apply,
        ))
        .unwrap();

        let mut volctl_t = Vec::new();
        let mut volctl_kdf = 0;
        for _ in 0..RUNS {
            let t = Instant::now();
            let o = rt
                .block_on(converge(
                    &s,
                    open_device(&s, &img, Mode::Apply).unwrap(),
                    &env,
                    Mode::Apply,
                ))
                .unwrap();
            volctl_t.push(t.elapsed());
            assert!(o.plan.is_empty());
            volctl_kdf = o.kdf_runs;
        }

        let mut talos_t = Vec::new();
        let dev = open_device(&s, &img, Mode::DryRun).unwrap();
        for _ in 0..RUNS {
            let t = Instant::now();
            for i in api_types::KeyslotId::all().take(n) {
                dev.volume_key(
                    i,
                    api_types::KeySize::from_bits(512),
                    format!("pass-{i}").as_bytes(),
                )
                .unwrap();
            }
            talos_t.push(t.elapsed());
        }
        let talos_kdf = dev.kdf_runs() / RUNS as u64;

        let mut one_t = Vec::new();
        for _ in 0..RUNS {
            let t = Instant::now();
            assert!(common::opens(&img, 0, b"pass-0"));
            one_t.push(t.elapsed());
        }
        println!(
            "{:>4} | {:>16} ({}) | {:>20} ({}) | {:>24}",
            n,
            ms(median(volctl_t)),
            volctl_kdf,
            ms(median(talos_t)),
            talos_kdf,
            ms(median(one_t))
        );
    }
}
