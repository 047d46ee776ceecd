//! TPM + PIN against swtpm: the PIN chosen twice at enrolment, the right
//! PIN unseals, a wrong one is refused by the TPM (no passphrase, so no KDF
//! run), the key never opens unattended, and the TPM's dictionary-attack
//! lockout is reported in words.

use async_trait::async_trait;
use providers::ask::{AskError, Asker, AskerHandle, Question};
use providers::test_swtpm::Swtpm;
use providers::{KeyContext, KeyData, KeyProvider, Passphrase, ProviderError};
use providers::{TpmOptions, TpmProvider};
use std::sync::{Arc, Mutex};

fn ctx() -> KeyContext {
    KeyContext {
        volume_id: "persistence".into(),
    }
}

/// A person answering from a list, recording the questions.
struct Person {
    answers: Mutex<Vec<&'static str>>,
    asked: Mutex<Vec<String>>,
}

#[async_trait]
impl Asker for Person {
    async fn ask(&self, q: &Question) -> Result<Passphrase, AskError> {
        self.asked.lock().unwrap().push(q.message.clone());
        let mut answers = self.answers.lock().unwrap();
        if answers.is_empty() {
            return Err(AskError::Cancelled);
        }
        Ok(Passphrase::new(answers.remove(0).as_bytes().to_vec()))
    }
    fn channel(&self) -> String {
        "the test".into()
    }
}

fn person(answers: &[&'static str]) -> Arc<Person> {
    Arc::new(Person {
        answers: Mutex::new(answers.to_vec()),
        asked: Mutex::new(vec![]),
    })
}

fn provider(tpm: &Swtpm, person: &Arc<Person>) -> TpmProvider {
    TpmProvider::new(
        vec![7],
        false,
        TpmOptions {
            tcti: tpm.tcti(),
            efivars_dir: "/nonexistent".into(),
        },
    )
    .with_pin(
        Some(AskerHandle(person.clone())),
        api_types::PromptParams::default(),
    )
}

fn pin(text: &str) -> Passphrase {
    Passphrase::new(text.as_bytes().to_vec())
}

#[tokio::test]
async fn the_right_pin_unseals_a_wrong_one_is_refused_and_none_opens_unattended() {
    let tpm = Swtpm::start();
    let asked = person(&["2468", "2468"]);
    let p = provider(&tpm, &asked);
    assert_eq!(p.kind(), api_types::KeySource::TpmPin);
    let enrolled = p.enroll(&ctx()).await.unwrap();
    assert_eq!(
        *asked.asked.lock().unwrap(),
        [
            "New TPM PIN for persistence",
            "Repeat the TPM PIN for persistence"
        ]
    );
    let KeyData::Tpm(token) = &enrolled.token_data else {
        panic!("{:?}", enrolled.token_data)
    };
    assert!(token.pin);
    let token_text = serde_json::to_string(token).unwrap();
    assert!(!token_text.contains("2468"), "the PIN is not stored");

    let data = &enrolled.token_data;
    assert_eq!(
        p.recover_typed(&ctx(), data, &pin("2468")).await.unwrap(),
        enrolled.passphrase
    );
    let wrong = p
        .recover_typed(&ctx(), data, &pin("1357"))
        .await
        .unwrap_err();
    assert!(matches!(wrong, ProviderError::WrongPin), "{wrong:?}");
    let unattended = p.recover(&ctx(), data).await.unwrap_err();
    assert!(
        unattended.to_string().contains("it asks for a PIN"),
        "{unattended}"
    );
    // PCR 7 still binds: the right PIN does not open after it changes.
    tpm.extend_pcr(7);
    let changed = p
        .recover_typed(&ctx(), data, &pin("2468"))
        .await
        .unwrap_err();
    assert!(
        matches!(changed, ProviderError::PcrMismatch { .. }),
        "{changed:?}"
    );
}

#[tokio::test]
async fn two_different_pins_at_enrolment_enrol_nothing() {
    let tpm = Swtpm::start();
    let asked = person(&["2468", "2469", "", "1234", "1235"]);
    let err = provider(&tpm, &asked).enroll(&ctx()).await.unwrap_err();
    assert!(matches!(err, ProviderError::NotConfirmed { .. }), "{err:?}");
    assert!(err.to_string().contains("the two TPM PINs differ"), "{err}");
}

#[tokio::test]
async fn after_too_many_wrong_pins_the_lockout_is_said_in_words() {
    let tpm = Swtpm::start();
    // Two failures lock it out; one is forgotten every 60 s.
    tpm.dictionary_lockout(2, 60);
    let p = provider(&tpm, &person(&["2468", "2468"]));
    let enrolled = p.enroll(&ctx()).await.unwrap();
    let data = &enrolled.token_data;
    for _ in 0..2 {
        let e = p
            .recover_typed(&ctx(), data, &pin("0000"))
            .await
            .unwrap_err();
        assert!(matches!(e, ProviderError::WrongPin), "{e:?}");
    }
    let locked = p
        .recover_typed(&ctx(), data, &pin("2468"))
        .await
        .unwrap_err();
    assert!(
        locked.to_string().contains(
            "the TPM is locked out after too many wrong PINs: it forgets one wrong PIN every 60 s"
        ),
        "{locked}"
    );
}
