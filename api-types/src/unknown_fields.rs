//! Finds every unknown field of a document at once, by walking the YAML
//! value along the JSON Schema of its kind (serde stops at the first one),
//! and takes them out, so the rest of the document is still checked.

use serde_json::Value as Json;
use serde_yaml::Value as Yaml;

/// An unknown field: its path and a message listing the allowed fields.
pub struct UnknownField {
    /// Path of the unknown field.
    pub path: String,
    /// Human-readable reason.
    pub message: String,
}

/// Every unknown field of `value` under `schema` (a schemars root schema);
/// each is removed from `value`.
pub fn strip(schema: &Json, value: &mut Yaml) -> Vec<UnknownField> {
    let mut out = Vec::new();
    walk(schema, schema, value, "", &mut out);
    out
}

fn resolve<'a>(root: &'a Json, schema: &'a Json) -> &'a Json {
    match schema.get("$ref").and_then(Json::as_str) {
        Some(r) => r
            .strip_prefix("#/$defs/")
            .and_then(|name| root.get("$defs")?.get(name))
            .map(|s| resolve(root, s))
            .unwrap_or(schema),
        None => schema,
    }
}

/// The first alternative of `schema` (itself, or an `anyOf`/`oneOf` arm)
/// that has the member `key`.
fn with_member<'a>(root: &'a Json, schema: &'a Json, key: &str) -> Option<&'a Json> {
    let s = resolve(root, schema);
    if s.get(key).is_some() {
        return Some(s);
    }
    ["anyOf", "oneOf", "allOf"]
        .iter()
        .filter_map(|k| s.get(*k)?.as_array())
        .flatten()
        .find_map(|alt| with_member(root, alt, key))
}

fn key_string(k: &Yaml) -> String {
    match k {
        Yaml::String(s) => s.clone(),
        other => serde_yaml::to_string(other)
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn walk(root: &Json, schema: &Json, value: &mut Yaml, path: &str, out: &mut Vec<UnknownField>) {
    match value {
        Yaml::Mapping(map) => {
            let Some(obj) = with_member(root, schema, "properties") else {
                return;
            };
            let props = obj["properties"].as_object();
            let closed = obj.get("additionalProperties") == Some(&Json::Bool(false));
            let mut unknown = Vec::new();
            for (k, v) in map.iter_mut() {
                let key = key_string(k);
                let p = join(path, &key);
                match props.and_then(|p| p.get(&key)) {
                    Some(sub) => walk(root, sub, v, &p, out),
                    None if closed => {
                        unknown.push(k.clone());
                        let allowed: Vec<&str> = props
                            .map(|p| p.keys().map(String::as_str).collect())
                            .unwrap_or_default();
                        out.push(UnknownField {
                            path: p,
                            message: format!(
                                "unknown field `{key}`; allowed here: {}",
                                allowed.join(", ")
                            ),
                        });
                    }
                    None => {}
                }
            }
            for k in unknown {
                map.remove(&k);
            }
        }
        Yaml::Sequence(items) => {
            if let Some(arr) = with_member(root, schema, "items") {
                for (i, v) in items.iter_mut().enumerate() {
                    walk(root, &arr["items"], v, &format!("{path}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}
