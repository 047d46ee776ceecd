//! Names, `volumeType`, provisioning and sizes, filesystem, mount, trim and
//! scrub, with Talos's rules (`pkg/machinery/config/types/block`) and its
//! wording at the start of each message.

use super::Findings;
use crate::duration::parse_go_duration;
use crate::size::{Amount, Size, SizeSpec};
use crate::volume::{
    ExistingVolumeConfig, Filesystem, FilesystemType, Mount, Provisioning, Scrub, Trim,
    UserVolumeConfig, VolumeConfig, VolumeType, MAX_USER_VOLUME_NAME,
};
use crate::SystemVolume;

/// Mount points that would hide what the node itself runs on.
const FORBIDDEN_MOUNTS: &[&str] = &["/", "/proc", "/sys", "/dev"];

/// Which provisioning fields a volume type takes.
#[derive(Clone, Copy)]
struct ProvisioningRules {
    /// Disk selector and a size are required (user volumes).
    required: bool,
    /// minSize/maxSize/grow are allowed (not for whole disks).
    sizes: bool,
}

/// `VolumeConfig`: a [`SystemVolume`].
pub(super) fn check_system_volume(v: &VolumeConfig, f: &mut Findings) {
    check_system_name(&v.name, f);
    check_mount_allowed(v, f);
    let is_state = v.name == "STATE";
    let vtype = v.volume_type.unwrap_or_default();
    if is_state {
        check_state_constraints(v, vtype, f);
    }
    match vtype {
        VolumeType::Partition if !is_state => {
            if let Some(p) = &v.provisioning {
                let rules = ProvisioningRules {
                    required: false,
                    sizes: true,
                };
                check_provisioning(p, rules, f);
            }
        }
        VolumeType::Partition => {}
        VolumeType::Memory => check_memory_volume(v, f),
        other => f.error(
            "volumeType",
            format!("unsupported volume type {:?}", other.as_str()),
        ),
    }
    if let Some(xfs) = v.filesystem.as_ref().and_then(|fs| fs.xfs.as_ref()) {
        check_size_field(
            &xfs.min_allocation_group_size,
            "filesystem.xfs.minAllocationGroupSize",
            f,
        );
        f.warn(
            "filesystem.xfs",
            "volctl formats system volumes as ext4 (it can shrink, which in-place encryption needs), so xfs options do not apply",
        );
    }
    check_mount(v.mount.as_ref(), f);
    check_trim_scrub(v.trim.as_ref(), v.scrub.as_ref(), f);
}

fn check_system_name(name: &str, f: &mut Findings) {
    if SystemVolume::from_name(name).is_some() {
        return;
    }
    let names: Vec<&str> = SystemVolume::ALL.iter().map(|v| v.name()).collect();
    f.error(
        "name",
        format!(
            "`{name}` is not a system volume; a VolumeConfig name is one of {} (use a UserVolumeConfig for data volumes)",
            names.join(", ")
        ),
    );
}

/// Talos: the image cache and the promotable volumes (ETCD, CRI,
/// KUBELET, LOG) take no `mount` block (STATE's is checked with its
/// other constraints).
fn check_mount_allowed(v: &VolumeConfig, f: &mut Findings) {
    let Some(sv) = v.system() else { return };
    if sv != SystemVolume::State && !sv.takes_mount() && v.mount.is_some() {
        f.error(
            "mount",
            format!("mount config is not allowed for the \"{sv}\" volume (it is mounted where Talos mounts it)"),
        );
    }
}

fn check_state_constraints(v: &VolumeConfig, vtype: VolumeType, f: &mut Findings) {
    if vtype != VolumeType::Partition {
        f.error(
            "volumeType",
            format!(
                "volumeType {:?} is not allowed for the \"STATE\" volume",
                vtype.as_str()
            ),
        );
    }
    if v.provisioning.as_ref().is_some_and(|p| !p.is_empty()) {
        f.error(
            "provisioning",
            "provisioning config is not allowed for the \"STATE\" volume: STATE is provisioned by the installer",
        );
    }
    if v.mount.as_ref().is_some_and(Mount::has_options) {
        f.error(
            "mount",
            "mount config is not allowed for the \"STATE\" volume (only volctl's mount.path)",
        );
    }
}

