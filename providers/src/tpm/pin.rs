//! TPM + PIN: the sealed object also asks its auth value (TPM2_PolicyAuthValue),
//! the SHA-256 of a PIN a person chooses at enrolment and types at every
//! unlock. The object is subject to the TPM's dictionary-attack protection,
//! so the TPM, not volctl, limits how many PINs can be guessed: a short PIN
//! is safe where a short passphrase is not. The PIN is never stored.

use super::policy::pin_auth;
use crate::ask::AskerHandle;
use crate::prompt::ask_new_secret;
use crate::sealed_key::{Base64Bytes, TpmTokenData};
use crate::ProviderError;
use api_types::{KeySource, PromptParams};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use tss_esapi::traits::Marshall;
use zeroize::Zeroizing;

/// How a PIN is asked: through whom, with the prompt's tries and timeout.
pub(super) struct PinAsking {
    pub asker: Option<AskerHandle>,
    pub params: PromptParams,
}

impl PinAsking {
    /// A new PIN for `volume`, asked twice; its auth value.
    pub async fn new_pin(&self, volume: &str) -> Result<Zeroizing<Vec<u8>>, ProviderError> {
        let pin = ask_new_secret(
            self.asker.as_ref(),
            &self.params,
            volume,
            "TPM PIN",
            KeySource::TpmPin,
        )
        .await?;
        Ok(pin_auth(pin.expose()))
    }
}

/// Why a PIN key does not open unattended.
pub(super) fn asks_a_pin() -> ProviderError {
    ProviderError::Unavailable {
        kind: KeySource::TpmPin,
        reason: "it asks for a PIN, typed at unlock".into(),
    }
}

/// A new PIN for `volume`, asked twice through `asker` (`volctl tpm pin
/// change`); the PIN itself, never stored.
pub async fn ask_new_pin(
    asker: Option<&AskerHandle>,
    params: &PromptParams,
    volume: &str,
) -> Result<crate::Passphrase, ProviderError> {
    ask_new_secret(asker, params, volume, "TPM PIN", KeySource::TpmPin).await
}

/// `token` sealed again, the same key (`passphrase`, what the token's key
/// gives) under the same policy, with `new_pin` as its PIN: only the token
/// changes, the keyslot keeps its passphrase.
pub async fn with_new_pin(
    options: &super::TpmOptions,
    token: &TpmTokenData,
    passphrase: &crate::Passphrase,
    new_pin: &crate::Passphrase,
) -> Result<TpmTokenData, ProviderError> {
    let refused = |reason: &str| ProviderError::Refused {
        kind: KeySource::TpmPin,
        reason: reason.into(),
    };
    if !token.pin {
        return Err(refused("it asks no PIN"));
    }
    let secret = Zeroizing::new(
        B64.decode(passphrase.expose())
            .map_err(|_| refused("its passphrase is not the key its token seals"))?,
    );
    let policy = super::policy::digest_from_hex(&token.policy_digest).ok_or_else(|| {
        ProviderError::BadToken {
            kind: KeySource::TpmPin,
            reason: "its policy digest is not 64 hex digits".into(),
        }
    })?;
    let (tcti, auth) = (options.tcti.clone(), pin_auth(new_pin.expose()));
    let sealed =
        super::blocking(move || super::esapi::seal_to(&tcti, &policy, &secret, Some(&auth[..])))
            .await?;
    let public = sealed
        .public
        .marshall()
        .map_err(|e| super::esapi::tpm_err("marshalling", e))?;
    Ok(TpmTokenData {
        public: Base64Bytes(public),
        private: Base64Bytes(sealed.private.value().to_vec()),
        ..token.clone()
    })
}
