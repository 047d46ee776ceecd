//! Go's `time.ParseDuration`, which Talos uses for trim and scrub
//! intervals: `1h30m`, `90s`, `1.5h`, `-5m`, `0`.

/// Units and their length in seconds.
const UNITS: &[(&str, f64)] = &[
    ("ns", 1e-9),
    ("us", 1e-6),
    ("µs", 1e-6),
    ("μs", 1e-6),
    ("ms", 1e-3),
    ("s", 1.0),
    ("m", 60.0),
    ("h", 3600.0),
];

/// Parses a Go duration into seconds (negative when written with `-`).
pub fn parse_go_duration(text: &str) -> Result<f64, String> {
    let bad = || format!("`{text}` is not a duration like `24h`, `90m` or `10s`");
    let (sign, mut rest) = match text.strip_prefix('-') {
        Some(r) => (-1.0, r),
        None => (1.0, text.strip_prefix('+').unwrap_or(text)),
    };
    if rest == "0" {
        return Ok(0.0);
    }
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total = 0.0;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let value: f64 = rest[..num_end].parse().map_err(|_| bad())?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = UNITS
            .iter()
            .find(|(u, _)| *u == &rest[..unit_end])
            .ok_or_else(bad)?;
        total += value * unit.1;
        rest = &rest[unit_end..];
    }
    Ok(sign * total)
}

#[cfg(test)]
mod tests {
    use super::parse_go_duration as d;

    #[test]
    fn reads_go_durations() {
        assert_eq!(d("1h30m"), Ok(5400.0));
        assert_eq!(d("10s"), Ok(10.0));
        assert_eq!(d("-5m"), Ok(-300.0));
        assert_eq!(d("0"), Ok(0.0));
        assert_eq!(d("1.5h"), Ok(5400.0));
        assert!(d("").is_err());
        assert!(d("10").is_err());
        assert!(d("5 days").is_err());
        assert!(d("h").is_err());
    }
}
