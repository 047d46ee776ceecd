//! Keyslot bindings: how volctl knows, without running a KDF, that a slot
//! still holds the key its config describes.
//!
//! binding = HMAC-SHA256(K, "slot=N\0kind=K\0lock=B\0" || material), where
//! K = HKDF-SHA256(volume key, info = "volctl keyslot binding v1") and
//! material is the provider's canonical description of the key. Only the
//! holder of the volume key can compute or check it, so a token is no
//! offline oracle for the passphrase.
//!
//! owner = HMAC-SHA256(K', "slot=N\0salt=S"), K' = HKDF-SHA256(volume key,
//! info = "volctl token owner v1"), S = the keyslot's KDF salt: proof that
//! volctl wrote the token for this very keyslot, checkable without the
//! key's material (so also for slots the config no longer lists).

use super::consts::{BINDING_INFO, OWNER_INFO};
use api_types::KeySource;
use api_types::KeyslotId;
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

/// Computes bindings and owner tags for one volume.
pub struct Binder {
    key: Zeroizing<[u8; 32]>,
    owner_key: Zeroizing<[u8; 32]>,
}

fn derive(volume_key: &VolumeKey, info: &[u8]) -> Zeroizing<[u8; 32]> {
    let hk = hkdf::Hkdf::<Sha256>::new(None, volume_key.expose());
    let mut key = Zeroizing::new([0u8; 32]);
    hk.expand(info, key.as_mut())
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    key
}

fn hmac(key: &[u8; 32]) -> Hmac<Sha256> {
    Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length")
}

fn b64(m: Hmac<Sha256>) -> String {
    base64::engine::general_purpose::STANDARD.encode(m.finalize().into_bytes())
}

fn verify_b64(m: Hmac<Sha256>, stored: &str) -> bool {
    base64::engine::general_purpose::STANDARD
        .decode(stored)
        .is_ok_and(|tag| m.verify_slice(&tag).is_ok())
}

impl Binder {
    /// Derives the binding and owner keys from the volume key.
    pub fn new(volume_key: &VolumeKey) -> Self {
        Binder {
            key: derive(volume_key, BINDING_INFO),
            owner_key: derive(volume_key, OWNER_INFO),
        }
    }

    fn owner_mac(&self, slot: KeyslotId, keyslot_salt: &str) -> Hmac<Sha256> {
        let mut m = hmac(&self.owner_key);
        m.update(format!("slot={slot}\0salt={keyslot_salt}").as_bytes());
        m
    }

    /// The owner tag of the token of keyslot `slot` whose KDF salt is
    /// `keyslot_salt`, base64.
    pub fn owner(&self, slot: KeyslotId, keyslot_salt: &str) -> String {
        b64(self.owner_mac(slot, keyslot_salt))
    }

    /// Checks an owner tag in constant time.
    pub fn verify_owner(&self, slot: KeyslotId, keyslot_salt: &str, stored: &str) -> bool {
        verify_b64(self.owner_mac(slot, keyslot_salt), stored)
    }

    fn mac(
        &self,
        slot: KeyslotId,
        kind: KeySource,
        lock_to_state: bool,
        material: &[u8],
    ) -> Hmac<Sha256> {
        let mut m = hmac(&self.key);
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
    pub fn compute(
        &self,
        slot: KeyslotId,
        kind: KeySource,
        lock_to_state: bool,
        material: &[u8],
    ) -> String {
        b64(self.mac(slot, kind, lock_to_state, material))
    }

    /// Checks a stored binding in constant time.
    pub fn verify(
        &self,
        slot: KeyslotId,
        kind: KeySource,
        lock_to_state: bool,
        material: &[u8],
        stored: &str,
    ) -> bool {
        verify_b64(self.mac(slot, kind, lock_to_state, material), stored)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binding_depends_on_volume_key_slot_and_material() {
        let a = Binder::new(&VolumeKey::new(vec![1; 64]));
        let b = Binder::new(&VolumeKey::new(vec![2; 64]));
        let s = KeySource::Static;
        let t = a.compute(KeyslotId::nth(0), s, false, b"static\0pw");
        assert!(a.verify(KeyslotId::nth(0), s, false, b"static\0pw", &t));
        assert!(!b.verify(KeyslotId::nth(0), s, false, b"static\0pw", &t));
        assert!(!a.verify(KeyslotId::nth(1), s, false, b"static\0pw", &t));
        assert!(!a.verify(KeyslotId::nth(0), s, true, b"static\0pw", &t));
        assert!(!a.verify(
            KeyslotId::nth(0),
            KeySource::NodeId,
            false,
            b"static\0pw",
            &t
        ));
        assert!(!a.verify(KeyslotId::nth(0), s, false, b"static\0pw2", &t));
        assert!(!a.verify(KeyslotId::nth(0), s, false, b"static\0pw", "not base64!"));
        assert!(!format!("{:?}", VolumeKey::new(vec![9; 4])).contains('9'));
    }

    #[test]
    fn owner_tag_depends_on_volume_key_slot_and_keyslot_salt() {
        let a = Binder::new(&VolumeKey::new(vec![1; 64]));
        let b = Binder::new(&VolumeKey::new(vec![2; 64]));
        let t = a.owner(KeyslotId::nth(3), "c2FsdA==");
        assert!(a.verify_owner(KeyslotId::nth(3), "c2FsdA==", &t));
        assert!(!b.verify_owner(KeyslotId::nth(3), "c2FsdA==", &t));
        assert!(!a.verify_owner(KeyslotId::nth(4), "c2FsdA==", &t));
        assert!(!a.verify_owner(KeyslotId::nth(3), "b3RoZXI=", &t));
        assert!(!a.verify_owner(KeyslotId::nth(3), "c2FsdA==", "AAAAAAAAAAAAAA=="));
        assert_ne!(
            t,
            a.compute(KeyslotId::nth(3), KeySource::Static, false, b"c2FsdA==")
        );
    }
}
