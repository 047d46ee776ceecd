//! The one rule that tells the remains of a first format cut short (safe
//! to format again) from a volume: decided here, for the libcryptsetup
//! device and the simulated one alike, from what each can show.

use crate::luks2::consts::{DEFAULT_DATA_OFFSET, LUKS2_SUBSYSTEM};
use crate::luks2::header::Luks2Header;

/// What a device shows of a format that may have been cut short; read
/// lazily (the mark and the data area only when the rule needs them).
pub(super) trait FormatRemains {
    /// The reading error.
    type Error;
    /// Whether volctl's format mark sits at the device's end (whole, or a
    /// torn prefix of it).
    fn marked(&self) -> Result<bool, Self::Error>;
    /// Whether the data area from `offset` was never written.
    fn data_unwritten(&self, offset: u64) -> Result<bool, Self::Error>;
}

/// Why the device is the remains of a first format cut short, if it is:
/// - the format mark and no intact header (cut before the header landed);
/// - a torn primary header, no secondary copy, nothing written after it;
/// - a header volctl wrote (its subsystem) without a volctl token, and
///   nothing written to its data area (cut before the first keyslot's token).
///
/// `header` is the intact header the device would load; `torn_primary_alone`
/// says the primary copy is torn and no secondary exists.
pub(super) fn unfinished_format<R: FormatRemains>(
    dev: &R,
    header: Option<&Luks2Header>,
    torn_primary_alone: bool,
) -> Result<Option<String>, R::Error> {
    if header.is_none() && dev.marked()? {
        return Ok(Some(
            "volctl's format mark and no intact LUKS2 header".into(),
        ));
    }
    if torn_primary_alone {
        return Ok(dev
            .data_unwritten(DEFAULT_DATA_OFFSET)?
            .then(|| "a torn primary header and no secondary copy".to_string()));
    }
    let Some(h) = header else {
        return Ok(None);
    };
    let ours = h.subsystem == LUKS2_SUBSYSTEM && !h.has_volctl_token();
    let offset = h.data_offset().unwrap_or(DEFAULT_DATA_OFFSET);
    Ok((ours && dev.data_unwritten(offset)?).then(|| {
        format!(
            "a volctl header with {} keyslot(s) and no volctl token, and nothing written to its data area",
            h.json.keyslots.len()
        )
    }))
}

#[cfg(test)]
mod tests {
    use crate::device::{Contents, FormatParams, LuksDevice, PbkdfChoice, SimDevice};
    use crate::luks2::binding::VolumeKey;

    #[test]
    fn the_simulated_device_follows_the_same_rule_as_the_real_one() {
        let dev = SimDevice::blank(64 << 20);
        let params = FormatParams {
            cipher: "aes-xts-plain64".into(),
            sector_size: 0,
            label: "EPHEMERAL".into(),
            pbkdf: PbkdfChoice::Benchmark,
        };
        dev.format(&params, &VolumeKey::new(vec![7; 64])).unwrap();
        assert!(dev.state().format_mark);
        let Contents::UnfinishedFormat(why) = dev.contents().unwrap() else {
            panic!("a header without a volctl token is an unfinished format")
        };
        assert_eq!(
            why,
            "a volctl header with 0 keyslot(s) and no volctl token, and nothing written to its data area"
        );
        dev.format_finished().unwrap();
        assert!(!dev.state().format_mark, "the mark is cleared");
    }
}
