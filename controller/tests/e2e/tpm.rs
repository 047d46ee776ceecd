//! TPM keys (swtpm, UEFI) and a firmware update.

use super::harness::*;

#[test]
#[ignore = "VM suite: run with `make e2e`"]
fn tpm_key_opens_ephemeral_and_reseals_itself_after_a_firmware_update() {
    let mut vm = Vm::new("tpm", LAYOUT);
    // Sealed to PCR 0 (the firmware's code); a recovery key for the day the
    // TPM refuses.
    vm.write(
        "config.yaml",
        &config_with_ephemeral(&[
            "{slot: 0, tpm: {options: {pcrs: [0]}}}",
            "{slot: 9, recovery: {}}",
        ]),
    );
    let boot =
        |vm: &mut Vm, firmware: (&str, &str), args: &str, after: &str, typing: &[(&str, &str)]| {
            let _tpm = with_tpm(vm, firmware.0, firmware.1);
            vm.boot_typing("", args, after, typing)
        };
    let old = ("OVMF_CODE.fd", "OVMF_VARS.fd");
    let new = ("OVMF_CODE_4M.fd", "OVMF_VARS_4M.fd");
    let files = "echo 'BEGIN files'; cat /var/f; echo 'END files'";
    let b = boot(
        &mut vm,
        old,
        "-f /job/config.yaml --tpm-tcti device:/dev/tpmrm0 --recovery-key-out /tmp/rk",
        "echo tpm-data > /var/f; echo 'BEGIN key'; cat /tmp/rk; echo 'END key'",
        &[],
    );
    assert!(b.all_ready(), "{}", b.log);
    assert_eq!(vm.header("EPHEMERAL").1, vec![0, 9]);
    let key = b.section("key");
    assert!(key.trim().starts_with("EPHEMERAL slot 9: "), "{key}");
    let key = key.trim().rsplit(' ').next().unwrap().to_string();
    let b = boot(&mut vm, old, "", files, &[]);
    assert!(b.all_ready(), "{}", b.log);
    assert_eq!(
        b.volume("EPHEMERAL")["unlocked_by"],
        serde_json::json!([0, "tpm"])
    );
    assert_eq!(b.volume("EPHEMERAL")["kdf_runs"], 1);

    // A firmware update (another OVMF build: PCR 0 changes): the TPM
    // refuses, the recovery key typed at the console opens, and in the
    // same run the TPM slot re-seals itself to the new PCR value.
    let b = boot(&mut vm, new, "", "", &[("for EPHEMERAL:", &key)]);
    assert!(b.all_ready(), "{}", b.log);
    assert_eq!(
        b.volume("EPHEMERAL")["unlocked_by"],
        serde_json::json!([9, "recovery"]),
        "{}",
        b.status
    );
    assert_eq!(
        b.volume("EPHEMERAL")["resealed"],
        serde_json::json!([0]),
        "{}",
        b.status
    );
    // The next boot on the new firmware unlocks by TPM again: one KDF run.
    let b = boot(&mut vm, new, "", files, &[]);
    assert!(b.all_ready(), "{}", b.log);
    assert_eq!(
        b.volume("EPHEMERAL")["unlocked_by"],
        serde_json::json!([0, "tpm"])
    );
    assert_eq!(b.volume("EPHEMERAL")["kdf_runs"], 1);
    assert_eq!(b.section("files"), "tpm-data\n");

    // The next firmware update (back to the first build) is known ahead:
    // measured on a machine that has it (here the same VM booted on it,
    // no volume opened) and allowed on the node; the first boot after the
    // update opens by TPM, nobody typing, and narrows the key to it.
    let tcti = "--tpm-tcti device:/dev/tpmrm0";
    let log = {
        let _tpm = with_tpm(&mut vm, old.0, old.1);
        vm.run_job(&format!("volctl tpm pcrs --pcr 0 {tcti}\n"))
    };
    let pcr0 = log
        .lines()
        .find_map(|l| l.trim().strip_prefix("0="))
        .unwrap_or_else(|| panic!("no PCR 0 value in:\n{log}"))
        .to_string();
    let allow = format!("volctl tpm allow --volume EPHEMERAL --device /dev/vda3 -f /job/config.yaml --pcr 0={pcr0} {tcti}");
    let b = boot(&mut vm, new, "", &allow, &[]);
    assert!(
        b.log.contains(
            "~ rewrite token of slot 0: the TPM key sealed to its current PCR values or PCR 0 = "
        ),
        "{}",
        b.log
    );
    let b = boot(&mut vm, old, "", files, &[]);
    assert!(b.all_ready(), "{}", b.log);
    let ephemeral = b.volume("EPHEMERAL");
    assert_eq!(
        ephemeral["unlocked_by"],
        serde_json::json!([0, "tpm"]),
        "{}",
        b.status
    );
    assert_eq!(ephemeral["kdf_runs"], 1, "{}", b.status);
    assert!(
        ephemeral["changes"]
            .to_string()
            .contains("narrowed to the PCR values the machine has now"),
        "{}",
        b.status
    );
    assert_eq!(b.section("files"), "tpm-data\n");
    vm.summary("TPM (swtpm, UEFI) seals EPHEMERAL's key to PCR 0; after a firmware update the recovery key opens it and the slot re-seals itself; the next boot unseals again; the next update allowed ahead (`tpm allow`, PCR 0 measured by `tpm pcrs`) opens by TPM, nobody typing, and narrows");
}
