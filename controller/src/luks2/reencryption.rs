//! A reencryption volctl started, and only such one, is resumed.
//!
//! While LUKS2 encrypts a device in place, its header describes a device
//! that is part plaintext (`linear` segments) and part ciphertext, and
//! libcryptsetup maps it so. Someone who can write the disk could forge
//! that shape on an encrypted volume, and a tool that "resumes" it would
//! write plaintext (or encrypt ciphertext twice). So:
//!
//! - before any key is tried, the shape must be an encryption volctl runs
//!   (one `reencrypt` keyslot in `encrypt` mode, backward, `datashift`; only
//!   `linear` segments and `crypt` segments with the configured cipher; the
//!   backup segments libcryptsetup keeps), the config must ask for
//!   `inPlace`, and a `volctl-reencrypt` token must be there;
//! - after the unlock, before anything is written or activated, the
//!   token's proof must verify: HMAC-SHA256 keyed by
//!   HKDF(volume key, "volctl reencryption v1") over the header UUID, the
//!   operation and the final segment. Without the volume key nobody can
//!   make it, so a forged in-progress header is refused.

use super::binding::VolumeKey;
use super::consts::{REENCRYPT_INFO, REENCRYPT_TOKEN_TYPE, TOKEN_VERSION};
use super::header::{Luks2Header, Luks2Json, Segment, REENCRYPT_KEYSLOT};
use super::token::TokenId;
use api_types::KeyslotId;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// Segment flags libcryptsetup sets while it reencrypts.
pub(crate) const BACKUP_FINAL: &str = "backup-final";
pub(crate) const BACKUP_PREVIOUS: &str = "backup-previous";
pub(crate) const BACKUP_MOVED: &str = "backup-moved-segment";
/// The hotzone a cut run was writing (libcryptsetup recovers it first).
pub(crate) const IN_REENCRYPTION: &str = "in-reencryption";

/// What a reencryption volctl starts does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Operation {
    /// Plaintext to ciphertext, with a data shift (`inPlace`).
    Encrypt,
    /// Ciphertext under the old volume key to ciphertext under a new one
    /// (`volctl rotate-volume-key`).
    RotateVolumeKey,
    /// Ciphertext to plaintext at the device's start, the header detached
    /// (`volctl disable-encryption`, `decryptInPlace`).
    Decrypt,
}

impl Operation {
    /// Its name (`encrypt`, `rotate-volume-key`), as records and the online
    /// run's command line spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Encrypt => "encrypt",
            Operation::RotateVolumeKey => "rotate-volume-key",
            Operation::Decrypt => "decrypt",
        }
    }

    /// The operation named `name` ([`Operation::as_str`]).
    pub fn from_name(name: &str) -> Option<Self> {
        [
            Operation::Encrypt,
            Operation::RotateVolumeKey,
            Operation::Decrypt,
        ]
        .into_iter()
        .find(|o| o.as_str() == name)
    }

    /// The reencrypt keyslot's (mode, direction, resilience) volctl uses.
    pub(crate) fn shape(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Operation::Encrypt => ("encrypt", "backward", "datashift"),
            Operation::RotateVolumeKey => ("reencrypt", "forward", "checksum"),
            Operation::Decrypt => ("decrypt", "forward", "datashift-checksum"),
        }
    }

    /// How many volume-key digests the header has while it runs.
    pub(crate) fn volume_digests(self) -> usize {
        match self {
            Operation::Encrypt => 1,
            Operation::RotateVolumeKey => 2,
            Operation::Decrypt => 1,
        }
    }
}

/// An operation name that is not one ([`Operation::as_str`]).
#[derive(Debug, Clone, thiserror::Error)]
#[error("no operation `{0}` (encrypt, rotate-volume-key)")]
pub struct UnknownOperation(pub String);

impl std::str::FromStr for Operation {
    type Err = UnknownOperation;

    fn from_str(s: &str) -> Result<Self, UnknownOperation> {
        Self::from_name(s).ok_or_else(|| UnknownOperation(s.to_string()))
    }
}

