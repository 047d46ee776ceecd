//! A threshold member's share, sealed by the member's passphrase: the
//! share is readable only by whoever can make that passphrase (the KMS
//! that unseals it, the TPM, the node, the config).
//!
//! Format (base64 in the token): a 12-byte nonce, then AES-256-GCM of the
//! share's number and bytes under HKDF-SHA256(passphrase, info = `volctl
//! threshold share` and the member's index); the index and kind are the
//! associated data, so a share moved to another member does not open.

use super::shamir::Share;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand::RngCore;
use zeroize::Zeroizing;

const NONCE_LEN: usize = 12;
const INFO: &[u8] = b"volctl threshold share";

/// Why a sealed share did not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("its share does not open with this member's key (another key, or a damaged token)")]
pub struct WrongShareKey;

fn cipher(passphrase: &[u8], index: usize) -> Aes256Gcm {
    let hk = hkdf::Hkdf::<sha2::Sha256>::new(None, passphrase);
    let mut key = Zeroizing::new([0u8; 32]);
    let info = [INFO, &index.to_be_bytes()].concat();
    hk.expand(&info, key.as_mut())
        .expect("32 bytes is a valid HKDF-SHA256 length");
    Aes256Gcm::new_from_slice(key.as_ref()).expect("32-byte key")
}

fn aad(index: usize, kind: api_types::KeySource) -> Vec<u8> {
    [&index.to_be_bytes()[..], kind.name().as_bytes()].concat()
}

/// Seals `share` for the member at `index` of `kind`, whose passphrase is
/// `passphrase`.
pub fn seal(share: &Share, passphrase: &[u8], index: usize, kind: api_types::KeySource) -> Vec<u8> {
    let mut nonce = [0u8; NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let plain = Zeroizing::new([&[share.x][..], &share.y].concat());
    let sealed = cipher(passphrase, index)
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: &plain,
                aad: &aad(index, kind),
            },
        )
        .expect("AES-GCM encryption of a short share");
    [&nonce[..], &sealed].concat()
}

/// Opens a share [`seal`] made.
pub fn open(
    sealed: &[u8],
    passphrase: &[u8],
    index: usize,
    kind: api_types::KeySource,
) -> Result<Share, WrongShareKey> {
    if sealed.len() < NONCE_LEN {
        return Err(WrongShareKey);
    }
    let (nonce, body) = sealed.split_at(NONCE_LEN);
    let plain = Zeroizing::new(
        cipher(passphrase, index)
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: body,
                    aad: &aad(index, kind),
                },
            )
            .map_err(|_| WrongShareKey)?,
    );
    let (&x, y) = plain.split_first().ok_or(WrongShareKey)?;
    Ok(Share {
        x,
        y: Zeroizing::new(y.to_vec()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use api_types::KeySource;

    #[test]
    fn a_share_opens_with_its_member_s_key_only() {
        let share = Share {
            x: 2,
            y: Zeroizing::new(vec![1, 2, 3]),
        };
        let sealed = seal(&share, b"member key", 1, KeySource::Kms);
        assert_eq!(open(&sealed, b"member key", 1, KeySource::Kms), Ok(share));
        assert_eq!(
            open(&sealed, b"other key", 1, KeySource::Kms),
            Err(WrongShareKey)
        );
        assert_eq!(
            open(&sealed, b"member key", 0, KeySource::Kms),
            Err(WrongShareKey)
        );
        assert_eq!(
            open(&sealed, b"member key", 1, KeySource::Tpm),
            Err(WrongShareKey)
        );
        assert_eq!(
            open(&sealed[..5], b"member key", 1, KeySource::Kms),
            Err(WrongShareKey)
        );
    }
}
