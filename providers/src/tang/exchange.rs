//! The McCallum–Relyea exchange that recovers a clevis tang JWE's key
//! without the server learning it: the client blinds the JWE's ephemeral
//! public key with a fresh one, the server multiplies by its private
//! exchange key, the client removes the blinding.
//!
//! With the server's key `s` (`S = sG`) and the JWE's ephemeral key `c`
//! (`C = cG`, in `epk`): the client sends `X = C + eG`, the server answers
//! `Y = sX`, and `Y − eS = scG`, the point ECDH-ES agreed at sealing.

use super::jwe::Header;
use super::jwk::{BadKey, EcJwk};
use p521::elliptic_curve::rand_core::OsRng;
use p521::elliptic_curve::sec1::ToEncodedPoint;
use p521::elliptic_curve::Group;
use p521::{NonZeroScalar, ProjectivePoint};
use zeroize::Zeroizing;

/// A request under way: what to send, and what undoes its blinding.
pub struct Blinded {
    /// The blinded key to send (`X`), as a JWK with `alg: ECMR`.
    pub request: EcJwk,
    /// The blinding scalar `e`.
    blinding: NonZeroScalar,
    /// The server's exchange key `S`.
    server: ProjectivePoint,
}

/// Why the exchange failed on the client's side.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    /// The JWE names an exchange key its advertisement does not hold.
    #[error("the JWE's advertisement holds no exchange key {0}")]
    UnknownKid(String),
    /// A key that is no point on P-521.
    #[error(transparent)]
    BadKey(#[from] BadKey),
    /// The answer is the point at infinity.
    #[error("the server's answer gives no key (the point at infinity)")]
    Degenerate,
}

/// Blinds the JWE's ephemeral key for the server named in its header.
pub fn blind(header: &Header) -> Result<Blinded, ExchangeError> {
    let server = header
        .clevis
        .tang
        .adv
        .keys
        .iter()
        .find(|k| k.can("deriveKey") && k.thumbprint() == header.kid)
        .ok_or_else(|| ExchangeError::UnknownKid(header.kid.0.clone()))?;
    let blinding = NonZeroScalar::random(&mut OsRng);
    let x = header.epk.projective()? + ProjectivePoint::GENERATOR * *blinding;
    Ok(Blinded {
        request: EcJwk::of_point(&x.to_affine(), Some("ECMR")),
        blinding,
        server: server.projective()?,
    })
}

impl Blinded {
    /// The agreed point's x coordinate from the server's answer `Y`.
    pub fn unblind(&self, answer: &EcJwk) -> Result<Zeroizing<Vec<u8>>, ExchangeError> {
        let k = answer.projective()? - self.server * *self.blinding;
        if bool::from(k.is_identity()) {
            return Err(ExchangeError::Degenerate);
        }
        let encoded = k.to_affine().to_encoded_point(false);
        let x = encoded.x().ok_or(ExchangeError::Degenerate)?;
        Ok(Zeroizing::new(x.to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tang::jwe::ClevisJwe;
    use crate::tang::jwk::JwkSet;

    /// The server's half of the exchange, as tangd computes it.
    fn server_answers(s: &p521::SecretKey, x: &EcJwk) -> EcJwk {
        let y = x.projective().unwrap() * *s.to_nonzero_scalar();
        EcJwk::of_point(&y.to_affine(), None)
    }

    #[test]
    fn the_unblinded_answer_opens_the_jwe_and_the_server_sees_only_a_blinded_key() {
        let s = p521::SecretKey::random(&mut OsRng);
        let jwk = EcJwk::of_point(s.public_key().as_affine(), Some("ECMR"));
        let jwk = EcJwk {
            key_ops: Some(vec!["deriveKey".into()]),
            ..jwk
        };
        let adv = JwkSet {
            keys: vec![jwk.clone()],
        };
        let jwe = ClevisJwe::seal(&jwk, "http://tang", &adv, b"the passphrase").unwrap();
        let header = jwe.header().unwrap();
        let blinded = blind(&header).unwrap();
        assert_ne!(blinded.request.x, header.epk.x, "the request is blinded");
        let z = blinded
            .unblind(&server_answers(&s, &blinded.request))
            .unwrap();
        assert_eq!(jwe.open(&z).unwrap().as_slice(), b"the passphrase");

        let other = p521::SecretKey::random(&mut OsRng);
        let z = blinded
            .unblind(&server_answers(&other, &blinded.request))
            .unwrap();
        assert!(
            jwe.open(&z).is_err(),
            "another server's answer opens nothing"
        );
    }
}
