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
    if matches!(doc, Document::Volume(_)) && doc.volume_type() == crate::volume::VolumeType::Memory
    {
        out.push((
            "volumeType".into(),
            "`memory` is only proposed for VolumeConfig (Talos PR #12631, not merged); Talos refuses it today".into(),
        ));
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
    if e.allow_discards.is_some() {
        out.push((
            "encryption.allowDiscards".into(),
            "a Talos field since v1.14; Talos before 1.14 refuses the document".into(),
        ));
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
    if k.threshold.is_some() {
        out.push((
            format!("{path}.threshold"),
            "threshold keys are volctl's; Talos refuses them (Talos #11542 asked for one)".into(),
        ));
    }
    if k.tang.is_some() {
        out.push((
            format!("{path}.tang"),
            "tang keys are volctl's; Talos refuses them (Talos #9097 closed it as not planned)"
                .into(),
        ));
    }
    if let Some(kms) = &k.kms {
        if !kms.endpoints.is_empty() {
            out.push((
                format!("{path}.kms.endpoints"),
                "replicas raced are volctl's; Talos takes one `endpoint`".into(),
            ));
        }
        if kms.timeout.is_some() {
            out.push((
                format!("{path}.kms.timeout"),
                "Talos does not know this field and refuses the document".into(),
            ));
        }
        if kms.attest {
            out.push((
                format!("{path}.kms.attest"),
                "attested release is volctl's; Talos does not know this field and refuses the document".into(),
            ));
        }
    }
    if k.tpm.as_ref().is_some_and(|t| t.auto_reseal.is_some()) {
        out.push((
            format!("{path}.tpm.autoReseal"),
            "Talos does not know this field and refuses the document".into(),
        ));
    }
    if k.tpm.as_ref().is_some_and(|t| t.pin.is_some()) {
        out.push((
            format!("{path}.tpm.pin"),
            "volctl's: Talos has no TPM PIN and refuses the document".into(),
        ));
    }
    if k.tpm.as_ref().is_some_and(|t| t.signed_policy.is_some()) {
        out.push((
            format!("{path}.tpm.signedPolicy"),
            "volctl's: Talos binds a UKI's signed PCR 11 policy by itself, with no field for it, and refuses the document".into(),
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
    fn a_threshold_key_is_named_volctl_s_with_its_line() {
        let y = "apiVersion: v1alpha1\nkind: VolumeConfig\nname: EPHEMERAL\nencryption:\n  provider: luks2\n  keys:\n    - slot: 0\n      threshold:\n        required: 1\n        keys:\n          - nodeID: {}\n";
        let p = parse_str("t.yaml", y);
        assert!(!p.has_errors(), "{:?}", p.diagnostics);
        let named: Vec<(&str, Option<usize>)> = p
            .extensions
            .iter()
            .map(|d| (d.path.as_str(), d.line))
            .collect();
        assert_eq!(named, [("encryption.keys[0].threshold", Some(8))]);
        assert!(p.extensions[0].to_string().contains("Talos refuses them"));
    }

    #[test]
    fn a_tpm_pin_is_named_volctl_s() {
        let y = "apiVersion: v1alpha1\nkind: VolumeConfig\nname: EPHEMERAL\nencryption:\n  provider: luks2\n  keys:\n    - slot: 0\n      tpm:\n        pin: true\n";
        let p = parse_str("p.yaml", y);
        assert!(!p.has_errors(), "{:?}", p.diagnostics);
        assert_eq!(p.extensions[0].path, "encryption.keys[0].tpm.pin");
        assert!(p.extensions[0].to_string().contains("Talos has no TPM PIN"));
    }

    #[test]
    fn a_signed_pcr_policy_is_named_volctl_s_with_its_line() {
        let y = "apiVersion: v1alpha1\nkind: VolumeConfig\nname: EPHEMERAL\nencryption:\n  provider: luks2\n  keys:\n    - slot: 0\n      tpm:\n        signedPolicy: {}\n";
        let p = parse_str("s.yaml", y);
        assert!(!p.has_errors(), "{:?}", p.diagnostics);
        assert_eq!(p.extensions.len(), 1, "{:?}", p.extensions);
        assert_eq!(p.extensions[0].path, "encryption.keys[0].tpm.signedPolicy");
        assert_eq!(p.extensions[0].line, Some(9));
        assert!(p.extensions[0]
            .to_string()
            .contains("Talos binds a UKI's signed PCR 11 policy by itself"));
    }

    #[test]
    fn decrypt_in_place_is_volctl_s_and_refused_with_in_place_or_on_state() {
        let doc = |name: &str, extra: &str| {
            format!("apiVersion: v1alpha1\nkind: VolumeConfig\nname: {name}\nencryption:\n  provider: luks2\n  decryptInPlace: true\n{extra}  keys:\n    - slot: 0\n      nodeID: {{}}\n")
        };
        let ok = parse_str("d.yaml", &doc("EPHEMERAL", ""));
        assert!(!ok.has_errors(), "{:?}", ok.diagnostics);
        assert_eq!(ok.extensions[0].path, "encryption.decryptInPlace");
        let both = parse_str("b.yaml", &doc("EPHEMERAL", "  inPlace: true\n"));
        assert!(
            both.diagnostics.iter().any(
                |d| d.message == "decryptInPlace and inPlace ask for opposite things; keep one"
            ),
            "{:?}",
            both.diagnostics
        );
        let state = parse_str("s.yaml", &doc("STATE", ""));
        assert!(
            state
                .diagnostics
                .iter()
                .any(|d| d.path == "encryption.decryptInPlace"
                    && d.message.starts_with("STATE is not decrypted in place")),
            "{:?}",
            state.diagnostics
        );
    }

    #[test]
    fn a_field_of_talos_1_14_and_a_proposed_volume_type_are_named() {
        let y = "apiVersion: v1alpha1\nkind: VolumeConfig\nname: EPHEMERAL\nvolumeType: memory\nprovisioning:\n  minSize: 1GiB\n---\napiVersion: v1alpha1\nkind: UserVolumeConfig\nname: data\nprovisioning:\n  diskSelector:\n    match: system_disk\n  minSize: 1GiB\nencryption:\n  provider: luks2\n  allowDiscards: true\n  keys:\n    - slot: 0\n      nodeID: {}\n";
        let p = parse_str("m.yaml", y);
        assert!(!p.has_errors(), "{:?}", p.diagnostics);
        let named: Vec<String> = p
            .extensions
            .iter()
            .map(|d| format!("{}: {}", d.path, d.message))
            .collect();
        assert!(
            named
                .iter()
                .any(|n| n.starts_with("volumeType: `memory` is only proposed")
                    && n.contains("#12631")),
            "{named:?}"
        );
        assert!(named.iter().any(|n| n == "encryption.allowDiscards: a Talos field since v1.14; Talos before 1.14 refuses the document"), "{named:?}");
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
