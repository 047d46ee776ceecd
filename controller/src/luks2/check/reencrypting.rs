//! The trusted-header rules for a header that records a reencryption
//! volctl started (an in-place encryption, a volume-key rotation): its
//! proof token, its reencrypt keyslot's shape, its segments and digests.
//! A settled header's rules are `mod.rs`; both share the keyslot rules.

use super::{check_cipher, check_keyslots, CheckError};
use crate::luks2::consts::{MIN_DATA_OFFSET, REENCRYPT_TOKEN_TYPE};
use crate::luks2::header::{DigestEntry, Luks2Json, Segment, LUKS2_KEYSLOT, REENCRYPT_KEYSLOT};
use crate::luks2::reencryption::*;
use api_types::Encryption;

/// The shape check of an in-progress encryption (before any key).
pub fn check(j: &Luks2Json, enc: &Encryption) -> Result<(), CheckError> {
    let shape = |what: &str| CheckError::Reencryption(what.to_string());
    if !j
        .tokens
        .values()
        .any(|t| t.get("type").and_then(|v| v.as_str()) == Some(REENCRYPT_TOKEN_TYPE))
    {
        return Err(shape("it carries no volctl-reencrypt token, so volctl did not start it (another tool did, or the header was forged)"));
    }
    let [rk] = j
        .keyslots
        .values()
        .filter(|k| k.kind == REENCRYPT_KEYSLOT)
        .collect::<Vec<_>>()[..]
    else {
        return Err(shape("it has more than one reencrypt keyslot"));
    };
    let area = rk.area.get("type").and_then(|v| v.as_str());
    let found = (rk.mode.as_deref(), rk.direction.as_deref(), area);
    let Some(op) = [Operation::Encrypt, Operation::RotateVolumeKey]
        .into_iter()
        .find(|op| {
            let (m, d, a) = op.shape();
            found == (Some(m), Some(d), Some(a))
        })
    else {
        return Err(shape(&format!(
            "its reencrypt keyslot is {found:?}; volctl runs only encrypt/backward/datashift and reencrypt/forward/checksum"
        )));
    };
    if op == Operation::Encrypt && !enc.in_place() {
        return Err(CheckError::Requirements(format!(
            "{:?} (an in-place encryption is recorded, and the config does not ask for `inPlace`)",
            j.requirements()
        )));
    }
    if j.requirements()
        .iter()
        .any(|r| !r.starts_with("online-reencrypt"))
    {
        return Err(CheckError::Requirements(format!("{:?}", j.requirements())));
    }
    let final_id = check_segments(j, enc, op)?;
    check_digests(j, enc, &final_id, op)
}

fn check_segments(j: &Luks2Json, enc: &Encryption, op: Operation) -> Result<String, CheckError> {
    let shape = |id: &str, what: String| CheckError::SegmentShape {
        id: id.to_string(),
        what,
    };
    for (id, s) in &j.segments {
        if let Some(f) = s.flags.iter().find(|f| {
            ![BACKUP_FINAL, BACKUP_PREVIOUS, BACKUP_MOVED, IN_REENCRYPTION].contains(&f.as_str())
        }) {
            return Err(shape(id, format!("carries flag `{f}`")));
        }
        match s.kind.as_str() {
            // Plaintext only while encrypting: a rotation maps none.
            "linear" if op == Operation::Encrypt => {}
            "crypt" => check_crypt_segment(id, s, enc)?,
            other => {
                return Err(CheckError::SegmentType {
                    id: id.clone(),
                    kind: other.to_string(),
                })
            }
        }
    }
    let finals: Vec<_> = j
        .segments
        .iter()
        .filter(|(_, s)| s.flags.iter().any(|f| f == BACKUP_FINAL))
        .collect();
    let [(id, fin)] = finals[..] else {
        return Err(CheckError::Reencryption(format!(
            "it has {} final segments",
            finals.len()
        )));
    };
    if fin.kind != "crypt" || fin.offset.parse::<u64>().unwrap_or(0) < MIN_DATA_OFFSET {
        return Err(shape(id, "is not a crypt segment past the metadata".into()));
    }
    Ok(id.clone())
}