/// Talos `volumeType: memory`: a tmpfs; only `provisioning.minSize` (its size).
fn check_memory_volume(v: &VolumeConfig, f: &mut Findings) {
    let not_allowed = |f: &mut Findings, path: &str, what: &str| {
        f.error(
            path,
            format!("{what} is not allowed for volumeType \"memory\""),
        );
    };
    if v.encryption.is_some() {
        not_allowed(f, "encryption", "encryption config");
    }
    let p = v.provisioning.clone().unwrap_or_default();
    if p.disk_selector.is_some() {
        not_allowed(f, "provisioning.diskSelector", "disk selector");
    }
    if p.grow.is_some() {
        not_allowed(f, "provisioning.grow", "grow");
    }
    if p.max_size.is_some() {
        not_allowed(f, "provisioning.maxSize", "max size");
    }
    match &p.min_size {
        None => f.error(
            "provisioning.minSize",
            "size (provisioning.minSize) is required for volumeType \"memory\"",
        ),
        Some(s) => check_size_field(&Some(s.clone()), "provisioning.minSize", f),
    }
}

/// `UserVolumeConfig`.
pub(super) fn check_user_volume(u: &UserVolumeConfig, f: &mut Findings) {
    check_user_name(&u.name, f);
    match u.volume_type.unwrap_or_default() {
        VolumeType::Directory => check_directory_volume(u, f),
        t @ (VolumeType::Partition | VolumeType::Disk) => {
            let rules = ProvisioningRules {
                required: true,
                sizes: t == VolumeType::Partition,
            };
            check_provisioning(&u.provisioning.clone().unwrap_or_default(), rules, f);
            if let Some(fs) = &u.filesystem {
                check_filesystem(fs, f);
            }
        }
        other => f.error(
            "volumeType",
            format!("unsupported volume type {:?}", other.as_str()),
        ),
    }
    check_mount(u.mount.as_ref(), f);
    check_trim_scrub(u.trim.as_ref(), u.scrub.as_ref(), f);
}

/// `RawVolumeConfig` and `SwapVolumeConfig`: a name, a required disk
/// selector and size (encryption is checked by the caller).
pub(super) fn check_raw_volume(name: &str, p: Option<&Provisioning>, f: &mut Findings) {
    check_user_name(name, f);
    let rules = ProvisioningRules {
        required: true,
        sizes: true,
    };
    check_provisioning(&p.cloned().unwrap_or_default(), rules, f);
}

/// `ExistingVolumeConfig`: a name (no length limit) and a volume selector.
pub(super) fn check_existing_volume(e: &ExistingVolumeConfig, f: &mut Findings) {
    if e.name.is_empty() {
        f.error("name", "name is required");
    }
    check_name_chars(&e.name, f);
    let selector = e
        .discovery
        .as_ref()
        .and_then(|d| d.volume_selector.as_ref())
        .filter(|s| !s.match_expr.trim().is_empty());
    match selector {
        None => f.error("discovery.volumeSelector", "volume selector is required"),
        Some(s) => {
            if let Err(err) = crate::cel::check_volume_selector(&s.match_expr) {
                f.error(
                    "discovery.volumeSelector.match",
                    format!("volume selector is invalid: {err}"),
                );
            }
        }
    }
}

fn check_user_name(name: &str, f: &mut Findings) {
    if name.is_empty() {
        f.error("name", "name is required");
    }
    if name.is_empty() || name.len() > MAX_USER_VOLUME_NAME {
        f.error(
            "name",
            format!("name must be between 1 and {MAX_USER_VOLUME_NAME} characters long"),
        );
    }
    check_name_chars(name, f);
}

