//! How fast this machine encrypts with AES-XTS, measured in memory over a
//! 16 MiB buffer in 512-byte sectors (as dm-crypt and libcryptsetup
//! process them); encrypting sectors as dm-crypt's `aes-xts-plain64` does
//! (the one step of an in-place encryption volctl must redo itself); and
//! decrypting such data, for tests that check a volume outside dm-crypt.
//! Its own crate so that the workspace
//! can build it optimised in debug builds too: generic cipher code is
//! compiled where it is instantiated, and unoptimised it would be tenfold
//! slower.

use aes::cipher::KeyInit;
use std::time::Instant;

const SAMPLE: usize = 16 << 20;

/// What XTS needs of a block cipher (AES-128 or AES-256 here).
trait XtsBlock:
    KeyInit
    + aes::cipher::BlockCipher
    + aes::cipher::BlockEncrypt
    + aes::cipher::BlockDecrypt
    + aes::cipher::BlockSizeUser<BlockSize = aes::cipher::consts::U16>
{
}

impl<C> XtsBlock for C where
    C: KeyInit
        + aes::cipher::BlockCipher
        + aes::cipher::BlockEncrypt
        + aes::cipher::BlockDecrypt
        + aes::cipher::BlockSizeUser<BlockSize = aes::cipher::consts::U16>
{
}
const SECTOR: usize = 512;

/// MiB/s of AES-XTS with a `key_bytes`-byte XTS key (32: AES-128, 64:
/// AES-256), or `None` for another key size.
pub fn aes_xts_mib_per_sec(key_bytes: usize) -> Option<f64> {
    let mut buf = vec![0u8; SAMPLE];
    let start = Instant::now();
    match key_bytes {
        32 => xts::<aes::Aes128>(&mut buf),
        64 => xts::<aes::Aes256>(&mut buf),
        _ => return None,
    }
    let secs = start.elapsed().as_secs_f64().max(1e-9);
    Some(SAMPLE as f64 / f64::from(1u32 << 20) / secs)
}

fn xts<C>(buf: &mut [u8])
where
    C: XtsBlock,
{
    let k = vec![7u8; C::key_size()];
    let x = xts_mode::Xts128::new(
        C::new_from_slice(&k).expect("key size"),
        C::new_from_slice(&k).expect("key size"),
    );
    x.encrypt_area(buf, SECTOR, 0, xts_mode::get_tweak_default);
}

/// Encrypts `data` in place as dm-crypt's `aes-xts-plain64` writes it:
/// in units of `sector_size` bytes (512, 1024, 2048 or 4096), the first
/// unit's IV being `first_iv` and each next one's larger by the unit's
/// count of 512-byte sectors (`plain64` counts 512-byte sectors whatever
/// the sector size). `key` is the XTS key (32 bytes: AES-128, 64: AES-256).
pub fn aes_xts_plain64_encrypt(
    key: &[u8],
    data: &mut [u8],
    sector_size: usize,
    first_iv: u64,
) -> Result<(), XtsError> {
    if !matches!(sector_size, 512 | 1024 | 2048 | 4096) || !data.len().is_multiple_of(sector_size) {
        return Err(XtsError::Sectors(sector_size, data.len()));
    }
    match key.len() {
        32 => encrypt_units::<aes::Aes128>(key, data, sector_size, first_iv),
        64 => encrypt_units::<aes::Aes256>(key, data, sector_size, first_iv),
        n => return Err(XtsError::KeySize(n)),
    }
    Ok(())
}

/// Why [`aes_xts_plain64_encrypt`] refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XtsError {
    /// The key is not 32 or 64 bytes.
    KeySize(usize),
    /// The sector size is not one dm-crypt knows, or the data is not whole
    /// sectors of it.
    Sectors(usize, usize),
}

impl std::fmt::Display for XtsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            XtsError::KeySize(n) => write!(f, "an XTS key of {n} bytes (32 or 64 expected)"),
            XtsError::Sectors(s, len) => {
                write!(f, "{len} bytes are not whole sectors of {s} bytes")
            }
        }
    }
}

impl std::error::Error for XtsError {}

