//! Never trust a header you did not check. Before any passphrase touches a
//! LUKS2 header, and again in every libcryptsetup context that writes or
//! activates, the header libcryptsetup loaded must be one volctl would have
//! written for this config: one data segment with the configured cipher
//! (never `cipher_null`), past the metadata, with no IV tweak, no integrity
//! and no flags; the configured key and sector size; one volume-key digest
//! covering every keyslot; ordinary keyslots with a known KDF; no
//! requirement (an unfinished reencryption) and no persistent activation
//! flag the config does not ask for. A swapped or tampered header is
//! refused, which defeats the published attack that makes a system write
//! plaintext to a "LUKS" volume.

pub mod reencrypting;

use super::header::{Luks2Json, Segment};
use api_types::Encryption;

const KDFS: &[&str] = &["argon2id", "argon2i", "pbkdf2"];

/// What makes a header one volctl would not have written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    /// Not exactly one segment.
    #[error("the header has {0} segments; volctl writes exactly one data segment (an interrupted reencryption or a foreign header?)")]
    SegmentCount(usize),
    /// The segment is not a `crypt` segment.
    #[error("segment {id} has type `{kind}`, not `crypt`")]
    SegmentType {
        /// Segment id.
        id: String,
        /// Its type.
        kind: String,
    },
    /// `cipher_null` or no cipher: data would be written in plaintext.
    #[error("segment {id} uses `{cipher}`, which stores data unencrypted; refusing this header (it may have been tampered with)")]
    NullCipher {
        /// Segment id.
        id: String,
        /// The cipher.
        cipher: String,
    },
    /// Another cipher than the config's.
    #[error("the volume is encrypted with `{have}` but the config asks for `{want}`; changing the cipher of an existing volume needs a wipe (or the header was replaced)")]
    Cipher {
        /// On the device.
        have: String,
        /// In the config.
        want: String,
    },
    /// Something in the segment volctl never writes.
    #[error("segment {id} {what}; volctl never writes that (tampered or foreign header?)")]
    SegmentShape {
        /// Segment id.
        id: String,
        /// What is odd.
        what: String,
    },
    /// Another sector size than the config's.
    #[error(
        "the volume uses {have}-byte sectors but the config asks for {want}; this needs a wipe"
    )]
    SectorSize {
        /// On the device.
        have: u32,
        /// In the config.
        want: u32,
    },
    /// Mandatory requirements (e.g. an unfinished reencryption).
    #[error("the header has mandatory requirements {0} (e.g. an unfinished reencryption); finish it with cryptsetup first")]
    Requirements(String),
    /// Persistent activation flags the config does not ask for.
    #[error(
        "the header carries persistent activation flags {0}, which the config does not ask for"
    )]
    PersistentFlags(String),
    /// Not exactly one pbkdf2 digest of the segment.
    #[error("the volume-key digest is not one pbkdf2 digest of the data segment ({0})")]
    Digest(String),
    /// A reencryption volctl did not start, or not of a shape it runs.
    #[error("the header records a reencryption volctl refuses: {0}")]
    Reencryption(String),
    /// A keyslot volctl would not have written.
    #[error("keyslot {slot} {what}")]
    Keyslot {
        /// Keyslot.
        slot: String,
        /// What is wrong.
        what: String,
    },
}

/// Checks `j` against `enc` (an in-progress reencryption by the rules of
/// [`reencrypting::check`]).
pub fn check(j: &Luks2Json, enc: &Encryption) -> Result<(), CheckError> {
    if super::reencryption::in_progress(j) {
        return reencrypting::check(j, enc);
    }
    let seg_id = check_segment(j, enc)?;
    check_config_section(j, enc)?;
    check_digest_and_keyslots(j, enc, &seg_id)
}

