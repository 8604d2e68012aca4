//! The time index: per stream and rendition the archived segments in
//! order, the init segments, where their bytes are; and the archive's
//! queries over it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use super::names::SegmentName;
use super::{Archive, RecordingStatus, TrackKey, read};

/// Where the bytes of an archived file are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// In the stream's directory under the archive root.
    Local,
    /// In an object of the remote tier, at `offset`.
    Remote {
        /// The object key.
        object: Arc<str>,
        /// Byte offset of the file inside the object.
        offset: u64,
    },
}

/// One archived media segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivedSegment {
    /// Its index fields (and file name).
    pub name: SegmentName,
    /// Size in bytes.
    pub size: u64,
    /// Where it is.
    pub location: Location,
}

/// One archived init segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivedInit {
    /// Size in bytes.
    pub size: u64,
    /// Where it is.
    pub location: Location,
}

/// The index of one stream and rendition.
#[derive(Debug, Default, Clone)]
pub struct TrackIndex {
    /// Segments sorted by wall clock.
    pub segments: VecDeque<ArchivedSegment>,
    /// Init segments by (session, number).
    pub inits: BTreeMap<(i64, u32), ArchivedInit>,
    /// Bytes of local files.
    pub local_bytes: u64,
}

impl TrackIndex {
    pub(crate) fn insert(&mut self, seg: ArchivedSegment) {
        if seg.location == Location::Local {
            self.local_bytes = self.local_bytes.saturating_add(seg.size);
        }
        let at = self.segments.partition_point(|s| s.name <= seg.name);
        if at > 0
            && let Some(prev) = self.segments.get(at - 1)
            && prev.name == seg.name
        {
            // Same file seen twice (a re-scan): keep one.
            if prev.location == Location::Local && seg.location == Location::Local {
                self.local_bytes = self.local_bytes.saturating_sub(seg.size);
            }
            return;
        }
        if at == self.segments.len() {
            self.segments.push_back(seg);
        } else {
            self.segments.insert(at, seg);
        }
    }

    /// The segments of the wall-clock range `[from_ms, to_ms)`, oldest
    /// first: those whose midpoint lies in the range (so the total is within
    /// one segment of the length asked for), or, when that is none (a range
    /// shorter than a segment), those overlapping it.
    pub fn range(
        &self,
        from_ms: i64,
        to_ms: i64,
    ) -> impl Iterator<Item = &ArchivedSegment> + Clone {
        let mid = |s: &ArchivedSegment| {
            s.name
                .pdt_ms
                .saturating_add(i64::from(s.name.duration_ms / 2))
        };
        let mut a = self.segments.partition_point(|s| mid(s) < from_ms);
        let mut b = self.segments.partition_point(|s| mid(s) < to_ms).max(a);
        if a == b {
            a = self
                .segments
                .partition_point(|s| s.name.end_ms() <= from_ms);
            b = self
                .segments
                .partition_point(|s| s.name.pdt_ms < to_ms)
                .max(a);
        }
        self.segments.range(a..b)
    }

    /// Whether a segment of recording session `session` covers wall-clock
    /// `ms` (starts at or before it and ends after it).
    pub fn session_covers(&self, session: i64, ms: i64) -> bool {
        let at = self.segments.partition_point(|s| s.name.pdt_ms <= ms);
        // Overlapping segments are few (another session's, a peer's copy):
        // a handful before `ms` decide.
        self.segments
            .range(..at)
            .rev()
            .take(8)
            .any(|s| s.name.session == session && ms < s.name.end_ms())
    }

    /// Whether a segment here covering the time of `incoming` (another
    /// origin's copy of `size` bytes) keeps its place, by
    /// [`keeps_against`].
    pub fn keeps_time_against(&self, incoming: &SegmentName, size: u64) -> bool {
        let mid = incoming.mid_ms();
        let at = self.segments.partition_point(|s| s.name.pdt_ms <= mid);
        self.segments
            .range(..at)
            .rev()
            .take(8)
            .any(|s| mid < s.name.end_ms() && keeps_against(s, incoming, size))
    }

    /// Removes the local segments whose midpoint lies in `incoming`'s time
    /// and that do not keep their place against it ([`keeps_against`]:
    /// provisional ones it replaces) and returns them.
    pub(crate) fn take_replaced(
        &mut self,
        incoming: &SegmentName,
        size: u64,
    ) -> Vec<ArchivedSegment> {
        let (from_ms, to_ms) = (incoming.pdt_ms, incoming.end_ms());
        let mut taken = Vec::new();
        // Sorted by start: a segment whose middle is at or after `from_ms`
        // starts at most half its length before it (segments are seconds
        // long; two minutes of slack).
        let slack = 120_000;
        let mut i = self
            .segments
            .partition_point(|s| s.name.pdt_ms < from_ms.saturating_sub(slack));
        while let Some(s) = self.segments.get(i) {
            if s.name.pdt_ms >= to_ms {
                break;
            }
            let mid = s.name.mid_ms();
            if from_ms <= mid
                && mid < to_ms
                && s.name != *incoming
                && !keeps_against(s, incoming, size)
            {
                if let Some(s) = self.segments.remove(i) {
                    self.local_bytes = self.local_bytes.saturating_sub(s.size);
                    taken.push(s);
                }
            } else {
                i += 1;
            }
        }
        taken
    }

