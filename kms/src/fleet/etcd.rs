//! Node records in etcd v3, for several stateless `volctl kms-server`
//! replicas over one store (`--store etcd://HOST:PORT[,HOST:PORT…][/PREFIX]`).
//!
//! Keys: `PREFIX/meta` and `PREFIX/nodes/UUID`, JSON values as in the file
//! store. Every change is optimistic: read the keys with their
//! `mod_revision`, apply the change, write in a transaction that succeeds
//! only if none of them changed since — else read again and retry. So two
//! replicas never lose each other's updates, and a refusal is decided on
//! what was current.
//!
//! A change to many records (retiring a version held by more than
//! [`OPS_PER_TXN`] nodes) is written in several such transactions (etcd
//! caps one at 128 operations). Each is checked the same way, and a
//! conflict re-reads and re-applies the whole change, which is idempotent,
//! so an interrupted retirement completes when run again.
//!
//! The calls are blocking (the [`NodeStore`] seam): the server runs them
//! on blocking threads, and they wait on the runtime the client was made
//! on.

use super::record::{Meta, NodeRecord};
use super::store::{decode, encode, Change, ChangeAll, NodeStore, Refusal, StoreError};
use etcd_client::{Client, Compare, CompareOp, ConnectOptions, GetOptions, Txn, TxnOp};
use std::time::Duration;

/// Puts (and as many compares) in one transaction, under etcd's default
/// `--max-txn-ops` of 128.
pub const OPS_PER_TXN: usize = 64;

/// Attempts of one optimistic change before the store reports contention.
const ATTEMPTS: usize = 64;

/// Tries of one etcd call (100 ms, then 200 ms, … between them).
const CALL_ATTEMPTS: usize = 4;

/// A request to etcd that has not answered within this is an error (the
/// node's own KMS timeout and retries then apply).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the records are: the endpoints and the key prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdAddress {
    /// `HOST:PORT` of each member.
    pub endpoints: Vec<String>,
    /// The prefix of every key (default `/volctl-kms`).
    pub prefix: String,
}

/// The prefix when the address names none.
pub const DEFAULT_PREFIX: &str = "/volctl-kms";

impl EtcdAddress {
    /// Reads `etcd://HOST:PORT[,HOST:PORT…][/PREFIX]` (without the scheme:
    /// what follows `etcd://`).
    pub fn parse(rest: &str) -> Result<Self, String> {
        let (hosts, prefix) = match rest.split_once('/') {
            Some((h, p)) if !p.is_empty() => (h, format!("/{}", p.trim_end_matches('/'))),
            Some((h, _)) => (h, DEFAULT_PREFIX.to_string()),
            None => (rest, DEFAULT_PREFIX.to_string()),
        };
        let endpoints: Vec<String> = hosts.split(',').map(str::to_string).collect();
        for e in &endpoints {
            let port = e.rsplit_once(':').map(|(h, p)| (h, p.parse::<u16>()));
            if !matches!(port, Some((h, Ok(_))) if !h.is_empty()) {
                return Err(format!("`{e}`: give each etcd member as HOST:PORT"));
            }
        }
        Ok(EtcdAddress { endpoints, prefix })
    }
}

/// TLS to etcd: its CA, and the client certificate it may require.
#[derive(Clone)]
pub struct EtcdTls {
    /// The CA that signs the members' certificates (PEM).
    pub ca_pem: Vec<u8>,
    /// The client certificate and key (PEM), when etcd checks clients.
    pub identity: Option<(Vec<u8>, zeroize::Zeroizing<Vec<u8>>)>,
}

/// Records in etcd.
pub struct EtcdStore {
    client: Client,
    runtime: tokio::runtime::Handle,
    prefix: String,
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("etcd: {e}"))
}

/// One key as read: its value and `mod_revision` (0: absent).
struct Read<T> {
    value: Option<T>,
    mod_revision: i64,
}

