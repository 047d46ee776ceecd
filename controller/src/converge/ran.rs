//! What a reencryption the plan started or resumed did, or left to run:
//! the vocabulary both the executor (`execute.rs`) and the in-place runs
//! (`in_place.rs`) speak, so neither needs the other's types.

use crate::inplace::estimate::MibPerSec;
use crate::luks2::reencryption::Operation;
use api_types::KeyslotId;
use providers::Passphrase;

/// What an in-place run did, for the outcome.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Encrypted {
    /// What it did.
    pub operation: Operation,
    /// MiB encrypted by this run.
    pub mib: u64,
    /// How long it took, seconds.
    pub seconds: f64,
    /// Its rate.
    pub rate: MibPerSec,
}

/// Where the data of a reencryption the plan starts or resumes is
/// rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunAt {
    /// Here, offline, to its end, before converging returns.
    Here,
    /// Later, online: converging starts it (or finds it started) and hands
    /// back an [`OnlineRun`] for the caller to run once the volume is
    /// active (a boot: in the background, the volume mounted meanwhile).
    Online,
}

/// A reencryption left to run online: what activating the volume and
/// running it need. The passphrase is zeroized on drop.
#[derive(Debug, Clone)]
pub struct OnlineRun {
    /// What it does.
    pub operation: Operation,
    /// The old volume key's keyslot to run it by.
    pub old: Option<KeyslotId>,
    /// The new volume key's keyslot (a rotation).
    pub new: Option<KeyslotId>,
    /// The passphrase of both.
    pub passphrase: Passphrase,
}

impl OnlineRun {
    /// The keyslot to activate the volume by: any for a rotation (it opens
    /// by the pair, old key and new).
    pub fn activation_slot(&self) -> Option<KeyslotId> {
        match self.operation {
            Operation::Encrypt | Operation::Decrypt => self.old,
            Operation::RotateVolumeKey => None,
        }
    }
}

/// What finishing a reencryption did: ran it, or left it to run online.
#[derive(Debug)]
pub(super) enum Ran {
    /// Ran to its end here.
    Done(Encrypted),
    /// Ran to its end here, and its header was written anew with only the
    /// key that opened it: converging plans again, to enrol the others.
    Rewritten(Encrypted),
    /// To run online.
    Online(OnlineRun),
}
