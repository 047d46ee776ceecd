//! The `encryption` block: Talos's rules (provider, keys required, one
//! kind per key, unique slots) and volctl's (cipher and key size, PBKDF
//! costs, KMS endpoints, passphrase length, PCRs, key strength).

use super::Findings;
use crate::encryption::{
    Encryption, KeySpec, PbkdfType, PromptKey, BLOCK_SIZES, CIPHERS, MAX_PCR, MAX_PROMPT_TRIES,
    MAX_SLOT, PERF_OPTIONS, PROVIDER_LUKS2,
};
use std::collections::BTreeMap;

/// The longest static passphrase: `cryptsetup` reads at most 512 characters
/// from a terminal.
const MAX_PASSPHRASE: usize = 512;

/// Checks `encryption`, as Talos does first, then volctl's own rules.
pub(super) fn check_encryption(e: &Encryption, is_state: bool, label: &str, f: &mut Findings) {
    if e.provider.is_none() && e.keys.is_empty() {
        return; // Talos: no provider and no keys is no encryption at all.
    }
    check_provider(e, f);
    check_cipher(e, f);
    check_device_options(e, f);
    if let Some(p) = &e.pbkdf {
        check_pbkdf(p, f);
    }
    check_keys(e, is_state, f);
    check_key_strength(e, label, f);
    check_decrypt_in_place(e, is_state, f);
}

/// `decryptInPlace`: not with `inPlace` (opposite ways), not on STATE
/// (which keeps the header files of decryptions under way).
fn check_decrypt_in_place(e: &Encryption, is_state: bool, f: &mut Findings) {
    if !e.decrypt_in_place() {
        return;
    }
    if e.in_place() {
        f.error(
            "encryption.decryptInPlace",
            "decryptInPlace and inPlace ask for opposite things; keep one",
        );
    }
    if is_state {
        f.error(
            "encryption.decryptInPlace",
            "STATE is not decrypted in place: it keeps the header files of decryptions under way and the salt lockToState keys are bound to",
        );
    }
}

fn check_provider(e: &Encryption, f: &mut Findings) {
    match e.provider.as_deref() {
        Some(PROVIDER_LUKS2) => {}
        Some(p) => f.error(
            "encryption.provider",
            format!("unsupported encryption provider: {p}; the only provider is `luks2`"),
        ),
        None => f.error(
            "encryption.provider",
            "unsupported encryption provider: none; keys are given, so set `provider: luks2` (Talos reads a missing provider as none)",
        ),
    }
}

/// The cipher, and the key size it takes.
fn check_cipher(e: &Encryption, f: &mut Findings) {
    let Some((c, sizes)) = CIPHERS.iter().find(|(c, _)| *c == e.cipher()) else {
        let known: Vec<&str> = CIPHERS.iter().map(|(c, _)| *c).collect();
        return f.error(
            "encryption.cipher",
            format!(
                "unknown cipher `{}`; use one of {}",
                e.cipher(),
                known.join(", ")
            ),
        );
    };
    if !sizes.contains(&e.key_size_bits()) {
        let allowed: Vec<String> = sizes.iter().map(u32::to_string).collect();
        f.error(
            "encryption.keySize",
            format!(
                "key size {} bits does not fit cipher `{c}`; use {}",
                e.key_size_bits(),
                allowed.join(" or ")
            ),
        );
    }
}

/// Sector size and dm-crypt flags.
fn check_device_options(e: &Encryption, f: &mut Findings) {
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
}

/// At least one key, unique slots, and each key on its own.
fn check_keys(e: &Encryption, is_state: bool, f: &mut Findings) {
    if e.keys.is_empty() {
        f.error(
            "encryption.keys",
            "encryption keys are required: an encrypted volume needs at least one key",
        );
    }
    let mut slots: BTreeMap<i64, usize> = BTreeMap::new();
    for (i, k) in e.keys.iter().enumerate() {
        let path = format!("encryption.keys[{i}]");
        if let Some(first) = slots.get(&k.slot) {
            f.error(
                format!("{path}.slot"),
                format!(
                    "duplicate key slot {}: already used by encryption.keys[{first}]",
                    k.slot
                ),
            );
        } else {
            slots.insert(k.slot, i);
        }
        check_key(k, &path, is_state, f);
    }
    check_tang_room(e, f);
}

/// The most `tang` slots one header holds: each slot's JWE (about 2 KiB
/// with the server's advertisement) sits in the 12 KiB LUKS2 JSON area.
pub const MAX_TANG_SLOTS: usize = 4;

