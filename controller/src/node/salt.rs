//! Reading the STATE salt from a file (until the boot sequence provides it
//! from STATE itself). The file holds 32 raw bytes or their base64; it must
//! be a regular file of ours, not readable by group or others.

use base64::Engine;
use private_file::{read_private, PrivateFileError};
use providers::{StateSalt, STATE_SALT_LEN};
use std::path::Path;
use zeroize::Zeroizing;

/// Why the salt file is unusable. Never includes its content.
#[derive(Debug, thiserror::Error)]
pub enum SaltError {
    /// Not a private regular file, or unreadable.
    #[error("the STATE salt file: {0}")]
    File(#[from] PrivateFileError),
    /// Wrong content.
    #[error("the STATE salt file {path} must hold exactly {STATE_SALT_LEN} bytes, raw or base64")]
    Format {
        /// Path.
        path: String,
    },
}

/// The most a salt file holds: 32 bytes, or their base64 and a newline.
const MAX_SALT_FILE: u64 = 64;

/// Reads the salt file at `path`.
pub fn read_salt_file(path: &Path) -> Result<StateSalt, SaltError> {
    let p = path.display().to_string();
    let raw = read_private(path, MAX_SALT_FILE)?;
    let bytes: Zeroizing<Vec<u8>> = if raw.len() == STATE_SALT_LEN {
        raw
    } else {
        let text = String::from_utf8_lossy(&raw);
        Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .map_err(|_| SaltError::Format { path: p.clone() })?,
        )
    };
    let arr: [u8; STATE_SALT_LEN] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| SaltError::Format { path: p })?;
    Ok(StateSalt::new(arr))
}
