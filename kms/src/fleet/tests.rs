use super::store::{FileStore, MemoryStore};
use super::*;

const A: &str = "4c4c4544-0038-5910-8057-b4c04f4d3732";
const B: &str = "9b2f0c6e-5d4a-4e1b-8f3c-7a6d5e4c3b2a";

fn ring(lines: &[String]) -> Arc<Keyring> {
    Arc::new(Keyring::parse(&lines.join("\n")).unwrap())
}

fn fleet(lines: &[String], store: Arc<dyn NodeStore>) -> Fleet {
    Fleet::new(ring(lines), store)
}

/// A real etcd member and a store over it (the runtime its client waits on).
struct Etcd {
    store: Arc<dyn NodeStore>,
    _runtime: tokio::runtime::Runtime,
    _cluster: crate::test_etcd::EtcdCluster,
}

fn etcd(prefix: &str) -> Etcd {
    let cluster = crate::test_etcd::EtcdCluster::start(1);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let address = super::etcd::EtcdAddress {
        endpoints: cluster.endpoints.clone(),
        prefix: prefix.into(),
    };
    let store = runtime
        .block_on(super::etcd::EtcdStore::connect(&address, None))
        .unwrap();
    Etcd {
        store: Arc::new(store),
        _runtime: runtime,
        _cluster: cluster,
    }
}

#[test]
fn each_node_seals_under_its_own_key_and_a_revoked_one_opens_nothing_again() {
    revocation_on(Arc::new(MemoryStore::default()));
}

#[test]
fn over_etcd_each_node_seals_under_its_own_key_and_a_revoked_one_opens_nothing_again() {
    revocation_on(etcd("/t").store);
}

fn revocation_on(store: Arc<dyn NodeStore>) {
    let f = fleet(&[Keyring::generate_line()], store.clone());
    let a = f.seal(A, b"secret of a").unwrap();
    let b = f.seal(B, b"secret of b").unwrap();
    assert_eq!(a[0], NODE_BLOB_VERSION);
    let got = f.unseal(A, &a).unwrap();
    assert_eq!(got.data.as_slice(), b"secret of a");
    assert!(!got.stale);
    assert!(f.unseal(B, &a).is_err(), "another node's blob");
    let rec = store.node(A).unwrap().unwrap();
    assert_eq!(rec.keks.len(), 1);
    assert!(!serde_json::to_string(&rec).unwrap().contains("secret"));

    let revoked = f.revoke(A).unwrap();
    assert_eq!((revoked.state, revoked.keks.len()), (NodeState::Revoked, 0));
    let e = f.unseal(A, &a).unwrap_err().to_string();
    assert!(e.contains("revoked"), "{e}");
    assert!(f
        .seal(A, b"again")
        .unwrap_err()
        .to_string()
        .contains("revoked"));
    assert_eq!(
        f.unseal(B, &b).unwrap().data.as_slice(),
        b"secret of b",
        "others unaffected"
    );
}

#[test]
fn rotation_marks_old_blobs_stale_and_retirement_waits_for_every_active_node() {
    rotation_on(Arc::new(MemoryStore::default()));
}

#[test]
fn over_etcd_rotation_marks_old_blobs_stale_and_retirement_waits_for_every_active_node() {
    rotation_on(etcd("/t").store);
}

fn rotation_on(store: Arc<dyn NodeStore>) {
    let (old, new) = (Keyring::generate_line(), Keyring::generate_line());
    let before = fleet(std::slice::from_ref(&old), store.clone());
    let a = before.seal(A, b"a").unwrap();
    let b = before.seal(B, b"b").unwrap();
    let old_id = before.current().unwrap();

    let f = fleet(&[old.clone(), new.clone()], store.clone());
    assert_eq!(
        f.current().unwrap(),
        old_id,
        "no rotation yet: the store says"
    );
    assert_eq!(f.rotate(None).unwrap(), old_id);
    let e = f.rotate(None).unwrap_err().to_string();
    assert!(e.contains("current already"), "{e}");
    let got = f.unseal(A, &a).unwrap();
    assert!(got.stale && got.key_version == old_id);

    let e = f.retire(&old_id).unwrap_err().to_string();
    assert!(
        e.contains("2 active node(s)") && e.contains(A) && e.contains(B),
        "{e}"
    );
    let a2 = f.seal(A, &got.data).unwrap();
    assert!(!f.unseal(A, &a2).unwrap().stale, "rewrapped");
    f.revoke(B).unwrap();
    f.retire(&old_id).unwrap();
    assert!(f.unseal(A, &a).is_err(), "the old version's key is gone");
    assert_eq!(f.unseal(A, &a2).unwrap().data.as_slice(), b"a");
    drop(b);
}

#[test]
fn a_stateless_blob_still_opens_and_is_stale() {
    let line = Keyring::generate_line();
    let blob = Keyring::parse(&line).unwrap().seal(A, b"old");
    let f = fleet(&[line], Arc::new(MemoryStore::default()));
    let got = f.unseal(A, &blob).unwrap();
    assert_eq!(got.data.as_slice(), b"old");
    assert!(got.stale);
}

