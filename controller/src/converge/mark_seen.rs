//! Marking a held recovery key as seen: the `held` mark leaves its token
//! once a person has the key (fetched, or typed to open the volume).

use crate::device::{Contents, DeviceError, LuksDevice, TokenChange};
use api_types::KeyslotId;

/// Removes the `held` mark from the token of recovery slot `slot` (a token
/// write; the binding and owner tag do not cover it). Returns whether there
/// was a mark.
pub fn mark_seen(dev: &dyn LuksDevice, slot: KeyslotId) -> Result<bool, DeviceError> {
    let Contents::Luks2(h) = dev.contents()? else {
        return Ok(false);
    };
    let Some((id, mut token)) = h.volctl_token(slot) else {
        return Ok(false);
    };
    if !token.data.key.is_held() {
        return Ok(false);
    }
    token.data.key = providers::KeyData::Recovery { held: false };
    let json = serde_json::to_value(&token).expect("a token serializes");
    dev.token(TokenChange::Replace(id, &json))?;
    Ok(true)
}
