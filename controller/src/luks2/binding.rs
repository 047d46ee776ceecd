//! Keyslot bindings: how volctl knows, without running a KDF, that a slot
//! still holds the key its config describes.
//!
//! binding = HMAC-SHA256(K, "slot=N\0kind=K\0lock=B\0" || material), where
//! K = HKDF-SHA256(volume key, info = "volctl keyslot binding v1") and
//! material is the provider's canonical description of the key. Only the
//! holder of the volume key can compute or check it, so a token is no
//! offline oracle for the passphrase.

use crate::luks2::consts::BINDING_INFO;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

/// The volume key, zeroized on drop, never printed.
#[derive(Clone)]
pub struct VolumeKey(Zeroizing<Vec<u8>>);

impl VolumeKey {
    /// Wraps key bytes.
    pub fn new(bytes: Vec<u8>) -> Self {
        VolumeKey(Zeroizing::new(bytes))
    }
    /// The key bytes.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for VolumeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VolumeKey(<redacted>)")
    }
}

/// Computes bindings for one volume.
pub struct Binder {
    key: Zeroizing<[u8; 32]>,
}

impl Binder {
    /// Derives the binding key from the volume key.
    pub fn new(volume_key: &VolumeKey) -> Self {
        let hk = hkdf::Hkdf::<Sha256>::new(None, volume_key.expose());
        let mut key = Zeroizing::new([0u8; 32]);
        hk.expand(BINDING_INFO, key.as_mut())
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        Binder { key }
    }

    fn mac(&self, slot: u32, kind: &str, lock_to_state: bool, material: &[u8]) -> Hmac<Sha256> {
        let mut m =
            Hmac::<Sha256>::new_from_slice(self.key.as_ref()).expect("HMAC takes any key length");
        m.update(
            format!(
                "slot={slot}\0kind={kind}\0lock={}\0",
                u8::from(lock_to_state)
            )
            .as_bytes(),
        );
        m.update(material);
        m
    }

    /// The binding of a key, base64.
    pub fn compute(&self, slot: u32, kind: &str, lock_to_state: bool, material: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(
            self.mac(slot, kind, lock_to_state, material)
                .finalize()
                .into_bytes(),
        )
    }

    /// Checks a stored binding in constant time.
    pub fn verify(
        &self,
        slot: u32,
        kind: &str,
        lock_to_state: bool,
        material: &[u8],
        stored: &str,
    ) -> bool {
        let Ok(tag) = base64::engine::general_purpose::STANDARD.decode(stored) else {
            return false;
        };
        self.mac(slot, kind, lock_to_state, material)
            .verify_slice(&tag)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binding_depends_on_volume_key_slot_and_material() {
        let a = Binder::new(&VolumeKey::new(vec![1; 64]));
        let b = Binder::new(&VolumeKey::new(vec![2; 64]));
        let t = a.compute(0, "static", false, b"static\0pw");
        assert!(a.verify(0, "static", false, b"static\0pw", &t));
        assert!(!b.verify(0, "static", false, b"static\0pw", &t));
        assert!(!a.verify(1, "static", false, b"static\0pw", &t));
        assert!(!a.verify(0, "static", true, b"static\0pw", &t));
        assert!(!a.verify(0, "static", false, b"static\0pw2", &t));
        assert!(!a.verify(0, "static", false, b"static\0pw", "not base64!"));
        assert!(!format!("{:?}", VolumeKey::new(vec![9; 4])).contains('9'));
    }
}
