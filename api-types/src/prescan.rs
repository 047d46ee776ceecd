//! A linear look at a config before the YAML parser sees it: its size and
//! how deep its flow collections (`[`, `{`) nest. serde_yaml's event parser
//! takes quadratic time on deeply nested flow collections (160 KB of `[`
//! took 26 s), so such input is refused at once with a clear error.
//!
//! The brackets are found by a real YAML scanner (yaml-rust2's, linear),
//! so quoting, escapes, comments and block scalars follow YAML's rules: an
//! apostrophe inside a plain scalar (`don't`) opens no quote, `a#b` starts
//! no comment. Where that scanner stops on an error, every bracket from
//! there on counts, whatever quotes or comments surround it: no text on
//! which the two YAML readers disagree can hide deep brackets.

use yaml_rust2::scanner::{Marker, Scanner, TokenType};

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
    let mut scanner = Scanner::new(text.chars());
    let mut depth = 0usize;
    for token in scanner.by_ref() {
        match token.1 {
            TokenType::FlowSequenceStart | TokenType::FlowMappingStart => {
                depth += 1;
                if depth > MAX_FLOW_DEPTH {
                    return Err(too_deep(token.0.line()));
                }
            }
            TokenType::FlowSequenceEnd | TokenType::FlowMappingEnd => {
                depth = depth.saturating_sub(1);
            }
            _ => {}
        }
    }
    match scanner.get_error() {
        None => Ok(()),
        Some(e) => count_from(text, *e.marker(), depth),
    }
}

fn too_deep(line: usize) -> (String, usize) {
    (
        format!("brackets nest deeper than {MAX_FLOW_DEPTH} levels"),
        line,
    )
}

/// Counts every bracket from `at` (where the scanner stopped, `depth`
/// levels deep) to the end, ignoring quotes and comments.
fn count_from(text: &str, at: Marker, mut depth: usize) -> Result<(), (String, usize)> {
    let mut line = at.line();
    for c in text.chars().skip(at.index()) {
        match c {
            '\n' => line += 1,
            '[' | '{' => {
                depth += 1;
                if depth > MAX_FLOW_DEPTH {
                    return Err(too_deep(line));
                }
            }
            ']' | '}' => depth = depth.saturating_sub(1),
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
    fn quotes_and_comments_follow_yaml_so_they_hide_no_brackets() {
        let deep = "[".repeat(160_000);
        for (text, line) in [
            // An apostrophe inside a plain scalar opens no quote.
            (format!("a: don't\nb: {deep}"), 2),
            // `#` without a space before it starts no comment.
            (format!("a: x#y\nb: {deep}"), 2),
            // A block scalar's line starting with a quote quotes nothing.
            (format!("a: |\n  'x\nb: {deep}"), 3),
            // Escaped quotes do not close a quoted scalar early.
            (format!("a: \"x\\\" {}\"\nb: {deep}", "[".repeat(70)), 2),
            (format!("a: 'it''s'\nb: {deep}"), 2),
        ] {
            let t = std::time::Instant::now();
            let (msg, at) = check(&text).unwrap_err();
            assert!(msg.contains("nest deeper than 64"), "{msg}");
            assert_eq!(at, line, "{}", &text[..20]);
            assert!(t.elapsed().as_secs() < 2, "linear");
        }
    }

    #[test]
    fn after_a_scan_error_every_bracket_counts() {
        // A tab where YAML forbids one stops the scanner: the brackets
        // after it count whatever quote seems to surround them.
        let text = format!("a:\n\t- '\nb: {}", "[".repeat(100));
        let (msg, _) = check(&text).unwrap_err();
        assert!(msg.contains("nest deeper than 64"), "{msg}");
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
