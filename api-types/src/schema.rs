//! JSON Schema for each document kind, generated from the Rust types, so
//! editors can validate and complete configs.

use crate::document::DocumentKind;
use crate::volume::{ExistingVolumeConfig, RawOrSwapVolumeConfig, UserVolumeConfig, VolumeConfig};
use serde_json::Value;

/// The JSON Schema (draft 2020-12) of one document kind.
pub fn for_kind(kind: DocumentKind) -> Value {
    let mut schema = match kind {
        DocumentKind::VolumeConfig => schemars::schema_for!(VolumeConfig),
        DocumentKind::UserVolumeConfig => schemars::schema_for!(UserVolumeConfig),
        DocumentKind::RawVolumeConfig | DocumentKind::SwapVolumeConfig => {
            schemars::schema_for!(RawOrSwapVolumeConfig)
        }
        DocumentKind::ExistingVolumeConfig => schemars::schema_for!(ExistingVolumeConfig),
    }
    .to_value();
    // Pin apiVersion and kind, so an editor offers the right values.
    if let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) {
        props.insert(
            "apiVersion".into(),
            serde_json::json!({"const": crate::document::API_VERSION, "description": "Always v1alpha1."}),
        );
        props.insert(
            "kind".into(),
            serde_json::json!({"const": kind.as_str(), "description": format!("Always {kind}.")}),
        );
    }
    schema
}

/// One schema accepting a document of any kind (`oneOf` over the kinds).
pub fn for_all_kinds() -> Value {
    // `$ref`s point at the root's `$defs`, so hoist each arm's definitions
    // (the kinds share their types, so names agree).
    let mut defs = serde_json::Map::new();
    let mut arms = Vec::new();
    for kind in DocumentKind::ALL {
        let mut arm = for_kind(kind);
        if let Some(obj) = arm.as_object_mut() {
            obj.remove("$schema");
            if let Some(Value::Object(d)) = obj.remove("$defs") {
                defs.extend(d);
            }
        }
        arms.push(arm);
    }
    serde_json::json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "volctl document",
        "oneOf": arms,
        "$defs": defs,
    })
}
