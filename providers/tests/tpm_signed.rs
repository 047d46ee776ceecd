//! Signed PCR policies against swtpm, with signatures made by systemd's own
//! `systemd-measure sign` and boot images measured into PCR 11 as
//! systemd-stub measures them: a signature of what PCR 11 holds opens the
//! key; a new kernel needs its own signature and nothing is re-sealed; a
//! signature by another key, or of other values, does not open it.

use api_types::SignedPcrPolicy;
use providers::test_swtpm::{PcrKeyPair, Swtpm};
use providers::{KeyContext, KeyData, KeyProvider, ProviderError, TpmOptions, TpmProvider};
use std::path::Path;

fn ctx() -> KeyContext {
    KeyContext {
        volume_id: "EPHEMERAL".into(),
    }
}

const KERNEL_1: &[(&str, &[u8])] = &[(".linux", b"kernel 6.1.0-1"), (".osrel", b"ID=debian\n")];
const KERNEL_2: &[(&str, &[u8])] = &[(".linux", b"kernel 6.1.0-2"), (".osrel", b"ID=debian\n")];

/// A provider sealing to literal `pcrs` and signatures by `key` of PCR 11,
/// read from `signatures`.
fn provider(tpm: &Swtpm, pcrs: Vec<u32>, key: &Path, signatures: &Path) -> TpmProvider {
    TpmProvider::new(
        pcrs,
        false,
        TpmOptions {
            tcti: tpm.tcti(),
            efivars_dir: "/nonexistent".into(),
        },
    )
    .with_signed_policy(Some(SignedPcrPolicy {
        public_key: key.to_path_buf(),
        signature: signatures.to_path_buf(),
        pcrs: vec![11],
    }))
}

fn unavailable_because(err: ProviderError, why: &str) {
    assert!(matches!(err, ProviderError::Unavailable { .. }), "{err:?}");
    assert!(err.to_string().contains(why), "{err}");
}

#[tokio::test]
async fn a_new_kernel_opens_by_its_own_signature_with_no_reseal() {
    let mut tpm = Swtpm::start();
    let signer = PcrKeyPair::generate();
    let dir = tempfile::tempdir().unwrap();
    let signatures = dir.path().join("tpm2-pcr-signature.json");
    let p = provider(&tpm, vec![], &signer.public, &signatures);
    let enrolled = p.enroll(&ctx()).await.unwrap();
    let KeyData::Tpm(token) = &enrolled.token_data else {
        panic!("{:?}", enrolled.token_data);
    };
    let signed = token
        .signed
        .as_ref()
        .expect("the token keeps the signed policy");
    assert_eq!(signed.pcrs, [11]);
    assert_eq!(signed.pkfp.len(), 64);

    tpm.boot_uki(KERNEL_1);
    std::fs::write(&signatures, tpm.sign_uki(&signer, KERNEL_1)).unwrap();
    assert_eq!(
        p.recover(&ctx(), &enrolled.token_data).await.unwrap(),
        enrolled.passphrase
    );

    // A kernel update: the old signature no longer covers PCR 11.
    tpm.reboot();
    tpm.boot_uki(KERNEL_2);
    let err = p.recover(&ctx(), &enrolled.token_data).await.unwrap_err();
    unavailable_because(err, "is of the values PCR 11 holds now");
    // The new image brings its signature: the same token opens.
    std::fs::write(&signatures, tpm.sign_uki(&signer, KERNEL_2)).unwrap();
    assert_eq!(
        p.recover(&ctx(), &enrolled.token_data).await.unwrap(),
        enrolled.passphrase
    );
}

#[tokio::test]
async fn a_signature_by_another_key_or_a_forged_one_does_not_open() {
    let tpm = Swtpm::start();
    let (signer, other) = (PcrKeyPair::generate(), PcrKeyPair::generate());
    let dir = tempfile::tempdir().unwrap();
    let signatures = dir.path().join("sig.json");
    let p = provider(&tpm, vec![], &signer.public, &signatures);
    let enrolled = p.enroll(&ctx()).await.unwrap();
    tpm.boot_uki(KERNEL_1);

    let by_other = tpm.sign_uki(&other, KERNEL_1);
    std::fs::write(&signatures, &by_other).unwrap();
    let err = p.recover(&ctx(), &enrolled.token_data).await.unwrap_err();
    unavailable_because(err, "holds no SHA-256 signature by the enrolled public key");

    // Another key's signatures under the enrolled key's fingerprint: the
    // TPM's VerifySignature refuses them.
    let KeyData::Tpm(token) = &enrolled.token_data else {
        panic!()
    };
    let other_fp = providers::tpm::signed::PcrPublicKey::read(&other.public)
        .unwrap()
        .fingerprint();
    let forged = by_other.replace(&other_fp, &token.signed.as_ref().unwrap().pkfp);
    std::fs::write(&signatures, forged).unwrap();
    let err = p.recover(&ctx(), &enrolled.token_data).await.unwrap_err();
    unavailable_because(err, "does not verify with the enrolled public key");

    std::fs::remove_file(&signatures).unwrap();
    let err = p.recover(&ctx(), &enrolled.token_data).await.unwrap_err();
    unavailable_because(err, "cannot read the PCR signature file");
}

