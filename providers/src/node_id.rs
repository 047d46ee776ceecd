//! `nodeID`: a key derived from the machine's SMBIOS UUID and the volume's
//! partition label, as Talos derives it (UUID string as read, then label).

use crate::KeyData;
use crate::{Enrolled, KeyContext, KeyProvider, Passphrase, ProviderError};
use async_trait::async_trait;
use std::collections::HashMap;
use std::path::Path;

/// Where Linux exposes the SMBIOS system UUID.
pub const SMBIOS_UUID_PATH: &str = "/sys/class/dmi/id/product_uuid";
/// Environment variable that overrides the node UUID (tests, images).
pub const NODE_UUID_ENV: &str = "VOLCTL_NODE_UUID";

/// Reads the node UUID: `override_uuid` if given, else the SMBIOS file.
/// The letter case is kept as read, because the key is derived from the
/// string. Refuses low-entropy UUIDs.
pub fn read_node_uuid(
    override_uuid: Option<&str>,
    smbios_path: &Path,
) -> Result<String, ProviderError> {
    let uuid = match override_uuid {
        Some(u) => u.trim().to_string(),
        None => std::fs::read_to_string(smbios_path)
            .map_err(|e| ProviderError::NodeUuidUnavailable {
                source_name: smbios_path.display().to_string(),
                reason: e.to_string(),
            })?
            .trim()
            .to_string(),
    };
    if uuid.is_empty() {
        return Err(ProviderError::NodeUuidUnavailable {
            source_name: smbios_path.display().to_string(),
            reason: "it is empty".into(),
        });
    }
    check_uuid_entropy(&uuid)?;
    Ok(uuid)
}

/// Refuses a UUID in which one character fills more than half of it, such
/// as `00000000-0000-0000-0000-000000000000` or `ffffffff-…`, which vendors
/// ship on boards without a real UUID (Talos makes the same check).
pub fn check_uuid_entropy(uuid: &str) -> Result<(), ProviderError> {
    let mut counts: HashMap<char, usize> = HashMap::new();
    for c in uuid.chars() {
        *counts.entry(c.to_ascii_lowercase()).or_default() += 1;
    }
    let most = counts.values().copied().max().unwrap_or(0);
    if most * 2 > uuid.chars().count() {
        return Err(ProviderError::LowEntropyUuid {
            uuid: uuid.to_string(),
        });
    }
    Ok(())
}

/// The node UUID that nodeID and kms keys use, or why it is unknown.
pub type NodeUuid = Result<String, UnknownNodeUuid>;

/// Why the node UUID is unknown: the error of reading it, kept (shared, so
/// the provider environment stays cheap to clone).
#[derive(Debug, Clone, thiserror::Error)]
#[error(transparent)]
pub struct UnknownNodeUuid(pub std::sync::Arc<ProviderError>);

/// [`read_node_uuid`], as the provider environment holds it.
pub fn node_uuid(override_uuid: Option<&str>, smbios_path: &Path) -> NodeUuid {
    read_node_uuid(override_uuid, smbios_path).map_err(|e| UnknownNodeUuid(e.into()))
}

/// Derives keys from the node UUID.
pub struct NodeIdProvider {
    node_uuid: NodeUuid,
}

impl NodeIdProvider {
    /// A provider for a node UUID already read (or the reason it could not be).
    pub fn new(node_uuid: NodeUuid) -> Self {
        NodeIdProvider { node_uuid }
    }

    fn derive(&self, ctx: &KeyContext) -> Result<Passphrase, ProviderError> {
        let uuid = self
            .node_uuid
            .as_ref()
            .map_err(|reason| ProviderError::Unavailable {
                kind: api_types::KeySource::NodeId,
                reason: reason.to_string(),
            })?;
        Ok(Passphrase::new(
            format!("{uuid}{}", ctx.volume_id).into_bytes(),
        ))
    }
}

#[async_trait]
impl KeyProvider for NodeIdProvider {
    fn kind(&self) -> api_types::KeySource {
        api_types::KeySource::NodeId
    }
    async fn enroll(&self, ctx: &KeyContext) -> Result<Enrolled, ProviderError> {
        Ok(Enrolled {
            passphrase: self.derive(ctx)?,
            token_data: KeyData::Nothing,
        })
    }
    async fn recover(
        &self,
        ctx: &KeyContext,
        _token_data: &KeyData,
    ) -> Result<Passphrase, ProviderError> {
        self.derive(ctx)
    }
    fn binding_material(&self, ctx: &KeyContext) -> Result<Passphrase, ProviderError> {
        let mut m = Passphrase::new(b"nodeID\0".to_vec());
        m.append(self.derive(ctx)?.expose());
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entropy_check_refuses_vendor_placeholder_uuids() {
        assert!(check_uuid_entropy("00000000-0000-0000-0000-000000000000").is_err());
        assert!(check_uuid_entropy("FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF").is_err());
        assert!(check_uuid_entropy("03000200-0400-0500-0006-000700080009").is_err());
        assert!(check_uuid_entropy("4c4c4544-0038-5910-8057-b4c04f4d3732").is_ok());
    }

    #[test]
    fn derivation_is_uuid_then_label_and_keeps_case() {
        let p = NodeIdProvider::new(Ok("4C4C4544-0038-5910-8057-B4C04F4D3732".into()));
        let ctx = KeyContext {
            volume_id: "STATE".into(),
        };
        assert_eq!(
            p.derive(&ctx).unwrap().expose(),
            b"4C4C4544-0038-5910-8057-B4C04F4D3732STATE"
        );
    }

    #[test]
    fn override_wins_and_missing_file_is_a_clear_error() {
        let missing = Path::new("/nonexistent/product_uuid");
        assert_eq!(
            read_node_uuid(Some(" 4c4c4544-0038-5910-8057-b4c04f4d3732\n"), missing).unwrap(),
            "4c4c4544-0038-5910-8057-b4c04f4d3732"
        );
        let e = read_node_uuid(None, missing).unwrap_err().to_string();
        assert!(
            e.contains("/nonexistent/product_uuid") && e.contains("VOLCTL_NODE_UUID"),
            "{e}"
        );
    }
}
