//! KMS keys reached over the guest network.

use super::harness::*;
use crate::common;

#[test]
#[ignore = "VM suite: run with `make e2e`"]
fn kms_key_opens_ephemeral_over_the_guest_network() {
    let mut vm = Vm::new("kms", LAYOUT);
    let pki = kms::test_pki::generate_for(&[std::net::IpAddr::from([10, 0, 2, 100])]);
    let kms_dir = vm.dir.join("kms");
    std::fs::create_dir_all(&kms_dir).unwrap();
    vm.write("ca.pem", std::str::from_utf8(&pki.ca_pem).unwrap());
    vm.write(
        "config.yaml",
        &config_with_ephemeral(&[&format!(
            "{{slot: 0, kms: {{endpoint: 'https://{GUEST_KMS}'}}}}"
        )]),
    );
    let args = "--kms-ca-file /job/ca.pem";

    // First boot: EPHEMERAL formatted with a key sealed by the KMS.
    let server = common::KmsServer::start(&kms_dir, &pki);
    with_kms(&mut vm, server.port);
    let b = vm.boot_with(
        GUEST_NET,
        &format!("-f /job/config.yaml {args}"),
        "echo kms-data > /var/f",
    );
    assert!(b.all_ready(), "{}", b.log);
    assert_eq!(b.volume("EPHEMERAL")["created"], true);
    assert_eq!(vm.header("EPHEMERAL").1, vec![0]);

    // Second boot (config from STATE): the KMS unseals the key.
    let b = vm.boot_with(
        GUEST_NET,
        args,
        "echo 'BEGIN files'; cat /var/f; echo 'END files'",
    );
    assert!(b.all_ready(), "{}", b.log);
    assert_eq!(
        b.volume("EPHEMERAL")["unlocked_by"],
        serde_json::json!([0, "kms"])
    );
    assert_eq!(b.volume("EPHEMERAL")["kdf_runs"], 1);
    assert_eq!(b.section("files"), "kms-data\n");

    // KMS down: EPHEMERAL fails with the reason, the rest comes up, the
    // header is not touched.
    assert!(server.stop().success());
    let before = vm.header("EPHEMERAL");
    let b = vm.boot_with(GUEST_NET, args, "");
    assert_eq!(b.boot_rc, 3, "{}", b.log);
    assert_eq!(b.phase("STATE"), "ready");
    assert_eq!(b.phase("persistence"), "ready");
    assert_eq!(b.phase("EPHEMERAL"), "failed");
    let err = b.volume("EPHEMERAL")["error"].as_str().unwrap().to_string();
    assert!(
        err.contains("0 (kms)") && err.contains("unreachable"),
        "{err}"
    );
    assert_eq!(vm.header("EPHEMERAL"), before);

    // KMS back (same master keys, new port): the data is there.
    let server = common::KmsServer::start(&kms_dir, &pki);
    with_kms(&mut vm, server.port);
    let b = vm.boot_with(
        GUEST_NET,
        args,
        "echo 'BEGIN files'; cat /var/f; echo 'END files'",
    );
    assert!(b.all_ready(), "{}", b.log);
    assert_eq!(b.section("files"), "kms-data\n");
    vm.summary(
        "KMS on host loopback, reached over qemu's user network; outage reported, then back",
    );
}
