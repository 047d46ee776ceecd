//! The tpm provider against swtpm: seal and unseal, a changed PCR, no PCR
//! policy, and Secure Boot checking at enrolment.

use providers::test_swtpm::{Swtpm, MEASUREMENT};
use providers::tpm::{
    self,
    policy::{extended, pcr_policy, PcrValues},
};
use providers::{KeyContext, KeyProvider, ProviderError, TpmOptions, TpmProvider};
use providers::{KeyData, TpmTokenData};

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

fn options(tpm: &Swtpm) -> TpmOptions {
    TpmOptions {
        tcti: tpm.tcti(),
        efivars_dir: "/nonexistent".into(),
    }
}

fn tpm_data(d: &KeyData) -> &TpmTokenData {
    let KeyData::Tpm(t) = d else { panic!("{d:?}") };
    t
}

#[tokio::test]
async fn a_known_update_allowed_ahead_opens_after_it_and_the_key_narrows_back() {
    let tpm = Swtpm::start();
    let opts = options(&tpm);
    let p = provider(&tpm, vec![7], false, std::path::Path::new("/nonexistent"));
    let e = p.enroll(&ctx()).await.unwrap();
    let sealed = tpm_data(&e.token_data);
    // The digest computed in software is the one the TPM's trial made.
    let now = tpm::read_pcrs(&opts, &[7]).await.unwrap();
    assert_eq!(hex::encode(pcr_policy(&now)), sealed.policy_digest);

    let future = PcrValues([(7, extended(&now.0[&7], &MEASUREMENT))].into());
    let allowed = tpm::allow(&opts, sealed, &future).await.unwrap();
    assert_eq!(allowed.allowed.len(), 2, "{allowed:?}");
    assert_eq!(allowed.pcrs, [7]);
    let allowed = KeyData::Tpm(allowed);
    assert_eq!(p.recover(&ctx(), &allowed).await.unwrap(), e.passphrase);
    assert!(
        p.refresh(&ctx(), &allowed).await.unwrap().is_none(),
        "nothing to narrow before the update"
    );

    tpm.extend_pcr(7);
    let err = p.recover(&ctx(), &e.token_data).await.unwrap_err();
    assert!(matches!(err, ProviderError::PcrMismatch { .. }), "{err}");
    assert_eq!(p.recover(&ctx(), &allowed).await.unwrap(), e.passphrase);

    let narrow = p
        .refresh(&ctx(), &allowed)
        .await
        .unwrap()
        .expect("narrowed");
    let t = tpm_data(&narrow);
    assert!(t.allowed.is_empty(), "{t:?}");
    assert_eq!(t.policy_digest, hex::encode(pcr_policy(&future)));
    assert_eq!(p.recover(&ctx(), &narrow).await.unwrap(), e.passphrase);
    assert!(p.refresh(&ctx(), &narrow).await.unwrap().is_none());

    // Values allowed by neither: both refuse, as a PCR change.
    tpm.extend_pcr(7);
    for d in [&allowed, &narrow] {
        let err = p.recover(&ctx(), d).await.unwrap_err();
        assert!(matches!(err, ProviderError::PcrMismatch { .. }), "{err}");
    }
}

#[tokio::test]
async fn allowing_a_pcr_the_key_is_not_sealed_to_or_a_key_with_no_pcrs_is_refused() {
    let tpm = Swtpm::start();
    let opts = options(&tpm);
    let p = provider(&tpm, vec![7], false, std::path::Path::new("/nonexistent"));
    let e = p.enroll(&ctx()).await.unwrap();
    let other = PcrValues([(4, [1; 32])].into());
    let err = tpm::allow(&opts, tpm_data(&e.token_data), &other)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "tpm key: PCR 4 is not one it is sealed to (PCR 7)"
    );
    let none = provider(&tpm, vec![], false, std::path::Path::new("/nonexistent"));
    let e = none.enroll(&ctx()).await.unwrap();
    let err = tpm::allow(&opts, tpm_data(&e.token_data), &other)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("sealed to no PCR"), "{err}");
}

/// A token from a hostile header naming PCR 40: refused as malformed by
/// `allow`, narrowing and unsealing alike, before the TPM is asked (a
/// shift by 40 would have overflowed).
#[tokio::test]
async fn a_token_naming_a_pcr_beyond_23_is_malformed_everywhere() {
    let tpm = Swtpm::start();
    let opts = options(&tpm);
    let p = provider(&tpm, vec![7], false, std::path::Path::new("/nonexistent"));
    let e = p.enroll(&ctx()).await.unwrap();
    let mut t = tpm_data(&e.token_data).clone();
    t.pcrs = vec![40];
    t.allowed = vec![
        [(40, "00".repeat(32))].into(),
        [(40, "11".repeat(32))].into(),
    ];
    let changes = PcrValues([(40, [1; 32])].into());
    let errors = [
        tpm::allow(&opts, &t, &changes).await.unwrap_err(),
        tpm::narrowed(&opts, &t).await.unwrap_err(),
        p.recover(&ctx(), &KeyData::Tpm(t.clone()))
            .await
            .unwrap_err(),
    ];
    for err in errors {
        assert!(
            matches!(err, ProviderError::BadToken { .. })
                && err.to_string().contains("outside 0–23"),
            "{err}"
        );
    }
}
