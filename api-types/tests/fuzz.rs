//! No input panics the parser: random YAML-ish text and random mutations of
//! a valid document.

use proptest::prelude::*;

const VALID: &str = "apiVersion: v1alpha1\nkind: VolumeConfig\nname: EPHEMERAL\nprovisioning:\n  maxSize: 80%\nencryption:\n  provider: luks2\n  keys:\n    - slot: 0\n      tpm:\n        options:\n          pcrs: [7]\n      lockToSTATE: true\n    - slot: 1\n      static: {passphrase: x}\n---\napiVersion: v1alpha1\nkind: UserVolumeConfig\nname: data\nfilesystem: {type: xfs}\n";

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_text_never_panics(s in "[ -~\\n\\t]{0,400}") {
        let _ = api_types::parse_str("fuzz.yaml", &s);
    }

    #[test]
    fn mutated_valid_document_never_panics(pos in 0usize..VALID.len(), len in 0usize..8, ins in "[ -~\\n]{0,6}") {
        let mut s = VALID.to_string();
        let end = (pos + len).min(s.len());
        s.replace_range(pos..end, &ins);
        let p = api_types::parse_str("fuzz.yaml", &s);
        for d in &p.diagnostics {
            prop_assert!(!d.message.is_empty());
        }
    }
}
