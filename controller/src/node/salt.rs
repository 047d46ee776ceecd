//! Reading the STATE salt from a file (until the boot sequence provides it
//! from STATE itself). The file holds 32 raw bytes or their base64, and
//! must not be readable by group or others.

use base64::Engine;
use providers::{StateSalt, STATE_SALT_LEN};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use zeroize::Zeroizing;

/// Why the salt file is unusable. Never includes its content.
#[derive(Debug, thiserror::Error)]
pub enum SaltError {
    /// I/O error.
    #[error("cannot read the STATE salt file {path}: {reason}")]
    Read {
        /// Path.
        path: String,
        /// Why.
        reason: String,
    },
    /// Mode too open.
    #[error("the STATE salt file {path} has mode {mode:o}; it must not be readable by group or others (chmod 600)")]
    Permissions {
        /// Path.
        path: String,
        /// Mode bits.
        mode: u32,
    },
    /// Wrong content.
    #[error("the STATE salt file {path} must hold exactly {STATE_SALT_LEN} bytes, raw or base64")]
    Format {
        /// Path.
        path: String,
    },
}

/// Reads the salt file at `path`.
pub fn read_salt_file(path: &Path) -> Result<StateSalt, SaltError> {
    let p = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|e| SaltError::Read {
        path: p.clone(),
        reason: e.to_string(),
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(SaltError::Permissions { path: p, mode });
    }
    let raw = Zeroizing::new(std::fs::read(path).map_err(|e| SaltError::Read {
        path: p.clone(),
        reason: e.to_string(),
    })?);
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
