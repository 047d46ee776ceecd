//! The configured keys of a volume, each with its provider, and what the
//! planner needs to know of them.

use super::plan::DesiredSlot;
use crate::volume::VolumeSpec;
use api_types::KeyslotId;
use api_types::ResolvedKey;
use providers::{provider_for, KeyContext, KeyProvider, ProviderEnv};

/// A configured key and the provider that makes and recovers it.
pub(super) struct Key {
    pub spec: ResolvedKey,
    pub provider: Box<dyn KeyProvider>,
    pub ctx: KeyContext,
}

/// The volume's configured keys, in config order.
pub(super) fn keys(spec: &VolumeSpec, env: &ProviderEnv) -> Vec<Key> {
    spec.encryption
        .resolved_keys()
        .into_iter()
        .map(|k| Key {
            provider: provider_for(&k, env),
            ctx: KeyContext {
                volume_id: spec.label.clone(),
            },
            spec: k,
        })
        .collect()
}

/// The key configured for `slot`; the plan only names configured slots.
pub(super) fn key_for(keys: &[Key], slot: KeyslotId) -> &Key {
    keys.iter()
        .find(|k| k.spec.slot == slot)
        .expect("plans and unlock orders name configured slots only")
}

/// What the planner knows of a key.
pub(super) fn desired_slot(k: &Key) -> DesiredSlot {
    DesiredSlot {
        slot: k.spec.slot,
        kind: k.spec.kind.source(),
        lock_to_state: k.spec.lock_to_state,
        binds: k.provider.describe(),
        // A key whose binding material cannot be computed cannot be enrolled
        // or checked either (salt missing, UUID unreadable).
        available: k
            .provider
            .binding_material(&k.ctx)
            .map(|_| ())
            .map_err(|e| e.to_string()),
    }
}