#[test]
fn the_file_store_keeps_records_across_reopening_and_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nodes.redb");
    let line = Keyring::generate_line();
    let blob = {
        let f = fleet(
            std::slice::from_ref(&line),
            Arc::new(FileStore::open(&path).unwrap()),
        );
        f.seal(A, b"kept").unwrap()
    };
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let f = fleet(&[line], Arc::new(FileStore::open(&path).unwrap()));
    assert_eq!(f.unseal(A, &blob).unwrap().data.as_slice(), b"kept");
    assert_eq!(f.nodes().unwrap().len(), 1);
    drop(f);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = FileStore::open(&path).err().unwrap().to_string();
    assert!(e.contains("chmod 600"), "{e}");
}

/// Two replicas over one etcd, sealing many nodes at once from several
/// threads each: every record is kept (no lost update), each replica
/// unseals what the other sealed; a retirement of more records than one
/// transaction holds drops every old key.
#[test]
fn replicas_over_etcd_lose_no_record_and_retire_in_several_transactions() {
    let etcd = etcd("/replicas");
    let (old, new) = (Keyring::generate_line(), Keyring::generate_line());
    // Replicas share one key file (a key appended on one only would be
    // recorded current by whichever seals first).
    let one = Arc::new(fleet(std::slice::from_ref(&old), etcd.store.clone()));
    let two = Arc::new(fleet(std::slice::from_ref(&old), etcd.store.clone()));
    let n = super::etcd::OPS_PER_TXN * 2 + 8;
    let uuids: Vec<String> = (0..n)
        .map(|i| format!("00000000-0000-4000-8000-{i:012}"))
        .collect();
    let blobs: Vec<Vec<u8>> = std::thread::scope(|s| {
        let jobs: Vec<_> = uuids
            .iter()
            .enumerate()
            .map(|(i, u)| {
                let f = if i % 2 == 0 { one.clone() } else { two.clone() };
                s.spawn(move || f.seal(u, u.as_bytes()).unwrap())
            })
            .collect();
        jobs.into_iter().map(|j| j.join().unwrap()).collect()
    });
    assert_eq!(etcd.store.nodes().unwrap().len(), n, "no record lost");
    for (i, (u, blob)) in uuids.iter().zip(&blobs).enumerate() {
        let other = if i % 2 == 0 { &two } else { &one };
        assert_eq!(other.unseal(u, blob).unwrap().data.as_slice(), u.as_bytes());
    }
    let old_id = one.current().unwrap();
    // Both replicas restarted with the new key appended.
    let two = fleet(&[old.clone(), new.clone()], etcd.store.clone());
    two.rotate(None).unwrap();
    for (u, blob) in uuids.iter().zip(&blobs) {
        assert!(two.unseal(u, blob).unwrap().stale);
        two.seal(u, u.as_bytes()).unwrap();
    }
    two.retire(&old_id).unwrap();
    let left = etcd.store.nodes().unwrap();
    assert_eq!(left.len(), n);
    assert!(
        left.iter().all(|r| !r.keks.contains_key(&old_id)),
        "every old KEK dropped"
    );
    assert!(two.unseal(&uuids[0], &blobs[0]).is_err());
}

/// Read-modify-writes of one record from several threads over etcd: none
/// is lost (each is a compare-and-swap on the key's revision).
#[test]
fn concurrent_changes_of_one_record_over_etcd_are_all_kept() {
    let etcd = etcd("/cas");
    let (threads, each) = (4, 25);
    std::thread::scope(|s| {
        for _ in 0..threads {
            let store = etcd.store.clone();
            s.spawn(move || {
                for _ in 0..each {
                    store
                        .change_node(A, &mut |old| {
                            let mut r = old.unwrap_or_else(|| super::fresh(A));
                            r.first_seen += 1;
                            Ok(Some(r))
                        })
                        .unwrap()
                        .unwrap();
                }
            });
        }
    });
    let r = etcd.store.node(A).unwrap().unwrap();
    let start = r.last_seen;
    assert_eq!(r.first_seen - start, (threads * each) as u64, "{r:?}");
}

#[test]
fn with_registered_enrolment_only_registered_nodes_seal() {
    let store: Arc<dyn NodeStore> = Arc::new(MemoryStore::default());
    let f = fleet(&[Keyring::generate_line()], store.clone()).with_enrolment(Enrolment::Registered);
    let e = f.seal(A, b"a").unwrap_err().to_string();
    assert!(
        e.contains("not registered") && e.contains("volctl kms register"),
        "{e}"
    );
    assert!(store.node(A).unwrap().is_none(), "nothing recorded");
    f.register(A).unwrap();
    let blob = f.seal(A, b"a").unwrap();
    assert_eq!(f.unseal(A, &blob).unwrap().data.as_slice(), b"a");
    let again = f.register(A).unwrap();
    assert_eq!(again.keks.len(), 1, "registering again changes nothing");
    f.revoke(B).unwrap();
    assert!(f.register(B).unwrap_err().to_string().contains("revoked"));
}