fn check_segment(j: &Luks2Json, enc: &Encryption) -> Result<String, CheckError> {
    let [(id, seg)] = j.segments.iter().collect::<Vec<_>>()[..] else {
        return Err(CheckError::SegmentCount(j.segments.len()));
    };
    let shape = |what: String| CheckError::SegmentShape {
        id: id.clone(),
        what,
    };
    if seg.kind != "crypt" {
        return Err(CheckError::SegmentType {
            id: id.clone(),
            kind: seg.kind.clone(),
        });
    }
    check_cipher(id, seg, enc)?;
    if !seg.flags.is_empty() {
        return Err(shape(format!(
            "carries flags {:?} (reencryption in progress?)",
            seg.flags
        )));
    }
    if seg.offset.parse::<u64>().unwrap_or(0) < crate::luks2::consts::MIN_DATA_OFFSET {
        return Err(shape(format!(
            "starts at byte {} (inside the LUKS2 metadata)",
            seg.offset
        )));
    }
    if seg.iv_tweak.as_deref().unwrap_or("0") != "0" {
        return Err(shape(format!("has IV tweak {:?}", seg.iv_tweak)));
    }
    if seg.integrity.is_some() {
        return Err(shape("has an integrity section".into()));
    }
    if let (Some(want), Some(have)) = (enc.block_size, seg.sector_size) {
        if want != have {
            return Err(CheckError::SectorSize { have, want });
        }
    }
    Ok(id.clone())
}

fn check_config_section(j: &Luks2Json, enc: &Encryption) -> Result<(), CheckError> {
    let mandatory = j
        .config
        .get("requirements")
        .and_then(|r| r.get("mandatory"))
        .and_then(|m| m.as_array())
        .filter(|a| !a.is_empty());
    if let Some(m) = mandatory {
        return Err(CheckError::Requirements(
            serde_json::Value::from(m.clone()).to_string(),
        ));
    }
    let flags: Vec<&str> = j
        .config
        .get("flags")
        .and_then(|f| f.as_array())
        .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    let allowed = |f: &&str| *f == "allow-discards" && enc.allow_discards == Some(true);
    let unexpected: Vec<&str> = flags.iter().copied().filter(|f| !allowed(f)).collect();
    if !unexpected.is_empty() {
        return Err(CheckError::PersistentFlags(unexpected.join(", ")));
    }
    Ok(())
}

fn check_digest_and_keyslots(
    j: &Luks2Json,
    enc: &Encryption,
    seg_id: &str,
) -> Result<(), CheckError> {
    let [digest] = j.digests.values().collect::<Vec<_>>()[..] else {
        return Err(CheckError::Digest(format!("{} digests", j.digests.len())));
    };
    if digest.kind != "pbkdf2" || digest.segments != [seg_id] {
        return Err(CheckError::Digest(format!(
            "type `{}`, segments {:?}",
            digest.kind, digest.segments
        )));
    }
    for n in j.keyslots.keys() {
        if !digest.keyslots.contains(n) {
            return Err(CheckError::Keyslot {
                slot: n.clone(),
                what: "is not covered by the volume-key digest".into(),
            });
        }
    }
    check_keyslots(j, enc)
}

/// A crypt segment's cipher: never `cipher_null`, and the configured one.
fn check_cipher(id: &str, seg: &Segment, enc: &Encryption) -> Result<(), CheckError> {
    let cipher = seg.encryption.as_deref().unwrap_or("");
    if cipher.is_empty() || cipher.starts_with("cipher_null") {
        return Err(CheckError::NullCipher {
            id: id.to_string(),
            cipher: cipher.to_string(),
        });
    }
    if cipher != enc.cipher() {
        return Err(CheckError::Cipher {
            have: cipher.to_string(),
            want: enc.cipher().to_string(),
        });
    }
    Ok(())
}

/// Every keyslot is an ordinary one (a reencryption's own aside) with a
/// known KDF and the configured key size.
fn check_keyslots(j: &Luks2Json, enc: &Encryption) -> Result<(), CheckError> {
    let want = enc.key_size();
    let ordinary = j
        .keyslots
        .iter()
        .filter(|(_, k)| k.kind != super::header::REENCRYPT_KEYSLOT);
    for (n, ks) in ordinary {
        let bad = |what: String| CheckError::Keyslot {
            slot: n.clone(),
            what,
        };
        if ks.kind != "luks2" {
            return Err(bad(format!(
                "has type `{}`; volctl uses only `luks2` keyslots",
                ks.kind
            )));
        }
        if !KDFS.contains(&ks.kdf.kind.as_str()) {
            return Err(bad(format!("uses unknown KDF `{}`", ks.kdf.kind)));
        }
        if ks.size() != want {
            return Err(bad(format!(
                "holds a {} key but the config asks for {want} keys",
                ks.size()
            )));
        }
    }
    Ok(())
}
