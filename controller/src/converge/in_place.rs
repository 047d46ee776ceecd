//! Carrying out an in-place encryption (`crate::inplace` has the why):
//! shrink, start (the header with every key and volctl's proof), run to
//! the end with progress, then drop the proof. A resumed one only runs
//! and drops the proof.

use super::execute::{token_parts, Executor, TokenParts};
use super::keys::key_for;
use super::plan::NewSlot;
use super::ran::{Encrypted, OnlineRun, Ran, RunAt};
use super::{blocking, ConvergeError};
use crate::device::{
    Contents, EncryptionStart, FormatParams, LuksDevice, ReencryptRun, TokenChange, TokensError,
};
use crate::inplace::{self, estimate::MibPerSec};
use crate::luks2::binding::{Binder, VolumeKey};
use crate::luks2::header::Luks2Header;
use crate::luks2::reencryption::{self, FinalSegment, Operation};
use crate::luks2::token::TokenData;
use api_types::KeyslotId;
use providers::{Enrolled, Passphrase};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

impl Executor<'_> {
    /// Shrinks the filesystem, writes the header with the keys of `slots`
    /// (those made) and the proof, and runs the encryption to its end (or
    /// leaves it to run online).
    pub(super) async fn encrypt_in_place(
        &self,
        slots: &[NewSlot],
        enrolled: &mut BTreeMap<KeyslotId, Enrolled>,
    ) -> Result<Ran, ConvergeError> {
        let path = self.device.path().to_path_buf();
        let size = blocking(self.device, |d| d.size()).await?;
        let prep = inplace::prepare(&path, "a filesystem", size)?;
        inplace::shrink(&path, &prep)?;
        let made: Vec<(KeyslotId, Enrolled)> = slots
            .iter()
            .filter_map(|s| Some((s.slot, enrolled.remove(&s.slot)?)))
            .collect();
        let first = made.first().map(|(s, e)| (*s, e.passphrase.clone()));
        let Some((first, passphrase)) = first else {
            return Err(super::PlanError::NothingToEnrol(
                "no key could be made; nothing was written".into(),
            )
            .into());
        };
        self.start(&made).await?;
        self.finish(Operation::Encrypt, Some((first, passphrase)))
            .await
    }

    /// Writes the in-place header: every key made, their tokens, the proof.
    async fn start(&self, made: &[(KeyslotId, Enrolled)]) -> Result<(), ConvergeError> {
        let format = self.format_params();
        let vk = self.volume_key.clone();
        let binder = Binder::new(&vk);
        let parts = made
            .iter()
            .map(|(slot, e)| {
                token_parts(
                    key_for(self.keys, *slot),
                    *slot,
                    TokenData::of(e.token_data.clone()),
                    &binder,
                )
            })
            .collect::<Result<Vec<TokenParts>, _>>()?;
        let keys: Vec<(KeyslotId, Passphrase)> = made
            .iter()
            .map(|(s, e)| (*s, e.passphrase.clone()))
            .collect();
        blocking(self.device, move |d| {
            let tokens =
                |h: &Luks2Header| header_tokens(h, &parts, &vk, Operation::Encrypt, vec![]);
            let pairs: Vec<(KeyslotId, &[u8])> =
                keys.iter().map(|(s, p)| (*s, p.expose())).collect();
            d.start_encryption(&EncryptionStart {
                format: &format,
                volume_key: &vk,
                keys: &pairs,
                shift: inplace::SHIFT,
                record: true,
                uuid: None,
                tokens: &tokens,
            })
        })
        .await
    }

    /// Runs the recorded reencryption to its end, then cleans up after
    /// it: an ordinary volume again (or, [`RunAt::Online`], leaves it to run
    /// online). It runs by `opener` (a keyslot and its passphrase; by
    /// default the key that opened the volume), a rotation with the old
    /// key's keyslot beside it.
    pub(super) async fn finish(
        &self,
        operation: Operation,
        opener: Option<(KeyslotId, Passphrase)>,
    ) -> Result<Ran, ConvergeError> {
        let Contents::Luks2(h) = blocking(self.device, |d| d.contents()).await? else {
            return Err(super::PlanError::NothingToEnrol("the header is gone".into()).into());
        };
        let size = blocking(self.device, |d| d.size()).await?;
        let left = reencryption::pending_bytes(&h.json, size);
        let (slot, passphrase) = opener
            .or_else(|| self.unlock.clone())
            .expect("a reencryption is started or resumed by a key that opens the volume");
        let (old, new) = run_pair(&h, operation, slot);
        if let Some(done) = self
            .finish_left_to_volctl(&h, slot, &passphrase, operation)
            .await?
        {
            return Ok(Ran::Rewritten(done));
        }
        let run = OnlineRun {
            operation,
            old,
            new,
            passphrase,
        };
        if self.run_at == RunAt::Online {
            return Ok(Ran::Online(run));
        }
        self.run_here(run, slot, left).await
    }

    /// Runs `run` in this process with progress, then finishes what
    /// libcryptsetup leaves and cleans up.
    async fn run_here(
        &self,
        run: OnlineRun,
        slot: KeyslotId,
        left: u64,
    ) -> Result<Ran, ConvergeError> {
        let operation = run.operation;
        let mut reporter = ProgressReport::new(self.spec.name.clone(), operation, left);
        let started = Instant::now();
        let by = run.passphrase.clone();
        blocking(self.device, move |d| {
            let params = ReencryptRun {
                operation,
                old: run.old,
                new: run.new,
                passphrase: run.passphrase.expose(),
                active: None,
                header: None,
            };
            d.run_reencryption(&params, &mut |done, total| {
                reporter.step(done, total);
                true
            })
        })
        .await?;
        // Recovering a cut step can leave the last step in the shape
        // libcryptsetup does not resume (it stops there).
        let rewritten = match blocking(self.device, |d| d.contents()).await? {
            Contents::Luks2(h) => self
                .finish_left_to_volctl(&h, slot, &by, operation)
                .await?
                .is_some(),
            _ => false,
        };
        let took = started.elapsed();
        self.clean_up().await?;
        let done = Encrypted {
            operation,
            mib: left >> 20,
            seconds: took.as_secs_f64(),
            rate: MibPerSec::of(left, took),
        };
        Ok(if rewritten {
            Ran::Rewritten(done)
        } else {
            Ran::Done(done)
        })
    }

    /// Finishes what libcryptsetup 2.6 must not be asked to
    /// ([`reencryption::left_to_volctl`]), each write ordered so that a cut
    /// anywhere leaves a state this same function finishes:
    /// - an encryption's last step flagged (cut inside it): the step done
    ///   from its moved copy, then an ordinary header, then the copy wiped
    ///   (its plaintext must not stay; wiped earlier, a cut would leave the
    ///   flagged header with its source gone);
    /// - every byte written, not torn down: an encryption's copy wiped
    ///   first (nothing needs it, the header does not change), then the
    ///   ordinary header.
    ///
    /// The ordinary header has the same volume key and UUID, and the slot
    /// `slot` that opened it, placed the cut-safe way; converging plans
    /// again after it, to enrol the other keys. `None` when the header is in
    /// neither shape.
    async fn finish_left_to_volctl(
        &self,
        h: &Luks2Header,
        slot: KeyslotId,
        passphrase: &Passphrase,
        operation: Operation,
    ) -> Result<Option<Encrypted>, ConvergeError> {
        let started = Instant::now();
        let token_data = h.volctl_token_data(slot);
        let redone = if let Some(step) = reencryption::moved_step_flagged(&h.json) {
            tracing::warn!(volume = %self.spec.name, mib = step.len >> 20, "a cut left the last step of the encryption flagged: doing it from the moved copy");
            let vk = self.volume_key.clone();
            blocking(self.device, move |d| d.redo_moved_step(&step, &vk)).await?;
            let data = FinalSegment {
                offset: step.to,
                sector_size: step.sector_size,
            };
            self.write_finished_header(h, data, slot, passphrase.clone(), token_data)
                .await?;
            self.wipe_moved_copy((step.from, step.len)).await?;
            step.len
        } else if let Some(data) = reencryption::finished_not_torn_down(&h.json) {
            tracing::warn!(volume = %self.spec.name, "a cut left a reencryption with every byte written but not torn down: writing its finished header");
            if let Some(copy) = reencryption::moved_copy(&h.json) {
                self.wipe_moved_copy(copy).await?;
            }
            self.write_finished_header(h, data, slot, passphrase.clone(), token_data)
                .await?;
            0
        } else {
            return Ok(None);
        };
        let took = started.elapsed();
        Ok(Some(Encrypted {
            operation,
            mib: redone >> 20,
            seconds: took.as_secs_f64(),
            rate: MibPerSec::of(redone, took),
        }))
    }

    /// Overwrites an encryption's moved copy `(offset, length)` with random
    /// bytes.
    async fn wipe_moved_copy(&self, (offset, len): (u64, u64)) -> Result<(), ConvergeError> {
        blocking(self.device, move |d| d.wipe_moved_copy(offset, len)).await
    }

    /// Replaces the header of a volume whose data is all under this
    /// volume key (in `data`) with an ordinary one: the same volume key and
    /// UUID (`h`'s), the slot that opened it with its token data.
    async fn write_finished_header(
        &self,
        h: &Luks2Header,
        data: FinalSegment,
        slot: KeyslotId,
        passphrase: Passphrase,
        token_data: TokenData,
    ) -> Result<(), ConvergeError> {
        let format = FormatParams {
            sector_size: data.sector_size,
            ..self.format_params()
        };
        let vk = self.volume_key.clone();
        let binder = Binder::new(&vk);
        let part = token_parts(key_for(self.keys, slot), slot, token_data, &binder)?;
        let uuid = h.uuid.clone();
        blocking(self.device, move |d| {
            let binder = Binder::new(&vk);
            let tokens = |h: &Luks2Header| -> Result<Vec<serde_json::Value>, TokensError> {
                let salt = h.keyslot(slot).map(|k| k.kdf.salt().to_string());
                Ok(vec![part.with_owner(&binder, &salt.unwrap_or_default())])
            };
            d.start_encryption(&EncryptionStart {
                format: &format,
                volume_key: &vk,
                keys: &[(slot, passphrase.expose())],
                shift: data.offset,
                record: false,
                uuid: Some(&uuid),
                tokens: &tokens,
            })
        })
        .await
    }

    /// Removes what a finished reencryption leaves: its temporary keyslots
    /// (libcryptsetup drops a rotation's at its end; a cut cleanup may have
    /// left some), then its proof token.
    pub(super) async fn clean_up(&self) -> Result<(), ConvergeError> {
        clean_up(self.device).await
    }
}

