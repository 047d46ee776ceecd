//! What a header says about its keyslots, before and after the unlock:
//! which slots carry a volctl token (and of what kind), then, with the
//! volume key, whether each token is authentic (its owner tag) and whether
//! each configured slot still holds its configured key (its binding). No
//! KDF runs here.

use super::keys::Key;
use super::plan::{BindingCheck, ObservedKeyslots, ObservedSlot};
use crate::luks2::binding::Binder;
use crate::luks2::header::Luks2Header;
use crate::luks2::token::VolctlToken;
use api_types::KeyslotId;

/// The keyslots and volctl tokens of a header, nothing checked yet.
pub(super) fn observe(h: &Luks2Header) -> ObservedKeyslots {
    let mut o = ObservedKeyslots::default();
    for s in h.keyslot_numbers() {
        o.slots.insert(s, ObservedSlot::Unmanaged);
    }
    for (id, raw) in h.tokens() {
        let Some(parsed) = VolctlToken::parse(raw) else {
            continue;
        };
        let slot = parsed.as_ref().ok().and_then(VolctlToken::slot);
        match (parsed, slot) {
            (Ok(t), Some(s)) if matches!(o.slots.get(&s), Some(ObservedSlot::Unmanaged)) => {
                o.slots.insert(
                    s,
                    ObservedSlot::Managed {
                        token: id,
                        kind: t.kind,
                        lock_to_state: t.lock_to_state,
                        binding: BindingCheck::Unknown("not checked".into()),
                        owned: false,
                        held: t.data.key.is_held(),
                    },
                );
            }
            // Bound to no live keyslot, unreadable, or a second token for one slot.
            _ => o.orphan_tokens.push(id),
        }
    }
    for (slot, seen) in o.slots.iter_mut() {
        if let (ObservedSlot::Unmanaged, Some(token)) = (&seen, h.clevis_tokens(*slot).first()) {
            let (tang, sss) = (
                h.clevis_tang(*token).is_some(),
                h.clevis_sss(*token).is_some(),
            );
            if tang || sss {
                *seen = ObservedSlot::Clevis { token: *token, sss };
            }
        }
    }
    o
}

/// The volctl token of a managed slot.
pub(super) fn token_of(
    h: &Luks2Header,
    observed: &ObservedKeyslots,
    slot: KeyslotId,
) -> Option<VolctlToken> {
    match observed.slots.get(&slot) {
        Some(ObservedSlot::Managed { token, .. }) => h
            .tokens()
            .find(|(id, _)| id == token)
            .and_then(|(_, raw)| VolctlToken::parse(raw)?.ok())
            .map(|t| h.with_clevis_jwe(t)),
        _ => None,
    }
}

/// Marks each managed slot whose token's owner tag matches its keyslot.
pub(super) fn authenticate(h: &Luks2Header, observed: &mut ObservedKeyslots, binder: &Binder) {
    let slots: Vec<KeyslotId> = observed.slots.keys().copied().collect();
    for slot in slots {
        let Some(token) = token_of(h, observed, slot) else {
            continue;
        };
        let salt = h
            .keyslot(slot)
            .map(|k| k.kdf.salt().to_string())
            .unwrap_or_default();
        if let Some(ObservedSlot::Managed { owned, .. }) = observed.slots.get_mut(&slot) {
            *owned = token
                .owner
                .as_deref()
                .is_some_and(|t| binder.verify_owner(slot, &salt, t));
        }
    }
}

/// Checks every managed slot that the config lists by its binding.
pub(super) fn check_bindings(
    h: &Luks2Header,
    observed: &mut ObservedKeyslots,
    keys: &[Key],
    binder: &Binder,
) {
    for key in keys {
        let slot = key.spec.slot;
        let Some(token) = token_of(h, observed, slot) else {
            continue;
        };
        let Some(ObservedSlot::Managed { binding, .. }) = observed.slots.get_mut(&slot) else {
            continue;
        };
        *binding = match key.provider.binding_material(&key.ctx) {
            Err(e) => BindingCheck::Unknown(e.to_string()),
            // The binding covers kind and lockToSTATE, so a change of either
            // shows up as a mismatch too.
            Ok(m)
                if binder.verify(
                    slot,
                    key.spec.kind.source(),
                    key.spec.lock_to_state,
                    m.expose(),
                    &token.binding,
                ) =>
            {
                BindingCheck::Match
            }
            Ok(_) => BindingCheck::Mismatch,
        };
    }
}
