//! PBKDF costs for new keyslots: the config's fixed costs; else those of a
//! keyslot already on the device (so adding a slot never re-benchmarks);
//! else, on a fresh header, libcryptsetup's benchmark (once).

use crate::device::{PbkdfChoice, PbkdfCost, PbkdfKind};
use crate::luks2::header::Luks2Header;
use crate::volume::VolumeSpec;
use api_types::PbkdfType;

/// Costs for a keyslot added to a volume whose header is `h` (if any).
pub(super) fn for_new_slot(spec: &VolumeSpec, h: Option<&Luks2Header>) -> PbkdfChoice {
    if let Some(c) = from_config(spec) {
        return c;
    }
    let Some(ks) = h.and_then(|h| h.keyslot_numbers().first().and_then(|n| h.keyslot(*n))) else {
        return PbkdfChoice::Benchmark;
    };
    let kdf = &ks.kdf;
    let kind = match kdf.kind.as_str() {
        "argon2id" => PbkdfKind::Argon2id,
        "argon2i" => PbkdfKind::Argon2i,
        _ => PbkdfKind::Pbkdf2,
    };
    PbkdfChoice::Fixed(PbkdfCost {
        kind,
        iterations: kdf.time.or(kdf.iterations).unwrap_or(4),
        memory_kib: kdf.memory.unwrap_or(0),
        parallelism: kdf.cpus.unwrap_or(1),
    })
}

/// The config's fixed PBKDF costs, if it sets them.
pub(super) fn from_config(spec: &VolumeSpec) -> Option<PbkdfChoice> {
    let p = spec.encryption.pbkdf.as_ref()?;
    let (kind, argon) = match p.kind {
        PbkdfType::Argon2id => (PbkdfKind::Argon2id, true),
        PbkdfType::Argon2i => (PbkdfKind::Argon2i, true),
        PbkdfType::Pbkdf2 => (PbkdfKind::Pbkdf2, false),
    };
    Some(PbkdfChoice::Fixed(PbkdfCost {
        kind,
        iterations: p.iterations,
        memory_kib: if argon { p.memory_ki_b.unwrap_or(0) } else { 0 },
        parallelism: if argon { p.parallelism.unwrap_or(1) } else { 0 },
    }))
}
