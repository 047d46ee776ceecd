//! `threshold` (volctl's): the slot's passphrase is a fresh random key,
//! split into one share per member (Shamir's secret sharing,
//! [`shamir`]); each share is sealed by its member's own passphrase
//! ([`sealed_share`]) and kept in the slot's token with the member's token
//! data. Unlocking asks every member at once; the first `required`
//! answers give the shares, and the shares the passphrase (one KDF run for
//! the slot, as any key).
//!
//! A changed config (a member added, removed or changed, `required`
//! changed) changes the binding, and the planner makes a new slot; until
//! then the old slot is opened with the members the config still has:
//! each token entry is paired with the config's first unpaired member of
//! its kind, and the token's own `required` counts.

mod sealed_share;
pub mod shamir;

use crate::sealed_key::{bad_token, passphrase, random_key, Base64Bytes};
use crate::{Enrolled, KeyContext, KeyData, KeyProvider, Passphrase, ProviderError};
use api_types::KeySource;
use async_trait::async_trait;
use futures_util::stream::{FuturesUnordered, StreamExt};
use futures_util::FutureExt;

/// What a threshold slot's token keeps.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ThresholdTokenData {
    /// How many members must answer.
    pub required: u8,
    /// Each member's token data and sealed share, in the config's order.
    pub members: Vec<MemberTokenData>,
}

/// One member's part of a threshold token.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MemberTokenData {
    /// The member's kind.
    pub kind: KeySource,
    /// The member's own token data (a kms member's sealed key, a tpm
    /// member's sealed object; `{}` for static and nodeID members).
    pub data: serde_json::Value,
    /// Its share, sealed by the member's passphrase.
    pub share: Base64Bytes,
}

/// Keys split among members.
pub struct ThresholdProvider {
    required: u8,
    members: Vec<Box<dyn KeyProvider>>,
    report: crate::provider::LastReport,
}

impl ThresholdProvider {
    /// A threshold of `required` among `members` (validated: 1 ≤ required
    /// ≤ members ≤ 16).
    pub fn new(required: u8, members: Vec<Box<dyn KeyProvider>>) -> Self {
        ThresholdProvider {
            required,
            members,
            report: Default::default(),
        }
    }

    /// Each token entry's index with the config's member that answers for
    /// it: the first unpaired member of its kind.
    fn pairs(&self, token: &ThresholdTokenData) -> Vec<(usize, &dyn KeyProvider)> {
        let mut used = vec![false; self.members.len()];
        let mut pairs = Vec::new();
        for (i, entry) in token.members.iter().enumerate() {
            let found =
                (0..self.members.len()).find(|&j| !used[j] && self.members[j].kind() == entry.kind);
            if let Some(j) = found {
                used[j] = true;
                pairs.push((i, self.members[j].as_ref()));
            }
        }
        pairs
    }

    /// Asks every member at once for its share (a typed member answers
    /// with `answer`); the first `required` shares give the passphrase.
    async fn gather(
        &self,
        ctx: &KeyContext,
        token_data: &KeyData,
        answer: Option<&Passphrase>,
    ) -> Result<Passphrase, ProviderError> {
        let token = match token_data {
            KeyData::Threshold(token) => token,
            KeyData::ClevisSss(jwe) => return self.clevis_sss(ctx, jwe).await,
            other => return Err(bad_token(self.kind(), other)),
        };
        let pairs = self.pairs(token);
        let mut answers = Answers::new(token, pairs.iter().map(|(i, _)| *i).collect());
        let mut asking: FuturesUnordered<_> = pairs
            .into_iter()
            .map(
                |(i, p)| async move { (i, share_of(p, ctx, (i, &token.members[i]), answer).await) },
            )
            .collect();
        while let Some((i, got)) = asking.next().await {
            answers.record(i, got);
            if answers.shares.len() == usize::from(token.required) {
                // The members made on this node (a TPM) are heard out, so
                // that a PCR change shows before the member is needed; the
                // key servers are not waited for.
                loop {
                    let next = if answers.waiting_here() {
                        asking.next().await
                    } else {
                        asking.next().now_or_never().flatten()
                    };
                    let Some((i, got)) = next else { break };
                    answers.record(i, got);
                }
                self.report.set(answers.report());
                return answers.secret();
            }
        }
        Err(answers.too_few())
    }

