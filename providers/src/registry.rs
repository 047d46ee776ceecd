//! Builds the provider for a configured key.

use crate::{KeyProvider, NodeIdProvider, SaltedProvider, StateSalt, StaticProvider};
use api_types::{KeyKind, ResolvedKey};

/// What providers need from the machine, read once per run.
#[derive(Debug, Clone)]
pub struct ProviderEnv {
    /// The node UUID, or why it could not be read.
    pub node_uuid: crate::NodeUuid,
    /// The STATE salt, when known.
    pub state_salt: Option<StateSalt>,
    /// How to reach KMS servers (CA, client certificate, timeouts).
    pub kms: crate::KmsClientOptions,
    /// Where the TPM is.
    pub tpm: crate::TpmOptions,
    /// Who receives a new recovery key (nobody: none is enrolled).
    pub recovery_handover: crate::recovery::RecoveryHandover,
    /// How to ask a person for a typed key (`None`: nobody can be asked).
    pub asker: Option<crate::ask::AskerHandle>,
    /// When a boot stops waiting for key servers while it unlocks
    /// (`None`: not in a boot; each key's own timeout only).
    pub key_servers_until: Option<std::time::Instant>,
}

/// The provider for `key`, wrapped for lockToSTATE when the key asks for it.
pub fn provider_for(key: &ResolvedKey, env: &ProviderEnv) -> Box<dyn KeyProvider> {
    let inner = kind_provider(&key.kind, env);
    if key.lock_to_state {
        Box::new(SaltedProvider::new(inner, env.state_salt.clone()))
    } else {
        inner
    }
}

/// The provider of a key kind (a key's, or a threshold member's).
fn kind_provider(kind: &KeyKind, env: &ProviderEnv) -> Box<dyn KeyProvider> {
    match kind {
        KeyKind::Static { passphrase } => Box::new(StaticProvider::new(passphrase.clone())),
        KeyKind::NodeId => Box::new(NodeIdProvider::new(env.node_uuid.clone())),
        KeyKind::Tpm {
            pcrs,
            check_secureboot,
            signed,
            pin,
            ..
        } => {
            let tpm = crate::TpmProvider::new(pcrs.clone(), *check_secureboot, env.tpm.clone())
                .with_signed_policy(signed.clone());
            Box::new(match pin {
                true => tpm.with_pin(env.asker.clone(), api_types::PromptParams::default()),
                false => tpm,
            })
        }
        KeyKind::Kms {
            endpoints,
            deadline,
            attest,
        } => {
            let kms = crate::KmsProvider::new(
                endpoints,
                crate::KmsWait {
                    per_key: *deadline,
                    boot_until: env.key_servers_until,
                },
                env.node_uuid.clone(),
                env.kms.clone(),
            );
            Box::new(match attest {
                true => kms.with_attestation(env.tpm.tcti.clone()),
                false => kms,
            })
        }
        KeyKind::Tang {
            url,
            thumbprint,
            deadline,
        } => Box::new(crate::TangProvider::new(
            url,
            thumbprint.as_deref(),
            crate::KmsWait {
                per_key: *deadline,
                boot_until: env.key_servers_until,
            },
        )),
        KeyKind::Recovery => Box::new(crate::recovery::RecoveryProvider {
            handover: env.recovery_handover,
        }),
        KeyKind::Prompt(params) => Box::new(crate::prompt::PromptProvider {
            asker: env.asker.clone(),
            params: params.clone(),
        }),
        KeyKind::Threshold { required, members } => Box::new(crate::ThresholdProvider::new(
            *required,
            members.iter().map(|m| kind_provider(m, env)).collect(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{KeyContext, ProviderError};
    use api_types::SecretString;

    fn env(salt: Option<StateSalt>) -> ProviderEnv {
        ProviderEnv {
            recovery_handover: Default::default(),
            asker: None,
            node_uuid: Ok("4c4c4544-0038-5910-8057-b4c04f4d3732".into()),
            state_salt: salt,
            kms: Default::default(),
            tpm: Default::default(),
            key_servers_until: None,
        }
    }

    #[tokio::test]
    async fn lock_to_state_appends_the_salt_to_any_kind() {
        let ctx = KeyContext {
            volume_id: "EPHEMERAL".into(),
        };
        let key = ResolvedKey {
            slot: api_types::KeyslotId::new(1).unwrap(),
            kind: KeyKind::Static {
                passphrase: SecretString::new("pw"),
            },
            lock_to_state: true,
        };
        let p = provider_for(&key, &env(Some(StateSalt::new([7; 32]))));
        let got = p.enroll(&ctx).await.unwrap().passphrase;
        let mut want = b"pw".to_vec();
        want.extend([7u8; 32]);
        assert_eq!(got.expose(), want.as_slice());
        assert_eq!(
            p.recover(&ctx, &crate::KeyData::Nothing)
                .await
                .unwrap()
                .expose(),
            want.as_slice()
        );
        assert!(format!("{got:?}").contains("redacted"));
    }

    #[tokio::test]
    async fn missing_salt_is_an_error_not_an_unsalted_key() {
        let ctx = KeyContext {
            volume_id: "EPHEMERAL".into(),
        };
        let key = ResolvedKey {
            slot: api_types::KeyslotId::new(0).unwrap(),
            kind: KeyKind::NodeId,
            lock_to_state: true,
        };
        let p = provider_for(&key, &env(None));
        assert!(matches!(
            p.enroll(&ctx).await,
            Err(ProviderError::MissingSalt)
        ));
        assert!(matches!(
            p.binding_material(&ctx),
            Err(ProviderError::MissingSalt)
        ));
    }

    #[test]
    fn binding_material_differs_by_salt_and_kind() {
        let ctx = KeyContext {
            volume_id: "EPHEMERAL".into(),
        };
        let node = ResolvedKey {
            slot: api_types::KeyslotId::new(0).unwrap(),
            kind: KeyKind::NodeId,
            lock_to_state: true,
        };
        let a = provider_for(&node, &env(Some(StateSalt::new([1; 32]))))
            .binding_material(&ctx)
            .unwrap();
        let b = provider_for(&node, &env(Some(StateSalt::new([2; 32]))))
            .binding_material(&ctx)
            .unwrap();
        assert_ne!(a, b);
        let plain = ResolvedKey {
            lock_to_state: false,
            ..node
        };
        let c = provider_for(&plain, &env(None))
            .binding_material(&ctx)
            .unwrap();
        assert_ne!(a, c);
    }
}