/// The `volctl-reencrypt` token: volctl's proof that it started the
/// reencryption the header records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReencryptToken {
    /// Always `volctl-reencrypt`.
    #[serde(rename = "type")]
    pub token_type: String,
    /// LUKS2 wants the list; the token is bound to no keyslot.
    pub keyslots: Vec<String>,
    /// Layout version.
    pub volctl_version: u32,
    /// What runs.
    pub operation: Operation,
    /// A rotation's keyslots of the old key, one beside each configured
    /// slot and under its passphrase (libcryptsetup opens a volume being
    /// re-encrypted by a pair); it drops them when the run ends.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub temporary: Vec<TemporarySlot>,
    /// HMAC proof, base64.
    pub proof: String,
}

/// A keyslot of the old volume key beside configured slot `of`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemporarySlot {
    /// The keyslot.
    pub slot: KeyslotId,
    /// The configured slot whose passphrase it shares.
    pub of: KeyslotId,
}

/// The facts of a header the proof covers: its UUID, the operation, and
/// the segment the volume ends with (the reencryption's final segment, or,
/// on the header written just before the reencryption is recorded, its
/// one crypt segment).
fn covered(h: &Luks2Header, op: Operation, temporary: &[TemporarySlot]) -> Option<String> {
    let fin = match final_segment(&h.json) {
        Some((_, fin)) => fin,
        None => match h.json.segments.values().collect::<Vec<_>>()[..] {
            [one] if one.kind == "crypt" => one,
            _ => return None,
        },
    };
    let temporary: Vec<String> = temporary
        .iter()
        .map(|t| format!("{}>{}", t.slot, t.of))
        .collect();
    Some(format!(
        "uuid={}\0op={}\0final={}@{}/{}\0temporary={}\0",
        h.uuid,
        op.as_str(),
        fin.encryption.as_deref().unwrap_or(""),
        fin.offset,
        fin.sector_size.unwrap_or(512),
        temporary.join(",")
    ))
}

fn mac(volume_key: &VolumeKey, facts: &str) -> Hmac<Sha256> {
    let hk = hkdf::Hkdf::<Sha256>::new(None, volume_key.expose());
    let mut key = zeroize::Zeroizing::new([0u8; 32]);
    hk.expand(REENCRYPT_INFO, key.as_mut())
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    let mut m = Hmac::<Sha256>::new_from_slice(key.as_ref()).expect("HMAC takes any key length");
    m.update(facts.as_bytes());
    m
}

/// The token proving that the holder of `volume_key` started `op` on the
/// header `h` (written before the reencryption is recorded: libcryptsetup
/// refuses token writes after). `None` when `h` has no such segment.
pub fn token_for(
    h: &Luks2Header,
    op: Operation,
    temporary: Vec<TemporarySlot>,
    volume_key: &VolumeKey,
) -> Option<ReencryptToken> {
    let facts = covered(h, op, &temporary)?;
    let proof = base64::engine::general_purpose::STANDARD
        .encode(mac(volume_key, &facts).finalize().into_bytes());
    Some(ReencryptToken {
        token_type: REENCRYPT_TOKEN_TYPE.into(),
        keyslots: vec![],
        volctl_version: TOKEN_VERSION,
        operation: op,
        temporary,
        proof,
    })
}

/// The `volctl-reencrypt` token of a header, with its id.
pub fn find_token(h: &Luks2Header) -> Option<(TokenId, ReencryptToken)> {
    h.tokens().find_map(|(id, raw)| {
        (raw.get("type")?.as_str()? == REENCRYPT_TOKEN_TYPE)
            .then(|| serde_json::from_value(raw.clone()).ok())
            .flatten()
            .map(|t| (id, t))
    })
}

/// Whether the header's reencryption carries a proof made with
/// `volume_key` (constant-time compare).
pub fn proven(h: &Luks2Header, volume_key: &VolumeKey) -> bool {
    let Some((_, t)) = find_token(h) else {
        return false;
    };
    let Some(facts) = covered(h, t.operation, &t.temporary) else {
        return false;
    };
    base64::engine::general_purpose::STANDARD
        .decode(&t.proof)
        .is_ok_and(|tag| mac(volume_key, &facts).verify_slice(&tag).is_ok())
}

/// The segment the reencryption ends with.
fn final_segment(j: &Luks2Json) -> Option<(&String, &Segment)> {
    j.segments
        .iter()
        .find(|(_, s)| s.flags.iter().any(|f| f == BACKUP_FINAL))
}

