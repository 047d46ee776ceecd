//! Benchmark: N = 1, 2, 3 volumes unlocked at once in one process, as the
//! boot's volume tasks do (each a tokio task running the converge that
//! unlocks its volume; `--parallel` 3), with the KDF in-process (every
//! libcryptsetup call of a process serialised by `libcryptsetup-rs`) and
//! in KDF workers (`device::kdf_worker`, what `volctl boot --parallel N`
//! uses for N > 1); side by side with the sum and the maximum of the
//! volumes' single KDF times.
//!
//! Run: `make bench` (or `cargo bench -p volctl-controller --bench
//! parallel_unlock`). KDF cost: argon2id, VOLCTL_BENCH_MEMORY_KIB (default
//! 262144) KiB, 4 iterations, one lane, the same for every volume.

#[path = "../tests/common/mod.rs"]
mod common;

use api_types::parse_str;
use controller::converge::{converge, open_device, Mode};
use controller::volume::VolumeSpec;
use providers::ProviderEnv;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

const RUNS: usize = 3;
const MAX: usize = 3;

fn spec(memory: u32) -> VolumeSpec {
    let y = format!("apiVersion: v1alpha1\nkind: VolumeConfig\nname: EPHEMERAL\nencryption:\n  provider: luks2\n  pbkdf: {{type: argon2id, memoryKiB: {memory}, iterations: 4, parallelism: 1}}\n  keys:\n    - {{slot: 0, static: {{passphrase: bench-pass}}}}\n");
    let p = parse_str("bench.yaml", &y);
    VolumeSpec::from_documents(&p.documents, "EPHEMERAL").unwrap()
}

fn env() -> Arc<ProviderEnv> {
    Arc::new(common::env())
}

/// Unlocks every image at once (one task each); the wall time.
fn unlock_all(rt: &tokio::runtime::Runtime, spec: &VolumeSpec, imgs: &[PathBuf]) -> Duration {
    let env = env();
    let t = Instant::now();
    rt.block_on(async {
        let tasks: Vec<_> = imgs
            .iter()
            .map(|img| {
                let (spec, env, img) = (spec.clone(), env.clone(), img.clone());
                tokio::spawn(async move {
                    let dev = open_device(&spec, &img, Mode::DryRun).unwrap();
                    let o = converge(&spec, dev, &env, Mode::DryRun).await.unwrap();
                    assert_eq!(o.kdf_runs, 1, "one KDF run a volume");
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
    t.elapsed()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn formatted(dir: &Path, rt: &tokio::runtime::Runtime, spec: &VolumeSpec) -> Vec<PathBuf> {
    (0..MAX)
        .map(|i| {
            let img = dir.join(format!("v{i}.img"));
            std::fs::File::create(&img)
                .unwrap()
                .set_len(40 << 20)
                .unwrap();
            let dev = open_device(spec, &img, Mode::Apply).unwrap();
            rt.block_on(converge(spec, dev, &env(), Mode::Apply))
                .unwrap();
            img
        })
        .collect()
}

fn main() {
    let memory: u32 = std::env::var("VOLCTL_BENCH_MEMORY_KIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(262_144);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(MAX)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let spec = spec(memory);
    let imgs = formatted(dir.path(), &rt, &spec);
    let single: Vec<Duration> = imgs
        .iter()
        .map(|img| {
            median(
                (0..RUNS)
                    .map(|_| unlock_all(&rt, &spec, std::slice::from_ref(img)))
                    .collect(),
            )
        })
        .collect();
    let measure = |n: usize| {
        median(
            (0..RUNS)
                .map(|_| unlock_all(&rt, &spec, &imgs[..n]))
                .collect(),
        )
    };
    let in_process: Vec<Duration> = (1..=MAX).map(measure).collect();
    controller::device::kdf_worker::use_workers(PathBuf::from(env!("CARGO_BIN_EXE_volctl")));
    let workers: Vec<Duration> = (1..=MAX).map(measure).collect();

    println!(
        "argon2id {memory} KiB, 4 iterations, 1 lane; {} CPUs; median of {RUNS} runs",
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    println!(
        "{:>7} | {:>13} | {:>13} | {:>16} | {:>14} | {:>15}",
        "volumes",
        "sum of KDFs",
        "max of KDFs",
        "in-process (lock)",
        "KDF workers",
        "workers ÷ one"
    );
    for n in 1..=MAX {
        let sum: Duration = single[..n].iter().sum();
        let max = single[..n].iter().max().copied().unwrap_or_default();
        println!(
            "{n:>7} | {:>13} | {:>13} | {:>17} | {:>14} | {:>14.2}×",
            ms(sum),
            ms(max),
            ms(in_process[n - 1]),
            ms(workers[n - 1]),
            workers[n - 1].as_secs_f64() / workers[0].as_secs_f64()
        );
    }
}