    /// Wall clock of the first segment's start and the last one's end.
    pub fn bounds(&self) -> Option<(i64, i64)> {
        Some((
            self.segments.front()?.name.pdt_ms,
            self.segments.back()?.name.end_ms(),
        ))
    }
}
/// Whether the archived segment `local` keeps its place against
/// `incoming` of `size` bytes, another origin's copy of the same time: a
/// segment that is not provisional always; one of another recording
/// session (another timeline: other media, not another cut of it) always;
/// a provisional one in the remote tier always (its bytes are in an
/// uploaded object); a local provisional one only against a provisional
/// copy that does not beat it ([`SegmentName::provisional_beats`]).
pub fn keeps_against(local: &ArchivedSegment, incoming: &SegmentName, size: u64) -> bool {
    if !local.name.is_provisional()
        || local.name.session != incoming.session
        || local.location != Location::Local
    {
        return true;
    }
    incoming.is_provisional() && !incoming.provisional_beats(size, &local.name, local.size)
}

impl Archive {
    /// Runs `f` over the index of `key` (a read lock is held: keep it short).
    pub fn with_index<R>(&self, key: &TrackKey, f: impl FnOnce(Option<&TrackIndex>) -> R) -> R {
        f(read(&self.inner.index).get(key))
    }

    /// The segments of `key` overlapping `[from_ms, to_ms)`, oldest first.
    pub fn range(&self, key: &TrackKey, from_ms: i64, to_ms: i64) -> Vec<ArchivedSegment> {
        self.with_index(key, |i| {
            i.map(|i| i.range(from_ms, to_ms).cloned().collect())
                .unwrap_or_default()
        })
    }

    /// First start and last end of `key`'s archive.
    pub fn bounds(&self, key: &TrackKey) -> Option<(i64, i64)> {
        self.with_index(key, |i| i.and_then(TrackIndex::bounds))
    }

    /// The init segment entry.
    pub fn init(&self, key: &TrackKey, session: i64, n: u32) -> Option<ArchivedInit> {
        self.with_index(key, |i| i.and_then(|i| i.inits.get(&(session, n)).cloned()))
    }

    /// Whether a segment of `key` and recording session `session` covers
    /// `ms`.
    pub fn session_covers(&self, key: &TrackKey, session: i64, ms: i64) -> bool {
        self.with_index(key, |i| i.is_some_and(|i| i.session_covers(session, ms)))
    }

    /// The segment now in the place of the provisional segment `name`
    /// (replaced by another origin's copy of its time, see
    /// [`SegmentName::provisional`]): the same segment number of the same
    /// session covering its middle.
    pub fn successor(&self, key: &TrackKey, name: &SegmentName) -> Option<ArchivedSegment> {
        let mid = name.mid_ms();
        self.with_index(key, |i| {
            let i = i?;
            let at = i.segments.partition_point(|s| s.name.pdt_ms <= mid);
            i.segments
                .range(..at)
                .rev()
                .take(8)
                .find(|s| {
                    s.name.session == name.session
                        && s.name.msn == name.msn
                        && mid < s.name.end_ms()
                })
                .cloned()
        })
    }

    /// The segment named `name`, if archived.
    pub fn segment(&self, key: &TrackKey, name: &SegmentName) -> Option<ArchivedSegment> {
        self.with_index(key, |i| {
            let i = i?;
            let at = i.segments.partition_point(|s| s.name < *name);
            i.segments.get(at).filter(|s| s.name == *name).cloned()
        })
    }

    /// Keys in the index.
    pub fn keys(&self) -> Vec<TrackKey> {
        let mut k: Vec<TrackKey> = read(&self.inner.index).keys().cloned().collect();
        k.sort();
        k
    }

    /// The recording status of `key`.
    pub fn status(&self, key: &TrackKey) -> RecordingStatus {
        read(&self.inner.status)
            .get(key)
            .cloned()
            .unwrap_or_default()
    }
    /// The local files of session `session` of `key`: init segments and
    /// segments, oldest first.
    pub fn session_files(&self, key: &TrackKey, session: i64) -> SessionFiles {
        self.with_index(key, |i| {
            let mut f = SessionFiles::default();
            if let Some(i) = i {
                for (&(s, n), init) in &i.inits {
                    if s == session && init.location == Location::Local {
                        f.inits.push((n, init.size));
                    }
                }
                for s in &i.segments {
                    if s.name.session == session && s.location == Location::Local {
                        f.segments.push((s.name, s.size));
                    }
                }
            }
            f
        })
    }

    /// The newest session of `key` being recorded now.
    pub fn current_session(&self, key: &TrackKey) -> Option<i64> {
        self.inner
            .active
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, s)| *s)
            .max()
    }

    /// Every (track, session) being recorded now.
    pub(super) fn active_sessions(&self) -> std::collections::HashSet<(TrackKey, i64)> {
        self.inner
            .active
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Sessions of `key` with local files, and whether each is still
    /// being recorded.
    pub fn local_sessions(&self, key: &TrackKey) -> Vec<(i64, bool)> {
        let active = self.active_sessions();
        self.with_index(key, |i| {
            let mut v: Vec<i64> = i
                .map(|i| {
                    i.segments
                        .iter()
                        .filter(|s| s.location == Location::Local)
                        .map(|s| s.name.session)
                        .collect()
                })
                .unwrap_or_default();
            v.sort_unstable();
            v.dedup();
            v.into_iter()
                .map(|s| (s, active.contains(&(key.clone(), s))))
                .collect()
        })
    }
}

/// The local files of one recording session.
#[derive(Debug, Default, Clone)]
pub struct SessionFiles {
    /// Init segment numbers and sizes.
    pub inits: Vec<(u32, u64)>,
    /// Segments and sizes, oldest first.
    pub segments: Vec<(SegmentName, u64)>,
}
