//! A linear look at a config before the YAML parser sees it: its size and
//! how deep its brackets nest. serde_yaml's event parser takes quadratic
//! time on deeply nested flow collections (160 KB of `[` took 26 s), so
//! such input is refused at once with a clear error.

/// The largest config file volctl parses.
pub const MAX_CONFIG_BYTES: usize = 1 << 20;
/// The deepest nesting of `[` and `{` volctl parses.
pub const MAX_FLOW_DEPTH: usize = 64;

/// Why a text is refused before parsing: the message and its line.
pub fn check(text: &str) -> Result<(), (String, usize)> {
    if text.len() > MAX_CONFIG_BYTES {
        return Err((
            format!(
                "the file is {} bytes; configs are at most {MAX_CONFIG_BYTES} bytes",
                text.len()
            ),
            1,
        ));
    }
    let (mut depth, mut line) = (0usize, 1usize);
    let mut quote: Option<char> = None;
    let mut comment = false;
    for c in text.chars() {
        match (c, quote) {
            ('\n', _) => {
                line += 1;
                comment = false;
            }
            _ if comment => {}
            ('#', None) => comment = true,
            ('"' | '\'', None) => quote = Some(c),
            (q, Some(open)) if q == open => quote = None,
            (_, Some(_)) => {}
            ('[' | '{', None) => {
                depth += 1;
                if depth > MAX_FLOW_DEPTH {
                    return Err((
                        format!("brackets nest deeper than {MAX_FLOW_DEPTH} levels"),
                        line,
                    ));
                }
            }
            (']' | '}', None) => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_nesting_and_huge_files_are_refused_quickly() {
        let deep = "a: ".to_string() + &"[".repeat(2_000_000);
        let t = std::time::Instant::now();
        let (msg, line) = check(&deep[..MAX_CONFIG_BYTES - 1]).unwrap_err();
        assert!(msg.contains("nest deeper than 64"), "{msg}");
        assert_eq!(line, 1);
        assert!(check(&deep).unwrap_err().0.contains("bytes"));
        assert!(t.elapsed().as_secs() < 5, "linear");
    }

    #[test]
    fn brackets_in_quotes_and_comments_do_not_count() {
        let text = format!(
            "a: \"{}\"\nb: '{}'\n# {}\nc: [[1], {{d: 2}}]\n",
            "[".repeat(100),
            "{".repeat(100),
            "[".repeat(100)
        );
        assert!(check(&text).is_ok());
    }
}
