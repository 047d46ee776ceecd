//! Every on-disk name and size volctl relies on, named once.

/// LUKS2 token type of every keyslot volctl manages.
pub const TOKEN_TYPE: &str = "volctl";
/// Version of our token layout (see `token.rs`).
pub const TOKEN_VERSION: u32 = 2;
/// HKDF info string for the binding key.
pub const BINDING_INFO: &[u8] = b"volctl keyslot binding v1";
/// HKDF info string for the owner-tag key.
pub const OWNER_INFO: &[u8] = b"volctl token owner v1";
/// LUKS2 token type of volctl's proof that it started a reencryption.
pub const REENCRYPT_TOKEN_TYPE: &str = "volctl-reencrypt";
/// HKDF info string for the reencryption proof key.
pub const REENCRYPT_INFO: &[u8] = b"volctl reencryption v1";

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
/// The smallest size of one LUKS2 header copy.
pub const LUKS2_MIN_HEADER_SIZE: u64 = 16 << 10;
/// The largest size of one LUKS2 header copy.
pub const LUKS2_MAX_HEADER_SIZE: u64 = 4 << 20;
/// The smallest device we format: LUKS2 metadata takes 16 MiB.
pub const MIN_DEVICE_SIZE: u64 = 32 << 20;
/// LUKS2 subsystem label we set at format.
pub const LUKS2_SUBSYSTEM: &str = "volctl";
/// The lowest data offset volctl accepts: past the smallest LUKS2 metadata
/// (two 16 KiB copies) and a keyslot area.
pub const MIN_DATA_OFFSET: u64 = 1 << 20;
/// The data offset of a volume volctl formats (LUKS2's default metadata).
pub const DEFAULT_DATA_OFFSET: u64 = 16 << 20;
/// How much of each end of a device must be zero for it to count as blank.
pub const BLANK_PROBE_LEN: u64 = 1 << 20;
/// The largest keyslot area volctl copies for a read-only unlock.
pub const MAX_HEADER_AREA: u64 = 128 << 20;
/// Written at the start of the last 4 KiB of a device before volctl
/// formats it, cleared once the first keyslots and tokens are written: a
/// device with this mark and no usable header is the remains of volctl's
/// own format (libcryptsetup fills the keyslot area with random bytes before
/// it writes any header), so it is formatted again.
pub const FORMAT_MARK: &[u8] = b"volctl: LUKS2 format in progress\0";
/// Where [`FORMAT_MARK`] sits: this many bytes before the device's end.
pub const FORMAT_MARK_FROM_END: u64 = 4096;
