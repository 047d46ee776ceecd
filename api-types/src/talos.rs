//! Where a valid document leaves what Talos reads: every volctl extension
//! it uses, so a user knows whether the file also runs on a Talos node
//! (`volctl validate --talos`).

use crate::document::Document;
use crate::encryption::{Encryption, KeySpec};

/// Each volctl extension `doc` uses: (field path, what Talos does with it).
pub fn extensions(doc: &Document) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Document::Volume(v) = doc {
        if v.name == "persistence" {
            out.push((
                "name".into(),
                "the `persistence` system volume is volctl's; Talos refuses this name".into(),
            ));
        }
    }
    if doc.mount().is_some_and(|m| m.path.is_some()) {
        out.push((
            "mount.path".into(),
            "Talos mounts volumes at fixed places and does not read mount.path".into(),
        ));
    }
    if let Some(e) = doc.encryption_block() {
        encryption_extensions(e, &mut out);
    }
    out
}

fn encryption_extensions(e: &Encryption, out: &mut Vec<(String, String)>) {
    let unknown = "Talos does not know this field and refuses the document";
    for (set, field) in [
        (e.pbkdf.is_some(), "pbkdf"),
        (e.allow_discards.is_some(), "allowDiscards"),
        (e.in_place.is_some(), "inPlace"),
        (e.decrypt_in_place.is_some(), "decryptInPlace"),
        (
            e.allow_static_key_on_state.is_some(),
            "allowStaticKeyOnState",
        ),
    ] {
        if set {
            out.push((format!("encryption.{field}"), unknown.into()));
        }
    }
    for (i, k) in e.keys.iter().enumerate() {
        key_extensions(k, &format!("encryption.keys[{i}]"), out);
    }
}

fn key_extensions(k: &KeySpec, path: &str, out: &mut Vec<(String, String)>) {
    if k.lock_to_state.is_some() {
        out.push((
            format!("{path}.lockToSTATE"),
            "Talos spells it lockToState".into(),
        ));
    }
    if k.recovery.is_some() {
        out.push((
            format!("{path}.recovery"),
            "recovery keys are volctl's (the spelling a Talos proposal uses); Talos refuses them today".into(),
        ));
    }
    if k.prompt.is_some() {
        out.push((
            format!("{path}.prompt"),
            "prompt keys are volctl's; Talos refuses them (it has no key typed at boot)".into(),
        ));
    }
    if k.tpm.as_ref().is_some_and(|t| t.auto_reseal.is_some()) {
        out.push((
            format!("{path}.tpm.autoReseal"),
            "Talos does not know this field and refuses the document".into(),
        ));
    }
    if k.tpm.as_ref().is_some_and(|t| t.pcrs.is_some()) {
        out.push((
            format!("{path}.tpm.pcrs"),
            "Talos reads PCRs from tpm.options.pcrs".into(),
        ));
    }
}

#[cfg(test)]
mod tests {
    use crate::parse_str;

    #[test]
    fn every_extension_is_named_with_its_line() {
        let y = "apiVersion: v1alpha1\nkind: VolumeConfig\nname: persistence\nmount:\n  path: /data\nencryption:\n  provider: luks2\n  pbkdf: {type: pbkdf2, iterations: 1000}\n  keys:\n    - slot: 0\n      tpm:\n        pcrs: [7]\n      lockToSTATE: true\n";
        let p = parse_str("x.yaml", y);
        assert!(!p.has_errors(), "{:?}", p.diagnostics);
        let paths: Vec<(&str, Option<usize>)> = p
            .extensions
            .iter()
            .map(|d| (d.path.as_str(), d.line))
            .collect();
        assert_eq!(
            paths,
            [
                ("name", Some(3)),
                ("mount.path", Some(5)),
                ("encryption.pbkdf", Some(8)),
                ("encryption.keys[0].lockToSTATE", Some(13)),
                ("encryption.keys[0].tpm.pcrs", Some(12)),
            ]
        );
        assert!(p.extensions[0]
            .to_string()
            .contains("x.yaml:3: volctl-only:"));
    }

    #[test]
    fn a_talos_document_uses_no_extension() {
        let y = "apiVersion: v1alpha1\nkind: VolumeConfig\nname: EPHEMERAL\nencryption:\n  provider: luks2\n  keys:\n    - slot: 0\n      tpm:\n        options:\n          pcrs: [7]\n      lockToState: true\n";
        let p = parse_str("t.yaml", y);
        assert!(
            !p.has_errors() && p.extensions.is_empty(),
            "{:?}",
            p.extensions
        );
    }
}