/// Removes what a finished reencryption leaves on `device` (see
/// [`Executor::clean_up`]); nothing when it left nothing or has not
/// finished.
pub async fn clean_up(device: &Arc<dyn LuksDevice>) -> Result<(), ConvergeError> {
    let Contents::Luks2(h) = blocking(device, |d| d.contents()).await? else {
        return Ok(());
    };
    // Never while it still runs (a run stopped part way): the proof is
    // what lets the next run go on.
    if h.in_reencryption() {
        return Ok(());
    }
    let Some((id, token)) = reencryption::find_token(&h) else {
        return Ok(());
    };
    let present = h.occupied_slots();
    for slot in token
        .temporary
        .into_iter()
        .map(|t| t.slot)
        .filter(|s| present.contains(s))
    {
        blocking(device, move |d| d.destroy_keyslot(slot)).await?;
    }
    blocking(device, move |d| d.token(TokenChange::Remove(id))).await?;
    Ok(())
}

/// The tokens a reencryption's new header carries: each configured
/// slot's (its owner tag over the keyslot's salt in `h`) and volctl's proof
/// (keyed by `volume_key`, the key the volume ends with).
pub(super) fn header_tokens(
    h: &Luks2Header,
    parts: &[TokenParts],
    volume_key: &VolumeKey,
    operation: Operation,
    temporary: Vec<reencryption::TemporarySlot>,
) -> Result<Vec<serde_json::Value>, TokensError> {
    let binder = Binder::new(volume_key);
    let mut out: Vec<serde_json::Value> = parts
        .iter()
        .flat_map(|p| {
            let salt = h.keyslot(p.slot).map(|k| k.kdf.salt().to_string());
            // clevis reads the first token listing the keyslot: its own first.
            p.clevis()
                .into_iter()
                .chain([p.with_owner(&binder, &salt.unwrap_or_default())])
        })
        .collect();
    let proof = reencryption::token_for(h, operation, temporary, volume_key)
        .ok_or(TokensError::NoCryptSegment)?;
    out.push(serde_json::to_value(proof).expect("token serialises"));
    Ok(out)
}

