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

/// Runs `f` with enough stack for one more level of a CEL tree: the
/// parser, checker and evaluator recurse over it (to [`parse::MAX_DEPTH`]
/// levels), and a debug build spends kilobytes of stack per level, more
/// than a 2 MiB worker thread has at that depth; the stack grows onto the
/// heap when less than 64 KiB is left.
fn deeper<T>(f: impl FnOnce() -> T) -> T {
    stacker::maybe_grow(64 << 10, 1 << 20, f)
}

mod check;
mod eval;
mod parse;

pub use check::{Env, Type};
pub use eval::{Bindings, Value};

/// A selector, parsed and type-checked once, to be evaluated per disk.
#[derive(Debug, Clone)]
pub struct Selector {
    ast: parse::Expr,
}

impl Selector {
    /// Parses and checks a disk selector (see [`check_disk_selector`]).
    pub fn disk(expr: &str) -> Result<Self, String> {
        Self::boolean(expr, Env::DiskLocator)
    }

    /// Parses and checks an existing volume's selector.
    pub fn volume(expr: &str) -> Result<Self, String> {
        Self::boolean(expr, Env::VolumeLocator)
    }

    fn boolean(expr: &str, env: Env) -> Result<Self, String> {
        let ast = parse::parse(expr).map_err(|e| e.render(expr))?;
        let t = check::check(&ast, env).map_err(|e| e.render(expr))?;
        if t != Type::Bool && t != Type::Dyn {
            return Err(format!(
                "the expression must be a boolean (true selects the disk), but it is {}",
                t.name()
            ));
        }
        Ok(Selector { ast })
    }

    /// Whether the selector is true with `vars` bound (`disk`, `system_disk`).
    pub fn matches(&self, vars: &Bindings) -> Result<bool, String> {
        match eval::eval(&self.ast, vars)? {
            Value::Bool(b) => Ok(b),
            other => Err(format!("the selector gave {other:?}, not a bool")),
        }
    }
}

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
    Selector::boolean(expr, env).map(|_| ())
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

    /// Runs `f` on a thread with the smallest stack volctl parses on (2 MiB,
    /// a tokio worker's, where the node API checks configs): an expression
    /// that recursed past the depth limit would overflow it and abort the
    /// test process instead of passing.
    fn on_small_stack(f: impl FnOnce() + Send + 'static) {
        std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(f)
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn deep_expressions_are_refused_before_they_can_exhaust_a_stack() {
        on_small_stack(|| {
            let deep = [
                format!("{}system_disk{}", "(".repeat(20_000), ")".repeat(20_000)),
                format!("{}system_disk", "!".repeat(50_000)),
                format!("{}disk.size > 1u", "-".repeat(50_000)),
                format!("disk{} > 1u", ".size".repeat(19_000)),
                format!("disk.symlinks{} == ''", "[0]".repeat(30_000)),
                format!("1{} > 1", " + 1".repeat(20_000)),
                format!("{}system_disk", "true && ".repeat(10_000)),
                format!("[{}1{}]", "[".repeat(5_000), "]".repeat(5_000)),
            ];
            for expr in deep {
                let e = c(&expr).unwrap_err();
                assert!(e.contains("recursion limit exceeded: 250"), "{e}");
            }
        });
    }

    #[test]
    fn an_expression_over_100000_code_points_is_refused_and_one_within_the_limits_passes() {
        let long = format!("disk.model == '{}'", "é".repeat(100_000));
        let e = c(&long).unwrap_err();
        assert!(e.contains("code point size exceeds limit"), "{e}");
        // Nesting up to the limit still parses and type-checks.
        on_small_stack(|| {
            let fine = format!("{}system_disk{}", "(".repeat(248), ")".repeat(248));
            c(&fine).unwrap();
            c(&format!("1{} > 1", " + 1".repeat(200))).unwrap();
            c(&format!("{}system_disk", "!".repeat(240))).unwrap();
        });
    }

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
    fn selectors_evaluate_against_a_disk() {
        use super::{Bindings, Selector, Value};
        let disk = |size: u64, transport: &str, links: &[&str]| -> Bindings {
            let mut m = std::collections::BTreeMap::new();
            m.insert("size".to_string(), Value::Uint(size));
            m.insert("transport".to_string(), Value::String(transport.into()));
            m.insert("rotational".to_string(), Value::Bool(false));
            m.insert(
                "symlinks".to_string(),
                Value::List(links.iter().map(|l| Value::String((*l).into())).collect()),
            );
            Bindings::from([
                ("disk".to_string(), Value::Message(m)),
                ("system_disk".to_string(), Value::Bool(false)),
            ])
        };
        let small = disk(1 << 30, "virtio", &["/dev/disk/by-id/a"]);
        let big = disk(8 << 30, "nvme", &["/dev/disk/by-id/b-part1"]);
        let cases = [
            ("disk.size > 4u * GiB", false, true),
            ("disk.transport == 'nvme' && !system_disk", false, true),
            ("'/dev/disk/by-id/a' in disk.symlinks", true, false),
            ("disk.symlinks.exists(s, s.endsWith('-part1'))", false, true),
            ("size(disk.symlinks) == 1 && !disk.rotational", true, true),
            (
                "disk.size >= 1u * GiB ? disk.transport.startsWith('v') : false",
                true,
                false,
            ),
            ("disk.transport.matches('^(nvme|sata)$')", false, true),
        ];
        for (expr, on_small, on_big) in cases {
            let s = Selector::disk(expr).unwrap();
            assert_eq!(s.matches(&small), Ok(on_small), "{expr} on small");
            assert_eq!(s.matches(&big), Ok(on_big), "{expr} on big");
        }
        let overflow = Selector::disk("disk.size * EiB > 1u").unwrap();
        assert!(overflow.matches(&big).unwrap_err().contains("overflow"));
        let under = Selector::disk("disk.size - 9u * GiB > 0u").unwrap();
        assert!(
            under.matches(&big).unwrap_err().contains("overflow"),
            "uint never goes below 0"
        );
        let div = Selector::disk("disk.size / (disk.size - disk.size) > 0u").unwrap();
        assert!(div.matches(&big).unwrap_err().contains("division by zero"));
        assert!(Selector::disk("disk.size > 1").is_err());
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
