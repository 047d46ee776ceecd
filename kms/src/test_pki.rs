//! A throw-away PKI for tests: a CA, a server certificate for `localhost`
//! and 127.0.0.1 (plus any other addresses asked for), a node's client
//! certificate and an admin's (Organization `admin`) — all PEM, made fresh
//! per call.

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};

/// PEM material of a test PKI.
pub struct TestPki {
    /// CA certificate.
    pub ca_pem: Vec<u8>,
    /// Server certificate.
    pub server_cert_pem: Vec<u8>,
    /// Server key.
    pub server_key_pem: Vec<u8>,
    /// Client certificate (signed by the same CA).
    pub client_cert_pem: Vec<u8>,
    /// Client key.
    pub client_key_pem: Vec<u8>,
    /// An admin's client certificate (Organization `admin`).
    pub admin_cert_pem: Vec<u8>,
    /// Its key.
    pub admin_key_pem: Vec<u8>,
    /// The CA's key (to sign more client certificates).
    pub ca_key_pem: Vec<u8>,
}

impl TestPki {
    /// Another client certificate and key (PEM), with common name `name`,
    /// signed by the same CA (a simulated node of its own).
    pub fn client(&self, name: &str) -> (Vec<u8>, Vec<u8>) {
        let ca_key = KeyPair::from_pem(&String::from_utf8_lossy(&self.ca_key_pem)).expect("CA key");
        let issuer =
            Issuer::from_ca_cert_pem(&String::from_utf8_lossy(&self.ca_pem), ca_key).expect("CA");
        let key = KeyPair::generate().expect("key");
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
        p.distinguished_name.push(rcgen::DnType::CommonName, name);
        let cert = p.signed_by(&key, &issuer).expect("leaf");
        (cert.pem().into_bytes(), key.serialize_pem().into_bytes())
    }
}

/// Makes a new CA and certificates signed by it.
pub fn generate() -> TestPki {
    generate_for(&[])
}

/// Like [`generate`], with `extra_ips` also named in the server certificate
/// (e.g. the address a VM guest dials).
pub fn generate_for(extra_ips: &[std::net::IpAddr]) -> TestPki {
    let ca_key = KeyPair::generate().expect("key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).expect("CA");
    let issuer = Issuer::new(ca_params, &ca_key);
    let leaf = |names: Vec<String>, ips: &[std::net::IpAddr]| {
        let key = KeyPair::generate().expect("key");
        let mut p = CertificateParams::new(names.clone()).expect("params");
        p.subject_alt_names
            .extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
        if names.first().is_some_and(|n| n == "admin") {
            p.distinguished_name
                .push(rcgen::DnType::CommonName, "admin");
            p.distinguished_name
                .push(rcgen::DnType::OrganizationName, "admin");
        }
        let cert = p.signed_by(&key, &issuer).expect("leaf");
        (cert.pem().into_bytes(), key.serialize_pem().into_bytes())
    };
    let mut server_ips = vec![std::net::IpAddr::from([127, 0, 0, 1])];
    server_ips.extend_from_slice(extra_ips);
    let (server_cert_pem, server_key_pem) = leaf(vec!["localhost".into()], &server_ips);
    let (client_cert_pem, client_key_pem) = leaf(vec!["node".into()], &[]);
    let (admin_cert_pem, admin_key_pem) = leaf(vec!["admin".into()], &[]);
    TestPki {
        ca_key_pem: ca_key.serialize_pem().into_bytes(),
        admin_cert_pem,
        admin_key_pem,
        ca_pem: ca.pem().into_bytes(),
        server_cert_pem,
        server_key_pem,
        client_cert_pem,
        client_key_pem,
    }
}
