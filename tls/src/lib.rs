//! # volctl tls
//!
//! What volctl's network services share: a hardened listener (TLS 1.3
//! only, handshake deadline, idle timeout, connection cap; [`listener`]),
//! the identity of the peer it accepted ([`listener::PeerInfo`]: its
//! certificate chain, from which [`identity`] reads the role), and
//! certificate generation for `volctl gen` ([`pki`]).

pub mod identity;
pub mod listener;
pub mod pki;
