//! `recovery`: a random key a person keeps. volctl generates it at
//! enrolment and hands it to whoever enrolled it (shown once, or written to
//! a 0600 file); nothing of it stays on the node but its LUKS2 keyslot.
//!
//! The form is made to be typed: 13 groups of 4 characters from a 32-letter
//! alphabet without look-alikes (no `I`, `L`, `O`, `U`; Crockford's), 260
//! random bits, then one group of 4 check characters (20 bits of SHA-256 of
//! the rest), so a typo is caught before any KDF runs:
//!
//! ```text
//! 7M2K-QX9D-…-R4TZ-C8HF
//! ```
//!
//! The text exactly as shown (upper case, with its dashes) is the LUKS2
//! passphrase, so `cryptsetup open` and `systemd-cryptsetup` take it as is.

use crate::KeyData;
use crate::{Enrolled, KeyContext, KeyProvider, Passphrase, ProviderError};
use api_types::KeySource;
use async_trait::async_trait;
use rand::RngCore;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// Crockford's base-32 alphabet: digits and letters without I, L, O, U.
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// Groups of random characters (13 × 4 × 5 bits = 260 bits).
const GROUPS: usize = 13;
/// Characters per group.
const GROUP: usize = 4;

/// Generates a new recovery key.
pub fn generate() -> Passphrase {
    let mut raw = Zeroizing::new([0u8; GROUPS * GROUP]);
    rand::rngs::OsRng.fill_bytes(raw.as_mut());
    let body: Zeroizing<Vec<u8>> =
        Zeroizing::new(raw.iter().map(|b| ALPHABET[usize::from(b & 31)]).collect());
    Passphrase::new(format_groups(&body, &check(&body)))
}

/// Reads what a person typed: case, spaces and the look-alikes `I`/`L`
/// (as `1`) and `O` (as `0`) are forgiven; the check group must match.
/// Returns the passphrase in the exact form it was shown.
pub fn parse(typed: &str) -> Result<Passphrase, String> {
    let mut chars = Zeroizing::new(Vec::with_capacity(GROUPS * GROUP + GROUP));
    for c in typed.chars().filter(|c| !c.is_whitespace() && *c != '-') {
        let c = match c.to_ascii_uppercase() {
            'I' | 'L' => '1',
            'O' => '0',
            c => c,
        };
        let b = u8::try_from(c).ok().filter(|b| ALPHABET.contains(b));
        chars.push(b.ok_or("a recovery key holds only digits and letters (no U)")?);
    }
    if chars.len() != (GROUPS + 1) * GROUP {
        return Err(format!(
            "a recovery key has {} characters in {} groups; this has {}",
            (GROUPS + 1) * GROUP,
            GROUPS + 1,
            chars.len()
        ));
    }
    let (body, sum) = chars.split_at(GROUPS * GROUP);
    if check(body) != sum {
        return Err("the check group does not match: a character was mistyped".into());
    }
    Ok(Passphrase::new(format_groups(body, sum)))
}

/// Whether `typed` has a recovery key's shape (its length in characters of
/// the alphabet, look-alikes forgiven), whether or not its check group
/// matches: an answer of that shape that fails the check is a mistyped
/// recovery key, not a passphrase.
pub fn looks_like(typed: &str) -> bool {
    let chars: Vec<char> = typed
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .collect();
    chars.len() == (GROUPS + 1) * GROUP
        && chars.iter().all(|c| {
            let c = c.to_ascii_uppercase();
            matches!(c, 'I' | 'L' | 'O') || u8::try_from(c).is_ok_and(|b| ALPHABET.contains(&b))
        })
}

/// Four check characters: 20 bits of SHA-256 of the body.
fn check(body: &[u8]) -> [u8; GROUP] {
    let d = Sha256::digest(body);
    let bits = (u32::from(d[0]) << 12) | (u32::from(d[1]) << 4) | (u32::from(d[2]) >> 4);
    std::array::from_fn(|i| ALPHABET[((bits >> (5 * (GROUP - 1 - i))) & 31) as usize])
}

