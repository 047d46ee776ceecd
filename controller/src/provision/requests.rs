//! Which volumes need a partition, in the order they are placed, and their
//! sizes as the documents give them.

use super::layout::{MaxSize, Request};
use api_types::cel::Selector;
use api_types::size::{Amount, Size};
use api_types::{Document, SizeSpec, SystemVolume};

/// STATE's size when volctl creates it (it holds configs and the salt).
pub const STATE_SIZE: u64 = 100 << 20;
/// `minSize` when a document gives none and `maxSize` is no byte size.
pub const DEFAULT_MIN_SIZE: u64 = 100 << 20;

/// `maxSize` of a promoted ETCD, CRI, KUBELET or LOG partition that gives
/// none: they do not grow (Talos caps them at 50 GiB).
pub const PROMOTED_MAX_SIZE: u64 = 50 << 30;
/// The image cache's sizes when its document gives none (Talos: 500 MB
/// to 1 GB).
pub const IMAGE_CACHE_SIZES: (u64, u64) = (500 << 20, 1 << 30);

/// The volumes of `docs` that live on partitions volctl makes: system
/// volumes first (in [`SystemVolume::ALL`]'s order), then user, raw and
/// swap volumes, each by name.
pub fn requests(docs: &[Document]) -> Vec<Request> {
    let mut system: Vec<&Document> = docs
        .iter()
        .filter(|d| d.managed() && matches!(d, Document::Volume(_)))
        .collect();
    system.sort_by_key(|d| SystemVolume::from_name(d.name()).map(SystemVolume::rank));
    let by_name = |pick: fn(&Document) -> bool| {
        let mut v: Vec<&Document> = docs.iter().filter(|d| d.managed() && pick(d)).collect();
        v.sort_by(|a, b| a.name().cmp(b.name()));
        v
    };
    let users = by_name(|d| matches!(d, Document::User(_)));
    let raws = by_name(|d| matches!(d, Document::Raw(_)));
    let swaps = by_name(|d| matches!(d, Document::Swap(_)));
    system
        .into_iter()
        .chain(users)
        .chain(raws)
        .chain(swaps)
        .map(request)
        .collect()
}

fn request(doc: &Document) -> Request {
    let document = format!("{} \"{}\"", doc.kind(), doc.name());
    let label = doc.partition_label();
    if doc.is_state() {
        return Request {
            document,
            label,
            selector: None,
            min: STATE_SIZE,
            max: MaxSize::Bytes(STATE_SIZE),
            grow: false,
        };
    }
    let p = doc.provisioning().cloned().unwrap_or_default();
    let (default_min, default_max) = default_sizes(doc);
    let max = p.max_size.as_ref().map_or(default_max, max_size);
    let min = p
        .min_size
        .as_ref()
        .and_then(|s| s.resolve().ok())
        .and_then(Size::absolute_bytes)
        .or(default_min.filter(|_| p.max_size.is_none()))
        .or(match max {
            MaxSize::Bytes(b) => Some(b),
            _ => None,
        })
        .unwrap_or(DEFAULT_MIN_SIZE);
    // Validation has checked the expression; an empty one is no selector.
    let selector = p
        .disk_selector
        .filter(|s| !s.match_expr.trim().is_empty())
        .and_then(|s| Selector::disk(&s.match_expr).ok());
    Request {
        document,
        label,
        selector,
        min,
        max,
        grow: p.grow.unwrap_or(false),
    }
}

/// The sizes a document that gives none gets: the image cache Talos's,
/// a promoted system volume at most [`PROMOTED_MAX_SIZE`] (at least the
/// usual minimum), any other volume the free range.
fn default_sizes(doc: &Document) -> (Option<u64>, MaxSize) {
    match doc {
        Document::Volume(v) => match v.system() {
            Some(SystemVolume::ImageCache) => (
                Some(IMAGE_CACHE_SIZES.0),
                MaxSize::Bytes(IMAGE_CACHE_SIZES.1),
            ),
            Some(s) if s.promotable() => {
                (Some(DEFAULT_MIN_SIZE), MaxSize::Bytes(PROMOTED_MAX_SIZE))
            }
            _ => (None, MaxSize::Fill),
        },
        _ => (None, MaxSize::Fill),
    }
}

fn max_size(spec: &SizeSpec) -> MaxSize {
    match spec.resolve() {
        Ok(Size {
            negative: false,
            amount: Amount::Bytes(b),
        }) => MaxSize::Bytes(b),
        Ok(Size {
            negative: false,
            amount: Amount::Percent(p),
        }) => MaxSize::Percent(p),
        Ok(Size {
            negative: true,
            amount: Amount::Bytes(b),
        }) => MaxSize::LeaveBytes(b),
        Ok(Size {
            negative: true,
            amount: Amount::Percent(p),
        }) => MaxSize::LeavePercent(p),
        Err(_) => MaxSize::Fill,
    }
}
