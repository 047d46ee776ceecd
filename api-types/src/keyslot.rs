//! The number of a LUKS2 keyslot, a type of its own so it is never confused
//! with a token id, a PCR index or a count.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A LUKS2 keyslot number, 0–31 (LUKS2 has 32 keyslots).
///
/// Serialised as the bare number, so JSON output reads `"slot": 3`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(into = "u32", try_from = "u32")]
pub struct KeyslotId(u32);

impl KeyslotId {
    /// Number of keyslots in a LUKS2 header.
    pub const COUNT: u32 = 32;

    /// The keyslot `n`, or `None` when LUKS2 has no such keyslot.
    pub const fn new(n: u32) -> Option<Self> {
        if n < Self::COUNT {
            Some(Self(n))
        } else {
            None
        }
    }

    /// The keyslot `n`, for constants: evaluating it with `n` ≥ 32 fails
    /// (at compile time in a `const`).
    pub const fn nth(n: u32) -> Self {
        match Self::new(n) {
            Some(k) => k,
            None => panic!("LUKS2 has keyslots 0-31 only"),
        }
    }

    /// The number, for libcryptsetup and header JSON keys.
    pub const fn get(self) -> u32 {
        self.0
    }

    /// Every keyslot, in order.
    pub fn all() -> impl Iterator<Item = Self> {
        (0..Self::COUNT).map(Self)
    }
}

impl fmt::Display for KeyslotId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Lets tests and callers compare with a plain number: `slots == [0, 1]`.
impl PartialEq<u32> for KeyslotId {
    fn eq(&self, n: &u32) -> bool {
        self.0 == *n
    }
}

impl From<KeyslotId> for u32 {
    fn from(k: KeyslotId) -> u32 {
        k.0
    }
}

impl TryFrom<u32> for KeyslotId {
    type Error = String;

    fn try_from(n: u32) -> Result<Self, Self::Error> {
        Self::new(n).ok_or_else(|| format!("keyslot {n} is outside 0–{}", Self::COUNT - 1))
    }
}

impl std::str::FromStr for KeyslotId {
    type Err = String;

    /// Parses a header JSON key such as `"3"`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let n: u32 = s
            .parse()
            .map_err(|_| format!("{s:?} is not a keyslot number"))?;
        Self::try_from(n)
    }
}

#[cfg(test)]
mod tests {
    use super::KeyslotId;

    #[test]
    fn only_the_32_luks2_keyslots_exist() {
        assert_eq!(KeyslotId::new(31).map(KeyslotId::get), Some(31));
        assert_eq!(KeyslotId::new(32), None);
        assert_eq!(KeyslotId::all().count(), 32);
        assert!("32".parse::<KeyslotId>().is_err());
        assert!("-1".parse::<KeyslotId>().is_err());
        assert_eq!("7".parse::<KeyslotId>(), Ok(KeyslotId::new(7).unwrap()));
    }

    #[test]
    fn serialises_as_the_bare_number() {
        let s = serde_json::to_string(&KeyslotId::new(9).unwrap()).unwrap();
        assert_eq!(s, "9");
        assert_eq!(
            serde_json::from_str::<KeyslotId>("9").ok(),
            KeyslotId::new(9)
        );
        assert!(serde_json::from_str::<KeyslotId>("32").is_err());
    }
}
