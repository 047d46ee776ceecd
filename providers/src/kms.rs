//! `kms`: a random 32-byte key sealed by a network KMS (`sidero.kms`
//! protocol). The passphrase is the key's base64; the token keeps the
//! sealed blob and the endpoint it was sealed by, so the key is recovered
//! from the same KMS even if the config later points elsewhere.

use crate::sealed_key::{bad_token, passphrase, random_key, Base64Bytes, KmsTokenData};
use crate::KeyData;
use crate::{Enrolled, KeyContext, KeyProvider, Passphrase, ProviderError};
use async_trait::async_trait;
use kms::client::{ClientError, ClientOptions, KmsClient};

/// Keys sealed by a KMS.
pub struct KmsProvider {
    endpoint: String,
    node_uuid: crate::NodeUuid,
    options: ClientOptions,
}

impl KmsProvider {
    /// A provider for the KMS at `endpoint`, identifying the node by `node_uuid`.
    pub fn new(endpoint: &str, node_uuid: crate::NodeUuid, options: ClientOptions) -> Self {
        KmsProvider {
            endpoint: endpoint.to_string(),
            node_uuid,
            options,
        }
    }

    fn uuid(&self) -> Result<&str, ProviderError> {
        self.node_uuid
            .as_deref()
            .map_err(|r| ProviderError::Unavailable {
                kind: api_types::KeySource::Kms,
                reason: format!("the node UUID is needed: {r}"),
            })
    }
}

fn client_error(e: ClientError) -> ProviderError {
    ProviderError::Unavailable {
        kind: api_types::KeySource::Kms,
        reason: e.to_string(),
    }
}

#[async_trait]
impl KeyProvider for KmsProvider {
    fn kind(&self) -> api_types::KeySource {
        api_types::KeySource::Kms
    }
    async fn enroll(&self, _ctx: &KeyContext) -> Result<Enrolled, ProviderError> {
        let uuid = self.uuid()?;
        let key = random_key();
        let blob = KmsClient::new(&self.endpoint, self.options.clone())
            .seal(uuid, key.as_ref())
            .await
            .map_err(client_error)?;
        Ok(Enrolled {
            passphrase: passphrase(key.as_ref()),
            token_data: KeyData::Kms(KmsTokenData {
                endpoint: self.endpoint.clone(),
                sealed_data: Base64Bytes(blob),
            }),
        })
    }
    async fn recover(
        &self,
        _ctx: &KeyContext,
        token_data: &KeyData,
    ) -> Result<Passphrase, ProviderError> {
        let uuid = self.uuid()?;
        let KeyData::Kms(token) = token_data else {
            return Err(bad_token(api_types::KeySource::Kms, token_data));
        };
        // The config's endpoint, never the token's: whoever can write the
        // disk could otherwise send this node's unseal requests anywhere.
        let key = KmsClient::new(&self.endpoint, self.options.clone())
            .unseal(uuid, &token.sealed_data.0)
            .await
            .map_err(client_error)?;
        Ok(passphrase(&key))
    }
    fn binding_material(&self, _ctx: &KeyContext) -> Result<Passphrase, ProviderError> {
        let mut m = Passphrase::new(b"kms\0".to_vec());
        m.append(self.endpoint.as_bytes());
        Ok(m)
    }
}
