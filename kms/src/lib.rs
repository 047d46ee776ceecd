//! # volctl kms
//!
//! The network KMS that `kms` keys use: the `sidero.kms.KMSService`
//! protocol (Talos- and Omni-compatible), a client with TLS, timeouts and
//! bounded retries, and `volctl kms-server`: a stateless server that seals
//! with AES-256-GCM under rotating master keys, binding every blob to the
//! node UUID it was sealed for.

pub mod client;
pub mod fleet;
pub mod keyring;
/// The hardened listener, shared with the node API.
pub use tls::listener;
pub mod server;

/// Generated protocol types and gRPC stubs.
#[allow(missing_docs, clippy::all)]
pub mod proto {
    tonic::include_proto!("sidero.kms");
}

/// Generated types and stubs of the admin service.
#[allow(missing_docs, clippy::all)]
pub mod admin_proto {
    tonic::include_proto!("volctl.kms");
}

pub mod admin;
pub mod attest;

#[cfg(feature = "test-pki")]
pub mod test_pki;

#[cfg(feature = "test-etcd")]
pub mod test_etcd;
