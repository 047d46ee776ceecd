//! The KMS server and client over real gRPC on 127.0.0.1 with TLS made by a
//! test CA: round trips, node binding, tampering, key rotation, unknown CA,
//! client certificates, and an unreachable server.

use kms::client::{ClientError, ClientOptions, KmsClient};
use kms::keyring::Keyring;
use kms::listener::Limits;
use kms::server::{serve, serve_with_limits, ServerTls};
use kms::test_pki::{generate, TestPki};
use std::time::Duration;

const NODE_A: &str = "4c4c4544-0038-5910-8057-b4c04f4d3732";
const NODE_B: &str = "03000200-0400-0500-0006-000700080009";

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
    start_with(keys, pki, require_client_cert, None).await
}

async fn start_with(
    keys: &str,
    pki: &TestPki,
    require_client_cert: bool,
    limits: Option<Limits>,
) -> Running {
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
        let stop = async {
            let _ = rx.await;
        };
        match limits {
            Some(l) => {
                let backend = kms::server::Backend::Stateless(std::sync::Arc::new(ring));
                serve_with_limits(listener, backend, Some(tls), l, stop).await
            }
            None => serve(listener, ring, Some(tls), stop).await,
        }
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
    let blob = c.seal(NODE_A, &secret).await.unwrap();
    assert_ne!(blob, secret.to_vec());
    assert_eq!(c.unseal(NODE_A, &blob).await.unwrap().as_slice(), &secret);
    let e = c.unseal(NODE_B, &blob).await.unwrap_err();
    assert!(
        matches!(e, ClientError::Refused { .. }) && e.to_string().contains("another node"),
        "{e}"
    );
    let mut tampered = blob.clone();
    tampered[20] ^= 0x80;
    assert!(matches!(
        c.unseal(NODE_A, &tampered).await,
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
        .seal(NODE_A, &[1; 32])
        .await
        .unwrap();
    s.stop().await;
    // Restart with a new key appended: old blobs open, new ones use the new key.
    let s = start(&format!("{old}\n{}", Keyring::generate_line()), &pki, false).await;
    let c = KmsClient::new(&s.url, opts(&pki));
    assert_eq!(c.unseal(NODE_A, &blob).await.unwrap().as_slice(), &[1; 32]);
    let new_blob = c.seal(NODE_A, &[2; 32]).await.unwrap();
    s.stop().await;
    let s = start(&old, &pki, false).await;
    let e = KmsClient::new(&s.url, opts(&pki))
        .unseal(NODE_A, &new_blob)
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
        .seal(NODE_A, &[1; 32])
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::Unreachable { .. }), "{e}");
    // Trusted server, but no client certificate while the server requires one.
    let e = KmsClient::new(&s.url, opts(&pki))
        .seal(NODE_A, &[1; 32])
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
        .seal(NODE_A, &[1; 32])
        .await
        .unwrap();
    assert_eq!(
        KmsClient::new(&s.url, with_cert)
            .unseal(NODE_A, &blob)
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
    let e = c.unseal(NODE_A, &[1; 40]).await.unwrap_err();
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
        .seal(NODE_A, &[1; 32])
        .await
        .unwrap_err();
    assert!(
        matches!(e, ClientError::Unreachable { attempts: 2, .. }),
        "{e}"
    );
    silent.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_flood_does_not_starve_clients_and_is_closed() {
    use tokio::io::AsyncReadExt;
    let pki = generate();
    let limits = Limits {
        max_connections: 16,
        handshake_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_secs(2),
        // The flood and the clients share 127.0.0.1 here.
        per_peer: 1024,
        ..Limits::default()
    };
    let s = start_with(&Keyring::generate_line(), &pki, false, Some(limits)).await;
    let addr = s.url.trim_start_matches("https://localhost:").to_string();
    // 64 connections that never start TLS: four times the cap.
    let mut idle = Vec::new();
    for _ in 0..64 {
        idle.push(
            tokio::net::TcpStream::connect(format!("127.0.0.1:{addr}"))
                .await
                .unwrap(),
        );
    }
    // A real client behind them is still served.
    let c = KmsClient::new(&s.url, opts(&pki));
    let blob = c.seal(NODE_A, &[3; 32]).await.unwrap();
    assert_eq!(c.unseal(NODE_A, &blob).await.unwrap().as_slice(), &[3; 32]);
    // Every idle connection is closed by the server (EOF or reset), none
    // is kept open.
    for (i, conn) in idle.iter_mut().enumerate() {
        let mut b = [0u8; 1];
        let r = tokio::time::timeout(Duration::from_secs(20), conn.read(&mut b)).await;
        assert!(
            matches!(r, Ok(Ok(0)) | Ok(Err(_))),
            "idle connection {i} still open: {r:?}"
        );
    }
    s.stop().await;
}

#[tokio::test]
async fn a_node_uuid_that_is_not_a_uuid_is_refused() {
    let pki = generate();
    let s = start(&Keyring::generate_line(), &pki, false).await;
    let c = KmsClient::new(&s.url, opts(&pki));
    for bad in [
        "node-a",
        "4c4c4544-0038-5910-8057-b4c04f4d3732\nforged line",
    ] {
        let e = c.seal(bad, &[1; 32]).await.unwrap_err().to_string();
        assert!(e.contains("must be a UUID"), "{e}");
    }
    // A 3 MB value never reaches the handler (nor a log line): the request
    // is bounded before it is decoded.
    let e = c
        .seal(&"a".repeat(3_000_000), &[1; 32])
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("too large"), "{e}");
    s.stop().await;
}
