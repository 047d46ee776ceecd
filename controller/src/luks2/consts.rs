//! Every on-disk name and size volctl relies on, named once.

/// LUKS2 token type of every keyslot volctl manages.
pub const TOKEN_TYPE: &str = "volctl";
/// Version of our token layout (see `token.rs`).
pub const TOKEN_VERSION: u32 = 1;
/// HKDF info string for the binding key.
pub const BINDING_INFO: &[u8] = b"volctl keyslot binding v1";

/// Magic of a primary LUKS header.
pub const LUKS_MAGIC: &[u8; 6] = b"LUKS\xba\xbe";
/// Magic of a secondary LUKS2 header.
pub const LUKS2_SECONDARY_MAGIC: &[u8; 6] = b"SKUL\xba\xbe";
/// Size of the LUKS2 binary header (before the JSON area).
pub const LUKS2_BINARY_HEADER_SIZE: usize = 4096;
/// Offsets at which a LUKS2 secondary header may start (= the header size).
pub const LUKS2_SECONDARY_OFFSETS: &[u64] = &[
    16 << 10,
    32 << 10,
    64 << 10,
    128 << 10,
    256 << 10,
    512 << 10,
    1 << 20,
    2 << 20,
    4 << 20,
];
/// The smallest device we format: LUKS2 metadata takes 16 MiB.
pub const MIN_DEVICE_SIZE: u64 = 32 << 20;
/// LUKS2 subsystem label we set at format.
pub const LUKS2_SUBSYSTEM: &str = "volctl";
