//! `tang` keys against the Debian `tang` package's `tangd` and the
//! `clevis` CLI: each side opens what the other bound.

use providers::tang::jwe::ClevisJwe;
use providers::tang::jwk::Thumbprint;
use providers::test_tang::Tangd;
use providers::{
    KeyContext, KeyData, KeyProvider, KmsWait, ProviderError, TangProvider, TangTokenData,
};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn ctx() -> KeyContext {
    KeyContext {
        volume_id: "EPHEMERAL".into(),
    }
}

fn provider(url: &str, thumbprint: Option<&str>) -> TangProvider {
    let wait = KmsWait {
        per_key: Duration::from_secs(5),
        boot_until: None,
    };
    TangProvider::new(url, thumbprint, wait)
}

/// `cmd` with `input` on its stdin; its stdout.
fn piped(cmd: &mut Command, input: &[u8]) -> Vec<u8> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn jwe_of(data: &KeyData) -> &TangTokenData {
    match data {
        KeyData::Tang(t) => t,
        other => panic!("not tang data: {other:?}"),
    }
}

#[tokio::test]
async fn clevis_decrypts_what_volctl_bound_and_volctl_opens_it_again() {
    let tang = Tangd::start();
    let p = provider(&tang.url(), Some(&tang.thumbprint()));
    let enrolled = p.enroll(&ctx()).await.unwrap();
    let data = jwe_of(&enrolled.token_data);
    assert_eq!(data.thumbprint, Thumbprint(tang.thumbprint()));
    let plain = piped(
        Command::new("clevis").args(["decrypt"]),
        data.jwe.as_ref().unwrap().compact().as_bytes(),
    );
    assert_eq!(
        plain,
        enrolled.passphrase.expose(),
        "clevis decrypt gives the passphrase"
    );
    let again = p.recover(&ctx(), &enrolled.token_data).await.unwrap();
    assert_eq!(again.expose(), enrolled.passphrase.expose());
}

#[tokio::test]
async fn volctl_opens_what_clevis_encrypted() {
    let tang = Tangd::start();
    let config = format!(
        r#"{{"url":"{}","thp":"{}"}}"#,
        tang.url(),
        tang.thumbprint()
    );
    let compact = piped(
        Command::new("clevis").args(["encrypt", "tang", &config]),
        b"a passphrase clevis made",
    );
    let jwe = ClevisJwe::from_compact(std::str::from_utf8(&compact).unwrap()).unwrap();
    let data = KeyData::Tang(TangTokenData {
        url: tang.url(),
        thumbprint: Thumbprint(tang.thumbprint()),
        jwe: Some(jwe),
    });
    let p = provider(&tang.url(), Some(&tang.thumbprint()));
    let got = p.recover(&ctx(), &data).await.unwrap();
    assert_eq!(got.expose(), b"a passphrase clevis made");
}

#[tokio::test]
async fn another_signing_key_is_refused_and_a_stopped_server_answers_nothing_at_once() {
    let mut tang = Tangd::start();
    let other = Tangd::start();
    let e = provider(&tang.url(), Some(&other.thumbprint()))
        .enroll(&ctx())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("it has no signing key"), "{e}");
    let tofu = provider(&tang.url(), None).enroll(&ctx()).await.unwrap();
    assert_eq!(
        jwe_of(&tofu.token_data).thumbprint.0,
        tang.thumbprint(),
        "first use pins what it saw"
    );

    tang.stop();
    let started = Instant::now();
    let e = provider(&tang.url(), Some(&tang.thumbprint()))
        .recover(&ctx(), &tofu.token_data)
        .await
        .unwrap_err();
    assert!(matches!(e, ProviderError::Unavailable { .. }), "{e}");
    assert!(e.to_string().contains("unreachable"), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "a refused connection fails at once"
    );
}

#[tokio::test]
async fn a_rotated_server_is_rebound_and_then_its_old_key_can_go() {
    let tang = Tangd::start();
    let pinned = tang.thumbprint();
    let p = provider(&tang.url(), Some(&pinned));
    let enrolled = p.enroll(&ctx()).await.unwrap();
    assert!(
        p.refresh(&ctx(), &enrolled.token_data)
            .await
            .unwrap()
            .is_none(),
        "nothing to rebind"
    );

    tang.rotate();
    assert_ne!(tang.thumbprint(), pinned);
    let rebound = p
        .refresh(&ctx(), &enrolled.token_data)
        .await
        .unwrap()
        .expect("the server advertises a new key: rebind");
    let (old, new) = (jwe_of(&enrolled.token_data), jwe_of(&rebound));
    let kid = |d: &TangTokenData| d.jwe.as_ref().unwrap().header().unwrap().kid;
    assert_ne!(kid(old), kid(new));
    assert_eq!(
        new.thumbprint.0, pinned,
        "trusted through the pinned key's signature"
    );

    tang.forget_rotated();
    let got = p.recover(&ctx(), &rebound).await.unwrap();
    assert_eq!(
        got.expose(),
        enrolled.passphrase.expose(),
        "the same passphrase, the new key"
    );
    let e = p.recover(&ctx(), &enrolled.token_data).await.unwrap_err();
    assert!(
        e.to_string().contains("no longer has the exchange key"),
        "{e}"
    );
}