/// How far a reencryption got: what `volctl status` shows while one runs
/// online.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Snapshot {
    /// Bytes done (of the whole run, from earlier runs too).
    pub done_bytes: u64,
    /// Bytes in all.
    pub total_bytes: u64,
    /// This run's rate, once it has done something.
    pub rate: Option<MibPerSec>,
    /// Seconds left at that rate.
    pub eta_seconds: Option<u64>,
}

impl Snapshot {
    /// Before the first step (its size not known yet).
    pub const START: Snapshot = Snapshot {
        done_bytes: 0,
        total_bytes: 0,
        rate: None,
        eta_seconds: None,
    };

    /// Whole percent done.
    pub fn percent(&self) -> u64 {
        self.done_bytes.saturating_mul(100) / self.total_bytes.max(1)
    }
}

/// Follows a reencryption's progress: a line every tenth of the way on
/// stderr (and the console at boot); the rate is this run's (a resumed
/// run starts part way).
pub struct ProgressReport {
    volume: String,
    /// What runs, as the progress line says it.
    doing: &'static str,
    started: Instant,
    /// Plaintext bytes when this run started.
    left: u64,
    next: u64,
}

impl ProgressReport {
    /// Follows a run of `operation` on `volume` with `left` bytes to do.
    pub fn new(volume: String, operation: Operation, left: u64) -> Self {
        Self::labelled(volume, doing(operation), left)
    }

