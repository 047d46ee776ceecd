//! A small storm (the 1,000-node one is `make bench`): simulated nodes,
//! each with its own UUID and client certificate, unseal at once from two
//! `volctl kms-server` replicas over a real 3-member etcd; half-way one
//! replica and one etcd member are killed. Every node must get its own
//! secret back (its requests raced over the replicas as volctl races
//! `endpoints`), and the surviving replica refused nobody.

mod common;

use common::storm;
use common::KmsServer;
use std::sync::{Arc, Mutex};

const NODES: usize = 120;

#[test]
fn every_node_unseals_through_a_replica_and_an_etcd_member_killed_midway() {
    let dir = tempfile::tempdir().unwrap();
    let pki = kms::test_pki::generate();
    let etcd = Arc::new(Mutex::new(kms::test_etcd::EtcdCluster::start(3)));
    let store = etcd.lock().unwrap().store_arg();
    let one = KmsServer::with_store(dir.path(), &pki, 0, &[&store]);
    let two = KmsServer::with_store(dir.path(), &pki, 0, &[&store]);
    let endpoints = storm::endpoints(&[&one, &two]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut nodes = storm::nodes(&pki, NODES);
    storm::seal_all(&rt, &pki, &mut nodes, &endpoints);

    let killed = etcd.clone();
    let midway = Box::new(move || {
        drop(one);
        killed.lock().unwrap().kill(0);
    });
    let f = storm::unseal_all(&rt, &pki, &nodes, &endpoints, Some(midway));
    eprintln!(
        "{}",
        f.line(
            "2 replicas, 3 etcd members, 1+1 killed",
            storm::peak_rss_mib(two.pid())
        )
    );
    assert!(f.failed.is_empty(), "{:#?}", f.failed);
    assert_eq!(f.unsealed, NODES);
    let log = two.log();
    assert!(log.contains("unsealed"), "the other replica served");
    assert!(
        !log.contains("refused"),
        "no refusal, even one the race hid: {log}"
    );
}
