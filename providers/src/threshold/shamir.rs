//! Shamir's secret sharing over GF(2^8), the field AES uses
//! (x^8 + x^4 + x^3 + x + 1): each byte of the secret is the constant term
//! of its own random polynomial of degree `required - 1`; share `x` holds
//! every polynomial's value at `x` (1 to 255). Any `required` shares give
//! the secret back by Lagrange interpolation at zero; fewer say nothing of
//! it. Shares carry no integrity: a wrong share gives a wrong secret, so
//! callers check what they combine (the keyslot does: a wrong passphrase
//! opens nothing).
//!
//! The arithmetic is branch-free on secret values (no tables indexed by
//! them); share numbers and counts are public.

use rand::RngCore;
use zeroize::Zeroizing;

/// One share: its number (the x coordinate, 1 to 255) and one byte per
/// byte of the secret.
#[derive(Clone, PartialEq)]
pub struct Share {
    /// The x coordinate, never 0 (which is the secret).
    pub x: u8,
    /// The polynomials' values at `x`.
    pub y: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for Share {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Share {{ x: {}, {} bytes }}", self.x, self.y.len())
    }
}

/// Why shares could not be made or combined.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShamirError {
    /// `required` is 0, or more than the shares made, or more than 255 shares.
    #[error("{required} of {count} shares: need 1 ≤ required ≤ count ≤ 255")]
    Counts {
        /// Shares required.
        required: usize,
        /// Shares made.
        count: usize,
    },
    /// Nothing to combine.
    #[error("no shares to combine")]
    NoShares,
    /// A share numbered 0 or twice, or of another length.
    #[error("share {0} is numbered 0, given twice, or of another length")]
    BadShare(u8),
}

/// Multiplication in GF(2^8) modulo x^8 + x^4 + x^3 + x + 1, without
/// branches or table lookups on the operands.
fn mul(mut a: u8, mut b: u8) -> u8 {
    let mut product = 0u8;
    for _ in 0..8 {
        product ^= a & 0u8.wrapping_sub(b & 1);
        let carry = 0u8.wrapping_sub(a >> 7);
        a = (a << 1) ^ (0x1b & carry);
        b >>= 1;
    }
    product
}

/// The multiplicative inverse (a^254; 0 for 0).
fn inv(a: u8) -> u8 {
    // 254 = 0b1111_1110: square-and-multiply with a public exponent.
    let mut result = 1u8;
    let mut power = a;
    for bit in 0..8 {
        if (254u8 >> bit) & 1 == 1 {
            result = mul(result, power);
        }
        power = mul(power, power);
    }
    result
}

/// Splits `secret` into `count` shares numbered 1 to `count`, any
/// `required` of which give it back.
pub fn split(
    secret: &[u8],
    required: usize,
    count: usize,
    rng: &mut impl RngCore,
) -> Result<Vec<Share>, ShamirError> {
    if required == 0 || required > count || count > 255 {
        return Err(ShamirError::Counts { required, count });
    }
    let mut shares: Vec<Share> = (1..=count)
        .map(|x| Share {
            x: u8::try_from(x).expect("count ≤ 255"),
            y: Zeroizing::new(Vec::with_capacity(secret.len())),
        })
        .collect();
    let mut coefficients = Zeroizing::new(vec![0u8; required]);
    for &byte in secret {
        coefficients[0] = byte;
        rng.fill_bytes(&mut coefficients[1..]);
        for share in &mut shares {
            share.y.push(evaluate(&coefficients, share.x));
        }
    }
    Ok(shares)
}

/// The polynomial with `coefficients` (constant term first) at `x`.
fn evaluate(coefficients: &[u8], x: u8) -> u8 {
    coefficients
        .iter()
        .rev()
        .fold(0u8, |acc, &c| mul(acc, x) ^ c)
}