fn check_name_chars(name: &str, f: &mut Findings) {
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        f.error(
            "name",
            format!("`{name}`: name can only contain lowercase and uppercase ASCII letters, digits, and hyphens"),
        );
    }
}

/// A directory under `/var/mnt`: nothing about devices applies.
fn check_directory_volume(u: &UserVolumeConfig, f: &mut Findings) {
    let invalid = |f: &mut Findings, path: &str, what: &str| {
        f.error(path, format!("{what} is invalid for volumeType directory"));
    };
    if u.provisioning.as_ref().is_some_and(|p| !p.is_empty()) {
        invalid(f, "provisioning", "provisioning spec");
    }
    if u.encryption.is_some() {
        invalid(f, "encryption", "encryption spec");
    }
    if u.filesystem.is_some() {
        invalid(f, "filesystem", "filesystem spec");
    }
    if u.mount
        .as_ref()
        .is_some_and(|m| m.disable_access_time.is_some())
    {
        invalid(f, "mount.disableAccessTime", "mount.disableAccessTime");
    }
}

fn check_filesystem(fs: &Filesystem, f: &mut Findings) {
    let xfs = fs.kind() == FilesystemType::Xfs;
    if fs.project_quota_support == Some(true) && !xfs {
        f.error(
            "filesystem.projectQuotaSupport",
            "project quota support is only available for xfs filesystem",
        );
    }
    if let Some(o) = &fs.xfs {
        if !xfs {
            f.error(
                "filesystem.xfs",
                "xfs options are only available for xfs filesystem",
            );
        }
        check_size_field(
            &o.min_allocation_group_size,
            "filesystem.xfs.minAllocationGroupSize",
            f,
        );
    }
}

fn check_provisioning(p: &Provisioning, rules: ProvisioningRules, f: &mut Findings) {
    // Talos reads an empty expression as no selector at all.
    match p
        .disk_selector
        .as_ref()
        .filter(|d| !d.match_expr.trim().is_empty())
    {
        Some(ds) => check_disk_selector(&ds.match_expr, f),
        None if rules.required => f.error("provisioning.diskSelector", "disk selector is required"),
        None => {}
    }
    let min = resolve_field(&p.min_size, "provisioning.minSize", f);
    let max = resolve_field(&p.max_size, "provisioning.maxSize", f);
    if !rules.sizes {
        if p.min_size.is_some() || p.max_size.is_some() || p.grow.is_some() {
            f.error(
                "provisioning",
                "min size, max size and grow are not supported for volumeType disk (the volume is the whole disk)",
            );
        }
        return;
    }
    check_sizes(p, min, max, rules.required, f);
}

fn check_sizes(
    p: &Provisioning,
    min: Option<Size>,
    max: Option<Size>,
    required: bool,
    f: &mut Findings,
) {
    if let Some(Size {
        amount: Amount::Percent(_),
        ..
    }) = min
    {
        f.error(
            "provisioning.minSize",
            "min size must be a byte size, not a percentage",
        );
    }
    if min.is_some_and(|m| m.negative) {
        f.error("provisioning.minSize", "min size cannot be negative");
    }
    let (min_b, max_b) = (
        min.and_then(Size::absolute_bytes),
        max.and_then(Size::absolute_bytes),
    );
    if let (Some(a), Some(b)) = (min_b, max_b) {
        if a > b {
            f.error("provisioning.minSize", "min size is greater than max size");
        }
    } else if required && p.min_size.is_none() && p.max_size.is_none() {
        f.error("provisioning", "min size or max size is required");
    }
}

/// Checks a CEL disk selector: it must parse and be a boolean over the disk
/// facts (see `cel.rs`).
fn check_disk_selector(expr: &str, f: &mut Findings) {
    if let Err(e) = crate::cel::check_disk_selector(expr) {
        f.error(
            "provisioning.diskSelector.match",
            format!("disk selector is invalid: {e}"),
        );
    }
}