#[tokio::test]
async fn literal_pcrs_beside_a_signed_policy_still_bind() {
    let tpm = Swtpm::start();
    let signer = PcrKeyPair::generate();
    let dir = tempfile::tempdir().unwrap();
    let signatures = dir.path().join("sig.json");
    let p = provider(&tpm, vec![7], &signer.public, &signatures);
    let enrolled = p.enroll(&ctx()).await.unwrap();
    tpm.boot_uki(KERNEL_1);
    std::fs::write(&signatures, tpm.sign_uki(&signer, KERNEL_1)).unwrap();
    assert_eq!(
        p.recover(&ctx(), &enrolled.token_data).await.unwrap(),
        enrolled.passphrase
    );
    tpm.extend_pcr(7);
    let err = p.recover(&ctx(), &enrolled.token_data).await.unwrap_err();
    assert!(matches!(err, ProviderError::PcrMismatch { .. }), "{err}");
}

#[tokio::test]
async fn the_binding_follows_the_public_key_and_allow_refuses_a_signed_key() {
    let tpm = Swtpm::start();
    let (signer, other) = (PcrKeyPair::generate(), PcrKeyPair::generate());
    let sig = Path::new("/run/systemd/tpm2-pcr-signature.json");
    let a = provider(&tpm, vec![7], &signer.public, sig);
    let binding = |p: &TpmProvider| p.binding_material(&ctx()).unwrap();
    assert_eq!(
        binding(&a),
        binding(&provider(&tpm, vec![7], &signer.public, Path::new("/x")))
    );
    assert_ne!(
        binding(&a),
        binding(&provider(&tpm, vec![7], &other.public, sig))
    );
    let missing = provider(&tpm, vec![7], Path::new("/nonexistent.pem"), sig);
    let err = missing.binding_material(&ctx()).unwrap_err();
    unavailable_because(err, "cannot read the PCR public key /nonexistent.pem");

    let enrolled = a.enroll(&ctx()).await.unwrap();
    let KeyData::Tpm(token) = &enrolled.token_data else {
        panic!()
    };
    let changes = providers::tpm::policy::PcrValues([(7, [1; 32])].into());
    let options = TpmOptions {
        tcti: tpm.tcti(),
        efivars_dir: "/nonexistent".into(),
    };
    let err = providers::tpm::allow(&options, token, &changes)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("it has a signed PCR policy"),
        "{err}"
    );
}

/// A threshold member with a signed policy: 2 of (signed TPM, static) open
/// while the signature fits; with a stale one the TPM member is named with
/// why, and the static member alone is not enough.
#[tokio::test]
async fn a_threshold_member_with_a_signed_policy_opens_and_fails_by_name() {
    let tpm = Swtpm::start();
    let signer = PcrKeyPair::generate();
    let dir = tempfile::tempdir().unwrap();
    let signatures = dir.path().join("sig.json");
    let threshold = || {
        providers::ThresholdProvider::new(
            2,
            vec![
                Box::new(provider(&tpm, vec![], &signer.public, &signatures)),
                Box::new(providers::StaticProvider::new(
                    api_types::SecretString::new("member-pass"),
                )),
            ],
        )
    };
    let enrolled = threshold().enroll(&ctx()).await.unwrap();
    tpm.boot_uki(KERNEL_1);
    std::fs::write(&signatures, tpm.sign_uki(&signer, KERNEL_1)).unwrap();
    assert_eq!(
        threshold()
            .recover(&ctx(), &enrolled.token_data)
            .await
            .unwrap(),
        enrolled.passphrase
    );
    std::fs::write(&signatures, tpm.sign_uki(&signer, KERNEL_2)).unwrap();
    let err = threshold()
        .recover(&ctx(), &enrolled.token_data)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("2 of 2 members needed, 1 gave their share")
            && err.contains("member 0 (tpm)")
            && err.contains("is of the values PCR 11 holds now"),
        "{err}"
    );
}