    /// The passphrase of a slot `clevis luks bind … sss` bound over Tang
    /// pins: each pin's point from the config's Tang members (each tried
    /// for each pin until one answers; all pins at once), `t` of them
    /// opening the outer JWE.
    async fn clevis_sss(
        &self,
        ctx: &KeyContext,
        jwe: &crate::tang::jwe::ClevisJwe,
    ) -> Result<Passphrase, ProviderError> {
        let sss = crate::tang::sss::SssJwe::read(jwe).map_err(|e| unavailable(e.to_string()))?;
        let tang: Vec<&dyn KeyProvider> = self
            .members
            .iter()
            .map(AsRef::as_ref)
            .filter(|m| m.kind() == KeySource::Tang)
            .collect();
        let mut asking: FuturesUnordered<_> = sss
            .inner
            .iter()
            .enumerate()
            .map(|(i, inner)| {
                let tang = &tang;
                async move { (i, point_of(tang, ctx, inner).await) }
            })
            .collect();
        let (mut points, mut failed) = (Vec::new(), Vec::new());
        while let Some((i, got)) = asking.next().await {
            match got {
                Ok(point) => points.push(point),
                Err(why) => failed.push(format!("clevis pin {i} (tang): {why}")),
            }
            if points.len() == sss.threshold {
                let plain = sss.open(&points).map_err(|e| unavailable(e.to_string()))?;
                return Ok(Passphrase::new(plain.to_vec()));
            }
        }
        Err(unavailable(format!(
            "{} of {} clevis pins needed, {} gave their point: {}",
            sss.threshold,
            sss.inner.len(),
            points.len(),
            failed.join("; ")
        )))
    }
}

/// One clevis tang pin's point, from the first of `tang` whose server
/// answers for it.
async fn point_of(
    tang: &[&dyn KeyProvider],
    ctx: &KeyContext,
    inner: &crate::tang::jwe::ClevisJwe,
) -> Result<zeroize::Zeroizing<Vec<u8>>, String> {
    let header = inner.header().map_err(|e| e.to_string())?;
    let data = KeyData::Tang(crate::TangTokenData {
        url: header.clevis.tang.url.clone(),
        thumbprint: header.kid.clone(),
        jwe: Some(inner.clone()),
    });
    let mut why = Vec::new();
    for member in tang {
        match member.recover(ctx, &data).await {
            Ok(point) => return Ok(zeroize::Zeroizing::new(point.expose().to_vec())),
            Err(e) => why.push(e.to_string()),
        }
    }
    Err(match why.is_empty() {
        true => format!(
            "the config has no tang member for {}",
            header.clevis.tang.url
        ),
        false => why.join("; "),
    })
}

fn unavailable(reason: String) -> ProviderError {
    ProviderError::Unavailable {
        kind: KeySource::Threshold,
        reason,
    }
}

/// `member 1 (kms)`.
fn member(i: usize, kind: KeySource) -> String {
    format!("member {i} ({kind})")
}

/// Asks the member at `i` for its passphrase (a typed member: what the
/// person typed, `answer`) and opens its share.
async fn share_of(
    provider: &dyn KeyProvider,
    ctx: &KeyContext,
    (i, entry): (usize, &MemberTokenData),
    answer: Option<&Passphrase>,
) -> Result<shamir::Share, String> {
    let data = KeyData::read(entry.kind, &entry.data);
    let pass = match answer {
        Some(typed) if provider.kind().typed() => provider.recover_typed(ctx, &data, typed).await,
        _ => provider.recover(ctx, &data).await,
    }
    .map_err(|e| e.to_string())?;
    sealed_share::open(&entry.share.0, pass.expose(), i, entry.kind).map_err(|e| e.to_string())
}

/// What the members asked did, as their answers come.
struct Answers<'t> {
    token: &'t ThresholdTokenData,
    /// The token entries asked (paired with a member of the config).
    asked: Vec<usize>,
    /// Shares opened, with their entry.
    shares: Vec<(usize, shamir::Share)>,
    /// Entries that failed, and why.
    failed: Vec<(usize, String)>,
}

impl<'t> Answers<'t> {
    fn new(token: &'t ThresholdTokenData, asked: Vec<usize>) -> Self {
        Answers {
            token,
            asked,
            shares: Vec::new(),
            failed: Vec::new(),
        }
    }

    fn name(&self, i: usize) -> String {
        member(i, self.token.members[i].kind)
    }

    fn record(&mut self, i: usize, got: Result<shamir::Share, String>) {
        match got {
            Ok(share) => self.shares.push((i, share)),
            Err(why) => self.failed.push((i, why)),
        }
    }

    fn answered(&self, i: usize) -> bool {
        self.shares.iter().any(|(j, _)| *j == i) || self.failed.iter().any(|(j, _)| *j == i)
    }

