//! The VM suite's scenarios, one file per concern, on one harness.

pub(crate) mod harness;

mod appliance;
mod boot_cycle;
mod debian;
mod in_place;
mod kms;
mod node_api;
mod provision;
mod rotation;
mod threshold;
mod tpm;

/// The suite's configs (files beside its scenarios) are valid, so a VM
/// never boots on a config that fails to parse.
#[test]
fn the_suites_configs_are_valid() {
    for (name, text) in [
        ("configs/node.yaml", harness::CONFIG),
        ("configs/extra-volumes.yaml", harness::EXTRA_VOLUMES),
        ("configs/appliance.yaml", harness::APPLIANCE),
        (
            "tests/vm/debian/config.yaml",
            include_str!("../../../tests/vm/debian/config.yaml"),
        ),
    ] {
        let p = api_types::parse_str(name, text);
        assert!(!p.has_errors(), "{name}: {:?}", p.diagnostics);
        assert!(!p.documents.is_empty(), "{name}");
    }
}
