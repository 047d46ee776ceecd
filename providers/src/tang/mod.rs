//! `tang`: a random key encrypted to a Tang server's exchange key the way
//! clevis's tang pin does it (network-bound disk encryption). The server
//! never sees the key, nor anything that identifies the node; it must
//! answer for the volume to open. The JWE is the one `clevis luks bind`
//! writes, so `clevis luks unlock` opens a volctl slot and volctl opens a
//! clevis slot.
//!
//! - [`jwk`]: keys and thumbprints; [`adv`]: the server's signed
//!   advertisement; [`jwe`]: the clevis JWE; [`exchange`]: the blinded
//!   McCallum–Relyea exchange; [`http`]: the two requests; [`sss`]:
//!   clevis's Shamir pin over Tang pins.

pub mod adv;
pub mod exchange;
mod http;
pub mod jwe;
pub mod jwk;
pub mod sss;

use crate::kms::Wait;
use crate::sealed_key::{bad_token, passphrase, random_key};
use crate::{Enrolled, KeyContext, KeyData, KeyProvider, Passphrase, ProviderError};
use adv::{Advertisement, Pin};
use api_types::KeySource;
use async_trait::async_trait;
use jwe::ClevisJwe;
use jwk::Thumbprint;

/// What a `tang` key keeps: the server, the signing key trusted, and the
/// clevis JWE. A slot's volctl token leaves the JWE out when the slot's
/// `clevis` token holds it (one copy in the header, which has little
/// room); a threshold member keeps it inline.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TangTokenData {
    /// The server's URL when it was bound (informational: unlocking asks
    /// the config's).
    pub url: String,
    /// The signing key's thumbprint that was trusted at binding.
    pub thumbprint: Thumbprint,
    /// The JWE holding the slot's passphrase (`None` in a volctl token
    /// beside a clevis token: read from that one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwe: Option<ClevisJwe>,
}

/// Keys bound to a Tang server.
pub struct TangProvider {
    url: String,
    thumbprint: Option<Thumbprint>,
    wait: Wait,
}

impl TangProvider {
    /// A provider for the server at `url`, whose signing key has
    /// `thumbprint` (`None`: trust the one it shows at enrolment).
    pub fn new(url: &str, thumbprint: Option<&str>, wait: Wait) -> Self {
        TangProvider {
            url: url.trim_end_matches('/').to_string(),
            thumbprint: thumbprint.map(|t| Thumbprint(t.to_string())),
            wait,
        }
    }

    fn server(&self) -> http::Server {
        http::Server::new(&self.url, self.wait)
    }

    /// The server's advertisement, verified against the pin (`known`: keys
    /// of an earlier advertisement, for a server that rotated its keys).
    async fn advertisement(
        &self,
        pinned: Option<&Thumbprint>,
        known: &[jwk::EcJwk],
    ) -> Result<Advertisement, ProviderError> {
        let jws = self.server().advertisement(pinned).await?;
        let pin = match pinned {
            Some(pinned) => Pin::Thumbprint { pinned, known },
            None => Pin::FirstUse,
        };
        Advertisement::verify(&jws, pin).map_err(|e| self.unavailable(e.to_string()))
    }

    fn unavailable(&self, reason: String) -> ProviderError {
        unavailable(&self.url, reason)
    }

    /// Encrypts `pass` to the server's current exchange key.
    fn bind(
        &self,
        adv: &Advertisement,
        trusted: Thumbprint,
        pass: &Passphrase,
    ) -> Result<TangTokenData, ProviderError> {
        let exchange = adv
            .exchange_key()
            .map_err(|e| self.unavailable(e.to_string()))?;
        let jwe = ClevisJwe::seal(exchange, &self.url, &adv.keys, pass.expose())
            .map_err(|e| self.unavailable(e.to_string()))?;
        Ok(TangTokenData {
            url: self.url.clone(),
            thumbprint: trusted,
            jwe: Some(jwe),
        })
    }