    /// Whether a member made on this node (a TPM, not a key server) has
    /// not answered yet.
    fn waiting_here(&self) -> bool {
        let here = |i: &&usize| !self.token.members[**i].kind.asks_a_server();
        self.asked.iter().filter(here).any(|i| !self.answered(*i))
    }

    fn failures(&self) -> Vec<String> {
        self.failed
            .iter()
            .map(|(i, why)| format!("{}: {why}", self.name(*i)))
            .collect()
    }

    /// Which members gave their share, and what the others did, when one
    /// failed or had not answered (`None`: every member answered).
    fn report(&self) -> Option<String> {
        let waiting = self
            .asked
            .iter()
            .filter(|i| !self.answered(**i))
            .map(|&i| self.name(i));
        let others = crate::provider::others_did(self.failures(), waiting);
        let gave: Vec<String> = self.shares.iter().map(|(i, _)| self.name(*i)).collect();
        crate::provider::answered_report(&gave.join(", "), &others)
    }

    /// Why too few shares opened.
    fn too_few(&self) -> ProviderError {
        let mut why = self.failures();
        let unpaired = self.token.members.len() - self.asked.len();
        if unpaired > 0 {
            why.push(format!(
                "{unpaired} member(s) of the slot are no longer in the config"
            ));
        }
        unavailable(format!(
            "{} of {} members needed, {} gave their share: {}",
            self.token.required,
            self.token.members.len(),
            self.shares.len(),
            why.join("; ")
        ))
    }

    /// The slot's passphrase from the shares.
    fn secret(&self) -> Result<Passphrase, ProviderError> {
        let shares: Vec<shamir::Share> = self.shares.iter().map(|(_, s)| s.clone()).collect();
        let secret = shamir::combine(&shares).map_err(|e| unavailable(e.to_string()))?;
        Ok(passphrase(&secret))
    }
}

#[async_trait]
impl KeyProvider for ThresholdProvider {
    fn kind(&self) -> KeySource {
        match self.members.iter().any(|m| m.kind().typed()) {
            true => KeySource::ThresholdPrompt,
            false => KeySource::Threshold,
        }
    }

    async fn enroll(&self, ctx: &KeyContext) -> Result<Enrolled, ProviderError> {
        let secret = random_key();
        let shares = shamir::split(
            secret.as_ref(),
            usize::from(self.required),
            self.members.len(),
            &mut rand::rngs::OsRng,
        )
        .map_err(|e| unavailable(e.to_string()))?;
        let enrolled =
            futures_util::future::join_all(self.members.iter().map(|m| m.enroll(ctx))).await;
        let mut members = Vec::with_capacity(shares.len());
        for (i, ((m, share), got)) in self.members.iter().zip(&shares).zip(enrolled).enumerate() {
            let kind = m.kind();
            let e = got.map_err(|e| unavailable(format!("{}: {e}", member(i, kind))))?;
            members.push(MemberTokenData {
                kind,
                data: e.token_data.to_json(),
                share: Base64Bytes(sealed_share::seal(share, e.passphrase.expose(), i, kind)),
            });
        }
        Ok(Enrolled {
            passphrase: passphrase(secret.as_ref()),
            token_data: KeyData::Threshold(ThresholdTokenData {
                required: self.required,
                members,
            }),
        })
    }

    async fn recover(
        &self,
        ctx: &KeyContext,
        token_data: &KeyData,
    ) -> Result<Passphrase, ProviderError> {
        self.gather(ctx, token_data, None).await
    }

    /// With a typed member: the person's answer is its passphrase, the
    /// other members give theirs. An answer that opens no share costs no
    /// KDF run (the slot is not tried).
    async fn recover_typed(
        &self,
        ctx: &KeyContext,
        token_data: &KeyData,
        answer: &Passphrase,
    ) -> Result<Passphrase, ProviderError> {
        self.gather(ctx, token_data, Some(answer)).await
    }

    fn binding_material(&self, ctx: &KeyContext) -> Result<Passphrase, ProviderError> {
        let mut m = Passphrase::new(b"threshold\0".to_vec());
        m.append(&[self.required]);
        for member in &self.members {
            let b = member.binding_material(ctx)?;
            m.append(
                &u64::try_from(b.expose().len())
                    .unwrap_or(u64::MAX)
                    .to_be_bytes(),
            );
            m.append(b.expose());
        }
        Ok(m)
    }