fn resolve_field(spec: &Option<SizeSpec>, path: &str, f: &mut Findings) -> Option<Size> {
    match spec.as_ref()?.resolve() {
        Ok(s) => Some(s),
        Err(e) => {
            f.error(path, e);
            None
        }
    }
}

/// A byte size that must be positive (no `%`, no `-`).
fn check_size_field(spec: &Option<SizeSpec>, path: &str, f: &mut Findings) {
    match resolve_field(spec, path, f) {
        Some(s) if s.absolute_bytes().is_none() => {
            f.error(path, "must be a positive byte size such as `128GiB`");
        }
        _ => {}
    }
}

fn check_mount(m: Option<&Mount>, f: &mut Findings) {
    if let Some(path) = m.and_then(|m| m.path.as_deref()) {
        check_mount_path(path, f);
    }
}

fn check_mount_path(path: &str, f: &mut Findings) {
    if !path.starts_with('/') || path.split('/').any(|c| c == "..") {
        return f.error(
            "mount.path",
            format!("`{path}` must be an absolute path without `..`"),
        );
    }
    let trimmed = path.trim_end_matches('/');
    let hit = FORBIDDEN_MOUNTS.iter().find(|m| {
        let m = m.trim_end_matches('/');
        trimmed == m || (!m.is_empty() && trimmed.starts_with(&format!("{m}/")))
    });
    if let Some(m) = hit {
        f.error(
            "mount.path",
            format!("`{path}` would mount over {m}, which the node itself needs; choose another mount point"),
        );
    }
}

/// Smallest scrub interval Talos accepts (`MinScrubInterval`).
const MIN_SCRUB_INTERVAL_SECS: f64 = 10.0;
/// Smallest non-zero trim chunk, and largest trim minimum length (ext4's
/// block group size).
const MIN_TRIM_CHUNK: u64 = 1 << 20;
const MAX_TRIM_MIN_LENGTH: u64 = 128 << 20;

fn check_trim_scrub(trim: Option<&Trim>, scrub: Option<&Scrub>, f: &mut Findings) {
    if let Some(t) = trim {
        check_trim(t, f);
    }
    if let Some(s) = scrub {
        if let Some(secs) = duration_field(s.interval.as_deref(), "scrub.interval", f) {
            if secs != 0.0 && secs < MIN_SCRUB_INTERVAL_SECS {
                f.error("scrub.interval", "scrub interval: minimum value is 10s");
            }
        }
    }
}

fn check_trim(t: &Trim, f: &mut Findings) {
    for (field, value) in [("interval", &t.interval), ("chunkDelay", &t.chunk_delay)] {
        let path = format!("trim.{field}");
        if duration_field(value.as_deref(), &path, f).is_some_and(|s| s < 0.0) {
            f.error(path, format!("trim {field} cannot be negative"));
        }
    }
    let chunk = resolve_field(&t.chunk_size, "trim.chunkSize", f);
    if let Some(c) = chunk.and_then(Size::absolute_bytes) {
        if c != 0 && c < MIN_TRIM_CHUNK {
            f.error(
                "trim.chunkSize",
                "trim chunk size must be zero or at least 1MiB",
            );
        }
    }
    let min_len = resolve_field(&t.min_length, "trim.minLength", f);
    if min_len
        .and_then(Size::absolute_bytes)
        .is_some_and(|m| m > MAX_TRIM_MIN_LENGTH)
    {
        f.error("trim.minLength", "trim min length cannot exceed 128MiB");
    }
    for (path, s) in [("trim.chunkSize", chunk), ("trim.minLength", min_len)] {
        if s.is_some_and(|s| s.absolute_bytes().is_none()) {
            f.error(path, "must be a positive byte size");
        }
    }
}

/// A Go duration field in seconds, or `None` (absent or reported bad).
fn duration_field(value: Option<&str>, path: &str, f: &mut Findings) -> Option<f64> {
    match parse_go_duration(value?) {
        Ok(secs) => Some(secs),
        Err(e) => {
            f.error(path, e);
            None
        }
    }
}
