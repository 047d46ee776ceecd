//! Certificates for the node API (`volctl gen`, and tests): a CA, a node's
//! server certificate with the names and addresses clients dial, and client
//! certificates whose Organization is their role. ECDSA P-256 keys.

use crate::identity::Role;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use std::net::IpAddr;

/// Why a certificate could not be made.
#[derive(Debug, thiserror::Error)]
#[error("cannot make the certificate: {0}")]
pub struct PkiError(String);

fn err(e: impl std::fmt::Display) -> PkiError {
    PkiError(e.to_string())
}

/// A certificate and its private key, PEM (the key is secret: write it 0600).
pub struct Issued {
    /// Certificate, PEM.
    pub cert_pem: String,
    /// Private key, PEM.
    pub key_pem: String,
    /// Certificate, DER.
    pub der: Vec<u8>,
}

/// A certificate authority.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate, PEM.
    pub cert_pem: String,
}

impl Ca {
    /// A new CA named `name`, valid ten years.
    pub fn new(name: &str) -> Result<Ca, PkiError> {
        let key = KeyPair::generate().map_err(err)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
        params.distinguished_name = dn(name, None);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_after = years_from_now(10);
        let cert = params.self_signed(&key).map_err(err)?;
        Ok(Ca {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// A CA from its certificate and key (PEM), as `volctl gen` wrote them.
    pub fn load(cert_pem: &str, key_pem: &str) -> Result<Ca, PkiError> {
        let key = KeyPair::from_pem(key_pem).map_err(err)?;
        Ok(Ca {
            issuer: Issuer::from_ca_cert_pem(cert_pem, key).map_err(err)?,
            cert_pem: cert_pem.to_string(),
        })
    }

    /// The CA's private key, PEM (secret).
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// A node's server certificate for `names` and `ips`, valid `years`.
    pub fn server(&self, names: &[String], ips: &[IpAddr], years: i32) -> Result<Issued, PkiError> {
        let mut p = CertificateParams::new(names.to_vec()).map_err(err)?;
        p.subject_alt_names
            .extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
        p.distinguished_name = dn(names.first().map_or("volctl node", String::as_str), None);
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        p.not_after = years_from_now(years);
        self.sign(p)
    }

    /// A client certificate for `name` with `role` as its Organization.
    /// `years` may be negative: an expired certificate, for tests.
    pub fn client(&self, name: &str, role: Role, years: i32) -> Result<Issued, PkiError> {
        let mut p = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
        p.distinguished_name = dn(name, Some(role.name()));
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        if years < 0 {
            p.not_before = years_from_now(years - 1);
        }
        p.not_after = years_from_now(years);
        self.sign(p)
    }

    fn sign(&self, p: CertificateParams) -> Result<Issued, PkiError> {
        let key = KeyPair::generate().map_err(err)?;
        let cert = p.signed_by(&key, &self.issuer).map_err(err)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        })
    }
}

/// A self-signed server certificate (maintenance mode: clients pin its
/// fingerprint instead of trusting a CA).
pub fn self_signed_server(names: &[String], ips: &[IpAddr]) -> Result<Issued, PkiError> {
    let key = KeyPair::generate().map_err(err)?;
    let mut p = CertificateParams::new(names.to_vec()).map_err(err)?;
    p.subject_alt_names
        .extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
    p.distinguished_name = dn("volctl maintenance", None);
    let cert = p.self_signed(&key).map_err(err)?;
    Ok(Issued {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        der: cert.der().to_vec(),
    })
}

fn dn(cn: &str, org: Option<&str>) -> DistinguishedName {
    let mut d = DistinguishedName::new();
    d.push(DnType::CommonName, cn);
    if let Some(o) = org {
        d.push(DnType::OrganizationName, o);
    }
    d
}

fn years_from_now(years: i32) -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc() + time::Duration::days(365 * i64::from(years))
}