/// The secret from `shares` (at least as many as were required: fewer
/// give a wrong secret, which this cannot tell).
pub fn combine(shares: &[Share]) -> Result<Zeroizing<Vec<u8>>, ShamirError> {
    let first = shares.first().ok_or(ShamirError::NoShares)?;
    for (i, s) in shares.iter().enumerate() {
        let again = shares[..i].iter().any(|o| o.x == s.x);
        if s.x == 0 || again || s.y.len() != first.y.len() {
            return Err(ShamirError::BadShare(s.x));
        }
    }
    let mut secret = Zeroizing::new(vec![0u8; first.y.len()]);
    for (i, s) in shares.iter().enumerate() {
        // The Lagrange basis polynomial of share i at 0: the product of
        // x_j / (x_j - x_i) over the others (minus is xor here).
        let basis = shares
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .fold(1u8, |acc, (_, o)| mul(acc, mul(o.x, inv(o.x ^ s.x))));
        for (out, &y) in secret.iter_mut().zip(s.y.iter()) {
            *out ^= mul(basis, y);
        }
    }
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn the_field_is_aes_s() {
        // FIPS 197, section 4.2: {57} • {83} = {c1}, {57} • {13} = {fe}.
        assert_eq!(mul(0x57, 0x83), 0xc1);
        assert_eq!(mul(0x57, 0x13), 0xfe);
        // FIPS 197, section 5.1.1: the S-box's inverse of {53} is {ca}.
        assert_eq!(inv(0x53), 0xca);
        for a in 1..=255u8 {
            assert_eq!(mul(a, inv(a)), 1, "{a}");
        }
    }

    #[test]
    fn any_required_shares_give_the_secret_and_fewer_do_not() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let secret = b"a 32-byte secret for a keyslot!!";
        let shares = split(secret, 3, 5, &mut rng).unwrap();
        // Every subset of 3, in any order.
        for a in 0..5 {
            for b in 0..5 {
                for c in 0..5 {
                    if a == b || b == c || a == c {
                        continue;
                    }
                    let pick = [shares[a].clone(), shares[b].clone(), shares[c].clone()];
                    assert_eq!(combine(&pick).unwrap().as_slice(), secret);
                }
            }
        }
        let two = [shares[0].clone(), shares[4].clone()];
        assert_ne!(combine(&two).unwrap().as_slice(), secret);
        // One of one is the secret itself; one of n is n copies of it.
        let one = split(secret, 1, 3, &mut rng).unwrap();
        assert!(one.iter().all(|s| s.y.as_slice() == secret));
    }

    #[test]
    fn a_known_polynomial_gives_known_shares() {
        // f(x) = 0x42 + 0x03·x: f(1) = 0x41, f(2) = 0x44, f(3) = 0x47
        // (0x03·0x03 = 0x05 in this field); worked by hand from FIPS 197's
        // multiplication.
        struct Fixed;
        impl RngCore for Fixed {
            fn next_u32(&mut self) -> u32 {
                3
            }
            fn next_u64(&mut self) -> u64 {
                3
            }
            fn fill_bytes(&mut self, dest: &mut [u8]) {
                dest.fill(3);
            }
            fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand::Error> {
                dest.fill(3);
                Ok(())
            }
        }
        let shares = split(&[0x42], 2, 3, &mut Fixed).unwrap();
        let ys: Vec<u8> = shares.iter().map(|s| s.y[0]).collect();
        assert_eq!(ys, [0x41, 0x44, 0x47]);
        assert_eq!(combine(&shares[1..]).unwrap().as_slice(), [0x42]);
    }

    #[test]
    fn bad_counts_and_bad_shares_are_refused() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        assert!(split(b"s", 0, 2, &mut rng).is_err());
        assert!(split(b"s", 3, 2, &mut rng).is_err());
        assert!(split(b"s", 2, 256, &mut rng).is_err());
        assert_eq!(combine(&[]), Err(ShamirError::NoShares));
        let shares = split(b"secret", 2, 3, &mut rng).unwrap();
        let twice = [shares[0].clone(), shares[0].clone()];
        assert_eq!(combine(&twice), Err(ShamirError::BadShare(1)));
        let mut short = shares[1].clone();
        short.y.pop();
        assert_eq!(
            combine(&[shares[0].clone(), short]),
            Err(ShamirError::BadShare(2))
        );
    }
}
