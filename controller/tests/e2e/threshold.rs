//! A threshold key of a TPM (swtpm, UEFI) and a KMS (over the guest
//! network) in one boot.

use super::harness::*;
use crate::common;

/// The TPM's and the KMS's qemu arguments together.
fn with_tpm_and_kms(vm: &mut Vm, port: u16) -> KillOnDrop {
    let tpm = with_tpm(vm, "OVMF_CODE.fd", "OVMF_VARS.fd");
    let tpm_args = vm.qemu_extra.clone();
    with_kms(vm, port);
    vm.qemu_extra = format!("{tpm_args} {}", vm.qemu_extra);
    tpm
}

#[test]
#[ignore = "VM suite: run with `make e2e`"]
fn a_tpm_and_kms_threshold_opens_ephemeral_and_names_the_kms_when_it_is_down() {
    let mut vm = Vm::new("threshold", LAYOUT);
    let pki = kms::test_pki::generate_for(&[std::net::IpAddr::from([10, 0, 2, 100])]);
    let kms_dir = vm.dir.join("kms");
    std::fs::create_dir_all(&kms_dir).unwrap();
    vm.write("ca.pem", std::str::from_utf8(&pki.ca_pem).unwrap());
    vm.write(
        "config.yaml",
        &config_with_ephemeral(&[&format!(
            "{{slot: 0, threshold: {{required: 2, keys: [{{tpm: {{options: {{pcrs: [7]}}}}}}, {{kms: {{endpoint: 'https://{GUEST_KMS}', timeout: 5s}}}}]}}}}"
        )]),
    );
    let args = "--kms-ca-file /job/ca.pem --tpm-tcti device:/dev/tpmrm0";
    let files = "echo 'BEGIN files'; cat /var/f; echo 'END files'";

    let server = common::KmsServer::start(&kms_dir, &pki);
    let tpm = with_tpm_and_kms(&mut vm, server.port);
    let b = vm.boot_with(
        GUEST_NET,
        &format!("-f /job/config.yaml {args}"),
        "echo threshold-data > /var/f",
    );
    drop(tpm);
    assert!(b.all_ready(), "{}", b.log);
    assert_eq!(b.volume("EPHEMERAL")["created"], true);

    // Both members answer: one KDF run.
    let tpm = with_tpm_and_kms(&mut vm, server.port);
    let b = vm.boot_with(GUEST_NET, args, files);
    drop(tpm);
    assert!(b.all_ready(), "{}", b.log);
    assert_eq!(
        b.volume("EPHEMERAL")["unlocked_by"],
        serde_json::json!([0, "threshold"])
    );
    assert_eq!(b.volume("EPHEMERAL")["kdf_runs"], 1);
    assert_eq!(b.section("files"), "threshold-data\n");

    // The KMS down: 2 of 2 cannot be met; EPHEMERAL is reported with the
    // member that failed and why, the others come up, nothing is written.
    let port = server.port;
    assert!(server.stop().success());
    let before = vm.header("EPHEMERAL");
    let tpm = with_tpm_and_kms(&mut vm, port);
    let b = vm.boot_with(GUEST_NET, args, "");
    drop(tpm);
    assert_eq!(b.boot_rc, 3, "{}", b.log);
    assert_eq!(b.phase("STATE"), "ready");
    assert_eq!(b.phase("persistence"), "ready");
    assert_eq!(b.phase("EPHEMERAL"), "failed");
    let err = b.volume("EPHEMERAL")["error"].as_str().unwrap().to_string();
    assert!(
        err.contains("2 of 2 members needed, 1 gave their share")
            && err.contains("member 1 (kms)")
            && err.contains("unreachable"),
        "{err}"
    );
    assert_eq!(vm.header("EPHEMERAL"), before);
    vm.summary("threshold 2 of (TPM on swtpm, KMS over the guest network) opens EPHEMERAL at one KDF run; KMS down → reported naming the member, the others up");
}
