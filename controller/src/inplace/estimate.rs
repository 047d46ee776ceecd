//! How long an in-place encryption takes, estimated before it starts from
//! the cipher's speed measured on this machine (`cipher-speed`: AES-XTS in
//! memory). Reading and writing the device make the real run slower; the
//! run reports its real rate.

use std::time::Duration;

/// A throughput, MiB/s.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct MibPerSec(pub f64);

impl MibPerSec {
    /// `bytes` done in `took`.
    pub fn of(bytes: u64, took: Duration) -> Self {
        MibPerSec(bytes as f64 / (1u64 << 20) as f64 / took.as_secs_f64().max(1e-9))
    }

    /// Seconds `bytes` take at this rate.
    #[allow(clippy::cast_possible_truncation)] // a finite, non-negative estimate
    pub fn seconds_for(&self, bytes: u64) -> u64 {
        (bytes as f64 / (1u64 << 20) as f64 / self.0.max(1e-9)).ceil() as u64
    }
}

/// The speed of `cipher` with a `key_bytes` volume key here, if volctl can
/// measure it (`aes-xts-*`).
pub fn cipher_speed(cipher: &str, key_bytes: usize) -> Option<MibPerSec> {
    if !cipher.starts_with("aes-xts") {
        return None;
    }
    cipher_speed::aes_xts_mib_per_sec(key_bytes).map(MibPerSec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aes_xts_is_measured_and_other_ciphers_are_not() {
        assert!(cipher_speed("aes-xts-plain64", 64).unwrap().0 > 0.0);
        assert_eq!(cipher_speed("xchacha12,aes-adiantum-plain64", 32), None);
        assert_eq!(MibPerSec(100.0).seconds_for(250 << 20), 3);
    }
}