    /// Follows a run that progress lines call `doing` (e.g. "decrypting
    /// in place").
    pub fn labelled(volume: String, doing: &'static str, left: u64) -> Self {
        ProgressReport {
            volume,
            doing,
            started: Instant::now(),
            left,
            next: 0,
        }
    }

    /// Where the run is: `done` of `total` bytes. Prints a line when it
    /// passed another tenth.
    pub fn step(&mut self, done: u64, total: u64) -> Snapshot {
        let from = total.saturating_sub(self.left);
        let this_run = done.saturating_sub(from);
        let rate = (this_run > 0).then(|| MibPerSec::of(this_run, self.started.elapsed()));
        let snap = Snapshot {
            done_bytes: done,
            total_bytes: total,
            rate,
            eta_seconds: rate.map(|r| r.seconds_for(total.saturating_sub(done))),
        };
        let tenth = done.saturating_mul(10) / total.max(1);
        if tenth >= self.next {
            self.next = tenth + 1;
            self.print(&snap, tenth * 10);
        }
        snap
    }

    fn print(&self, snap: &Snapshot, percent: u64) {
        tracing::info!(volume = %self.volume, done = snap.done_bytes, total = snap.total_bytes, "{}", self.doing);
        let speed = match (snap.rate, snap.eta_seconds) {
            (Some(rate), Some(left)) => format!(", {:.0} MiB/s, about {left} s left", rate.0),
            _ => String::new(),
        };
        let line = format!(
            "{}: {} {percent}% ({}/{} MiB{speed})\n",
            self.volume,
            self.doing,
            snap.done_bytes >> 20,
            snap.total_bytes >> 20,
        );
        let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
        crate::inplace::show_progress(&line);
    }
}

/// The keyslots a run of `operation` opened by `slot` goes by: an
/// encryption by that slot alone; a rotation by the old key's temporary
/// slot beside the new one.
fn run_pair(
    h: &Luks2Header,
    operation: Operation,
    slot: KeyslotId,
) -> (Option<KeyslotId>, Option<KeyslotId>) {
    match operation {
        Operation::Encrypt | Operation::Decrypt => (Some(slot), None),
        Operation::RotateVolumeKey => {
            let beside = reencryption::find_token(h)
                .and_then(|(_, t)| t.temporary.into_iter().find(|t| t.of == slot))
                .map(|t| t.slot);
            (beside, Some(slot))
        }
    }
}

/// What a run of `operation` does, as progress lines say it.
pub fn doing(operation: Operation) -> &'static str {
    match operation {
        Operation::Encrypt => "encrypting in place",
        Operation::RotateVolumeKey => "re-encrypting to the new volume key",
        Operation::Decrypt => "decrypting in place",
    }
}
