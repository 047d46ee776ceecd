//! `static`: the passphrase written in the config.

use crate::KeyData;
use crate::{Enrolled, KeyContext, KeyProvider, Passphrase, ProviderError};
use api_types::SecretString;
use async_trait::async_trait;

/// A passphrase from the config.
pub struct StaticProvider {
    passphrase: SecretString,
}

impl StaticProvider {
    /// Wraps the configured passphrase.
    pub fn new(passphrase: SecretString) -> Self {
        StaticProvider { passphrase }
    }

    fn passphrase(&self) -> Passphrase {
        Passphrase::new(self.passphrase.expose().as_bytes().to_vec())
    }
}

#[async_trait]
impl KeyProvider for StaticProvider {
    fn kind(&self) -> api_types::KeySource {
        api_types::KeySource::Static
    }
    async fn enroll(&self, _ctx: &KeyContext) -> Result<Enrolled, ProviderError> {
        Ok(Enrolled {
            passphrase: self.passphrase(),
            token_data: KeyData::Nothing,
        })
    }
    async fn recover(
        &self,
        _ctx: &KeyContext,
        _token_data: &KeyData,
    ) -> Result<Passphrase, ProviderError> {
        Ok(self.passphrase())
    }
    fn binding_material(&self, _ctx: &KeyContext) -> Result<Passphrase, ProviderError> {
        let mut m = Passphrase::new(b"static\0".to_vec());
        m.append(self.passphrase.expose().as_bytes());
        Ok(m)
    }
}