impl EtcdStore {
    /// Connects to `address` (on the current Tokio runtime, whose handle
    /// the blocking calls wait on).
    pub async fn connect(address: &EtcdAddress, tls: Option<EtcdTls>) -> Result<Self, StoreError> {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let urls: Vec<String> = address
            .endpoints
            .iter()
            .map(|e| format!("{scheme}://{e}"))
            .collect();
        let mut options = ConnectOptions::new()
            .with_timeout(REQUEST_TIMEOUT)
            .with_connect_timeout(REQUEST_TIMEOUT)
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5));
        if let Some(tls) = tls {
            let mut t = etcd_client::TlsOptions::new()
                .ca_certificate(etcd_client::Certificate::from_pem(tls.ca_pem));
            if let Some((cert, key)) = tls.identity {
                t = t.identity(etcd_client::Identity::from_pem(cert, key.as_slice()));
            }
            options = options.with_tls(t);
        }
        let client = Client::connect(urls, Some(options))
            .await
            .map_err(backend)?;
        let store = EtcdStore {
            client,
            runtime: tokio::runtime::Handle::current(),
            prefix: address.prefix.clone(),
        };
        // Fail at start, not at the first node, when etcd is not there.
        store
            .client
            .kv_client()
            .get(store.meta_key(), None)
            .await
            .map_err(backend)?;
        Ok(store)
    }

    fn meta_key(&self) -> String {
        format!("{}/meta", self.prefix)
    }

    fn node_key(&self, uuid: &str) -> String {
        format!("{}/nodes/{uuid}", self.prefix)
    }

    /// Runs the etcd call `call` makes, again after a short wait when it
    /// fails (the client then tries another member): a member down or a
    /// leader election is not the node's failure. Every call here is safe
    /// to repeat: a transaction that did apply fails its compare the
    /// second time, and the change is read and applied again.
    fn retrying<T, F>(&self, call: impl Fn(etcd_client::KvClient) -> F) -> Result<T, StoreError>
    where
        F: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        let mut wait = Duration::from_millis(100);
        let mut last = None;
        for _ in 0..CALL_ATTEMPTS {
            match self.runtime.block_on(call(self.client.kv_client())) {
                Ok(v) => return Ok(v),
                Err(e) => last = Some(e),
            }
            std::thread::sleep(wait);
            wait *= 2;
        }
        Err(backend(last.map_or_else(String::new, |e| e.to_string())))
    }

    /// The value and mod_revision of `key`.
    fn read<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Read<T>, StoreError> {
        let got = self.retrying(|mut kv| async move { kv.get(key, None).await })?;
        match got.kvs().first() {
            Some(v) => Ok(Read {
                value: Some(decode(v.value())?),
                mod_revision: v.mod_revision(),
            }),
            None => Ok(Read {
                value: None,
                mod_revision: 0,
            }),
        }
    }

    /// The meta record and every node record, each with its key's
    /// mod_revision, from one revision of the store.
    fn read_all(&self) -> Result<(Read<Meta>, Vec<Read<NodeRecord>>), StoreError> {
        let all = self.prefix.clone() + "/";
        let got = self.retrying(|mut kv| {
            let all = all.clone();
            async move { kv.get(all, Some(GetOptions::new().with_prefix())).await }
        })?;
        let mut meta = Read {
            value: None,
            mod_revision: 0,
        };
        let mut nodes = Vec::new();
        let meta_key = self.meta_key();
        for v in got.kvs() {
            if v.key() == meta_key.as_bytes() {
                meta = Read {
                    value: Some(decode(v.value())?),
                    mod_revision: v.mod_revision(),
                };
            } else {
                nodes.push(Read {
                    value: Some(decode(v.value())?),
                    mod_revision: v.mod_revision(),
                });
            }
        }
        Ok((meta, nodes))
    }

    /// Writes `puts` if every key of `unchanged` still has its mod_revision;
    /// whether it did.
    fn write_if(
        &self,
        unchanged: &[(String, i64)],
        puts: Vec<(String, Vec<u8>)>,
    ) -> Result<bool, StoreError> {
        let when: Vec<Compare> = unchanged
            .iter()
            .map(|(k, rev)| Compare::mod_revision(k.as_str(), CompareOp::Equal, *rev))
            .collect();
        let then: Vec<TxnOp> = puts
            .into_iter()
            .map(|(k, v)| TxnOp::put(k, v, None))
            .collect();
        let txn = Txn::new().when(when).and_then(then);
        let reply = self.retrying(|mut kv| {
            let txn = txn.clone();
            async move { kv.txn(txn).await }
        })?;
        Ok(reply.succeeded())
    }

    fn contention(&self) -> StoreError {
        backend(format!(
            "{ATTEMPTS} attempts of one change all met a concurrent one"
        ))
    }

    /// One pass of [`NodeStore::change_all`]: `Ok(true)` when written.
    fn change_all_once(&self, change: ChangeAll<'_>) -> Result<Result<bool, Refusal>, StoreError> {
        let (meta, nodes) = self.read_all()?;
        let mut new_meta = meta.value.clone().unwrap_or_default();
        let old: Vec<NodeRecord> = nodes.iter().filter_map(|n| n.value.clone()).collect();
        let mut new_nodes = old.clone();
        if let Err(why) = change(&mut new_meta, &mut new_nodes) {
            return Ok(Err(why));
        }
        let meta_key = (self.meta_key(), meta.mod_revision);
        let mut writes: Vec<((String, i64), Vec<u8>)> = Vec::new();
        if meta.value.as_ref() != Some(&new_meta) {
            writes.push((meta_key.clone(), encode(&new_meta)));
        }
        for n in &new_nodes {
            let before = nodes
                .iter()
                .find(|r| r.value.as_ref().is_some_and(|v| v.uuid == n.uuid));
            if before.and_then(|b| b.value.as_ref()) != Some(n) {
                let rev = before.map_or(0, |b| b.mod_revision);
                writes.push(((self.node_key(&n.uuid), rev), encode(n)));
            }
        }
        for chunk in writes.chunks(OPS_PER_TXN) {
            let mut unchanged: Vec<(String, i64)> = chunk.iter().map(|(k, _)| k.clone()).collect();
            if !unchanged.contains(&meta_key) {
                unchanged.push(meta_key.clone());
            }
            let puts = chunk
                .iter()
                .map(|((k, _), v)| (k.clone(), v.clone()))
                .collect();
            if !self.write_if(&unchanged, puts)? {
                return Ok(Ok(false));
            }
        }
        Ok(Ok(true))
    }
}

