//! The passphrase handed to LUKS2: zeroized on drop, never printed.

use zeroize::Zeroizing;

/// Key material for one keyslot. `Debug` prints `Passphrase(<redacted>)`.
#[derive(Clone, PartialEq, Eq)]
pub struct Passphrase(Zeroizing<Vec<u8>>);

impl Passphrase {
    /// Wraps bytes.
    pub fn new(bytes: Vec<u8>) -> Self {
        Passphrase(Zeroizing::new(bytes))
    }

    /// The bytes, for libcryptsetup and binding computation only.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Appends bytes (used by the lockToSTATE wrapper).
    pub fn append(&mut self, extra: &[u8]) {
        self.0.extend_from_slice(extra);
    }
}

impl std::fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Passphrase(<redacted>)")
    }
}
