//! The system console: where someone at the machine looks.

/// Writes `line` on `/dev/console`, when there is one (errors ignored: the
/// console is a courtesy, stderr and the status carry the same).
pub fn write(line: &str) {
    use std::io::Write;
    if let Ok(mut c) = std::fs::OpenOptions::new().write(true).open("/dev/console") {
        let _ = c.write_all(line.as_bytes());
    }
}
