//! Who a client is: its role, carried in its certificate's Organization
//! (`O=admin`, `O=reader`), as Talos carries `os:admin`/`os:reader`; and
//! certificate fingerprints, for pinning a node's self-signed certificate.

use sha2::{Digest, Sha256};

/// What a caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Read status, plans and the version.
    Reader,
    /// Everything: apply configs, reset, reboot, unlock.
    Admin,
}

impl Role {
    /// The Organization value that grants it.
    pub fn name(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Admin => "admin",
        }
    }

    /// The role an Organization value grants.
    pub fn from_name(name: &str) -> Option<Role> {
        [Role::Admin, Role::Reader]
            .into_iter()
            .find(|r| r.name() == name)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The highest role the certificate's Organization values grant; `None`
/// when it names no role (or cannot be parsed).
pub fn role_of(cert_der: &[u8]) -> Option<Role> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).ok()?;
    cert.subject()
        .iter_organization()
        .filter_map(|o| o.as_str().ok())
        .filter_map(Role::from_name)
        .max()
}

/// The certificate's subject common name, for log lines: control
/// characters (a newline, ESC) escaped, so that a name cannot forge or
/// colour a line of the node's log, and at most 128 characters.
pub fn common_name(cert_der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(printable)
}

/// The certificate's issuer common name (printable, as [`common_name`]).
pub fn issuer_name(cert_der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).ok()?;
    let cn = cert.issuer().iter_common_name().next()?;
    cn.as_str().ok().map(printable)
}

/// When the certificate stops being valid (`None`: it cannot be parsed).
pub fn not_after(cert_der: &[u8]) -> Option<time::OffsetDateTime> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).ok()?;
    Some(cert.validity().not_after.to_datetime())
}

/// The day the certificate stops being valid (`2027-12-05`), `?` when it
/// cannot be parsed.
pub fn valid_until(cert_der: &[u8]) -> String {
    not_after(cert_der).map_or_else(|| "?".into(), |t| t.date().to_string())
}

/// Days before an expiry the client warns.
pub const EXPIRY_WARNING_DAYS: i64 = 30;

/// A warning when the certificate (`whose`: "the node's", "this client's")
/// expires within [`EXPIRY_WARNING_DAYS`] of `now`, or has expired.
pub fn expiry_warning(whose: &str, cert_der: &[u8], now: time::OffsetDateTime) -> Option<String> {
    let until = not_after(cert_der)?;
    let left = (until - now).whole_days();
    let renew = "reissue it from the same CA with `volctl gen --renew` (docs/remote.md)";
    if until <= now {
        Some(format!(
            "{whose} certificate expired on {}; {renew}",
            until.date()
        ))
    } else if left < EXPIRY_WARNING_DAYS {
        Some(format!(
            "{whose} certificate expires on {} (in {left} days); {renew}",
            until.date()
        ))
    } else {
        None
    }
}

/// `s` with control characters escaped (`\n`, `\u{1b}`), cut to 128
/// characters.
pub fn printable(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars().take(128) {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// SHA-256 of the certificate (DER), lower-case hex.
pub fn fingerprint(cert_der: &[u8]) -> String {
    hex::encode(Sha256::digest(cert_der))
}

/// A fingerprint as people write it (upper or lower case, with or without
/// colons, an optional `sha256:` prefix), normalised; `None` if it is not
/// 32 bytes of hex.
pub fn normalise_fingerprint(text: &str) -> Option<String> {
    let t = text.trim();
    let t = t
        .strip_prefix("sha256:")
        .or_else(|| t.strip_prefix("SHA256:"))
        .unwrap_or(t);
    let hexits: String = t
        .chars()
        .filter(|c| *c != ':')
        .collect::<String>()
        .to_ascii_lowercase();
    (hexits.len() == 64 && hexits.chars().all(|c| c.is_ascii_hexdigit())).then_some(hexits)
}

#[cfg(test)]
mod expiry_tests {
    use super::{expiry_warning, not_after};
    use crate::identity::Role;
    use crate::pki::Ca;
    use time::Duration;

    #[test]
    fn a_certificate_is_warned_of_within_30_days_and_once_expired() {
        let ca = Ca::new("volctl CA test").unwrap();
        let c = ca.client("admin", Role::Admin, 1).unwrap();
        let until = not_after(&c.der).unwrap();
        assert_eq!(
            expiry_warning("x's", &c.der, until - Duration::days(100)),
            None
        );
        let soon = expiry_warning("the node's", &c.der, until - Duration::days(10)).unwrap();
        assert!(
            soon.starts_with("the node's certificate expires on"),
            "{soon}"
        );
        assert!(
            soon.contains("(in 10 days)") && soon.contains("volctl gen --renew"),
            "{soon}"
        );
        let gone = expiry_warning("this client's", &c.der, until + Duration::days(1)).unwrap();
        assert!(gone.contains("expired on"), "{gone}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_come_from_the_organization() {
        let ca = crate::pki::Ca::new("test CA").unwrap();
        let admin = ca.client("alice", Role::Admin, 1).unwrap();
        let reader = ca.client("bob", Role::Reader, 1).unwrap();
        assert_eq!(role_of(&admin.der), Some(Role::Admin));
        assert_eq!(role_of(&reader.der), Some(Role::Reader));
        assert_eq!(common_name(&admin.der).as_deref(), Some("alice"));
        let server = ca.server(&["node1".into()], &[], 1).unwrap();
        assert_eq!(role_of(&server.der), None);
    }

    #[test]
    fn fingerprints_are_read_in_any_usual_spelling() {
        let f = fingerprint(b"x");
        let colons = f
            .as_bytes()
            .chunks(2)
            .map(|c| std::str::from_utf8(c).unwrap().to_uppercase())
            .collect::<Vec<_>>()
            .join(":");
        assert_eq!(normalise_fingerprint(&colons).as_deref(), Some(f.as_str()));
        assert_eq!(
            normalise_fingerprint(&format!("sha256:{f}")),
            Some(f.clone())
        );
        assert_eq!(normalise_fingerprint("abcd"), None);
    }

    #[test]
    fn a_name_cannot_forge_or_colour_a_log_line() {
        assert_eq!(
            printable("eve\n2026-12-04 INFO admin alice applied\u{1b}[31m"),
            "eve\\n2026-12-04 INFO admin alice applied\\u{1b}[31m"
        );
        assert_eq!(printable(&"x".repeat(500)).len(), 128);
        assert_eq!(printable("Zoë"), "Zoë");
    }
}
