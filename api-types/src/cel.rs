//! Disk selectors: the subset of CEL (Common Expression Language) that
//! Talos's disk locator accepts, parsed and type-checked the way cel-go
//! checks it, so a selector Talos refuses is refused here with the same
//! words and position:
//!
//! ```text
//! ERROR: <input>:1:11: found no matching overload for '_>_' applied to '(uint, int)'
//!  | disk.size > 120
//!  | ..........^
//! ```
//!
//! The environment (Talos `celenv.DiskLocator`): `disk` (the disk's facts),
//! `system_disk` (bool) and the size constants `KiB`…`EiB`, `kB`…`EB`
//! (uint). Signed and unsigned integers do not mix, as in cel-go.
//! Evaluation against real disks belongs to provisioning.

mod check;
mod parse;

pub use check::{Env, Type};

/// Checks a disk selector: it parses, every name and field exists, every
/// operator applies to its operand types, and the result is a bool.
pub fn check_disk_selector(expr: &str) -> Result<(), String> {
    check_boolean(expr, Env::DiskLocator)
}

/// Checks an existing volume's selector (Talos `celenv.VolumeLocator`:
/// `volume`, the discovered volume's facts, and `disk`).
pub fn check_volume_selector(expr: &str) -> Result<(), String> {
    check_boolean(expr, Env::VolumeLocator)
}

fn check_boolean(expr: &str, env: Env) -> Result<(), String> {
    let ast = parse::parse(expr).map_err(|e| e.render(expr))?;
    let t = check::check(&ast, env).map_err(|e| e.render(expr))?;
    if t != Type::Bool && t != Type::Dyn {
        return Err(format!(
            "the expression must be a boolean (true selects the disk), but it is {}",
            t.name()
        ));
    }
    Ok(())
}

/// An error at a position of the expression (byte offset).
#[derive(Debug, Clone, PartialEq)]
pub struct CelError {
    /// Byte offset into the expression.
    pub at: usize,
    /// What is wrong.
    pub message: String,
}

impl CelError {
    fn new(at: usize, message: impl Into<String>) -> Self {
        CelError {
            at,
            message: message.into(),
        }
    }

    /// cel-go's rendering: position, message, the line and a caret.
    pub fn render(&self, expr: &str) -> String {
        let before = &expr[..self.at.min(expr.len())];
        let line_no = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = before[line_start..].chars().count();
        let line = expr[line_start..].lines().next().unwrap_or("");
        format!(
            "ERROR: <input>:{line_no}:{}: {}\n | {line}\n | {}^",
            col + 1,
            self.message,
            ".".repeat(col)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::check_disk_selector as c;

    #[test]
    fn accepts_what_talos_accepts() {
        for ok in [
            "disk.transport == \"nvme\" && !system_disk",
            "disk.size > 120u * GiB",
            "disk.size > 120u * GB && disk.size < 1u * TB",
            "disk.transport == 'sata' && !disk.rotational && !system_disk",
            "disk.serial.startsWith('deadbeef') && !disk.cdrom",
            "'/dev/disk/by-path/pci-0000:00:1f.2-ata-1' in disk.symlinks",
            "system_disk",
            "disk.size > 1u",
            "disk.symlinks.exists(s, s.endsWith('-part1')) || size(disk.model) == 0",
            "(disk.size >= 10u * GiB) ? disk.rotational : false",
            "disk.dev_path.matches('^/dev/nvme[0-9]+n1$')",
        ] {
            assert_eq!(c(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn refuses_what_talos_refuses_with_cel_gos_words() {
        assert_eq!(
            c("disk.size > 120").unwrap_err(),
            "ERROR: <input>:1:11: found no matching overload for '_>_' applied to '(uint, int)'\n | disk.size > 120\n | ..........^"
        );
        let e = c("!cdrom").unwrap_err();
        assert!(e.contains("undeclared reference to 'cdrom'"), "{e}");
        let e = c("disk.colour == 'red'").unwrap_err();
        assert!(e.contains("undefined field 'colour'"), "{e}");
        let e = c("disk.size").unwrap_err();
        assert!(e.contains("must be a boolean"), "{e}");
        let e = c("disk.size > 1u *").unwrap_err();
        assert!(e.contains("Syntax error"), "{e}");
        let e = c("disk.transport == 1").unwrap_err();
        assert!(e.contains("'_==_' applied to '(string, int)'"), "{e}");
        let e = c("-disk.size < 0").unwrap_err();
        assert!(e.contains("'-_' applied to '(uint)'"), "{e}");
    }

    #[test]
    fn volume_selectors_see_the_volume() {
        use super::check_volume_selector as v;
        assert_eq!(v("volume.partition_label == \"MY-DATA\""), Ok(()));
        assert_eq!(
            v("volume.name == \"xfs\" && disk.serial == \"SERIAL123\""),
            Ok(())
        );
        assert_eq!(
            v("volume.partition_label == 3").unwrap_err(),
            "ERROR: <input>:1:24: found no matching overload for '_==_' applied to '(string, int)'\n | volume.partition_label == 3\n | .......................^"
        );
        assert!(c("volume.size > 1u")
            .unwrap_err()
            .contains("undeclared reference to 'volume'"));
    }
}