/// At most [`MAX_TANG_SLOTS`] tang slots, refused before anything is
/// written rather than failing half-way through an enrolment.
fn check_tang_room(e: &Encryption, f: &mut Findings) {
    let tang: Vec<usize> = (0..e.keys.len())
        .filter(|i| e.keys[*i].tang.is_some())
        .collect();
    if let Some(&extra) = tang.get(MAX_TANG_SLOTS) {
        f.error(
            format!("encryption.keys[{extra}].tang"),
            format!("a volume holds at most {MAX_TANG_SLOTS} tang slots: each keeps a JWE of about 2 KiB in the header's 12 KiB JSON area (put more servers in one slot's threshold)"),
        );
    }
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
            format!("at least one encryption key type must be specified for slot {}: set exactly one of static, nodeID, kms, tang, tpm, prompt, recovery, threshold (nodeID takes `nodeID: {{}}`)", k.slot),
        ),
        1 => {}
        _ => f.error(
            path,
            format!("the key has {} kinds ({}); set exactly one", kinds.len(), kinds.join(", ")),
        ),
    }
    check_lock_to_state(k, path, is_state, f);
    check_unattended(
        Unattended {
            static_key: k.static_key.as_ref(),
            kms: k.kms.as_ref(),
            tang: k.tang.as_ref(),
            tpm: k.tpm.as_ref(),
        },
        path,
        f,
    );
    if let Some(p) = &k.prompt {
        check_prompt(p, &format!("{path}.prompt"), f);
    }
    if let Some(t) = &k.threshold {
        check_threshold(t, &format!("{path}.threshold"), f);
    }
}

/// The kinds that open unattended, as a key or a threshold's member
/// writes them.
struct Unattended<'a> {
    static_key: Option<&'a crate::StaticKey>,
    kms: Option<&'a crate::KmsKey>,
    tang: Option<&'a crate::TangKey>,
    tpm: Option<&'a crate::encryption::TpmKey>,
}

/// The parameters of the kinds that open unattended, as a key or a
/// threshold's member at `path` writes them.
fn check_unattended(u: Unattended<'_>, path: &str, f: &mut Findings) {
    let Unattended {
        static_key,
        kms,
        tang,
        tpm,
    } = u;
    if let Some(t) = tang {
        check_tang(t, &format!("{path}.tang"), f);
    }
    if let Some(s) = static_key {
        check_static_passphrase(
            s.passphrase.expose(),
            &format!("{path}.static.passphrase"),
            f,
        );
    }
    if let Some(kms) = kms {
        check_kms(kms, &format!("{path}.kms"), f);
    }
    if let Some(t) = tpm {
        check_tpm(t, path, f);
    }
}

/// 1 to 16 members, each exactly one kind that opens unattended, and
/// `required` between 1 and their number.
fn check_threshold(t: &crate::encryption::ThresholdKey, path: &str, f: &mut Findings) {
    let n = t.keys.len();
    if !(1..=crate::encryption::MAX_THRESHOLD_MEMBERS).contains(&n) {
        f.error(
            format!("{path}.keys"),
            format!(
                "a threshold has 1 to {} member keys; this one has {n}",
                crate::encryption::MAX_THRESHOLD_MEMBERS
            ),
        );
    }
    if usize::try_from(t.required).map_or(true, |r| r == 0 || r > n) {
        f.error(
            format!("{path}.required"),
            format!(
                "required is {}; it must be 1 to the number of member keys ({n})",
                t.required
            ),
        );
    }
    for (i, m) in t.keys.iter().enumerate() {
        let at = format!("{path}.keys[{i}]");
        let kinds = m.kinds_set();
        if kinds.len() != 1 {
            f.error(
                &at,
                format!("a member has exactly one kind of static, nodeID, kms, tang, tpm, prompt (a threshold holds no threshold and no recovery key); this one has {}", if kinds.is_empty() { "none".to_string() } else { kinds.join(", ") }),
            );
        }
        check_unattended(
            Unattended {
                static_key: m.static_key.as_ref(),
                kms: m.kms.as_ref(),
                tang: m.tang.as_ref(),
                tpm: m.tpm.as_ref(),
            },
            &at,
            f,
        );
        if m.tpm.as_ref().is_some_and(|t| t.pin == Some(true)) {
            f.error(
                format!("{at}.tpm.pin"),
                "a TPM key with a PIN is a typed key of its own (make it a slot, or make the threshold's typed member a `prompt`)",
            );
        }
        if let Some(p) = &m.prompt {
            check_prompt(p, &format!("{at}.prompt"), f);
            if t.keys[..i].iter().any(|o| o.prompt.is_some()) {
                f.error(
                    format!("{at}.prompt"),
                    "a threshold has at most one prompt member (a person types one passphrase)",
                );
            }
        }
    }
}

