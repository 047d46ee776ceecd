//! Sizes as users write them: bytes (`1073741824`), units (`2.5GiB`, `500MB`)
//! or a share of the disk (`80%`).

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
    /// `"2.5GiB"`, `"500 MB"`, `"1024"` or `"80%"`.
    Text(String),
}

/// A parsed size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Size {
    /// An absolute number of bytes.
    Bytes(u64),
    /// A percentage of the disk, 0 < p ≤ 100.
    Percent(f64),
}

impl SizeSpec {
    /// Parses the size, or says why it cannot be parsed.
    pub fn resolve(&self) -> Result<Size, String> {
        match self {
            SizeSpec::Bytes(b) => Ok(Size::Bytes(*b)),
            SizeSpec::Text(t) => parse_size(t),
        }
    }
}

const UNITS: &[(&str, u64)] = &[
    ("B", 1),
    ("KB", 1000),
    ("MB", 1000 * 1000),
    ("GB", 1000 * 1000 * 1000),
    ("TB", 1000 * 1000 * 1000 * 1000),
    ("PB", 1000 * 1000 * 1000 * 1000 * 1000),
    ("KIB", 1 << 10),
    ("MIB", 1 << 20),
    ("GIB", 1 << 30),
    ("TIB", 1 << 40),
    ("PIB", 1 << 50),
    ("K", 1 << 10),
    ("M", 1 << 20),
    ("G", 1 << 30),
    ("T", 1 << 40),
];

fn parse_size(text: &str) -> Result<Size, String> {
    let t = text.trim();
    if let Some(p) = t.strip_suffix('%') {
        let v: f64 = p
            .trim()
            .parse()
            .map_err(|_| format!("`{text}` is not a percentage like `80%`"))?;
        if !(v > 0.0 && v <= 100.0) {
            return Err(format!(
                "`{text}`: a percentage must be above 0 and at most 100"
            ));
        }
        return Ok(Size::Percent(v));
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let v: f64 = num
        .parse()
        .map_err(|_| format!("`{text}` is not a size like `2.5GiB`, `500MB` or `80%`"))?;
    let unit = unit.trim().to_ascii_uppercase();
    let factor = if unit.is_empty() {
        1
    } else {
        UNITS
            .iter()
            .find(|(u, _)| *u == unit)
            .map(|(_, f)| *f)
            .ok_or_else(|| {
                format!("`{text}`: unknown unit `{unit}` (use B, KB, MB, GB, TB, KiB, MiB, GiB, TiB or %)")
            })?
    };
    let bytes = v * factor as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(format!("`{text}` is out of range"));
    }
    // In range: checked just above (finite, 0..=u64::MAX).
    #[allow(clippy::cast_possible_truncation)]
    Ok(Size::Bytes(bytes.round() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Size, String> {
        SizeSpec::Text(s.into()).resolve()
    }

    #[test]
    fn parses_units() {
        assert_eq!(p("2.5GiB"), Ok(Size::Bytes(2_684_354_560)));
        assert_eq!(p("500 MB"), Ok(Size::Bytes(500_000_000)));
        assert_eq!(p("1024"), Ok(Size::Bytes(1024)));
        assert_eq!(p("80%"), Ok(Size::Percent(80.0)));
        assert_eq!(SizeSpec::Bytes(7).resolve(), Ok(Size::Bytes(7)));
    }

    #[test]
    fn rejects_garbage() {
        assert!(p("lots").unwrap_err().contains("not a size"));
        assert!(p("3 parsecs").unwrap_err().contains("unknown unit"));
        assert!(p("120%").unwrap_err().contains("at most 100"));
        assert!(p("0%").is_err());
        assert!(p("1.2.3GB").is_err());
    }
}