fn check_crypt_segment(id: &str, s: &Segment, enc: &Encryption) -> Result<(), CheckError> {
    check_cipher(id, s, enc)?;
    // A crypt segment that starts part way has the IV of its first sector
    // as its tweak; the final segment starts at the data's start.
    let final_segment = s.flags.iter().any(|f| f == BACKUP_FINAL);
    if (final_segment && s.iv_tweak.as_deref().unwrap_or("0") != "0") || s.integrity.is_some() {
        return Err(CheckError::SegmentShape {
            id: id.to_string(),
            what: "has an IV tweak or integrity".into(),
        });
    }
    match (enc.block_size, s.sector_size) {
        (Some(want), Some(have)) if want != have => Err(CheckError::SectorSize { have, want }),
        _ => Ok(()),
    }
}

/// One pbkdf2 digest covers every ordinary keyslot and only crypt segments
/// (the final one among them); the reencrypt keyslot's own digest covers
/// no segment.
fn check_digests(
    j: &Luks2Json,
    enc: &Encryption,
    final_id: &str,
    op: Operation,
) -> Result<(), CheckError> {
    let ordinary: Vec<&String> = j
        .keyslots
        .iter()
        .filter(|(_, k)| k.kind == LUKS2_KEYSLOT)
        .map(|(n, _)| n)
        .collect();
    // libcryptsetup's teardown drops the old key's keyslots before the
    // requirement: then the old digest covers only the backup of the old
    // segment, and maps nothing (every active byte is under the final key).
    let old_keys_dropped = op == Operation::RotateVolumeKey && finished_not_torn_down(j).is_some();
    let (mut volume_digests, mut to_final) = (0, 0);
    for d in j.digests.values() {
        let covers_ordinary = d.keyslots.iter().any(|k| ordinary.contains(&k));
        if !covers_ordinary {
            let keyless_is_harmless =
                d.segments.is_empty() || (old_keys_dropped && covers_only_previous(j, d));
            if !keyless_is_harmless {
                return Err(CheckError::Digest(
                    "a digest of no keyslot covers segments".into(),
                ));
            }
            continue;
        }
        volume_digests += 1;
        check_volume_digest(j, d)?;
        to_final += usize::from(d.segments.iter().any(|s| s == final_id));
    }
    let expected = if old_keys_dropped {
        1..=op.volume_digests()
    } else {
        op.volume_digests()..=op.volume_digests()
    };
    if !expected.contains(&volume_digests) || to_final != 1 {
        return Err(CheckError::Digest(format!(
            "{volume_digests} volume-key digests, {to_final} of the final segment"
        )));
    }
    if let Some(k) = ordinary
        .iter()
        .find(|k| !j.digests.values().any(|d| d.keyslots.contains(k)))
    {
        return Err(CheckError::Keyslot {
            slot: k.to_string(),
            what: "is not covered by a volume-key digest".into(),
        });
    }
    check_keyslots(j, enc)
}

/// A volume key's digest: pbkdf2, over crypt segments only.
fn check_volume_digest(j: &Luks2Json, d: &DigestEntry) -> Result<(), CheckError> {
    let crypt_only = d
        .segments
        .iter()
        .all(|s| j.segments.get(s).is_some_and(|seg| seg.kind == "crypt"));
    if d.kind != "pbkdf2" || !crypt_only {
        return Err(CheckError::Digest(format!(
            "type `{}`, segments {:?}",
            d.kind, d.segments
        )));
    }
    Ok(())
}

/// Whether `d` covers only segments flagged as the backup of the previous
/// (old-key) segment.
fn covers_only_previous(j: &Luks2Json, d: &DigestEntry) -> bool {
    d.segments.iter().all(|s| {
        j.segments
            .get(s)
            .is_some_and(|seg| seg.flags.iter().any(|f| f == BACKUP_PREVIOUS))
    })
}
