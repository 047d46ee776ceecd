//! Sizes as users write them, read exactly as Talos reads them: bytes
//! (`1073741824`), units (`2.5GiB`, `500MB`, `10G`) or a share of the disk
//! (`80%`), each optionally negative (`-10GiB`, `-10%`: "all but that much").
//!
//! Units follow go-humanize, as Talos does: `K`, `M`, `G`, `T`, `P`, `E`
//! and `KB`…`EB` are powers of 1000; `Ki`, `KiB`…`EiB` powers of 1024; case
//! does not matter. A byte count is truncated, not rounded (`1.5B` is 1).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A size as written in a document: an integer number of bytes or a string.
/// It is parsed by [`SizeSpec::resolve`] during validation, so a malformed
/// size is reported with the other errors of its file.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum SizeSpec {
    /// A number of bytes.
    Bytes(u64),
    /// A negative number of bytes: all of the disk but that much.
    Negative(i64),
    /// `"2.5GiB"`, `"500 MB"`, `"-10GiB"`, `"1024"` or `"80%"`.
    Text(String),
}

/// What a size measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Amount {
    /// An absolute number of bytes.
    Bytes(u64),
    /// A whole percentage of the disk, 0–100 (Talos truncates `33.4%` to 33).
    Percent(u64),
}

/// A parsed size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size {
    /// Written with a leading `-`: leave this much of the disk free.
    pub negative: bool,
    /// The magnitude.
    pub amount: Amount,
}

impl Size {
    /// A positive byte count.
    pub const fn bytes(n: u64) -> Self {
        Size {
            negative: false,
            amount: Amount::Bytes(n),
        }
    }

    /// The absolute, non-negative byte count, if that is what this is.
    pub fn absolute_bytes(self) -> Option<u64> {
        match self.amount {
            Amount::Bytes(b) if !self.negative => Some(b),
            _ => None,
        }
    }
}

impl SizeSpec {
    /// Parses the size, or says why it cannot be parsed.
    pub fn resolve(&self) -> Result<Size, String> {
        match self {
            SizeSpec::Bytes(b) => Ok(Size::bytes(*b)),
            SizeSpec::Negative(n) => Ok(Size {
                negative: *n < 0,
                amount: Amount::Bytes(n.unsigned_abs()),
            }),
            SizeSpec::Text(t) => parse_size(t),
        }
    }
}

/// go-humanize's unit table (lower case).
const UNITS: &[(&str, u64)] = &[
    ("", 1),
    ("b", 1),
    ("k", 1000),
    ("kb", 1000),
    ("ki", 1 << 10),
    ("kib", 1 << 10),
    ("m", 1_000_000),
    ("mb", 1_000_000),
    ("mi", 1 << 20),
    ("mib", 1 << 20),
    ("g", 1_000_000_000),
    ("gb", 1_000_000_000),
    ("gi", 1 << 30),
    ("gib", 1 << 30),
    ("t", 1_000_000_000_000),
    ("tb", 1_000_000_000_000),
    ("ti", 1 << 40),
    ("tib", 1 << 40),
    ("p", 1_000_000_000_000_000),
    ("pb", 1_000_000_000_000_000),
    ("pi", 1 << 50),
    ("pib", 1 << 50),
    ("e", 1_000_000_000_000_000_000),
    ("eb", 1_000_000_000_000_000_000),
    ("ei", 1 << 60),
    ("eib", 1 << 60),
];

fn parse_size(text: &str) -> Result<Size, String> {
    let (negative, body) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let amount = if text.contains('%') {
        parse_percent(text, body)?
    } else {
        Amount::Bytes(parse_bytes(text, body)?)
    };
    Ok(Size { negative, amount })
}

fn parse_percent(text: &str, body: &str) -> Result<Amount, String> {
    let num = body
        .strip_suffix('%')
        .ok_or_else(|| format!("`{text}`: a percentage must end with `%`"))?;
    let v: f64 = num
        .parse()
        .map_err(|_| format!("`{text}` is not a percentage like `80%`"))?;
    if !(0.0..=100.0).contains(&v) {
        return Err(format!("`{text}`: a percentage must be between 0 and 100"));
    }
    // In 0..=100, checked above; truncated as Talos does.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Ok(Amount::Percent(v as u64))
}

