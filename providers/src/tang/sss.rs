//! clevis's `sss` pin, as far as a threshold of Tang servers needs it: the
//! outer JWE (`alg: dir`, A256GCM) is encrypted under a key `k`, the
//! constant term of a random polynomial over the integers modulo a prime
//! `p`; each inner JWE (one per pin, here Tang's) holds one point of it,
//! `x || y`, each as wide as `p`. Any `t` points give `k` back (Lagrange
//! interpolation at 0), as clevis's `sss.c` computes it.

use super::jwe::{ClevisJwe, JweError};
use super::jwk::B64URL;
use base64::Engine;
use num_bigint::BigUint;
use serde::Deserialize;
use zeroize::Zeroizing;

/// An outer clevis `sss` JWE, read.
#[derive(Debug, Clone)]
pub struct SssJwe {
    /// The JWE itself (its `protected` header is the AAD).
    pub outer: ClevisJwe,
    /// How many points open it.
    pub threshold: usize,
    /// The prime, big-endian.
    pub prime: Vec<u8>,
    /// The inner JWEs, one point each.
    pub inner: Vec<ClevisJwe>,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    enc: String,
    clevis: Pin,
}

#[derive(Deserialize)]
struct Pin {
    pin: String,
    sss: Option<Sss>,
}

#[derive(Deserialize)]
struct Sss {
    t: usize,
    p: String,
    jwe: Vec<String>,
}

impl SssJwe {
    /// Reads `jwe` as a clevis `sss` JWE.
    pub fn read(jwe: &ClevisJwe) -> Result<Self, JweError> {
        let bad = |e: &dyn std::fmt::Display| JweError::Malformed(e.to_string());
        let raw = B64URL.decode(&jwe.protected).map_err(|e| bad(&e))?;
        let h: Header = serde_json::from_slice(&raw).map_err(|e| bad(&e))?;
        let sss = match (
            h.alg.as_str(),
            h.enc.as_str(),
            h.clevis.pin.as_str(),
            h.clevis.sss,
        ) {
            ("dir", "A256GCM", "sss", Some(sss)) => sss,
            (alg, enc, pin, _) => {
                return Err(bad(&format!(
                    "alg {alg}, enc {enc}, pin {pin} (an sss JWE is dir, A256GCM, sss)"
                )))
            }
        };
        let prime = B64URL.decode(&sss.p).map_err(|e| bad(&e))?;
        if prime.is_empty() || prime.len() > 64 || sss.t == 0 || sss.t > sss.jwe.len() {
            return Err(bad(&format!(
                "a {}-byte prime, {} of {} points",
                prime.len(),
                sss.t,
                sss.jwe.len()
            )));
        }
        let inner = sss
            .jwe
            .iter()
            .map(|c| ClevisJwe::from_compact(c))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SssJwe {
            outer: jwe.clone(),
            threshold: sss.t,
            prime,
            inner,
        })
    }

    /// The outer JWE's plaintext from `threshold` points (each `x || y`).
    pub fn open(&self, points: &[Zeroizing<Vec<u8>>]) -> Result<Zeroizing<Vec<u8>>, JweError> {
        let key = recover(&self.prime, points)
            .ok_or_else(|| JweError::Malformed("the points are not points of this prime".into()))?;
        self.outer.open_with_key(&key)
    }
}

/// `k`, the polynomial's value at 0, from `points` modulo `prime`, as wide
/// as the prime (`None` for a point of the wrong width or two equal x).
fn recover(prime: &[u8], points: &[Zeroizing<Vec<u8>>]) -> Option<Zeroizing<Vec<u8>>> {
    let len = prime.len();
    let p = BigUint::from_bytes_be(prime);
    let parsed: Vec<(BigUint, BigUint)> = points
        .iter()
        .map(|pt| {
            (pt.len() == 2 * len).then(|| {
                (
                    BigUint::from_bytes_be(&pt[..len]),
                    BigUint::from_bytes_be(&pt[len..]),
                )
            })
        })
        .collect::<Option<_>>()?;
    let two = BigUint::from(2u8);
    let mut k = BigUint::ZERO;
    for (i, (xo, yo)) in parsed.iter().enumerate() {
        let mut acc = BigUint::from(1u8);
        for (j, (xi, _)) in parsed.iter().enumerate() {
            if i == j {
                continue;
            }
            // acc *= (0 - xi) / (xo - xi), modulo p (p prime: a^(p-2) is 1/a).
            let minus_xi = (&p - xi % &p) % &p;
            let diff = ((xo % &p) + &p - (xi % &p)) % &p;
            if diff == BigUint::ZERO {
                return None;
            }
            acc = acc * minus_xi % &p * diff.modpow(&(&p - &two), &p) % &p;
        }
        k = (k + acc * yo) % &p;
    }
    let bytes = k.to_bytes_be();
    let mut out = Zeroizing::new(vec![0u8; len]);
    out[len - bytes.len()..].copy_from_slice(&bytes);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A polynomial worked by hand over p = 97: f(x) = 42 + 5x + 7x², so
    /// f(1) = 54, f(2) = 80, f(3) = 120 mod 97 = 23.
    #[test]
    fn any_three_points_of_a_quadratic_give_its_constant_term() {
        let point = |x: u8, y: u8| Zeroizing::new(vec![x, y]);
        let pts = [point(1, 54), point(2, 80), point(3, 23)];
        assert_eq!(recover(&[97], &pts).unwrap().as_slice(), &[42]);
        let reordered = [point(3, 23), point(1, 54), point(2, 80)];
        assert_eq!(recover(&[97], &reordered).unwrap().as_slice(), &[42]);
        let wrong = [point(1, 54), point(2, 80), point(3, 24)];
        assert_ne!(recover(&[97], &wrong).unwrap().as_slice(), &[42]);
        assert!(
            recover(&[97], &[point(1, 54), point(1, 54)]).is_none(),
            "two equal x"
        );
        assert!(
            recover(&[97], &[Zeroizing::new(vec![1])]).is_none(),
            "a short point"
        );
    }
}