/// Tries in range, a positive timeout, a one-line message.
fn check_prompt(p: &PromptKey, path: &str, f: &mut Findings) {
    if let Some(t) = p.tries.filter(|t| !(1..=MAX_PROMPT_TRIES).contains(t)) {
        f.error(
            format!("{path}.tries"),
            format!("tries is {t}; allow 1 to {MAX_PROMPT_TRIES} wrong answers"),
        );
    }
    if let Err(e) = p.timeout() {
        f.error(format!("{path}.timeout"), e);
    }
    if let Some(m) = &p.message {
        if m.contains(['\n', '\r', '\0']) || m.len() > 200 {
            f.error(
                format!("{path}.message"),
                "the message is one line of at most 200 bytes (ask-password files hold it on one line)",
            );
        }
    }
}

/// One spelling, and not where the salt cannot be used.
fn check_lock_to_state(k: &KeySpec, path: &str, is_state: bool, f: &mut Findings) {
    if k.lock_to_state.is_some() && k.lock_to_state_talos.is_some() {
        f.error(
            format!("{path}.lockToState"),
            "both lockToSTATE and lockToState are set; keep one",
        );
    }
    let typed_member = k
        .threshold
        .as_ref()
        .is_some_and(|t| t.keys.iter().any(|m| m.prompt.is_some()));
    if (k.recovery.is_some() || k.prompt.is_some() || typed_member) && k.lock_to_state() {
        f.error(
            format!("{path}.lockToState"),
            "a typed key (prompt, recovery, a threshold with a prompt member) takes no lockToState: it is asked for at unlock, and a prompt or recovery key is the passphrase exactly as typed (also with `cryptsetup`)",
        );
    }
    if k.tpm.as_ref().is_some_and(|t| t.pin == Some(true)) && k.lock_to_state() {
        f.error(
            format!("{path}.lockToState"),
            "a TPM key with a PIN is asked for at unlock, and typed keys take no lockToState",
        );
    }
    if is_state && k.lock_to_state() {
        f.error(
            format!("{path}.lockToSTATE"),
            "state-locked key is not allowed for the \"STATE\" volume: the salt lives on STATE itself",
        );
    }
}

fn check_static_passphrase(pass: &str, path: &str, f: &mut Findings) {
    if pass.is_empty() {
        f.error(path, "the passphrase is empty");
    } else if pass.len() > MAX_PASSPHRASE {
        f.error(
            path,
            format!("the passphrase is longer than {MAX_PASSPHRASE} bytes, more than `cryptsetup` reads from a terminal: nobody could type it to recover the volume"),
        );
    }
}

/// One PCR list, each PCR in range and listed once; an empty list warns.
fn check_tpm(t: &crate::encryption::TpmKey, path: &str, f: &mut Findings) {
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
    if let Some(signed) = &t.signed_policy {
        check_signed_policy(
            signed,
            &t.effective_pcrs(),
            &format!("{path}.tpm.signedPolicy"),
            f,
        );
    }
    let Some(pcrs) = t.pcrs_written() else {
        return;
    };
    check_pcr_list(pcrs, &pcr_path, f);
    if pcrs.is_empty() && t.signed_policy.is_none() {
        f.warn(
            pcr_path,
            "an empty PCR list seals the key to this TPM only, not to the boot state: anyone who boots another OS on this machine can unseal it",
        );
    }
}

