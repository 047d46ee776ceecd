//! Attestation-gated release with a real TPM (swtpm) and the KMS server
//! with node records in-process on 127.0.0.1: a quote over the server's
//! nonce opens; no quote, a replayed quote, a nonce the server did not
//! issue and a changed PCR 7 are refused with nothing released; a planned
//! update allowed by the admin opens again, and the old state no longer.

use kms::client::{Attestation, ClientOptions, KmsClient, Quoter};
use kms::fleet::store::{MemoryStore, NodeStore};
use kms::fleet::Fleet;
use kms::keyring::Keyring;
use providers::test_swtpm::{Swtpm, MEASUREMENT};
use sha2::Digest;
use std::sync::{Arc, Mutex};

const UUID: &str = "4c4c4544-0038-5910-8057-b4c04f4d3732";

/// The server over `fleet`, plaintext on a free port; its endpoint.
fn serve(rt: &tokio::runtime::Runtime, fleet: Arc<Fleet>) -> String {
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(kms::server::serve_with_limits(
        listener,
        kms::server::Backend::Fleet(fleet),
        None,
        Default::default(),
        std::future::pending(),
    ));
    format!("http://{addr}")
}

fn quoter(tcti: String, last: Arc<Mutex<Option<Attestation>>>) -> Quoter {
    Arc::new(move |nonce: Vec<u8>| {
        let q = providers::tpm::quote::quote(&tcti, &[7], &nonce).map_err(|e| e.to_string())?;
        let a = Attestation {
            ak_public: q.ak_public,
            quote: q.quote,
            signature: q.signature,
        };
        *last.lock().unwrap() = Some(a.clone());
        Ok(a)
    })
}

/// A quoter that sends `fixed` whatever the nonce (a replay).
fn replaying(fixed: Attestation) -> Quoter {
    Arc::new(move |_| Ok(fixed.clone()))
}

fn refused(e: kms::client::ClientError) -> String {
    let e = e.to_string();
    assert!(e.contains("refused"), "a refusal, not a failure: {e}");
    e
}

#[test]
fn a_quote_opens_and_no_replayed_forged_or_changed_one_does() {
    let tpm = Swtpm::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let store: Arc<dyn NodeStore> = Arc::new(MemoryStore::default());
    let ring = Keyring::parse(&Keyring::generate_line()).unwrap();
    let fleet = Arc::new(Fleet::new(Arc::new(ring), store.clone()));
    let client = KmsClient::new(
        &serve(&rt, fleet.clone()),
        ClientOptions {
            attempts: 1,
            ..Default::default()
        },
    );
    let last = Arc::new(Mutex::new(None));
    let q = quoter(tpm.tcti(), last.clone());

    let blob = rt
        .block_on(client.seal_attested(UUID, b"secret", &q))
        .unwrap();
    let att = store.node(UUID).unwrap().unwrap().attestation.unwrap();
    assert_eq!(att.pcrs, vec![7], "{att:?}");
    let opened = rt
        .block_on(client.unseal_attested(UUID, &blob, &q))
        .unwrap();
    assert_eq!(opened.data.as_slice(), b"secret");

    let e = refused(rt.block_on(client.unseal_reply(UUID, &blob)).unwrap_err());
    assert!(e.contains("must carry a quote"), "{e}");
    let replay = last.lock().unwrap().clone().unwrap();
    let e = refused(
        rt.block_on(client.unseal_attested(UUID, &blob, &replaying(replay)))
            .unwrap_err(),
    );
    assert!(e.contains("replayed"), "{e}");
    let tcti = tpm.tcti();
    let forged: Quoter = Arc::new(move |mut nonce: Vec<u8>| {
        nonce[0] ^= 1;
        let q = providers::tpm::quote::quote(&tcti, &[7], &nonce).map_err(|e| e.to_string())?;
        Ok(Attestation {
            ak_public: q.ak_public,
            quote: q.quote,
            signature: q.signature,
        })
    });
    let e = refused(
        rt.block_on(client.unseal_attested(UUID, &blob, &forged))
            .unwrap_err(),
    );
    assert!(e.contains("not issued by this KMS"), "{e}");

    // Another TPM (a disk moved to another machine) is not this node.
    let other = Swtpm::start();
    let q_other = quoter(other.tcti(), Arc::new(Mutex::new(None)));
    let e = refused(
        rt.block_on(client.unseal_attested(UUID, &blob, &q_other))
            .unwrap_err(),
    );
    assert!(e.contains("another attestation key"), "{e}");

    // The boot changes (PCR 7 extended): refused until an admin allows it.
    tpm.extend_pcr(7);
    let e = refused(
        rt.block_on(client.unseal_attested(UUID, &blob, &q))
            .unwrap_err(),
    );
    assert!(e.contains("not the ones its policy allows"), "{e}");
    let mut pcr7 = sha2::Sha256::new();
    pcr7.update([0u8; 32]);
    pcr7.update(MEASUREMENT);
    fleet.allow(UUID, &[(7, pcr7.finalize().to_vec())]).unwrap();
    let opened = rt
        .block_on(client.unseal_attested(UUID, &blob, &q))
        .unwrap();
    assert_eq!(opened.data.as_slice(), b"secret");
    let att = store.node(UUID).unwrap().unwrap().attestation.unwrap();
    assert_eq!(att.allowed.len(), 1, "the old state is dropped: {att:?}");
}

#[test]
fn a_stateless_server_says_it_checks_no_attestation() {
    let tpm = Swtpm::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let ring = Keyring::parse(&Keyring::generate_line()).unwrap();
    rt.spawn(kms::server::serve(
        listener,
        ring,
        None,
        std::future::pending(),
    ));
    let client = KmsClient::new(&format!("http://{addr}"), ClientOptions::default());
    let q = quoter(tpm.tcti(), Arc::new(Mutex::new(None)));
    let e = refused(
        rt.block_on(client.seal_attested(UUID, b"s", &q))
            .unwrap_err(),
    );
    assert!(e.contains("--store"), "{e}");
}
