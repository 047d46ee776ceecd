//! Semantic rules that types alone cannot express. Each rule reports the
//! field path and a reason; all problems of a document are reported at once.

use crate::diagnostic::Severity;
use crate::document::Document;
use crate::encryption::{
    Encryption, KeySpec, PbkdfType, BLOCK_SIZES, CIPHERS, MAX_PCR, MAX_SLOT, PERF_OPTIONS,
    PROVIDER_LUKS2,
};
use crate::size::Size;
use crate::volume::{Provisioning, MAX_USER_VOLUME_NAME, SYSTEM_VOLUME_NAMES};
use std::collections::BTreeMap;

/// A problem found by validation, relative to its document.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// Error or warning.
    pub severity: Severity,
    /// Field path, e.g. `encryption.keys[1].slot`.
    pub path: String,
    /// The reason.
    pub message: String,
}

#[derive(Default)]
struct Findings(Vec<Finding>);

impl Findings {
    fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.push(Severity::Error, path.into(), message.into());
    }
    fn warn(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.push(Severity::Warning, path.into(), message.into());
    }
    fn push(&mut self, severity: Severity, path: String, message: String) {
        self.0.push(Finding {
            severity,
            path,
            message,
        });
    }
}

/// Checks one document; returns every error and warning.
pub fn validate_document(doc: &Document) -> Vec<Finding> {
    let mut f = Findings::default();
    match doc {
        Document::Volume(v) => {
            if !SYSTEM_VOLUME_NAMES.contains(&v.name.as_str()) {
                f.error(
                    "name",
                    format!(
                        "`{}` is not a system volume; a VolumeConfig name is one of {} (use a UserVolumeConfig for data volumes)",
                        v.name,
                        SYSTEM_VOLUME_NAMES.join(", ")
                    ),
                );
            }
        }
        Document::User(u) => check_user_name(&u.name, &mut f),
    }
    let is_state = doc.is_state();
    if let Some(p) = doc.provisioning() {
        if is_state {
            f.error(
                "provisioning",
                "STATE is provisioned by the installer; `provisioning` is not allowed on STATE",
            );
        } else {
            check_provisioning(p, &mut f);
        }
    }
    if let Some(m) = doc.mount() {
        check_mount_path(&m.path, &mut f);
    }
    if let Some(e) = doc.encryption() {
        check_encryption(e, is_state, &doc.partition_label(), &mut f);
    }
    f.0
}

/// The longest static passphrase: `cryptsetup` reads at most 512 characters
/// from a terminal.
const MAX_PASSPHRASE: usize = 512;

/// Mount points that would hide what the node itself runs on.
const FORBIDDEN_MOUNTS: &[&str] = &["/", "/proc", "/sys", "/dev"];

fn check_mount_path(path: &str, f: &mut Findings) {
    if !path.starts_with('/') || path.split('/').any(|c| c == "..") {
        return f.error(
            "mount.path",
            format!("`{path}` must be an absolute path without `..`"),
        );
    }
    let trimmed = path.trim_end_matches('/');
    let hit = FORBIDDEN_MOUNTS.iter().find(|m| {
        let m = m.trim_end_matches('/');
        trimmed == m || (!m.is_empty() && trimmed.starts_with(&format!("{m}/")))
    });
    if let Some(m) = hit {
        f.error(
            "mount.path",
            format!("`{path}` would mount over {m}, which the node itself needs; choose another mount point"),
        );
    }
}

fn check_user_name(name: &str, f: &mut Findings) {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if name.is_empty() || name.len() > MAX_USER_VOLUME_NAME || !ok_chars {
        f.error(
            "name",
            format!(
                "`{name}` is not a valid user volume name: use 1–{MAX_USER_VOLUME_NAME} characters of a-z, 0-9 and `-`"
            ),
        );
    }
}

fn check_provisioning(p: &Provisioning, f: &mut Findings) {
    if let Some(ds) = &p.disk_selector {
        if ds.match_expr.trim().is_empty() {
            f.error(
                "provisioning.diskSelector.match",
                "the disk selector expression is empty",
            );
        }
    }
    let mut sizes = [None, None];
    for (i, (field, spec)) in [("minSize", &p.min_size), ("maxSize", &p.max_size)]
        .into_iter()
        .enumerate()
    {
        if let Some(spec) = spec {
            match spec.resolve() {
                Ok(s) => sizes[i] = Some(s),
                Err(e) => f.error(format!("provisioning.{field}"), e),
            }
        }
    }
    let too_big = match (sizes[0], sizes[1]) {
        (Some(Size::Bytes(a)), Some(Size::Bytes(b))) => a > b,
        (Some(Size::Percent(a)), Some(Size::Percent(b))) => a > b,
        _ => false,
    };
    if too_big {
        f.error("provisioning.minSize", "minSize is larger than maxSize");
    }
}