/// Each PCR in 0–23 and listed once.
fn check_pcr_list(pcrs: &[i64], pcr_path: &str, f: &mut Findings) {
    let mut seen = std::collections::BTreeSet::new();
    for (j, &p) in pcrs.iter().enumerate() {
        if !(0..=i64::from(MAX_PCR)).contains(&p) {
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
}

/// Absolute paths, signed PCRs in range, at least one, none also literal.
fn check_signed_policy(
    signed: &crate::encryption::SignedPolicy,
    literal: &[u32],
    path: &str,
    f: &mut Findings,
) {
    for (field, value) in [
        ("publicKey", signed.public_key.as_deref()),
        ("signature", signed.signature.as_deref()),
    ] {
        if value.is_some_and(|v| !v.starts_with('/')) {
            f.error(format!("{path}.{field}"), "give an absolute path");
        }
    }
    let Some(pcrs) = signed.pcrs.as_deref() else {
        return;
    };
    let pcr_path = format!("{path}.pcrs");
    check_pcr_list(pcrs, &pcr_path, f);
    if pcrs.is_empty() {
        f.error(
            pcr_path,
            "a signed policy covers at least one PCR (a UKI's signatures cover PCR 11)",
        );
        return;
    }
    for (j, p) in pcrs.iter().enumerate() {
        if u32::try_from(*p).is_ok_and(|p| literal.contains(&p)) {
            f.error(
                format!("{pcr_path}[{j}]"),
                format!("PCR {p} is also among the literal PCRs: a PCR is bound one way, literal or signed"),
            );
        }
    }
}

/// One of `endpoint` and `endpoints`, each a URL, none twice; a positive
/// `timeout`.
fn check_kms(kms: &crate::KmsKey, path: &str, f: &mut Findings) {
    match (kms.endpoint.is_empty(), kms.endpoints.is_empty()) {
        (true, true) => f.error(path, "set `endpoint` (or `endpoints`, replicas of one KMS)"),
        (false, false) => f.error(
            path,
            "set `endpoint` or `endpoints`, not both (put every replica in `endpoints`)",
        ),
        (false, true) => check_endpoint(&kms.endpoint, &format!("{path}.endpoint"), f),
        (true, false) => {
            for (i, e) in kms.endpoints.iter().enumerate() {
                let at = format!("{path}.endpoints[{i}]");
                if kms.endpoints[..i].contains(e) {
                    f.error(&at, format!("`{e}` is listed twice"));
                }
                check_endpoint(e, &at, f);
            }
        }
    }
    if let Some(t) = &kms.timeout {
        check_timeout(t, &format!("{path}.timeout"), f);
    }
}

/// An `http://` URL with a host, a pinned thumbprint (or trust on first
/// use, said out loud), a positive `timeout`.
fn check_tang(t: &crate::TangKey, path: &str, f: &mut Findings) {
    match url::Url::parse(&t.url) {
        Err(e) => f.error(format!("{path}.url"), format!("`{}` is not a URL: {e}", t.url)),
        Ok(u) if u.scheme() != "http" => f.error(
            format!("{path}.url"),
            format!("scheme `{}`: volctl speaks plain http to Tang (its answers are signed and carry no secret; clevis's `http://` URLs work as they are)", u.scheme()),
        ),
        Ok(u) if u.host_str().is_none_or(str::is_empty) => {
            f.error(format!("{path}.url"), format!("`{}` has no host", t.url))
        }
        Ok(u) if u.query().is_some() || u.fragment().is_some() || !u.username().is_empty() => f.error(
            format!("{path}.url"),
            "a Tang URL is a scheme, host, port and path; it has no query, fragment or user",
        ),
        Ok(_) => {}
    }
    match (&t.thumbprint, t.trust_on_first_use) {
        (None, Some(true)) => {}
        (None, _) => f.error(
            format!("{path}.thumbprint"),
            "pin the server's signing key: its thumbprint, as `tang-show-keys` prints it on the server (or set `trustOnFirstUse: true` to trust the key it shows at enrolment)",
        ),
        (Some(_), Some(true)) => f.error(
            format!("{path}.trustOnFirstUse"),
            "a thumbprint is pinned already; drop `trustOnFirstUse`",
        ),
        (Some(tp), _) => {
            let fits = tp.len() == 43
                && tp.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !fits {
                f.error(
                    format!("{path}.thumbprint"),
                    format!("`{tp}` is not a SHA-256 JWK thumbprint (43 base64url characters, as `tang-show-keys` prints it)"),
                );
            }
        }
    }
    if let Some(timeout) = &t.timeout {
        check_timeout(timeout, &format!("{path}.timeout"), f);
    }
}

/// A positive Go duration.
fn check_timeout(t: &str, path: &str, f: &mut Findings) {
    match crate::duration::parse_go_duration(t) {
        Ok(s) if s > 0.0 => {}
        Ok(_) => f.error(path, format!("`{t}` is not a positive duration")),
        Err(e) => f.error(path, e),
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
    let is_state = label == "STATE";
    // STATE cannot be locked to itself: nodeID alone is what docs/keys.md
    // recommends for it on a machine without a TPM or a KMS (as Talos does).
    let only_weak = !is_state
        && !keys.is_empty()
        && keys
            .iter()
            .all(|k| matches!(k.kind, crate::encryption::KeyKind::NodeId) && !k.lock_to_state);
    if only_weak {
        f.warn(
            "encryption.keys",
            format!(
                "{label} is opened only by nodeID keys without lockToState: anyone who has the disk and can read the machine's UUID can open it"
            ),
        );
    }
    if !is_state || e.allow_static_key_on_state == Some(true) {
        return;
    }
    for (i, k) in e.keys.iter().enumerate() {
        if k.static_key.is_some() {
            f.warn(
                format!("encryption.keys[{i}].static"),
                "a static key on STATE is stored in clear on the META partition: anyone with the disk can open STATE; set encryption.allowStaticKeyOnState: true to silence this warning",
            );
        }
        let members = k.threshold.iter().flat_map(|t| t.keys.iter().enumerate());
        for (j, _) in members.filter(|(_, m)| m.static_key.is_some()) {
            f.warn(
                format!("encryption.keys[{i}].threshold.keys[{j}].static"),
                "a static member on STATE is stored in clear on the META partition: anyone with the disk has that member's share; set encryption.allowStaticKeyOnState: true to silence this warning",
            );
        }
    }
}
