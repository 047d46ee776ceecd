//! # volctl api-types
//!
//! The configuration documents volctl reads — `VolumeConfig` and
//! `UserVolumeConfig` (apiVersion `v1alpha1`, Talos-compatible) — their
//! parsing, validation and JSON Schema. Pure data: this crate does no I/O
//! beyond reading the file it is asked to parse.
//!
//! The entry point is [`parse_str`] (or [`parse_file`]), which returns every
//! valid document and every [`Diagnostic`] of the file at once.

pub mod cel;
pub mod diagnostic;
pub mod document;
pub mod duration;
pub mod encryption;
pub mod keyslot;
pub mod parse;
mod prescan;
pub mod schema;
pub mod secret;
pub mod size;
pub mod system_volume;
pub mod talos;
mod unknown_fields;
pub mod validate;
pub mod volume;
mod yaml_lines;

pub use diagnostic::{Diagnostic, DocumentRef, Severity};
pub use document::{Document, DocumentKind, API_VERSION};
pub use encryption::{
    Encryption, KeyKind, KeySize, KeySource, KeySpec, KmsKey, MemberKey, NodeIdKey, PbkdfSpec,
    PbkdfType, PromptKey, PromptParams, RecoveryKey, ResolvedKey, SignedPcrPolicy, SignedPolicy,
    StaticKey, TangKey, ThresholdKey, TpmKey, TpmOptions,
};
pub use keyslot::KeyslotId;
pub use parse::{parse_file, parse_files, parse_str, ParsedFile};
pub use secret::SecretString;
pub use size::SizeSpec;
pub use system_volume::SystemVolume;
pub use volume::{
    DiskSelector, ExistingMount, ExistingVolumeConfig, Filesystem, FilesystemType, Mount,
    Provisioning, RawOrSwapVolumeConfig, Scrub, SystemFilesystem, Trim, UserVolumeConfig,
    VolumeConfig, VolumeType, XfsOptions,
};