fn check_encryption(e: &Encryption, is_state: bool, label: &str, f: &mut Findings) {
    if e.provider != PROVIDER_LUKS2 {
        f.error(
            "encryption.provider",
            format!(
                "unknown provider `{}`; the only provider is `luks2`",
                e.provider
            ),
        );
    }
    match CIPHERS.iter().find(|(c, _)| *c == e.cipher()) {
        None => f.error(
            "encryption.cipher",
            format!(
                "unknown cipher `{}`; use one of {}",
                e.cipher(),
                CIPHERS
                    .iter()
                    .map(|(c, _)| *c)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
        Some((c, sizes)) => {
            if !sizes.contains(&e.key_size_bits()) {
                f.error(
                    "encryption.keySize",
                    format!(
                        "key size {} bits does not fit cipher `{c}`; use {}",
                        e.key_size_bits(),
                        sizes
                            .iter()
                            .map(u32::to_string)
                            .collect::<Vec<_>>()
                            .join(" or ")
                    ),
                );
            }
        }
    }
    if let Some(bs) = e.block_size {
        if !BLOCK_SIZES.contains(&bs) {
            f.error(
                "encryption.blockSize",
                format!("sector size {bs} is not one of 512, 1024, 2048, 4096"),
            );
        }
    }
    for (i, o) in e.options.iter().enumerate() {
        if !PERF_OPTIONS.contains(&o.as_str()) {
            f.error(
                format!("encryption.options[{i}]"),
                format!("unknown option `{o}`; use {}", PERF_OPTIONS.join(", ")),
            );
        }
    }
    if let Some(p) = &e.pbkdf {
        check_pbkdf(p, f);
    }
    if e.keys.is_empty() {
        f.error(
            "encryption.keys",
            "an encrypted volume needs at least one key",
        );
    }
    let mut slots: BTreeMap<i64, usize> = BTreeMap::new();
    for (i, k) in e.keys.iter().enumerate() {
        let path = format!("encryption.keys[{i}]");
        if let Some(first) = slots.get(&k.slot) {
            f.error(
                format!("{path}.slot"),
                format!(
                    "slot {} is already used by encryption.keys[{first}]",
                    k.slot
                ),
            );
        } else {
            slots.insert(k.slot, i);
        }
        check_key(k, &path, is_state, f);
    }
    check_key_strength(e, label, f);
}

/// Iteration counts beyond which an unlock takes minutes (a warning).
const SLOW_ARGON2_ITERATIONS: u32 = 64;
const SLOW_PBKDF2_ITERATIONS: u32 = 10_000_000;

fn check_pbkdf(p: &crate::encryption::PbkdfSpec, f: &mut Findings) {
    let argon = p.kind != PbkdfType::Pbkdf2;
    let slow = if argon {
        SLOW_ARGON2_ITERATIONS
    } else {
        SLOW_PBKDF2_ITERATIONS
    };
    if p.iterations > slow {
        f.warn(
            "encryption.pbkdf.iterations",
            format!("{} iterations make every unlock and every enrolment very slow (minutes or more); most configs use 4 for argon2 and about 1000000 for pbkdf2", p.iterations),
        );
    }
    if argon {
        if p.iterations < 4 {
            f.error(
                "encryption.pbkdf.iterations",
                "argon2 needs at least 4 iterations",
            );
        }
        match p.memory_ki_b {
            None => f.error(
                "encryption.pbkdf.memoryKiB",
                "argon2 needs a memory cost (memoryKiB)",
            ),
            Some(m) if !(32..=4_194_304).contains(&m) => f.error(
                "encryption.pbkdf.memoryKiB",
                format!("{m} KiB is outside 32–4194304"),
            ),
            _ => {}
        }
        if let Some(t) = p.parallelism {
            if !(1..=32).contains(&t) {
                f.error(
                    "encryption.pbkdf.parallelism",
                    format!("{t} is outside 1–32"),
                );
            }
        }
    } else {
        if p.iterations < 1000 {
            f.error(
                "encryption.pbkdf.iterations",
                "pbkdf2 needs at least 1000 iterations",
            );
        }
        for (field, set) in [
            ("memoryKiB", p.memory_ki_b.is_some()),
            ("parallelism", p.parallelism.is_some()),
        ] {
            if set {
                f.error(
                    format!("encryption.pbkdf.{field}"),
                    "only argon2 takes this; remove it for pbkdf2",
                );
            }
        }
    }
}

fn check_key(k: &KeySpec, path: &str, is_state: bool, f: &mut Findings) {
    if !(0..=MAX_SLOT).contains(&k.slot) {
        f.error(
            format!("{path}.slot"),
            format!("slot {} is outside 0–{MAX_SLOT}", k.slot),
        );
    }
    let kinds = k.kinds_set();
    match kinds.len() {
        0 => f.error(
            path,
            "the key has no kind: set exactly one of static, nodeID, kms, tpm (nodeID takes `nodeID: {}`)",
        ),
        1 => {}
        _ => f.error(
            path,
            format!("the key has {} kinds ({}); set exactly one", kinds.len(), kinds.join(", ")),
        ),
    }
    if k.lock_to_state.is_some() && k.lock_to_state_talos.is_some() {
        f.error(
            format!("{path}.lockToState"),
            "both lockToSTATE and lockToState are set; keep one",
        );
    }
    if is_state && k.lock_to_state() {
        f.error(
            format!("{path}.lockToSTATE"),
            "a STATE key cannot be locked to STATE (the salt lives on STATE itself)",
        );
    }
    if let Some(s) = &k.static_key {
        if s.passphrase.expose().is_empty() {
            f.error(
                format!("{path}.static.passphrase"),
                "the passphrase is empty",
            );
        } else if s.passphrase.expose().len() > MAX_PASSPHRASE {
            f.error(
                format!("{path}.static.passphrase"),
                format!("the passphrase is longer than {MAX_PASSPHRASE} bytes, more than `cryptsetup` reads from a terminal: nobody could type it to recover the volume"),
            );
        }
    }
    if let Some(kms) = &k.kms {
        check_endpoint(&kms.endpoint, &format!("{path}.kms.endpoint"), f);
    }
    if let Some(t) = &k.tpm {
        if t.pcrs.is_some() && t.options.as_ref().is_some_and(|o| o.pcrs.is_some()) {
            f.error(
                format!("{path}.tpm.pcrs"),
                "both tpm.pcrs and tpm.options.pcrs are set; keep tpm.options.pcrs",
            );
        }
        let pcr_path = if t.pcrs.is_some() {
            format!("{path}.tpm.pcrs")
        } else {
            format!("{path}.tpm.options.pcrs")
        };
        if let Some(pcrs) = t.pcrs_written() {
            let mut seen = std::collections::BTreeSet::new();
            for (j, &p) in pcrs.iter().enumerate() {
                if !(0..=MAX_PCR as i64).contains(&p) {
                    f.error(
                        format!("{pcr_path}[{j}]"),
                        format!("PCR {p} is outside 0–{MAX_PCR}"),
                    );
                } else if !seen.insert(p) {
                    f.error(
                        format!("{pcr_path}[{j}]"),
                        format!("PCR {p} is listed twice"),
                    );
                }
            }
            if pcrs.is_empty() {
                f.warn(
                    pcr_path,
                    "an empty PCR list seals the key to this TPM only, not to the boot state: anyone who boots another OS on this machine can unseal it",
                );
            }
        }
    }
}

fn check_endpoint(endpoint: &str, path: &str, f: &mut Findings) {
    if !endpoint.contains("://") {
        return f.error(
            path,
            format!("`{endpoint}` is not a URL; write it as https://host:port"),
        );
    }
    match url::Url::parse(endpoint) {
        Err(e) => f.error(path, format!("`{endpoint}` is not a URL: {e}")),
        Ok(u) => {
            if !matches!(u.scheme(), "http" | "https") {
                f.error(
                    path,
                    format!("scheme `{}` is not http or https", u.scheme()),
                );
            } else if u.host_str().is_none_or(str::is_empty) {
                f.error(path, format!("`{endpoint}` has no host"));
            } else if !u.username().is_empty() || u.password().is_some() {
                f.error(
                    path,
                    "the endpoint carries credentials; they would be stored in clear with the config (on STATE, and on META for STATE): authenticate with --kms-client-cert instead",
                );
            } else if u.scheme() == "http" {
                f.warn(
                    path,
                    "plain http: the sealed key crosses the network without TLS (tests only)",
                );
            }
        }
    }
}

fn check_key_strength(e: &Encryption, label: &str, f: &mut Findings) {
    let keys = e.resolved_keys();
    let only_weak = !keys.is_empty()
        && keys
            .iter()
            .all(|k| matches!(k.kind, crate::encryption::KeyKind::NodeId) && !k.lock_to_state);
    if only_weak {
        f.warn(
            "encryption.keys",
            format!(
                "{label} is opened only by nodeID keys without lockToSTATE: anyone who has the disk and can read the machine's UUID can open it"
            ),
        );
    }
    let is_state = label == "STATE";
    for (i, k) in e.keys.iter().enumerate() {
        if is_state && k.static_key.is_some() && e.allow_static_key_on_state != Some(true) {
            f.error(
                format!("encryption.keys[{i}].static"),
                "a static key on STATE is stored in clear on the META partition; set encryption.allowStaticKeyOnState: true to accept that risk",
            );
        }
    }
}
