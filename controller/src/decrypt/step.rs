//! The pure part of a decryption in place: from what the device and the
//! detached header file show, the next step. Every state a cut can leave
//! maps to the step that goes on from it, so a run started anew after any
//! cut finishes the work (`docs/migration.md`, "Decryption in place").

use crate::device::DetachedHeader;

/// What the device itself shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceSide {
    /// A LUKS2 header (either copy) with this UUID.
    Luks2 {
        /// Its UUID.
        uuid: String,
    },
    /// No LUKS2 header: wiped, or already overwritten by moved plaintext.
    NotLuks,
}

/// One step of a decryption in place, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    /// The device's header copied to the file (written beside, synced,
    /// then renamed into place).
    Export,
    /// The device's own header wiped (both copies, one synced write).
    Wipe,
    /// The decryption recorded in the file, then run on (one KDF run for
    /// both).
    Record,
    /// The data decrypted and moved to the device's start, resumed where
    /// a cut run stopped (a KDF run).
    Run,
    /// The file, now holding no key, removed.
    Finish,
}

impl Step {
    /// Every step, in order.
    pub const ALL: [Step; 5] = [
        Step::Export,
        Step::Wipe,
        Step::Record,
        Step::Run,
        Step::Finish,
    ];

    /// This step and those after it.
    pub fn and_after(self) -> impl Iterator<Item = Step> {
        Step::ALL.into_iter().skip_while(move |s| *s != self)
    }

    /// What it does, in a plan's words.
    pub fn describe(self) -> &'static str {
        match self {
            Step::Export => "copy the LUKS2 header to the header file (the only copy of the keys from the next step on)",
            Step::Wipe => "wipe the header on the device (nothing opens it by a header its data moves under)",
            Step::Record => "record the decryption in the header file (one KDF run with the next step)",
            Step::Run => "decrypt the data, moving it to the device's start (resumable; resumed, a KDF run)",
            Step::Finish => "remove the header file (it holds no key any more)",
        }
    }
}

/// A state no step goes on from: nothing was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StepRefusal {
    /// Neither a LUKS2 header on the device nor a decryption under way.
    #[error("it holds no LUKS2 header and no decryption of it is under way (no header file): nothing to decrypt")]
    NotEncrypted,
    /// The header file belongs to another volume.
    #[error("the header file holds the header of another volume (UUID {file}; the device's is {device}); move the file away if it is stale")]
    OtherVolume {
        /// The file's header UUID.
        file: String,
        /// The device's.
        device: String,
    },
    /// The device shows a LUKS2 header again although the file records
    /// that its data has started to move: opening either could destroy
    /// data.
    #[error("the device shows a LUKS2 header although the header file records its decryption as started; volctl stops here: inspect both (`cryptsetup luksDump`) before anything else")]
    HeaderBack,
}

/// The next step from what the file (`None`: no file) and the device show.
pub fn next_step(file: Option<&DetachedHeader>, device: &DeviceSide) -> Result<Step, StepRefusal> {
    use DetachedHeader::{Decrypting, Exported, Finished};
    match (file, device) {
        (None, DeviceSide::Luks2 { .. }) => Ok(Step::Export),
        (None, DeviceSide::NotLuks) => Err(StepRefusal::NotEncrypted),
        (Some(f), DeviceSide::Luks2 { uuid }) if f.uuid() != uuid => {
            Err(StepRefusal::OtherVolume {
                file: f.uuid().to_string(),
                device: uuid.clone(),
            })
        }
        (Some(Exported { .. }), DeviceSide::Luks2 { .. }) => Ok(Step::Wipe),
        (Some(Exported { .. }), DeviceSide::NotLuks) => Ok(Step::Record),
        (Some(Decrypting { .. } | Finished { .. }), DeviceSide::Luks2 { .. }) => {
            Err(StepRefusal::HeaderBack)
        }
        (Some(Decrypting { .. }), DeviceSide::NotLuks) => Ok(Step::Run),
        (Some(Finished { .. }), DeviceSide::NotLuks) => Ok(Step::Finish),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn luks(uuid: &str) -> DeviceSide {
        DeviceSide::Luks2 { uuid: uuid.into() }
    }

    #[test]
    fn every_state_a_cut_leaves_goes_on_to_its_step() {
        let exported = DetachedHeader::Exported { uuid: "u".into() };
        let decrypting = DetachedHeader::Decrypting { uuid: "u".into() };
        let finished = DetachedHeader::Finished { uuid: "u".into() };
        assert_eq!(next_step(None, &luks("u")), Ok(Step::Export));
        assert_eq!(next_step(Some(&exported), &luks("u")), Ok(Step::Wipe));
        assert_eq!(
            next_step(Some(&exported), &DeviceSide::NotLuks),
            Ok(Step::Record)
        );
        assert_eq!(
            next_step(Some(&decrypting), &DeviceSide::NotLuks),
            Ok(Step::Run)
        );
        assert_eq!(
            next_step(Some(&finished), &DeviceSide::NotLuks),
            Ok(Step::Finish)
        );
    }

    #[test]
    fn a_stale_file_a_plain_device_and_a_header_come_back_are_refused() {
        let other = DetachedHeader::Exported { uuid: "v".into() };
        assert!(matches!(
            next_step(Some(&other), &luks("u")),
            Err(StepRefusal::OtherVolume { .. })
        ));
        assert_eq!(
            next_step(None, &DeviceSide::NotLuks),
            Err(StepRefusal::NotEncrypted)
        );
        let decrypting = DetachedHeader::Decrypting { uuid: "u".into() };
        assert_eq!(
            next_step(Some(&decrypting), &luks("u")),
            Err(StepRefusal::HeaderBack)
        );
    }

    #[test]
    fn a_plan_lists_the_steps_left() {
        let left: Vec<Step> = Step::Record.and_after().collect();
        assert_eq!(left, [Step::Record, Step::Run, Step::Finish]);
    }
}