/// Bytes the recorded reencryption has still to do: the segments the
/// device maps now (the backups aside) that are plaintext (`linear`) or
/// not yet under the final segment's key. A `dynamic` segment runs to
/// the device's end (`device_size`).
pub fn pending_bytes(j: &Luks2Json, device_size: u64) -> u64 {
    let Some((final_id, _)) = final_segment(j) else {
        return 0;
    };
    let done: Vec<&String> = j
        .digests
        .values()
        .find(|d| d.segments.contains(final_id))
        .map(|d| d.segments.iter().collect())
        .unwrap_or_default();
    // Active segments still to do: plain, under the old key, or the hotzone
    // a cut step left (flagged, already under the final digest).
    segments_in_use(j)
        .filter(|(id, s)| s.kind == "linear" || !done.contains(id) || in_hotzone(s))
        .map(|(_, s)| segment_bytes(s, device_size))
        .sum()
}

/// Bytes a recorded decryption has still to do: the segments the device
/// maps now (the backups aside) that are still ciphertext (`crypt`).
pub fn pending_decryption_bytes(j: &Luks2Json, device_size: u64) -> u64 {
    segments_in_use(j)
        .filter(|(_, s)| s.kind == "crypt")
        .map(|(_, s)| segment_bytes(s, device_size))
        .sum()
}

/// The segments the device maps now: all but libcryptsetup's `backup-*`
/// copies.
pub(crate) fn segments_in_use(j: &Luks2Json) -> impl Iterator<Item = (&String, &Segment)> {
    j.segments
        .iter()
        .filter(|(_, s)| !s.flags.iter().any(|f| f.starts_with("backup-")))
}

/// Whether `s` is a step's hotzone still being rewritten.
pub(crate) fn in_hotzone(s: &Segment) -> bool {
    s.flags.iter().any(|f| f == IN_REENCRYPTION)
}

/// A segment's length in bytes; a `dynamic` one runs to the device's end
/// (`device_size`).
fn segment_bytes(s: &Segment, device_size: u64) -> u64 {
    let offset = s.offset.parse::<u64>().unwrap_or(0);
    match s.size.as_deref() {
        Some("dynamic") | None => device_size.saturating_sub(offset),
        Some(n) => n.parse().unwrap_or(0),
    }
}

/// The data segment of a reencryption that has nothing left to write: one
/// active segment, `crypt`, not flagged, under the final digest (an
/// encryption's `backup-moved-segment` may still be there: its copy is no
/// longer needed, libcryptsetup's teardown wipes it). A run cut after its
/// last step's commit and before libcryptsetup tore it down leaves this
/// shape, and libcryptsetup 2.6 must never be handed it: it cannot resume
/// an encryption in it ("Failed to set device segments for next
/// reencryption hotzone"); its forward resume of a rotation reads "one
/// segment" as "nothing done" and reencrypts the volume again from its
/// start, destroying the data; and while its teardown drops the old key's
/// keyslots, the pair it needs to load is gone.
pub fn finished_not_torn_down(j: &Luks2Json) -> Option<FinalSegment> {
    if !in_progress(j) {
        return None;
    }
    let (final_id, _) = final_segment(j)?;
    let final_digest = j.digests.values().find(|d| d.segments.contains(final_id))?;
    let active: Vec<(&String, &Segment)> = segments_in_use(j).collect();
    let [(id, data)] = active.as_slice() else {
        return None;
    };
    let done = data.kind == "crypt" && !in_hotzone(data) && final_digest.segments.contains(id);
    done.then_some(FinalSegment {
        offset: data.offset.parse().ok()?,
        sector_size: data.sector_size.unwrap_or(512),
    })
}

/// The last step of an in-place encryption (the moved first part, from
/// its copy at the device's end to the data's head), as a header records
/// it while that step is flagged (cut inside it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MovedStep {
    /// Where the plaintext copy lies (bytes from the device's start).
    pub from: u64,
    /// Its length.
    pub len: u64,
    /// Where its ciphertext goes (the data segment's start).
    pub to: u64,
    /// The data segment's IV offset, in 512-byte sectors.
    pub iv_tweak: u64,
    /// The data segment's encryption sector size.
    pub sector_size: u32,
}

