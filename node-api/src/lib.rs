//! # volctl node API
//!
//! The `volctl.node.v1.Node` gRPC protocol a node's `volctl serve` speaks,
//! who may call what ([`auth`]: client certificates carry a role; an API
//! key stands for the admin), and the client behind `volctl -n NODE`
//! ([`client`], configured by [`config`]). The handlers that act on the
//! node live with the controller.

pub mod auth;
pub mod client;
pub mod config;

/// Generated protocol types and gRPC stubs.
#[allow(missing_docs, clippy::all)]
pub mod proto {
    tonic::include_proto!("volctl.node.v1");
}

/// The port `volctl serve` listens on by default (Talos's apid port).
pub const DEFAULT_PORT: u16 = 50000;
/// The largest request accepted (configs are small).
pub const MAX_REQUEST: usize = 1 << 20;
