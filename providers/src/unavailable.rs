//! A provider for a key kind that cannot work in this process (not built
//! in yet, or its device or server is missing). Every operation fails with
//! the reason, so the planner reports the slot and leaves it alone.

use crate::{Enrolled, KeyContext, KeyProvider, Passphrase, ProviderError};
use async_trait::async_trait;

/// Always fails with [`ProviderError::Unavailable`].
pub struct UnavailableProvider {
    kind: &'static str,
    cost: u8,
    reason: String,
}

impl UnavailableProvider {
    /// A provider of `kind` that explains `reason` on every call.
    pub fn new(kind: &'static str, cost: u8, reason: impl Into<String>) -> Self {
        UnavailableProvider {
            kind,
            cost,
            reason: reason.into(),
        }
    }

    fn err(&self) -> ProviderError {
        ProviderError::Unavailable {
            kind: self.kind,
            reason: self.reason.clone(),
        }
    }
}

#[async_trait]
impl KeyProvider for UnavailableProvider {
    fn kind(&self) -> &'static str {
        self.kind
    }
    fn unlock_cost(&self) -> u8 {
        self.cost
    }
    fn locally_derivable(&self) -> bool {
        false
    }
    async fn enroll(&self, _ctx: &KeyContext) -> Result<Enrolled, ProviderError> {
        Err(self.err())
    }
    async fn recover(
        &self,
        _ctx: &KeyContext,
        _t: &serde_json::Value,
    ) -> Result<Passphrase, ProviderError> {
        Err(self.err())
    }
    fn binding_material(&self, _ctx: &KeyContext) -> Result<Passphrase, ProviderError> {
        Err(self.err())
    }
}