    /// The passphrase in `jwe`, by the exchange with the config's server.
    async fn unwrap(&self, jwe: &ClevisJwe) -> Result<Passphrase, ProviderError> {
        let bad = |e: &dyn std::fmt::Display| self.unavailable(e.to_string());
        let header = jwe.header().map_err(|e| bad(&e))?;
        let blinded = exchange::blind(&header).map_err(|e| bad(&e))?;
        let answer = self.server().recover(&header.kid, &blinded.request).await?;
        let z = blinded.unblind(&answer).map_err(|e| bad(&e))?;
        let plain = jwe.open(&z).map_err(|e| bad(&e))?;
        Ok(Passphrase::new(plain.to_vec()))
    }
}

/// A Tang key unavailable: the server named, then why.
fn unavailable(url: &str, reason: String) -> ProviderError {
    ProviderError::Unavailable {
        kind: KeySource::Tang,
        reason: format!("Tang {url}: {reason}"),
    }
}

fn token(data: &KeyData) -> Result<&TangTokenData, ProviderError> {
    match data {
        KeyData::Tang(t) => Ok(t),
        other => Err(bad_token(KeySource::Tang, other)),
    }
}

/// The JWE of a Tang key's data.
fn jwe_of(t: &TangTokenData) -> Result<&ClevisJwe, ProviderError> {
    t.jwe.as_ref().ok_or_else(|| ProviderError::Unavailable {
        kind: KeySource::Tang,
        reason: "the slot's clevis token, which holds its JWE, is missing".into(),
    })
}

#[async_trait]
impl KeyProvider for TangProvider {
    fn kind(&self) -> KeySource {
        KeySource::Tang
    }

    async fn enroll(&self, _ctx: &KeyContext) -> Result<Enrolled, ProviderError> {
        let adv = self.advertisement(self.thumbprint.as_ref(), &[]).await?;
        let trusted = match &self.thumbprint {
            Some(t) => t.clone(),
            None => adv.signers[0].clone(),
        };
        let pass = passphrase(random_key().as_ref());
        let data = self.bind(&adv, trusted, &pass)?;
        Ok(Enrolled {
            passphrase: pass,
            token_data: KeyData::Tang(data),
        })
    }

    async fn recover(
        &self,
        _ctx: &KeyContext,
        token_data: &KeyData,
    ) -> Result<Passphrase, ProviderError> {
        self.unwrap(jwe_of(token(token_data)?)?).await
    }

    /// Rebinds to the server's new exchange key once it advertises one
    /// (`tangd-rotate-keys`), while the old one still answers.
    async fn refresh(
        &self,
        ctx: &KeyContext,
        token_data: &KeyData,
    ) -> Result<Option<KeyData>, ProviderError> {
        let t = token(token_data)?;
        let header = jwe_of(t)?
            .header()
            .map_err(|e| self.unavailable(e.to_string()))?;
        let pinned = self
            .thumbprint
            .clone()
            .unwrap_or_else(|| t.thumbprint.clone());
        let adv = self
            .advertisement(Some(&pinned), &header.clevis.tang.adv.keys)
            .await?;
        if adv.has_exchange_key(&header.kid) {
            return Ok(None);
        }
        let pass = self.recover(ctx, token_data).await?;
        Ok(Some(KeyData::Tang(self.bind(&adv, pinned, &pass)?)))
    }

    /// The server only: the pinned thumbprint is what a rebind trusts,
    /// not a property of the key in the slot, so pinning the server's new
    /// signing key after a rotation re-enrols nothing.
    fn binding_material(&self, _ctx: &KeyContext) -> Result<Passphrase, ProviderError> {
        let mut m = Passphrase::new(b"tang\0".to_vec());
        m.append(self.url.as_bytes());
        Ok(m)
    }

    fn describe(&self) -> Option<String> {
        Some(match &self.thumbprint {
            Some(t) => format!("{}, signing key {t}", self.url),
            None => format!(
                "{}, trusting the signing key it shows at enrolment",
                self.url
            ),
        })
    }
}
