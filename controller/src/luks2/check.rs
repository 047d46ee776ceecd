//! Never trust a header you did not check. Before any passphrase touches a
//! LUKS2 header, it must be one volctl would have written for this config:
//! one data segment with the configured cipher (never `cipher_null`), the
//! configured key and sector size, one volume-key digest covering every
//! keyslot, ordinary keyslots with a known KDF, and no pending requirement
//! such as an interrupted reencryption. A swapped or tampered header is
//! refused, which defeats the published attack that makes a system write
//! plaintext to a "LUKS" volume.

use crate::luks2::header::Luks2Header;
use api_types::Encryption;

const KDFS: &[&str] = &["argon2id", "argon2i", "pbkdf2"];

/// Checks `h` against `enc`; the error says what does not match.
pub fn check(h: &Luks2Header, enc: &Encryption) -> Result<(), String> {
    let j = &h.json;
    if j.segments.len() != 1 {
        return Err(format!(
            "the header has {} segments; volctl writes exactly one data segment (an interrupted reencryption or a foreign header?)",
            j.segments.len()
        ));
    }
    let (seg_id, seg) = j.segments.iter().next().expect("one segment");
    if seg.kind != "crypt" {
        return Err(format!(
            "segment {seg_id} has type `{}`, not `crypt`",
            seg.kind
        ));
    }
    let cipher = seg.encryption.as_deref().unwrap_or("");
    if cipher.starts_with("cipher_null") || cipher.is_empty() {
        return Err(format!(
            "segment {seg_id} uses `{cipher}`, which stores data unencrypted; refusing this header (it may have been tampered with)"
        ));
    }
    if cipher != enc.cipher() {
        return Err(format!(
            "the volume is encrypted with `{cipher}` but the config asks for `{}`; changing the cipher of an existing volume needs a wipe (or the header was replaced)",
            enc.cipher()
        ));
    }
    if !seg.flags.is_empty() {
        return Err(format!(
            "segment {seg_id} carries flags {:?} (reencryption in progress?)",
            seg.flags
        ));
    }
    if let (Some(want), Some(have)) = (enc.block_size, seg.sector_size) {
        if want != have {
            return Err(format!(
                "the volume uses {have}-byte sectors but the config asks for {want}; this needs a wipe"
            ));
        }
    }
    let mandatory = j
        .config
        .get("requirements")
        .and_then(|r| r.get("mandatory"))
        .and_then(|m| m.as_array())
        .map(|a| a.len())
        .unwrap_or(0);
    if mandatory > 0 {
        return Err(format!(
            "the header has mandatory requirements {} (e.g. an unfinished reencryption); finish it with cryptsetup first",
            j.config["requirements"]["mandatory"]
        ));
    }
    if j.digests.len() != 1 {
        return Err(format!(
            "the header has {} digests; expected one volume-key digest",
            j.digests.len()
        ));
    }
    let digest = j.digests.values().next().expect("one digest");
    if digest.kind != "pbkdf2" || !digest.segments.iter().any(|s| s == seg_id) {
        return Err("the volume-key digest is not a pbkdf2 digest of the data segment".into());
    }
    let key_bytes = enc.key_size_bits() / 8;
    for (n, ks) in &j.keyslots {
        if ks.kind != "luks2" {
            return Err(format!(
                "keyslot {n} has type `{}`; volctl uses only `luks2` keyslots",
                ks.kind
            ));
        }
        if !KDFS.contains(&ks.kdf.kind.as_str()) {
            return Err(format!("keyslot {n} uses unknown KDF `{}`", ks.kdf.kind));
        }
        if ks.key_size != key_bytes {
            return Err(format!(
                "keyslot {n} holds a {}-bit key but the config asks for {}-bit keys",
                ks.key_size * 8,
                key_bytes * 8
            ));
        }
        if !digest.keyslots.contains(n) {
            return Err(format!(
                "keyslot {n} is not covered by the volume-key digest"
            ));
        }
    }
    Ok(())
}
