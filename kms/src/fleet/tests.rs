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

#[test]
fn each_node_seals_under_its_own_key_and_a_revoked_one_opens_nothing_again() {
    let store: Arc<dyn NodeStore> = Arc::new(MemoryStore::default());
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
    let (old, new) = (Keyring::generate_line(), Keyring::generate_line());
    let store: Arc<dyn NodeStore> = Arc::new(MemoryStore::default());
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
