//! The VM suite's scenarios, one file per concern, on one harness.

pub(crate) mod harness;

mod appliance;
mod boot_cycle;
mod in_place;
mod kms;
mod node_api;
mod provision;
mod rotation;
mod tpm;