fn format_groups(body: &[u8], sum: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity((GROUPS + 1) * (GROUP + 1));
    for (i, g) in body.chunks(GROUP).chain([sum]).enumerate() {
        if i > 0 {
            out.push(b'-');
        }
        out.extend_from_slice(g);
    }
    out
}

/// Who receives a recovery key this run enrols.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecoveryHandover {
    /// Nobody: no recovery key is enrolled.
    #[default]
    Nobody,
    /// A person, now: shown on a terminal or written to a file they named.
    Person,
    /// Nobody yet: held in memory on the node for one `recovery-key fetch`;
    /// its token says so ([`HELD`]) until someone has seen it, and volctl
    /// replaces it at each unlock by another key until then.
    Held,
}

/// The token data field of a recovery key nobody has seen yet.
pub const HELD: &str = "held";

/// The provider: makes a key at enrolment, when it can be handed to
/// someone; never produces one to unlock.
pub struct RecoveryProvider {
    /// Who receives a new key.
    pub handover: RecoveryHandover,
}

#[async_trait]
impl KeyProvider for RecoveryProvider {
    fn kind(&self) -> KeySource {
        KeySource::Recovery
    }

    async fn enroll(&self, _ctx: &KeyContext) -> Result<Enrolled, ProviderError> {
        let token_data = match self.handover {
            RecoveryHandover::Nobody => {
                return Err(ProviderError::Unavailable {
                    kind: KeySource::Recovery,
                    reason: "nobody to hand a new recovery key to: enrol it with `volctl converge`, `volctl recovery-key rotate` or at boot".into(),
                })
            }
            RecoveryHandover::Person => KeyData::Recovery { held: false },
            RecoveryHandover::Held => KeyData::Recovery { held: true },
        };
        Ok(Enrolled {
            passphrase: generate(),
            token_data,
        })
    }

    async fn recover(
        &self,
        _ctx: &KeyContext,
        _token_data: &KeyData,
    ) -> Result<Passphrase, ProviderError> {
        Err(ProviderError::Unavailable {
            kind: KeySource::Recovery,
            reason: "a recovery key is kept by a person; volctl does not hold it".into(),
        })
    }

    /// The binding covers the kind only: the key itself is nowhere to be
    /// read, which is the point.
    fn binding_material(&self, _ctx: &KeyContext) -> Result<Passphrase, ProviderError> {
        Ok(Passphrase::new(b"recovery\0".to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(p: &Passphrase) -> String {
        String::from_utf8(p.expose().to_vec()).unwrap()
    }

    #[test]
    fn a_key_is_14_groups_of_unambiguous_characters_and_reads_back() {
        let k = text(&generate());
        assert_eq!(k.len(), 14 * 4 + 13);
        assert!(
            k.split('-')
                .all(|g| g.len() == 4 && g.bytes().all(|b| ALPHABET.contains(&b))),
            "{k}"
        );
        assert_eq!(text(&parse(&k).unwrap()), k);
        // Forgiven: case, spaces instead of dashes, O for 0 and I/L for 1.
        let sloppy = k
            .to_lowercase()
            .replace('-', " ")
            .replace('0', "o")
            .replace('1', "l");
        assert_eq!(text(&parse(&sloppy).unwrap()), k);
        assert_ne!(text(&generate()), k);
    }

    #[test]
    fn a_typo_is_caught_by_the_check_group() {
        let body = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ0123456789ABCDEFGHJK";
        let k = String::from_utf8(format_groups(body, &check(body))).unwrap();
        let mut caught = 0;
        for pos in (0..k.len()).filter(|i| k.as_bytes()[*i] != b'-') {
            let mut b = k.clone().into_bytes();
            b[pos] = if b[pos] == b'A' { b'B' } else { b'A' };
            if parse(&String::from_utf8(b).unwrap()).is_err() {
                caught += 1;
            }
        }
        assert_eq!(caught, 56, "every one-character typo is caught");
        assert!(parse("ABCD-EFGH").unwrap_err().contains("56 characters"));
        assert!(looks_like(&k) && looks_like(&k.to_lowercase().replace('-', " ")));
        assert!(!looks_like("correct horse battery staple"));
        assert!(parse(&k.replace('-', "U")).is_err());
    }
}
