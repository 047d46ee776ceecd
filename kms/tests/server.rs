//! The KMS server and client over real gRPC on 127.0.0.1 with TLS made by a
//! test CA: round trips, node binding, tampering, key rotation, unknown CA,
//! client certificates, and an unreachable server.

use kms::client::{ClientError, ClientOptions, KmsClient};
use kms::keyring::Keyring;
use kms::server::{serve, ServerTls};
use kms::test_pki::{generate, TestPki};
use std::time::Duration;

struct Running {
    url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap();
    }
}

async fn start(keys: &str, pki: &TestPki, require_client_cert: bool) -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let tls = ServerTls {
        cert_pem: pki.server_cert_pem.clone(),
        key_pem: pki.server_key_pem.clone(),
        client_ca_pem: require_client_cert.then(|| pki.ca_pem.clone()),
    };
    let ring = Keyring::parse(keys).unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        serve(listener, ring, Some(tls), async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    Running {
        url: format!("https://localhost:{port}"),
        stop: Some(tx),
        task,
    }
}

fn opts(pki: &TestPki) -> ClientOptions {
    ClientOptions {
        ca_pem: Some(pki.ca_pem.clone()),
        attempts: 2,
        backoff: Duration::from_millis(50),
        ..Default::default()
    }
}

#[tokio::test]
async fn seal_unseal_round_trip_bound_to_the_node() {
    let pki = generate();
    let s = start(&Keyring::generate_line(), &pki, false).await;
    let c = KmsClient::new(&s.url, opts(&pki));
    let secret = [7u8; 32];
    let blob = c.seal("node-a", &secret).await.unwrap();
    assert_ne!(blob, secret.to_vec());
    assert_eq!(c.unseal("node-a", &blob).await.unwrap().as_slice(), &secret);
    let e = c.unseal("node-b", &blob).await.unwrap_err();
    assert!(
        matches!(e, ClientError::Refused { .. }) && e.to_string().contains("another node"),
        "{e}"
    );
    let mut tampered = blob.clone();
    tampered[20] ^= 0x80;
    assert!(matches!(
        c.unseal("node-a", &tampered).await,
        Err(ClientError::Refused { .. })
    ));
    s.stop().await;
}

#[tokio::test]
async fn master_key_rotation_keeps_old_blobs_working() {
    let pki = generate();
    let old = Keyring::generate_line();
    let s = start(&old, &pki, false).await;
    let blob = KmsClient::new(&s.url, opts(&pki))
        .seal("n", &[1; 32])
        .await
        .unwrap();
    s.stop().await;
    // Restart with a new key appended: old blobs open, new ones use the new key.
    let s = start(&format!("{old}\n{}", Keyring::generate_line()), &pki, false).await;
    let c = KmsClient::new(&s.url, opts(&pki));
    assert_eq!(c.unseal("n", &blob).await.unwrap().as_slice(), &[1; 32]);
    let new_blob = c.seal("n", &[2; 32]).await.unwrap();
    s.stop().await;
    let s = start(&old, &pki, false).await;
    let e = KmsClient::new(&s.url, opts(&pki))
        .unseal("n", &new_blob)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("does not have"), "{e}");
    s.stop().await;
}

#[tokio::test]
async fn unknown_ca_is_refused_and_client_certificates_are_enforced() {
    let pki = generate();
    let other = generate();
    let s = start(&Keyring::generate_line(), &pki, true).await;
    // Server certificate from a CA the client does not trust.
    let e = KmsClient::new(&s.url, opts(&other))
        .seal("n", &[1; 32])
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::Unreachable { .. }), "{e}");
    // Trusted server, but no client certificate while the server requires one.
    let e = KmsClient::new(&s.url, opts(&pki))
        .seal("n", &[1; 32])
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            ClientError::Unreachable { .. } | ClientError::Refused { .. }
        ),
        "{e}"
    );
    // With a client certificate from the CA, it works.
    let with_cert = ClientOptions {
        identity_pem: Some((pki.client_cert_pem.clone(), pki.client_key_pem.clone())),
        ..opts(&pki)
    };
    let blob = KmsClient::new(&s.url, with_cert.clone())
        .seal("n", &[1; 32])
        .await
        .unwrap();
    assert_eq!(
        KmsClient::new(&s.url, with_cert)
            .unseal("n", &blob)
            .await
            .unwrap()
            .as_slice(),
        &[1; 32]
    );
    s.stop().await;
}

#[tokio::test]
async fn unreachable_kms_fails_after_bounded_retries() {
    let pki = generate();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let c = KmsClient::new(
        &format!("https://localhost:{port}"),
        ClientOptions {
            attempts: 3,
            ..opts(&pki)
        },
    );
    let e = c.unseal("n", &[1; 40]).await.unwrap_err();
    match e {
        ClientError::Unreachable { attempts, .. } => assert_eq!(attempts, 3),
        other => panic!("{other}"),
    }
}

#[tokio::test]
async fn a_peer_that_accepts_but_never_speaks_tls_does_not_hang_the_client() {
    // A TCP listener that accepts connections and then stays silent.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let pki = generate();
    let o = ClientOptions {
        connect_timeout: Duration::from_millis(300),
        request_timeout: Duration::from_millis(300),
        attempts: 2,
        ..opts(&pki)
    };
    let e = KmsClient::new(&format!("https://localhost:{port}"), o)
        .seal("n", &[1; 32])
        .await
        .unwrap_err();
    assert!(
        matches!(e, ClientError::Unreachable { attempts: 2, .. }),
        "{e}"
    );
    silent.abort();
}
