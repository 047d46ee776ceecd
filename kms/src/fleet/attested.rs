//! Attestation-gated release over the node records: a node's first quote
//! records its TPM's attestation key and PCR policy; every later request
//! must carry a quote that verifies under that key, over a nonce this KMS
//! issued for it and never accepted before, reporting PCR values the
//! policy allows ([`crate::attest`] checks the quote itself).

use super::record::{now, AttestRecord, NodeRecord};
use super::store::Refusal;
use super::{Fleet, FleetError};
use crate::attest::{self, Quoted};
use base64::Engine;

/// A node's quote, as its request carried it (TPM2B_PUBLIC contents,
/// TPMS_ATTEST, TPMT_SIGNATURE).
#[derive(Debug, Clone)]
pub struct Evidence {
    /// The attestation key.
    pub ak_public: Vec<u8>,
    /// The quote.
    pub quote: Vec<u8>,
    /// Its signature.
    pub signature: Vec<u8>,
}

/// A quote whose signature and nonce were checked; what the record must
/// still agree with.
pub(super) struct Checked {
    ak: String,
    quoted: Quoted,
    expiry: u64,
    nonce_id: String,
}

fn refused(why: String) -> Refusal {
    Refusal(FleetError::Attestation(why).to_string())
}

impl Fleet {
    /// A nonce for `uuid`'s next quote.
    pub fn challenge(&self, uuid: &str) -> Result<Vec<u8>, FleetError> {
        let key = self.keyring.nonce_key(&self.current()?)?;
        Ok(key.issue(uuid, now()))
    }

    /// The quote's signature and nonce, checked without the store (`None`
    /// without a quote); [`admit`] checks it against the node's record.
    pub(super) fn check_evidence(
        &self,
        uuid: &str,
        evidence: Option<&Evidence>,
    ) -> Result<Option<Checked>, FleetError> {
        evidence.map(|ev| self.check(uuid, ev)).transpose()
    }

    /// The quote's signature and nonce.
    fn check(&self, uuid: &str, ev: &Evidence) -> Result<Checked, FleetError> {
        let bad = |e: attest::AttestError| FleetError::Attestation(e.to_string());
        let quoted = attest::verify(&ev.ak_public, &ev.quote, &ev.signature).map_err(bad)?;
        let key = self.keyring.nonce_key(&self.current()?)?;
        let expiry = key.check(uuid, &quoted.nonce, now()).map_err(bad)?;
        Ok(Checked {
            ak: base64::engine::general_purpose::STANDARD.encode(&ev.ak_public),
            nonce_id: attest::nonce_id(&quoted.nonce),
            quoted,
            expiry,
        })
    }

    /// Allows `uuid`'s quotes to report the PCR `values` (a planned
    /// update): their digest joins its policy.
    pub fn allow(&self, uuid: &str, values: &[(u32, Vec<u8>)]) -> Result<(), FleetError> {
        self.change(uuid, &mut |old| {
            let mut r = old.ok_or_else(|| Refusal(format!("node {uuid} has no record")))?;
            let att = r.attestation.as_mut().ok_or_else(|| {
                Refusal(format!("node {uuid} has sent no quote yet: it has no PCR policy to add to"))
            })?;
            let mut given: Vec<u32> = values.iter().map(|(n, _)| *n).collect();
            given.sort_unstable();
            if given != att.pcrs {
                return Err(Refusal(format!(
                    "node {uuid}'s quotes cover PCRs {:?}: give a value for each of them, and no other",
                    att.pcrs
                )));
            }
            let mut sorted = values.to_vec();
            sorted.sort_by_key(|(n, _)| *n);
            let parts: Vec<&[u8]> = sorted.iter().map(|(_, v)| v.as_slice()).collect();
            let digest = hex::encode(attest::pcr_digest(&parts));
            if !att.allowed.contains(&digest) {
                att.allowed.push(digest);
            }
            Ok(Some(r))
        })
        .map(|_| ())
    }
}

/// Checks the node's request against its record, inside the change that
/// writes it (so two replicas never both accept one nonce): with a quote,
/// the key and policy are recorded at the first one and checked at every
/// later one; without, refused once the record holds an attestation key.
pub(super) fn admit(
    r: &mut NodeRecord,
    checked: Option<&Checked>,
    now: u64,
) -> Result<(), Refusal> {
    match (&mut r.attestation, checked) {
        (None, None) => Ok(()),
        (Some(_), None) => Err(refused(format!(
            "node {} registered a TPM attestation key: its requests must carry a quote (a key with `kms: {{attest: true}}`)",
            r.uuid
        ))),
        (att, Some(c)) => accept(att, c, now),
    }
}

/// Records or checks a quote in the node's attestation record.
fn accept(att: &mut Option<AttestRecord>, c: &Checked, now: u64) -> Result<(), Refusal> {
    let digest = hex::encode(&c.quoted.pcr_digest);
    let Some(a) = att else {
        *att = Some(AttestRecord {
            ak: c.ak.clone(),
            pcrs: c.quoted.pcrs.clone(),
            allowed: vec![digest],
            used: vec![(c.expiry, c.nonce_id.clone())],
        });
        return Ok(());
    };
    if a.ak != c.ak {
        return Err(refused(
            "the quote is signed by another attestation key than the one this node registered (another TPM?)".into(),
        ));
    }
    if a.pcrs != c.quoted.pcrs {
        return Err(refused(format!(
            "the quote covers PCRs {:?}; the node's policy covers {:?}",
            c.quoted.pcrs, a.pcrs
        )));
    }
    a.used.retain(|(expiry, _)| *expiry >= now);
    if a.used.iter().any(|(_, id)| *id == c.nonce_id) {
        return Err(refused(
            "the quote's nonce was used before: a replayed quote".into(),
        ));
    }
    let Some(at) = a.allowed.iter().position(|d| *d == digest) else {
        return Err(refused(format!(
            "the node's PCR values (PCRs {:?}, digest {digest}) are not the ones its policy allows: its boot changed; for a planned update, allow the new values first (volctl kms allow --node UUID --pcr N=HEX)",
            a.pcrs
        )));
    };
    a.allowed.drain(..at);
    a.used.push((c.expiry, c.nonce_id.clone()));
    Ok(())
}