    fn report(&self) -> Option<String> {
        self.report.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{NodeIdProvider, StaticProvider};
    use api_types::SecretString;

    const UUID: &str = "4c4c4544-0038-5910-8057-b4c04f4d3732";

    fn ctx() -> KeyContext {
        KeyContext {
            volume_id: "EPHEMERAL".into(),
        }
    }

    fn stat(p: &str) -> Box<dyn KeyProvider> {
        Box::new(StaticProvider::new(SecretString::new(p)))
    }

    fn node(uuid: &str) -> Box<dyn KeyProvider> {
        Box::new(NodeIdProvider::new(Ok(uuid.into())))
    }

    fn recover(p: &ThresholdProvider, data: &KeyData) -> Result<Passphrase, ProviderError> {
        futures_util::FutureExt::now_or_never(p.recover(&ctx(), data)).expect("no await pending")
    }

    #[test]
    fn any_two_of_three_members_give_the_passphrase_and_one_does_not() {
        let made =
            ThresholdProvider::new(2, vec![stat("alpha-pass"), node(UUID), stat("gamma-pass")]);
        let e = futures_util::FutureExt::now_or_never(made.enroll(&ctx()))
            .unwrap()
            .unwrap();
        let KeyData::Threshold(t) = &e.token_data else {
            panic!("{:?}", e.token_data)
        };
        assert_eq!(t.required, 2);
        assert_eq!(t.members.len(), 3);
        let text = e.token_data.to_json().to_string();
        assert!(
            !text.contains("alpha-pass"),
            "no member passphrase in the token: {text}"
        );
        // Read back from JSON as a token would be.
        let data = KeyData::read(KeySource::Threshold, &e.token_data.to_json());
        assert_eq!(recover(&made, &data).unwrap(), e.passphrase);
        assert_eq!(made.report(), None, "every member answered");

        // One member changed (another static passphrase): two still do.
        let one_off =
            ThresholdProvider::new(2, vec![stat("alpha-pass"), node(UUID), stat("other")]);
        assert_eq!(recover(&one_off, &data).unwrap(), e.passphrase);
        // Two changed (another node too): refused, naming each.
        let two_off = ThresholdProvider::new(
            2,
            vec![
                stat("alpha-pass"),
                node("9b2f0c6e-5d4a-4e1b-8f3c-7a6d5e4c3b2a"),
                stat("other"),
            ],
        );
        let why = recover(&two_off, &data).unwrap_err().to_string();
        assert!(
            why.contains("2 of 3 members needed, 1 gave their share"),
            "{why}"
        );
        assert!(
            why.contains("member 1 (nodeID): its share does not open"),
            "{why}"
        );
        assert!(
            why.contains("member 2 (static): its share does not open"),
            "{why}"
        );
    }

    #[test]
    fn a_member_removed_from_the_config_leaves_the_others_to_open_the_old_slot() {
        let made =
            ThresholdProvider::new(2, vec![stat("alpha-pass"), node(UUID), stat("gamma-pass")]);
        let e = futures_util::FutureExt::now_or_never(made.enroll(&ctx()))
            .unwrap()
            .unwrap();
        // The nodeID member is gone from the config: the statics pair up.
        let now = ThresholdProvider::new(2, vec![stat("alpha-pass"), stat("gamma-pass")]);
        assert_eq!(recover(&now, &e.token_data).unwrap(), e.passphrase);
        assert_ne!(
            now.binding_material(&ctx()).unwrap(),
            made.binding_material(&ctx()).unwrap(),
            "the binding changes: the slot is made again"
        );
        // Only one left: the error says the others are gone.
        let alone = ThresholdProvider::new(1, vec![stat("alpha-pass")]);
        let why = recover(&alone, &e.token_data).unwrap_err().to_string();
        assert!(
            why.contains("2 member(s) of the slot are no longer in the config"),
            "{why}"
        );
    }

    #[test]
    fn the_binding_covers_required_and_each_member() {
        let b = |required, members| {
            ThresholdProvider::new(required, members)
                .binding_material(&ctx())
                .unwrap()
        };
        let base = b(2, vec![stat("a-pass"), node(UUID), stat("b-pass")]);
        assert_eq!(base, b(2, vec![stat("a-pass"), node(UUID), stat("b-pass")]));
        assert_ne!(base, b(3, vec![stat("a-pass"), node(UUID), stat("b-pass")]));
        assert_ne!(base, b(2, vec![stat("a-pass"), node(UUID), stat("c-pass")]));
        assert_ne!(base, b(2, vec![node(UUID), stat("a-pass"), stat("b-pass")]));
    }
}
