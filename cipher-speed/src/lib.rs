//! How fast this machine encrypts with AES-XTS, measured in memory over a
//! 16 MiB buffer in 512-byte sectors (as dm-crypt and libcryptsetup
//! process them). Its own crate so that the workspace can build it
//! optimised in debug builds too: generic cipher code is compiled where it
//! is instantiated, and measured unoptimised it would be off tenfold.

use aes::cipher::KeyInit;
use std::time::Instant;

const SAMPLE: usize = 16 << 20;
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
    C: KeyInit
        + aes::cipher::BlockCipher
        + aes::cipher::BlockEncrypt
        + aes::cipher::BlockDecrypt
        + aes::cipher::BlockSizeUser<BlockSize = aes::cipher::consts::U16>,
{
    let k = vec![7u8; C::key_size()];
    let x = xts_mode::Xts128::new(
        C::new_from_slice(&k).expect("key size"),
        C::new_from_slice(&k).expect("key size"),
    );
    x.encrypt_area(buf, SECTOR, 0, xts_mode::get_tweak_default);
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
}