/// The flagged hotzone of an encryption's last step, if that is what the
/// header records: the hotzone at the data's head, as long as the moved
/// copy. libcryptsetup 2.6 must not recover it: its recovery writes the
/// step, then its teardown wipes the moved copy, and only then commits; a
/// cut during that wipe leaves this same header with its source gone, and
/// the next recovery writes noise over the data. volctl does the step from
/// the copy (never written before a commit that no longer needs it).
pub fn moved_step_flagged(j: &Luks2Json) -> Option<MovedStep> {
    let encrypting = j
        .keyslots
        .values()
        .any(|k| k.kind == REENCRYPT_KEYSLOT && k.mode.as_deref() == Some("encrypt"));
    let moved = moved_copy(j)?;
    let (_, fin) = final_segment(j)?;
    let hot = j.segments.values().find(|s| in_hotzone(s))?;
    let step = MovedStep {
        from: moved.0,
        len: moved.1,
        to: hot.offset.parse().ok()?,
        iv_tweak: hot.iv_tweak.as_deref().unwrap_or("0").parse().ok()?,
        sector_size: hot.sector_size.unwrap_or(512),
    };
    let at_head = Some(step.to) == fin.offset.parse().ok() && step.iv_tweak == 0;
    let whole = hot.size.as_deref().and_then(|n| n.parse().ok()) == Some(step.len);
    (encrypting && hot.kind == "crypt" && at_head && whole && step.to + step.len <= step.from)
        .then_some(step)
}

/// Where an encryption's moved copy lies (offset, length), while the header
/// still describes it.
pub fn moved_copy(j: &Luks2Json) -> Option<(u64, u64)> {
    let s = j
        .segments
        .values()
        .find(|s| s.flags.iter().any(|f| f == BACKUP_MOVED))?;
    Some((s.offset.parse().ok()?, s.size.as_deref()?.parse().ok()?))
}

/// Whether the header is in a shape volctl finishes itself and
/// libcryptsetup must not be asked to resume or recover
/// ([`finished_not_torn_down`], [`moved_step_flagged`]).
pub fn left_to_volctl(j: &Luks2Json) -> bool {
    finished_not_torn_down(j).is_some() || moved_step_flagged(j).is_some()
}

/// Where the data of a volume lies, for a header written anew over it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FinalSegment {
    /// The data offset, bytes.
    pub offset: u64,
    /// The encryption sector size.
    pub sector_size: u32,
}

