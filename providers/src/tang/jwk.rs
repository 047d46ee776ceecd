//! Elliptic-curve JWKs (RFC 7517) as Tang and clevis write them, on
//! P-521, and their thumbprints (RFC 7638, SHA-256), which pin a Tang
//! server's signing key and name its exchange keys (`kid`).

use base64::Engine;
use p521::elliptic_curve::sec1::{FromEncodedPoint, ToEncodedPoint};
use p521::{AffinePoint, EncodedPoint, FieldBytes, ProjectivePoint, PublicKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Base64url without padding, as JOSE writes every binary field.
pub(crate) const B64URL: base64::engine::GeneralPurpose =
    base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The one curve Tang uses (and the only one accepted).
pub const CURVE: &str = "P-521";

/// A public EC key as a JWK: the fields clevis and Tang use. A private
/// part (`d`) is never read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EcJwk {
    /// `EC`.
    pub kty: String,
    /// `P-521`.
    pub crv: String,
    /// The x coordinate, base64url.
    pub x: String,
    /// The y coordinate, base64url.
    pub y: String,
    /// `ES512` (signing keys), `ECMR` (exchange keys).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    /// What the key is for: `verify` (signing keys), `deriveKey`
    /// (exchange keys).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_ops: Option<Vec<String>>,
}

/// A key that is no P-521 point.
#[derive(Debug, thiserror::Error)]
#[error("a key that is not a P-521 public key: {0}")]
pub struct BadKey(pub String);

impl EcJwk {
    /// The JWK of a point, with `alg` and `key_ops` when given.
    pub fn of_point(point: &AffinePoint, alg: Option<&str>) -> Self {
        let encoded = point.to_encoded_point(false);
        let coordinate =
            |c: Option<&FieldBytes>| B64URL.encode(c.map(|b| b.as_slice()).unwrap_or(&[]));
        EcJwk {
            kty: "EC".into(),
            crv: CURVE.into(),
            x: coordinate(encoded.x()),
            y: coordinate(encoded.y()),
            alg: alg.map(str::to_string),
            key_ops: None,
        }
    }

    /// The point, checked to be on the curve (and not the identity).
    pub fn point(&self) -> Result<AffinePoint, BadKey> {
        if self.kty != "EC" || self.crv != CURVE {
            return Err(BadKey(format!("kty {}, crv {}", self.kty, self.crv)));
        }
        let coordinate = |c: &str| {
            let bytes = B64URL
                .decode(c)
                .map_err(|e| BadKey(format!("a coordinate is not base64url: {e}")))?;
            (bytes.len() == 66)
                .then(|| FieldBytes::clone_from_slice(&bytes))
                .ok_or_else(|| BadKey(format!("a coordinate of {} bytes, not 66", bytes.len())))
        };
        let encoded = EncodedPoint::from_affine_coordinates(
            &coordinate(&self.x)?,
            &coordinate(&self.y)?,
            false,
        );
        Option::from(PublicKey::from_encoded_point(&encoded))
            .map(|k: PublicKey| *k.as_affine())
            .ok_or_else(|| BadKey("the point is not on the curve".into()))
    }

    /// The point, for arithmetic.
    pub fn projective(&self) -> Result<ProjectivePoint, BadKey> {
        self.point().map(ProjectivePoint::from)
    }

    /// Its RFC 7638 thumbprint with SHA-256, base64url (`jose jwk thp`).
    pub fn thumbprint(&self) -> Thumbprint {
        // The required members in lexicographic order, no spaces.
        let canonical = format!(
            r#"{{"crv":"{}","kty":"{}","x":"{}","y":"{}"}}"#,
            self.crv, self.kty, self.x, self.y
        );
        Thumbprint(B64URL.encode(Sha256::digest(canonical.as_bytes())))
    }

    /// Whether its `key_ops` include `op`.
    pub fn can(&self, op: &str) -> bool {
        self.key_ops
            .as_ref()
            .is_some_and(|ops| ops.iter().any(|o| o == op))
    }
}

/// A JWK thumbprint (SHA-256, base64url): 43 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Thumbprint(pub String);

impl std::fmt::Display for Thumbprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A JWK set: `{"keys": [...]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwkSet {
    /// The keys.
    pub keys: Vec<EcJwk>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key `tangd-keygen` made, and the thumbprint `jose jwk thp` gives it.
    const JWK: &str = r#"{"alg":"ECMR","crv":"P-521","key_ops":["deriveKey"],"kty":"EC","x":"APjayR-5ZYaSnwrkO-q9fyUTRjzCdOOcFz__OEKfPsGjAvmV5vLs4aIaB_YLcdEvbo3SKrmAup2F-9NCDUiFp2G6","y":"AMBreVUut24GYGJC9pGh58R8ywHKdD41NVziCqYFUpJAzAJRzbLHtK0cbXhAtG3i9wixhXMhK4kDP9ZjaROkmwIQ"}"#;

    #[test]
    fn the_thumbprint_is_jose_s() {
        let jwk: EcJwk = serde_json::from_str(JWK).unwrap();
        assert_eq!(
            jwk.thumbprint().0,
            "x4XgOj3TCJNBcrXjNbI0GCQGIVfZl7_kV98_93vyR48"
        );
        assert!(jwk.can("deriveKey") && !jwk.can("verify"));
        let again = EcJwk::of_point(&jwk.point().unwrap(), Some("ECMR"));
        assert_eq!((again.x, again.y), (jwk.x, jwk.y));
    }

    #[test]
    fn a_point_off_the_curve_or_another_curve_is_refused() {
        let mut jwk: EcJwk = serde_json::from_str(JWK).unwrap();
        jwk.y = jwk.x.clone();
        assert!(jwk.point().is_err());
        jwk.crv = "P-256".into();
        assert!(jwk.point().unwrap_err().to_string().contains("P-256"));
    }
}
