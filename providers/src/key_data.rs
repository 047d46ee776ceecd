//! What a key kind keeps in its slot's volctl token (the token's `data`),
//! typed: one case per kind that keeps something, and a case for data that
//! does not read as its kind's, kept as it was found.
//!
//! An unreadable `data` (written by a later volctl, or damaged) never makes
//! the token unreadable as a whole: the slot stays volctl's, its key is
//! reported unavailable with the reason, and nothing rewrites or removes
//! it on that account.

use crate::recovery::HELD;
use crate::sealed_key::{KmsTokenData, TpmTokenData};
use crate::threshold::ThresholdTokenData;
use api_types::KeySource;
use serde_json::{Map, Value};

/// A key kind's token data.
#[derive(Debug, Clone, PartialEq)]
pub enum KeyData {
    /// Kinds that keep nothing (`static`, `nodeID`, `prompt`): `{}`.
    Nothing,
    /// A `kms` key: where it was sealed, and the sealed key.
    Kms(KmsTokenData),
    /// A `tpm` key: the sealed object and its PCR policy.
    Tpm(TpmTokenData),
    /// A `tang` key: the server, its trusted signing key, the clevis JWE.
    Tang(crate::TangTokenData),
    /// A `threshold` key: each member's token data and sealed share.
    Threshold(ThresholdTokenData),
    /// A slot `clevis luks bind … sss` bound over Tang pins: its JWE, read
    /// from the clevis token (never kept in a volctl token).
    ClevisSss(crate::tang::jwe::ClevisJwe),
    /// A `recovery` key: whether nobody has seen it yet (held for one
    /// `recovery-key fetch`).
    Recovery {
        /// Held, not yet seen.
        held: bool,
    },
    /// Data that does not read as its kind's: kept as found.
    Unreadable {
        /// The JSON as found.
        raw: Value,
        /// Why it does not read.
        reason: String,
    },
}

impl KeyData {
    /// Reads the `data` of a token of `kind`.
    pub fn read(kind: KeySource, raw: &Value) -> KeyData {
        let read = match kind {
            KeySource::Kms => serde_json::from_value(raw.clone()).map(KeyData::Kms),
            KeySource::Tang => serde_json::from_value(raw.clone()).map(KeyData::Tang),
            KeySource::Tpm | KeySource::TpmPin => {
                serde_json::from_value(raw.clone()).map(KeyData::Tpm)
            }
            KeySource::Threshold | KeySource::ThresholdPrompt => {
                serde_json::from_value(raw.clone()).map(KeyData::Threshold)
            }
            KeySource::Recovery => return recovery(raw),
            KeySource::Static | KeySource::NodeId | KeySource::Prompt => return nothing(raw),
        };
        read.unwrap_or_else(|e| KeyData::Unreadable {
            raw: raw.clone(),
            reason: e.to_string(),
        })
    }

    /// The JSON kept in the token.
    pub fn to_json(&self) -> Value {
        let json = |v: Result<Value, serde_json::Error>| v.expect("token data serialises");
        match self {
            KeyData::Nothing => Value::Object(Map::new()),
            KeyData::Kms(d) => json(serde_json::to_value(d)),
            KeyData::Tpm(d) => json(serde_json::to_value(d)),
            KeyData::Tang(d) => json(serde_json::to_value(d)),
            KeyData::Threshold(d) => json(serde_json::to_value(d)),
            KeyData::ClevisSss(jwe) => json(serde_json::to_value(jwe)),
            KeyData::Recovery { held: false } => Value::Object(Map::new()),
            KeyData::Recovery { held: true } => serde_json::json!({ HELD: true }),
            KeyData::Unreadable { raw, .. } => raw.clone(),
        }
    }

    /// Whether it is a recovery key nobody has seen yet.
    pub fn is_held(&self) -> bool {
        matches!(self, KeyData::Recovery { held: true })
    }
}

/// A kind that keeps nothing: `{}` (anything else is unreadable).
fn nothing(raw: &Value) -> KeyData {
    match raw.as_object() {
        Some(o) if o.is_empty() => KeyData::Nothing,
        _ => unreadable(raw, "this kind keeps no data"),
    }
}

/// A recovery key's data: `{}`, or `{"held": true}`.
fn recovery(raw: &Value) -> KeyData {
    let Some(o) = raw.as_object() else {
        return unreadable(raw, "not an object");
    };
    match (o.len(), o.get(HELD)) {
        (0, None) => KeyData::Recovery { held: false },
        (1, Some(Value::Bool(held))) => KeyData::Recovery { held: *held },
        _ => unreadable(raw, "a recovery key keeps only `held`"),
    }
}

fn unreadable(raw: &Value, reason: &str) -> KeyData {
    KeyData::Unreadable {
        raw: raw.clone(),
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sealed_key::Base64Bytes;
    use serde_json::json;

    #[test]
    fn each_kind_reads_back_what_it_wrote() {
        let kms = KeyData::Kms(KmsTokenData {
            endpoint: "https://kms:4050".into(),
            sealed_data: Base64Bytes(vec![1, 2, 3]),
        });
        let cases = [
            (KeySource::Kms, kms),
            (KeySource::Recovery, KeyData::Recovery { held: true }),
            (KeySource::Recovery, KeyData::Recovery { held: false }),
            (KeySource::NodeId, KeyData::Nothing),
            (KeySource::Static, KeyData::Nothing),
        ];
        for (kind, data) in cases {
            assert_eq!(KeyData::read(kind, &data.to_json()), data, "{kind:?}");
        }
    }

    #[test]
    fn data_that_does_not_read_as_its_kind_is_kept_as_found_with_the_reason() {
        let cases = [
            (KeySource::Kms, json!({"endpoint": 7})),
            (KeySource::Tpm, json!("a string")),
            (KeySource::Recovery, json!({"held": "yes"})),
            (KeySource::NodeId, json!({"from": "a later volctl"})),
        ];
        for (kind, raw) in cases {
            let data = KeyData::read(kind, &raw);
            let KeyData::Unreadable { raw: kept, reason } = &data else {
                panic!("{kind:?}: read as {data:?}");
            };
            assert_eq!(kept, &raw);
            assert!(!reason.is_empty());
            assert_eq!(data.to_json(), raw, "written back unchanged");
            assert!(!data.is_held());
        }
    }
}