/// Whether a header records a reencryption (the check then goes here).
pub fn in_progress(j: &Luks2Json) -> bool {
    j.keyslots.values().any(|k| k.kind == REENCRYPT_KEYSLOT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::luks2::check::reencrypting::check;
    use crate::luks2::check::CheckError;
    use api_types::Encryption;
    use serde_json::json;

    #[test]
    fn an_operation_s_name_reads_back_as_the_operation_and_as_its_record() {
        for op in [
            Operation::Encrypt,
            Operation::RotateVolumeKey,
            Operation::Decrypt,
        ] {
            assert_eq!(Operation::from_name(op.as_str()), Some(op));
            assert_eq!(serde_json::to_value(op).unwrap(), op.as_str());
        }
        assert_eq!(Operation::from_name("reencrypt"), None);
    }

    fn enc(in_place: bool) -> Encryption {
        let mut e: Encryption = serde_json::from_value(json!({
            "provider": "luks2",
            "keys": [{"slot": 0, "static": {"passphrase": "p"}}]
        }))
        .unwrap();
        e.in_place = Some(in_place);
        e
    }

    /// An encryption in progress as libcryptsetup records it (cut half way:
    /// one plaintext and one encrypted part mapped).
    fn encrypting() -> serde_json::Value {
        json!({
            "keyslots": {
                "0": {"type": "luks2", "key_size": 64, "af": {}, "area": {"type": "raw"},
                      "kdf": {"type": "argon2id", "salt": "c2FsdA=="}},
                "1": {"type": "reencrypt", "key_size": 1, "mode": "encrypt",
                      "direction": "backward", "area": {"type": "datashift"}}
            },
            "tokens": {"0": {"type": "volctl-reencrypt", "keyslots": [],
                             "volctl_version": 2, "operation": "encrypt", "proof": "x"}},
            "segments": {
                "0": {"type": "linear", "offset": "16777216", "size": "33554432"},
                "1": {"type": "crypt", "offset": "50331648", "size": "dynamic", "iv_tweak": "65536",
                      "encryption": "aes-xts-plain64", "sector_size": 512},
                "2": {"type": "linear", "offset": "0", "size": "67108864", "flags": ["backup-previous"]},
                "3": {"type": "crypt", "offset": "16777216", "size": "dynamic", "iv_tweak": "0",
                      "encryption": "aes-xts-plain64", "sector_size": 512, "flags": ["backup-final"]}
            },
            "digests": {
                "0": {"type": "pbkdf2", "keyslots": ["0"], "segments": ["1", "3"], "digest": "d"},
                "1": {"type": "pbkdf2", "keyslots": ["1"], "segments": [], "digest": "e"}
            },
            "config": {"requirements": {"mandatory": ["online-reencrypt-v2"]}}
        })
    }

    fn checked(v: serde_json::Value, in_place: bool) -> Result<(), CheckError> {
        check(&serde_json::from_value(v).unwrap(), &enc(in_place))
    }

    #[test]
    fn volctl_s_own_encryption_passes_and_every_forgery_of_it_is_refused() {
        assert_eq!(checked(encrypting(), true), Ok(()));
        // Without `inPlace` in the config.
        assert!(matches!(
            checked(encrypting(), false),
            Err(CheckError::Requirements(_))
        ));
        // Without volctl's token: another tool started it.
        let mut v = encrypting();
        v["tokens"] = json!({});
        assert!(
            matches!(checked(v, true), Err(CheckError::Reencryption(w)) if w.contains("no volctl-reencrypt token"))
        );
        // A decryption (ciphertext turned into plaintext).
        let mut v = encrypting();
        v["keyslots"]["1"]["mode"] = json!("decrypt");
        assert!(matches!(checked(v, true), Err(CheckError::Reencryption(_))));
        // A segment mapped with cipher_null.
        let mut v = encrypting();
        v["segments"]["1"]["encryption"] = json!("cipher_null-ecb");
        assert!(matches!(
            checked(v, true),
            Err(CheckError::NullCipher { .. })
        ));
        // The volume key's digest bound to a plaintext segment.
        let mut v = encrypting();
        v["digests"]["0"]["segments"] = json!(["0", "3"]);
        assert!(matches!(checked(v, true), Err(CheckError::Digest(_))));
        // A final segment with an IV tweak, or a flag libcryptsetup never sets.
        let mut v = encrypting();
        v["segments"]["3"]["iv_tweak"] = json!("8");
        assert!(checked(v, true).is_err());
        let mut v = encrypting();
        v["segments"]["2"]["flags"] = json!(["backup-opal"]);
        assert!(matches!(
            checked(v, true),
            Err(CheckError::SegmentShape { .. })
        ));
    }

    #[test]
    fn a_rotation_maps_no_plaintext_and_has_two_volume_keys() {
        let mut v = encrypting();
        v["keyslots"]["1"]["mode"] = json!("reencrypt");
        v["keyslots"]["1"]["direction"] = json!("forward");
        v["keyslots"]["1"]["area"] = json!({"type": "checksum"});
        // A plaintext segment in a rotation: refused.
        assert!(matches!(
            checked(v.clone(), false),
            Err(CheckError::SegmentType { .. })
        ));
        v["segments"]["0"] = json!({"type": "crypt", "offset": "16777216", "size": "33554432",
            "iv_tweak": "0", "encryption": "aes-xts-plain64", "sector_size": 512});
        v["segments"]["2"]["type"] = json!("crypt");
        v["segments"]["2"]["encryption"] = json!("aes-xts-plain64");
        v["keyslots"]["5"] = v["keyslots"]["0"].clone();
        v["digests"]["2"] =
            json!({"type": "pbkdf2", "keyslots": ["5"], "segments": ["0", "2"], "digest": "f"});
        // Two volume keys, `inPlace` not needed: a rotation volctl runs.
        assert_eq!(checked(v.clone(), false), Ok(()));
        // One keyslot outside both digests: refused.
        v["keyslots"]["7"] = v["keyslots"]["0"].clone();
        assert!(matches!(checked(v, false), Err(CheckError::Keyslot { .. })));
    }

    #[test]
    fn pending_bytes_counts_what_is_not_yet_under_the_final_key() {
        let j: Luks2Json = serde_json::from_value(encrypting()).unwrap();
        // 32 MiB plaintext; segment 1 is under the final key already.
        assert_eq!(pending_bytes(&j, 128 << 20), 32 << 20);
    }

    /// Headers `cryptsetup luksDump` showed after cutting an in-place
    /// encryption of a 64 MiB image (48 MiB of data) at write 19 (inside
    /// the commit that flags the last step's hotzone), write 46 (inside the
    /// teardown, after its wipe of the moved copy) and after its end; and a
    /// rotation of it cut after its header landed (write 2) and after its
    /// last step's commit (write 44).
    fn cut(name: &str) -> Luks2Json {
        let text = match name {
            "hotzone" => include_str!("testdata/encrypt-cut-hotzone.json"),
            "all-written" => include_str!("testdata/encrypt-all-written.json"),
            "rotate-started" => include_str!("testdata/rotate-started.json"),
            "rotate-all-written" => include_str!("testdata/rotate-all-written.json"),
            "rotate-old-keys-dropped" => include_str!("testdata/rotate-old-keys-dropped.json"),
            _ => include_str!("testdata/encrypt-finished.json"),
        };
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn a_hotzone_a_cut_left_is_still_to_do() {
        // Before: the flagged hotzone counted as done, and a cut here
        // was "finished" with a third of the volume plaintext.
        // The flagged hotzone (the moved part's step, 16 MiB) is to do.
        assert_eq!(pending_bytes(&cut("hotzone"), 64 << 20), 16 << 20);
        assert_eq!(pending_bytes(&cut("all-written"), 64 << 20), 0);
        assert_eq!(pending_bytes(&cut("finished"), 64 << 20), 0);
    }

    #[test]
    fn an_encryption_whose_every_byte_is_written_is_finished_not_resumed() {
        // The moved copy's segment is still described, but the moved part
        // was written by the step whose commit made this header.
        assert_eq!(
            finished_not_torn_down(&cut("all-written")),
            Some(FinalSegment {
                offset: 16 << 20,
                sector_size: 512
            })
        );
        assert_eq!(finished_not_torn_down(&cut("hotzone")), None);
        assert_eq!(finished_not_torn_down(&cut("finished")), None);
        assert_eq!(moved_copy(&cut("all-written")), Some((48 << 20, 16 << 20)));
    }

    #[test]
    fn the_flagged_last_step_of_an_encryption_is_recognised_only_so() {
        assert_eq!(
            moved_step_flagged(&cut("hotzone")),
            Some(MovedStep {
                from: 48 << 20,
                len: 16 << 20,
                to: 16 << 20,
                iv_tweak: 0,
                sector_size: 512,
            })
        );
        assert!(left_to_volctl(&cut("hotzone")));
        assert_eq!(moved_step_flagged(&cut("all-written")), None);
        assert_eq!(moved_step_flagged(&cut("finished")), None);
        assert_eq!(moved_step_flagged(&cut("rotate-all-written")), None);
        // A flagged hotzone elsewhere (an earlier step) is libcryptsetup's.
        let mut j = cut("hotzone");
        for s in j.segments.values_mut() {
            if s.flags.iter().any(|f| f == IN_REENCRYPTION) {
                s.offset = (20u64 << 20).to_string();
            }
        }
        assert_eq!(moved_step_flagged(&j), None);
    }

    #[test]
    fn a_rotation_with_every_byte_under_the_new_key_is_finished_not_resumed() {
        // libcryptsetup 2.6 would reencrypt this one again from 0 %.
        assert_eq!(
            finished_not_torn_down(&cut("rotate-all-written")),
            Some(FinalSegment {
                offset: 16 << 20,
                sector_size: 512
            })
        );
        assert_eq!(pending_bytes(&cut("rotate-all-written"), 64 << 20), 0);
        // Just started: one segment too, but under the old key.
        assert_eq!(finished_not_torn_down(&cut("rotate-started")), None);
        assert_eq!(pending_bytes(&cut("rotate-started"), 64 << 20), 48 << 20);
    }

    #[test]
    fn a_rotation_whose_teardown_dropped_the_old_keys_passes_the_shape_check_only_so() {
        let e = enc(false);
        let dropped = cut("rotate-old-keys-dropped");
        assert!(finished_not_torn_down(&dropped).is_some());
        check(&dropped, &e).unwrap();
        // The same keyless old digest while the old segment is still mapped
        // (mid-rotation) is refused.
        let mut mid = cut("rotate-started");
        let old = mid
            .digests
            .values_mut()
            .find(|d| d.segments.iter().any(|s| s == "0"))
            .unwrap();
        let temporary = std::mem::take(&mut old.keyslots);
        mid.keyslots.retain(|n, _| !temporary.contains(n));
        let err = check(&mid, &e).unwrap_err().to_string();
        assert!(
            err.contains("a digest of no keyslot covers segments"),
            "{err}"
        );
    }
}
