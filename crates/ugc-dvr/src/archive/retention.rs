//! Retention: per stream by depth, then the total size by the oldest
//! segment of any stream; init segments no segment needs any more.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;

use ugc_core::StreamPath;

use super::index::{ArchivedInit, ArchivedSegment, Location, TrackIndex};
use super::{Archive, TrackKey, read, write};

/// What retention removes: `(key, segments)` in order, and init segments no
/// segment needs any more.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Expiry {
    /// Segments to remove.
    pub segments: Vec<(TrackKey, ArchivedSegment)>,
    /// Init segments to remove.
    pub inits: Vec<(TrackKey, (i64, u32), ArchivedInit)>,
    /// Objects of the remote tier past the depth: every segment in them
    /// ended before the stream's horizon (track, session, object). Only
    /// depth expires an object; the local size bound never does.
    pub objects: Vec<(TrackKey, i64, std::sync::Arc<str>)>,
}

/// Decides what to remove (pure): per stream everything that ended before
/// `now - depth` (streams with depth 0 are left alone), then the oldest
/// local segments of any stream until the local total is within
/// `max_bytes`.
pub fn plan_retention(
    index: &HashMap<TrackKey, TrackIndex>,
    depth_hours: &dyn Fn(&StreamPath) -> u32,
    max_bytes: Option<u64>,
    active: &HashSet<(TrackKey, i64)>,
    now_ms: i64,
) -> Expiry {
    let mut out = Expiry::default();
    let mut removed: HashMap<&TrackKey, usize> = HashMap::new();
    let mut total: u64 = index.values().map(|t| t.local_bytes).sum();
    for (key, t) in index {
        let hours = depth_hours(&key.stream);
        if hours == 0 {
            continue;
        }
        let horizon = now_ms.saturating_sub(i64::from(hours).saturating_mul(3_600_000));
        let n = t.segments.partition_point(|s| s.name.end_ms() <= horizon);
        let mut objects: Vec<(i64, &std::sync::Arc<str>)> = Vec::new();
        for s in t.segments.range(..n) {
            match &s.location {
                Location::Local => total = total.saturating_sub(s.size),
                Location::Remote { object, .. } => {
                    if !objects.iter().any(|(_, o)| *o == object) {
                        objects.push((s.name.session, object));
                    }
                }
            }
            out.segments.push((key.clone(), s.clone()));
        }
        // An object with a segment left (younger than the horizon) stays.
        let kept = |object: &std::sync::Arc<str>| {
            t.segments
                .range(n..)
                .any(|s| matches!(&s.location, Location::Remote { object: o, .. } if o == object))
        };
        for (session, object) in objects {
            if !kept(object) {
                out.objects.push((key.clone(), session, object.clone()));
            }
        }
        removed.insert(key, n);
    }
    if let Some(max) = max_bytes {
        let mut keys: Vec<&TrackKey> = index.keys().collect();
        keys.sort();
        while total > max {
            // The oldest local segment left of any stream.
            let mut best: Option<(&TrackKey, usize, i64)> = None;
            for k in &keys {
                let Some(t) = index.get(*k) else { continue };
                let start = removed.get(k).copied().unwrap_or(0);
                let Some((i, s)) = t
                    .segments
                    .iter()
                    .enumerate()
                    .skip(start)
                    .find(|(_, s)| s.location == Location::Local)
                else {
                    continue;
                };
                if best.is_none_or(|(_, _, pdt)| s.name.pdt_ms < pdt) {
                    best = Some((k, i, s.name.pdt_ms));
                }
            }
            let Some((k, i, _)) = best else { break };
            let Some(t) = index.get(k) else { break };
            let start = removed.get(k).copied().unwrap_or(0);
            // Remove everything of this stream up to and including i.
            for s in t.segments.range(start..=i) {
                if s.location == Location::Local {
                    total = total.saturating_sub(s.size);
                }
                out.segments.push((k.clone(), s.clone()));
            }
            removed.insert(k, i + 1);
        }
    }
    // Init segments no remaining segment uses, of sessions not recording.
    for (key, t) in index {
        let start = removed.get(key).copied().unwrap_or(0);
        let used: HashSet<(i64, u32)> = t
            .segments
            .range(start..)
            .map(|s| (s.name.session, s.name.init))
            .collect();
        for (k, init) in &t.inits {
            if !used.contains(k) && !active.contains(&(key.clone(), k.0)) {
                out.inits.push((key.clone(), *k, init.clone()));
            }
        }
    }
    out
}

pub(super) fn retention(archive: &Archive, now_ms: i64) {
    let active = archive.active_sessions();
    let plan = {
        let idx = read(&archive.inner.index);
        plan_retention(
            &idx,
            &|s| (archive.inner.config.depth)(s),
            archive.inner.config.max_bytes,
            &active,
            now_ms,
        )
    };
    if plan.segments.is_empty() && plan.inits.is_empty() && plan.objects.is_empty() {
        return;
    }
    apply(archive, &plan, true);
}

/// Carries out `plan`: the index first, then the files; each object goes to
/// the object-expired hook. `expired`: retention's (counted as expired and
/// logged as past the depth) rather than a deletion asked for.
pub(super) fn apply(archive: &Archive, plan: &Expiry, expired: bool) {
    {
        let mut idx = write(&archive.inner.index);
        for (key, seg) in &plan.segments {
            if let Some(t) = idx.get_mut(key) {
                let at = t.segments.partition_point(|s| s.name < seg.name);
                if t.segments.get(at).is_some_and(|s| s.name == seg.name) {
                    t.segments.remove(at);
                    if seg.location == Location::Local {
                        t.local_bytes = t.local_bytes.saturating_sub(seg.size);
                    }
                }
            }
        }
        for (key, k, _) in &plan.inits {
            if let Some(t) = idx.get_mut(key) {
                t.inits.remove(k);
            }
        }
        idx.retain(|_, t| !t.segments.is_empty() || !t.inits.is_empty());
    }
    let mut freed = 0u64;
    for (key, seg) in &plan.segments {
        if seg.location == Location::Local {
            let _ = std::fs::remove_file(archive.segment_path(key, &seg.name));
            freed = freed.saturating_add(seg.size);
        }
        if expired {
            archive
                .inner
                .stats
                .segments_expired
                .fetch_add(1, Ordering::Relaxed);
        }
    }
    for (key, (session, n), init) in &plan.inits {
        if init.location == Location::Local {
            let _ = std::fs::remove_file(archive.init_path(key, *session, *n));
        }
    }
    let cur = archive.inner.local_bytes.load(Ordering::Relaxed);
    archive
        .inner
        .local_bytes
        .store(cur.saturating_sub(freed), Ordering::Relaxed);
    if !plan.objects.is_empty() {
        let hook = read(&archive.inner.on_object_expired).clone();
        for (key, session, object) in &plan.objects {
            if expired {
                tracing::info!(stream = %key.stream, rendition = %key.rendition, session, %object,
                    "archive retention: recording past its depth; its object is deleted");
            } else {
                tracing::info!(stream = %key.stream, rendition = %key.rendition, session, %object,
                    "archive: recording deleted; its object is deleted");
            }
            if let Some(h) = &hook {
                h(archive, key, *session, object, expired);
            }
        }
    }
    tracing::debug!(segments = plan.segments.len(), freed, "archive retention");
}
