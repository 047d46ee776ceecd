//! Which volumes need a partition, in the order they are placed, and their
//! sizes as the documents give them.

use super::layout::{MaxSize, Request};
use api_types::cel::Selector;
use api_types::size::{Amount, Size};
use api_types::{Document, SizeSpec};

/// STATE's size when volctl creates it (it holds configs and the salt).
pub const STATE_SIZE: u64 = 100 << 20;
/// `minSize` when a document gives none and `maxSize` is no byte size.
pub const DEFAULT_MIN_SIZE: u64 = 100 << 20;

/// The order system volumes are placed in.
const SYSTEM_ORDER: [&str; 3] = ["STATE", "EPHEMERAL", "persistence"];

/// The volumes of `docs` that live on partitions volctl makes: system
/// volumes first (in `SYSTEM_ORDER`), then user, raw and swap volumes,
/// each by name.
pub fn requests(docs: &[Document]) -> Vec<Request> {
    let mut system: Vec<&Document> = docs
        .iter()
        .filter(|d| d.managed() && matches!(d, Document::Volume(_)))
        .collect();
    system.sort_by_key(|d| SYSTEM_ORDER.iter().position(|n| *n == d.name()));
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
    let max = p.max_size.as_ref().map_or(MaxSize::Fill, max_size);
    let min = p
        .min_size
        .as_ref()
        .and_then(|s| s.resolve().ok())
        .and_then(Size::absolute_bytes)
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
