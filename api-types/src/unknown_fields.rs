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
            let allowed: Vec<&str> = props
                .map(|p| p.keys().map(String::as_str).collect())
                .unwrap_or_default();
            let mut unknown = Vec::new();
            for (k, v) in map.iter_mut() {
                let key = key_string(k);
                let p = join(path, &key);
                match props.and_then(|p| p.get(&key)) {
                    Some(sub) => walk(root, sub, v, &p, out),
                    None if closed => unknown.push((k.clone(), key, p)),
                    None => {}
                }
            }
            for (k, key, p) in unknown {
                let taken = |name: &str| map.contains_key(name);
                let guess = nearest(&key, &allowed).filter(|g| !taken(g));
                out.push(UnknownField {
                    path: p.clone(),
                    message: match guess {
                        Some(g) => format!("unknown field `{key}`, did you mean `{g}`?"),
                        None => format!(
                            "unknown field `{key}`; allowed here: {}",
                            allowed.join(", ")
                        ),
                    },
                });
                let Some(mut v) = map.remove(&k) else {
                    continue;
                };
                // Read on as if spelled right, so the typo is one error,
                // not a `missing field` and whatever follows from it too.
                if let (Some(g), Some(sub)) = (guess, guess.and_then(|g| props?.get(g))) {
                    walk(root, sub, &mut v, &p, out);
                    map.insert(Yaml::String(g.to_string()), v);
                }
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

/// The allowed name `key` is most likely a typo of: at most two edits
/// away (one for names of four letters or fewer), and the only one so near.
fn nearest<'a>(key: &str, allowed: &[&'a str]) -> Option<&'a str> {
    let limit = if key.chars().count() <= 4 { 1 } else { 2 };
    let mut near = allowed
        .iter()
        .map(|a| (edits(&key.to_lowercase(), &a.to_lowercase()), *a))
        .filter(|(d, _)| *d <= limit);
    let first = near.next()?;
    let best = near.fold(first, |b, c| if c.0 < b.0 { c } else { b });
    let ties = allowed
        .iter()
        .filter(|a| edits(&key.to_lowercase(), &a.to_lowercase()) == best.0)
        .count();
    (ties == 1).then_some(best.1)
}

/// Levenshtein distance (insertions, deletions, substitutions).
fn edits(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            let next = (row[j + 1] + 1).min(row[j] + 1).min(prev + cost);
            prev = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::{edits, nearest};

    #[test]
    fn a_typo_is_matched_to_the_one_name_near_it() {
        assert_eq!(edits("passprase", "passphrase"), 1);
        let keys = ["passphrase", "slot", "nodeID", "lockToState"];
        assert_eq!(nearest("passprase", &keys), Some("passphrase"));
        assert_eq!(nearest("lockToSTATE", &keys), Some("lockToState"));
        assert_eq!(nearest("slt", &keys), Some("slot"));
        assert_eq!(
            nearest("solt", &keys),
            None,
            "a short name takes one edit at most"
        );
        assert_eq!(nearest("bogus", &keys), None);
        assert_eq!(nearest("ab", &["ac", "ad"]), None, "two as near: no guess");
    }
}
