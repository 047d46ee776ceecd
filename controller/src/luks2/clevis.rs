//! The `clevis` LUKS2 token, as `clevis luks bind` writes it, beside each
//! `tang` slot volctl enrols, so `clevis luks unlock` and `clevis luks
//! pass` open a volctl volume too; and the one `clevis luks bind` wrote on
//! a slot volctl did not enrol (a `tang` pin, or `sss` over tang pins):
//!
//! ```json
//! {"type": "clevis", "keyslots": ["1"], "jwe": {"protected": "…",
//!  "encrypted_key": "", "iv": "…", "ciphertext": "…", "tag": "…"}}
//! ```

use crate::luks2::header::Luks2Header;
use crate::luks2::token::TokenId;
use api_types::KeyslotId;
use providers::tang::jwe::ClevisJwe;
use providers::TangTokenData;

/// The token type clevis writes.
pub const CLEVIS_TOKEN_TYPE: &str = "clevis";

/// The clevis token of `slot` holding `jwe`.
pub fn token(slot: KeyslotId, jwe: &ClevisJwe) -> serde_json::Value {
    serde_json::json!({
        "type": CLEVIS_TOKEN_TYPE,
        "keyslots": [slot.to_string()],
        "jwe": jwe,
    })
}

/// Header queries about clevis tokens.
impl Luks2Header {
    /// The JWE of clevis token `id` when it holds an `sss` pin whose pins
    /// are all `tang` (what a threshold of tang members opens).
    pub fn clevis_sss(&self, id: TokenId) -> Option<ClevisJwe> {
        let jwe = self.clevis_jwe(id)?;
        let sss = providers::tang::sss::SssJwe::read(&jwe).ok()?;
        sss.inner.iter().all(|i| i.header().is_ok()).then_some(jwe)
    }

    fn clevis_jwe(&self, id: TokenId) -> Option<ClevisJwe> {
        let (_, raw) = self.tokens().find(|(t, _)| *t == id)?;
        serde_json::from_value(raw.get("jwe")?.clone()).ok()
    }

    /// What a `tang` key needs from clevis token `id` when it holds a
    /// tang pin's JWE (`None` for another pin, or what does not read).
    pub fn clevis_tang(&self, id: TokenId) -> Option<TangTokenData> {
        let jwe = self.clevis_jwe(id)?;
        let header = jwe.header().ok()?;
        let signer = header
            .clevis
            .tang
            .adv
            .keys
            .iter()
            .find(|k| k.can("verify"))?;
        Some(TangTokenData {
            url: header.clevis.tang.url.clone(),
            thumbprint: signer.thumbprint(),
            jwe: Some(jwe),
        })
    }

    /// `token` with the JWE its slot's clevis token holds, when its own
    /// data (a `tang` key's) leaves it out.
    pub fn with_clevis_jwe(
        &self,
        mut token: crate::luks2::token::VolctlToken,
    ) -> crate::luks2::token::VolctlToken {
        let slot = token.slot();
        if let (providers::KeyData::Tang(t), Some(slot)) = (&mut token.data.key, slot) {
            if t.jwe.is_none() {
                t.jwe = self
                    .clevis_tokens(slot)
                    .first()
                    .and_then(|id| self.clevis_tang(*id))
                    .and_then(|c| c.jwe);
            }
        }
        token
    }

    /// The clevis tokens bound to `slot` alone.
    pub fn clevis_tokens(&self, slot: KeyslotId) -> Vec<TokenId> {
        let keyslots = serde_json::json!([slot.to_string()]);
        self.tokens()
            .filter(|(_, raw)| {
                raw.get("type").and_then(|t| t.as_str()) == Some(CLEVIS_TOKEN_TYPE)
                    && raw.get("keyslots") == Some(&keyslots)
            })
            .map(|(id, _)| id)
            .collect()
    }
}
