//! The tpm provider against swtpm: seal and unseal, a changed PCR, no PCR
//! policy, and Secure Boot checking at enrolment.

use providers::test_swtpm::Swtpm;
use providers::{KeyContext, KeyProvider, ProviderError, TpmOptions, TpmProvider};

fn ctx() -> KeyContext {
    KeyContext {
        volume_id: "EPHEMERAL".into(),
    }
}

fn provider(tpm: &Swtpm, pcrs: Vec<u32>, check: bool, efivars: &std::path::Path) -> TpmProvider {
    TpmProvider::new(
        pcrs,
        check,
        TpmOptions {
            tcti: tpm.tcti(),
            efivars_dir: efivars.to_path_buf(),
        },
    )
}

#[tokio::test]
async fn seal_unseal_and_a_changed_pcr_makes_the_key_unavailable() {
    let tpm = Swtpm::start();
    let p = provider(&tpm, vec![7], false, std::path::Path::new("/nonexistent"));
    let e = p.enroll(&ctx()).await.unwrap();
    assert_eq!(e.passphrase.expose().len(), 44, "base64 of 32 bytes");
    let providers::KeyData::Tpm(data) = &e.token_data else {
        panic!("{:?}", e.token_data);
    };
    assert_eq!(data.pcrs, [7]);
    assert_eq!(data.hash, "sha256");
    assert_eq!(data.policy_digest.len(), 64);
    let again = p.recover(&ctx(), &e.token_data).await.unwrap();
    assert_eq!(again, e.passphrase);
    // Another PCR does not matter; PCR 7 does.
    tpm.extend_pcr(8);
    assert_eq!(
        p.recover(&ctx(), &e.token_data).await.unwrap(),
        e.passphrase
    );
    tpm.extend_pcr(7);
    let err = p.recover(&ctx(), &e.token_data).await.unwrap_err();
    assert!(matches!(err, ProviderError::PcrMismatch { .. }), "{err}");
    assert!(err.to_string().contains("PCR values changed"), "{err}");
}

#[tokio::test]
async fn empty_pcr_list_seals_without_policy() {
    let tpm = Swtpm::start();
    let p = provider(&tpm, vec![], false, std::path::Path::new("/nonexistent"));
    let e = p.enroll(&ctx()).await.unwrap();
    tpm.extend_pcr(7);
    assert_eq!(
        p.recover(&ctx(), &e.token_data).await.unwrap(),
        e.passphrase
    );
}

#[tokio::test]
async fn a_blob_from_another_tpm_does_not_unseal() {
    let a = Swtpm::start();
    let b = Swtpm::start();
    let e = provider(&a, vec![7], false, std::path::Path::new("/x"))
        .enroll(&ctx())
        .await
        .unwrap();
    let err = provider(&b, vec![7], false, std::path::Path::new("/x"))
        .recover(&ctx(), &e.token_data)
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Unavailable { .. }), "{err}");
}

#[tokio::test]
async fn secure_boot_is_checked_at_enrolment_when_asked() {
    let tpm = Swtpm::start();
    let dir = tempfile::tempdir().unwrap();
    let var = dir.path().join(
        providers::TpmOptions::default()
            .efivars_dir
            .file_name()
            .map(|_| "SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c")
            .unwrap(),
    );
    let p = provider(&tpm, vec![7], true, dir.path());
    let e = p.enroll(&ctx()).await.unwrap_err();
    assert!(
        e.to_string().contains("Secure Boot state is unknown"),
        "{e}"
    );
    std::fs::write(&var, [6, 0, 0, 0, 0]).unwrap();
    let e = p.enroll(&ctx()).await.unwrap_err();
    assert!(e.to_string().contains("Secure Boot is disabled"), "{e}");
    std::fs::write(&var, [6, 0, 0, 0, 1]).unwrap();
    assert!(p.enroll(&ctx()).await.is_ok());
}

#[tokio::test]
async fn an_absent_tpm_is_a_clear_error() {
    let p = TpmProvider::new(
        vec![7],
        false,
        TpmOptions {
            tcti: "swtpm:host=127.0.0.1,port=1".into(),
            efivars_dir: "/x".into(),
        },
    );
    let e = p.enroll(&ctx()).await.unwrap_err();
    assert!(e.to_string().contains("cannot open the TPM"), "{e}");
}