/// go-humanize `ParseBytes`: a decimal number (commas ignored), optional
/// spaces, a unit from [`UNITS`].
fn parse_bytes(text: &str, body: &str) -> Result<u64, String> {
    let split = body
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == ','))
        .unwrap_or(body.len());
    let (num, unit) = body.split_at(split);
    let v: f64 = num
        .replace(',', "")
        .parse()
        .map_err(|_| format!("`{text}` is not a size like `2.5GiB`, `500MB` or `80%`"))?;
    let unit = unit.trim().to_ascii_lowercase();
    let factor = UNITS
        .iter()
        .find(|(u, _)| *u == unit)
        .map(|(_, f)| *f)
        .ok_or_else(|| {
            format!("`{text}`: unknown unit `{unit}` (use B, KB, MB, GB, TB or KiB, MiB, GiB, TiB; G means 1000³, GiB 1024³)")
        })?;
    #[allow(clippy::cast_precision_loss)]
    let bytes = v * factor as f64;
    #[allow(clippy::cast_precision_loss)]
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(format!("`{text}` is too large"));
    }
    // In range: finite, non-negative (no sign in `num`) and below u64::MAX.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Size, String> {
        SizeSpec::Text(s.into()).resolve()
    }

    fn neg(amount: Amount) -> Size {
        Size {
            negative: true,
            amount,
        }
    }

    /// Talos's own table (`meta/size_test.go`, `TestSizeUnmarshal`).
    #[test]
    fn reads_sizes_as_talos_does() {
        let pct = |v| Size {
            negative: false,
            amount: Amount::Percent(v),
        };
        assert_eq!(p("100%"), Ok(pct(100)));
        assert_eq!(p("33.4%"), Ok(pct(33)));
        assert_eq!(p("33.4124%"), Ok(pct(33)));
        assert_eq!(p("1048576"), Ok(Size::bytes(1_048_576)));
        assert_eq!(p("2.5GiB"), Ok(Size::bytes(2_684_354_560)));
        assert_eq!(p("2.5GB"), Ok(Size::bytes(2_500_000_000)));
        assert_eq!(p("2.5G"), Ok(Size::bytes(2_500_000_000)));
        assert_eq!(p("1MiB"), Ok(Size::bytes(1_048_576)));
        assert_eq!(p("-100%"), Ok(neg(Amount::Percent(100))));
        assert_eq!(p("-33.4%"), Ok(neg(Amount::Percent(33))));
        assert_eq!(p("-1048576"), Ok(neg(Amount::Bytes(1_048_576))));
        assert_eq!(p("-2.5GiB"), Ok(neg(Amount::Bytes(2_684_354_560))));
        assert_eq!(p("-2.5G"), Ok(neg(Amount::Bytes(2_500_000_000))));
        assert_eq!(p("-1MiB"), Ok(neg(Amount::Bytes(1_048_576))));
    }

    #[test]
    fn reads_units_as_go_humanize_does() {
        assert_eq!(p("500 MB"), Ok(Size::bytes(500_000_000)));
        assert_eq!(p("10gi"), Ok(Size::bytes(10 << 30)));
        assert_eq!(p("1,024 KiB"), Ok(Size::bytes(1 << 20)));
        assert_eq!(p("1.9"), Ok(Size::bytes(1)));
        assert_eq!(SizeSpec::Bytes(7).resolve(), Ok(Size::bytes(7)));
        assert_eq!(SizeSpec::Negative(-7).resolve(), Ok(neg(Amount::Bytes(7))));
    }

    #[test]
    fn rejects_garbage() {
        assert!(p("lots").unwrap_err().contains("not a size"));
        assert!(p("3 parsecs").unwrap_err().contains("unknown unit"));
        assert!(p("120%").unwrap_err().contains("between 0 and 100"));
        assert!(p("%5").is_err());
        assert!(p("1.2.3GB").is_err());
        assert!(p("--1GB").is_err());
        assert!(p("99999999EiB").unwrap_err().contains("too large"));
    }
}