impl NodeStore for EtcdStore {
    fn node(&self, uuid: &str) -> Result<Option<NodeRecord>, StoreError> {
        Ok(self.read(&self.node_key(uuid))?.value)
    }

    fn nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        Ok(self
            .read_all()?
            .1
            .into_iter()
            .filter_map(|r| r.value)
            .collect())
    }

    fn change_node(
        &self,
        uuid: &str,
        change: Change<'_>,
    ) -> Result<Result<Option<NodeRecord>, Refusal>, StoreError> {
        let key = self.node_key(uuid);
        for _ in 0..ATTEMPTS {
            let old = self.read::<NodeRecord>(&key)?;
            let new = match change(old.value) {
                Ok(new) => new,
                Err(why) => return Ok(Err(why)),
            };
            let Some(record) = new else {
                return Ok(Ok(None));
            };
            let unchanged = [(key.clone(), old.mod_revision)];
            if self.write_if(&unchanged, vec![(key.clone(), encode(&record))])? {
                return Ok(Ok(Some(record)));
            }
        }
        Err(self.contention())
    }

    fn meta(&self) -> Result<Meta, StoreError> {
        Ok(self.read(&self.meta_key())?.value.unwrap_or_default())
    }

    fn change_all(&self, change: ChangeAll<'_>) -> Result<Result<(), Refusal>, StoreError> {
        for _ in 0..ATTEMPTS {
            match self.change_all_once(&mut *change)? {
                Ok(true) => return Ok(Ok(())),
                Ok(false) => continue,
                Err(why) => return Ok(Err(why)),
            }
        }
        Err(self.contention())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_read_with_and_without_a_prefix() {
        let a = EtcdAddress::parse("10.0.0.1:2379,10.0.0.2:2379").unwrap();
        assert_eq!(a.endpoints, ["10.0.0.1:2379", "10.0.0.2:2379"]);
        assert_eq!(a.prefix, DEFAULT_PREFIX);
        let a = EtcdAddress::parse("etcd:2379/site-a/").unwrap();
        assert_eq!(a.prefix, "/site-a");
        for bad in ["", "host", "host:port", ":2379", "a:1,,b:2"] {
            assert!(EtcdAddress::parse(bad).is_err(), "{bad}");
        }
    }
}