fn xts_of<C>(key: &[u8]) -> xts_mode::Xts128<C>
where
    C: XtsBlock,
{
    let (k1, k2) = key.split_at(key.len() / 2);
    xts_mode::Xts128::new(
        C::new_from_slice(k1).expect("half of a checked key"),
        C::new_from_slice(k2).expect("half of a checked key"),
    )
}

fn encrypt_units<C>(key: &[u8], data: &mut [u8], sector_size: usize, first_iv: u64)
where
    C: XtsBlock,
{
    let x = xts_of::<C>(key);
    let step = (sector_size / SECTOR) as u64;
    for (i, unit) in data.chunks_exact_mut(sector_size).enumerate() {
        let iv = first_iv + i as u64 * step;
        x.encrypt_sector(unit, xts_mode::get_tweak_default(u128::from(iv)));
    }
}

/// Decrypts `data`, the start of an `aes-xts-plain64` data segment with
/// 512-byte sectors (the IV counting sectors from 0), in place with the
/// XTS key `key` (32 bytes: AES-128, 64: AES-256); `false` for another key
/// size. What dm-crypt would read; for checks outside it.
pub fn aes_xts_plain64_decrypt(key: &[u8], data: &mut [u8]) -> bool {
    match key.len() {
        32 => decrypt::<aes::Aes128>(key, data),
        64 => decrypt::<aes::Aes256>(key, data),
        _ => return false,
    }
    true
}

fn decrypt<C>(key: &[u8], data: &mut [u8])
where
    C: XtsBlock,
{
    xts_of::<C>(key).decrypt_area(data, SECTOR, 0, xts_mode::get_tweak_default);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_key_sizes_are_measured_and_others_are_not() {
        assert!(aes_xts_mib_per_sec(64).unwrap() > 0.0);
        assert!(aes_xts_mib_per_sec(32).unwrap() > 0.0);
        assert_eq!(aes_xts_mib_per_sec(48), None);
    }

    #[test]
    fn decrypting_undoes_the_xts_crate_s_encryption() {
        let key: Vec<u8> = (0..64u8).collect();
        let plain: Vec<u8> = (0..4096u32).map(|i| (i * 7).to_le_bytes()[0]).collect();
        let mut data = plain.clone();
        let x = xts_mode::Xts128::new(
            aes::Aes256::new_from_slice(&key[..32]).unwrap(),
            aes::Aes256::new_from_slice(&key[32..]).unwrap(),
        );
        x.encrypt_area(&mut data, SECTOR, 0, xts_mode::get_tweak_default);
        assert_ne!(data, plain);
        assert!(aes_xts_plain64_decrypt(&key, &mut data));
        assert_eq!(data, plain);
        assert!(!aes_xts_plain64_decrypt(&key[..48], &mut data));
    }

    #[test]
    fn sectors_encrypt_as_the_xts_crate_does_with_plain64_ivs() {
        let key: Vec<u8> = (0..64u8).collect();
        let plain: Vec<u8> = (0..8192u32).map(|i| (i * 7).to_le_bytes()[0]).collect();
        let mut ours = plain.clone();
        aes_xts_plain64_encrypt(&key, &mut ours, 512, 100).unwrap();
        let x = xts_of::<aes::Aes256>(&key);
        let mut theirs = plain.clone();
        x.encrypt_area(&mut theirs, 512, 100, xts_mode::get_tweak_default);
        assert_eq!(ours, theirs);
        // 4096-byte sectors: the IV still counts 512-byte sectors.
        let mut big = plain.clone();
        aes_xts_plain64_encrypt(&key, &mut big, 4096, 100).unwrap();
        let mut second = plain[4096..].to_vec();
        x.encrypt_sector(&mut second, xts_mode::get_tweak_default(108));
        assert_eq!(&big[4096..], &second[..]);
        assert_eq!(
            aes_xts_plain64_encrypt(&key[..48], &mut big, 512, 0),
            Err(XtsError::KeySize(48))
        );
        assert!(aes_xts_plain64_encrypt(&key, &mut big[..100], 512, 0).is_err());
    }
}
