//! `lockToSTATE`: a wrapper around any key kind that appends the 32-byte
//! STATE salt to its passphrase. A wiped STATE loses the salt, and with it
//! every key locked to it.

use crate::KeyData;
use crate::{Enrolled, KeyContext, KeyProvider, Passphrase, ProviderError};
use async_trait::async_trait;
use zeroize::Zeroizing;

/// Length of the STATE salt in bytes.
pub const STATE_SALT_LEN: usize = 32;

/// The salt kept on STATE. Zeroized on drop; `Debug` hides it.
#[derive(Clone)]
pub struct StateSalt(Zeroizing<[u8; STATE_SALT_LEN]>);

impl StateSalt {
    /// Wraps 32 salt bytes.
    pub fn new(bytes: [u8; STATE_SALT_LEN]) -> Self {
        StateSalt(Zeroizing::new(bytes))
    }

    /// The salt bytes.
    pub fn expose(&self) -> &[u8; STATE_SALT_LEN] {
        &self.0
    }
}

impl std::fmt::Debug for StateSalt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StateSalt(<redacted>)")
    }
}

/// Wraps a provider so that the STATE salt is appended to its passphrase.
pub struct SaltedProvider {
    inner: Box<dyn KeyProvider>,
    salt: Option<StateSalt>,
}

impl SaltedProvider {
    /// Wraps `inner`; `salt` is `None` when STATE's salt is not known, in
    /// which case every operation fails with [`ProviderError::MissingSalt`].
    pub fn new(inner: Box<dyn KeyProvider>, salt: Option<StateSalt>) -> Self {
        SaltedProvider { inner, salt }
    }

    fn salt(&self) -> Result<&StateSalt, ProviderError> {
        self.salt.as_ref().ok_or(ProviderError::MissingSalt)
    }
}

#[async_trait]
impl KeyProvider for SaltedProvider {
    fn kind(&self) -> api_types::KeySource {
        self.inner.kind()
    }
    async fn enroll(&self, ctx: &KeyContext) -> Result<Enrolled, ProviderError> {
        let salt = self.salt()?;
        let mut e = self.inner.enroll(ctx).await?;
        e.passphrase.append(salt.expose());
        Ok(e)
    }
    async fn recover(
        &self,
        ctx: &KeyContext,
        token_data: &KeyData,
    ) -> Result<Passphrase, ProviderError> {
        let salt = self.salt()?;
        let mut p = self.inner.recover(ctx, token_data).await?;
        p.append(salt.expose());
        Ok(p)
    }
    fn binding_material(&self, ctx: &KeyContext) -> Result<Passphrase, ProviderError> {
        let salt = self.salt()?;
        let mut m = self.inner.binding_material(ctx)?;
        m.append(b"\0lockToSTATE\0");
        m.append(salt.expose());
        Ok(m)
    }
    async fn refresh(
        &self,
        ctx: &KeyContext,
        token_data: &KeyData,
    ) -> Result<Option<KeyData>, ProviderError> {
        self.inner.refresh(ctx, token_data).await
    }
    async fn recover_typed(
        &self,
        ctx: &KeyContext,
        token_data: &KeyData,
        answer: &Passphrase,
    ) -> Result<Passphrase, ProviderError> {
        let salt = self.salt()?;
        let mut p = self.inner.recover_typed(ctx, token_data, answer).await?;
        p.append(salt.expose());
        Ok(p)
    }
    fn report(&self) -> Option<String> {
        self.inner.report()
    }
    fn describe(&self) -> Option<String> {
        self.inner.describe()
    }
}
