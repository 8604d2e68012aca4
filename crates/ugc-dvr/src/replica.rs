//! DVR replication between origins, sans-IO: what an origin's archive of
//! a stream lacks that a peer origin holds, and the pace of fetching it.
//!
//! Two origins record the same streams (both get them over the relay). An
//! origin that was down, or lost its relay for a while, has a hole in its
//! archive that its peer recorded. Each origin asks its peers for the
//! listing of their archive ([`render_listing`] / [`parse_listing`]: the
//! file names carry the whole index, plus sizes), [`plan`] picks the files
//! it lacks, and the adapter (`ugc_proto::dvr_sync`) fetches them at the
//! [`Pacer`]'s rate, checks size and SHA-256 and hands them to
//! [`Archive::import`](crate::Archive::import). The copied files keep the
//! peer's names (its session and numbers), so a segment is byte-identical
//! on both and copying it twice is a no-op. (Aligned origins name a
//! stream's files alike, by its timeline, so a copied run continues the
//! local one in playlists.)
//!
//! A peer segment is lacking when no local segment covers its midpoint
//! (the origins cut their segments at the same keyframes, but not at the
//! same wall-clock millisecond), it lies in the local depth of the stream,
//! and it ended before `settle_before` (the live edge is being recorded
//! here too; a segment still in the writer's queue is not a hole).
//!
//! A local segment marked provisional (cut before this origin had seen
//! enough of the stream: a stream's first seconds, an origin's first
//! seconds after a restart mid-event; other bytes than the peer's may
//! stand for the same time, see [`SegmentName::provisional`]) does not
//! cover a peer segment that is not provisional, nor a provisional one
//! that beats it ([`SegmentName::provisional_beats`]): the peer's copy is
//! fetched and replaces it on import
//! ([`crate::archive::keeps_against`]). So origins settle on one copy of
//! every second and their archives end up byte-identical.
//!
//! One-way replication (a primary and its secondaries) is the same with
//! one direction: only the secondaries ask.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use crate::archive::names::{SegmentName, init_file_name, parse_init_name};
use crate::archive::{TrackIndex, TrackKey};

/// Lines a listing may have (a day of 1 s segments is 86 400).
pub const MAX_LISTING_LINES: usize = 400_000;

/// One file of a peer's listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PeerFile {
    /// An init segment: session, number, size.
    Init {
        /// Recording session.
        session: i64,
        /// Init number within it.
        n: u32,
        /// Size in bytes.
        size: u64,
    },
    /// A media segment and its size.
    Segment {
        /// Its index fields (and file name).
        name: SegmentName,
        /// Size in bytes.
        size: u64,
    },
}

impl PeerFile {
    /// The archive file name.
    pub fn file_name(&self) -> String {
        match self {
            PeerFile::Init { session, n, .. } => init_file_name(*session, *n),
            PeerFile::Segment { name, .. } => name.file_name(),
        }
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        match self {
            PeerFile::Init { size, .. } | PeerFile::Segment { size, .. } => *size,
        }
    }
}

/// Why a listing was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListingError {
    /// A line is not `<file name> <size>` with an archive file name.
    #[error("line {0}: not `<archive file> <size>`")]
    BadLine(usize),
    /// More than [`MAX_LISTING_LINES`] lines.
    #[error("more than {MAX_LISTING_LINES} lines")]
    TooLong,
}

/// The listing of one track's files: one `<file name> <size>` line each,
/// init segments first, then segments oldest first.
pub fn render_listing(inits: &[(i64, u32, u64)], segments: &[(SegmentName, u64)]) -> String {
    let mut out = String::with_capacity((inits.len() + segments.len()) * 64);
    for &(session, n, size) in inits {
        let _ = writeln!(out, "{} {size}", init_file_name(session, n));
    }
    for (name, size) in segments {
        let _ = writeln!(out, "{} {size}", name.file_name());
    }
    out
}

/// Parses a listing made by [`render_listing`] (bytes from a peer: never
/// panics; names only in their canonical spelling; empty lines skipped).
pub fn parse_listing(text: &str) -> Result<Vec<PeerFile>, ListingError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.is_empty() {
            continue;
        }
        if out.len() >= MAX_LISTING_LINES {
            return Err(ListingError::TooLong);
        }
        let bad = || ListingError::BadLine(i + 1);
        let (file, size) = line.split_once(' ').ok_or_else(bad)?;
        if size.is_empty() || size.len() > 20 || !size.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let size: u64 = size.parse().map_err(|_| bad())?;
        let entry = if let Some(name) = SegmentName::parse(file) {
            PeerFile::Segment { name, size }
        } else if let Some((session, n)) = parse_init_name(file) {
            PeerFile::Init { session, n, size }
        } else {
            return Err(bad());
        };
        out.push(entry);
    }
    Ok(out)
}

/// The listing of one track of the tracks listing: `<app>/<stream> <rendition>`.
pub fn render_track(key: &TrackKey) -> String {
    format!("{} {}\n", key.stream, key.rendition)
}

/// Parses the tracks listing (lines of [`render_track`]); lines that do not
/// name a track are skipped.
pub fn parse_tracks(text: &str) -> Vec<TrackKey> {
    text.lines()
        .take(MAX_LISTING_LINES)
        .filter_map(|l| {
            let (stream, rendition) = l.split_once(' ')?;
            let (app, name) = stream.split_once('/')?;
            let stream = ugc_core::StreamPath::new(app, name).ok()?;
            if stream.rendition().is_some() {
                return None;
            }
            TrackKey::rendition(&stream, rendition)
        })
        .collect()
}

/// One line of the deleted-recordings listing: `<app>/<stream> <from_ms>
/// <to_ms>` (a span of a stream's recordings deleted on request).
pub fn render_deleted(stream: &ugc_core::StreamPath, from_ms: i64, to_ms: i64) -> String {
    format!("{stream} {from_ms} {to_ms}\n")
}

/// Parses the deleted-recordings listing (lines of [`render_deleted`]);
/// lines that are not one (or whose span is empty) are skipped.
pub fn parse_deleted(text: &str) -> Vec<(ugc_core::StreamPath, i64, i64)> {
    text.lines()
        .take(MAX_LISTING_LINES)
        .filter_map(|l| {
            let mut it = l.split(' ');
            let (app, name) = it.next()?.split_once('/')?;
            let stream = ugc_core::StreamPath::new(app, name).ok()?;
            let from: i64 = it.next()?.parse().ok()?;
            let to: i64 = it.next()?.parse().ok()?;
            (stream.rendition().is_none() && from < to && it.next().is_none())
                .then_some((stream, from, to))
        })
        .collect()
}

/// Drops the peer's segments whose midpoint lies in a deleted span
/// (`[from_ms, to_ms]`): a recording deleted here is not copied back from
/// a peer that still has it.
pub fn without_deleted(files: Vec<PeerFile>, spans: &[(i64, i64)]) -> Vec<PeerFile> {
    if spans.is_empty() {
        return files;
    }
    files
        .into_iter()
        .filter(|f| match f {
            PeerFile::Segment { name, .. } => {
                let mid = name.mid_ms();
                !spans.iter().any(|&(from, to)| from <= mid && mid <= to)
            }
            PeerFile::Init { .. } => true,
        })
        .collect()
}

/// What to fetch from a peer for one track, in order: each segment after
/// the init segments it needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Files to fetch, init segments before the segments that need them.
    pub fetch: Vec<PeerFile>,
    /// Peer segments skipped because the local init segment of the same
    /// session and number has another size (never mixed).
    pub conflicts: usize,
    /// Bytes to fetch.
    pub bytes: u64,
    /// Peer segments of another session past the live recording's newest
    /// segment, left ([`Window::recording`]).
    pub past_live_edge: usize,
}

/// The window of a [`plan`]: peer segments ending in `[from_ms,
/// settle_before_ms)` are considered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// The local depth's start (older is not kept here).
    pub from_ms: i64,
    /// Segments ending later are left (the live edge).
    pub settle_before_ms: i64,
    /// The session this archive records the track in now
    /// (`Archive::current_session`), if any. A peer segment of another
    /// session whose middle is past this session's newest segment is
    /// left: this recording will cover that time, and the peer's copy is
    /// the same stream dated otherwise (the two origins' timelines parted:
    /// one restarted after its stream's publisher moved to another
    /// publishing node). Copying it put two copies of every second in
    /// the archive, one round after another.
    pub recording: Option<i64>,
}

/// The files of `peer` (a parsed listing of one track) that `local` (this
/// archive's index of the track) lacks in `window`, at most `max_bytes` of
/// them (the rest waits for the next round).
pub fn plan(local: Option<&TrackIndex>, peer: &[PeerFile], window: Window, max_bytes: u64) -> Plan {
    let mut out = Plan::default();
    let empty = TrackIndex::default();
    let local = local.unwrap_or(&empty);
    let peer_inits: std::collections::BTreeMap<(i64, u32), u64> = peer
        .iter()
        .filter_map(|f| match *f {
            PeerFile::Init { session, n, size } => Some(((session, n), size)),
            PeerFile::Segment { .. } => None,
        })
        .collect();
    let mut planned_inits = BTreeSet::new();
    let mut planned = BTreeSet::new();
    // The live recording's session and where its newest segment ends.
    let live_edge = window.recording.and_then(|session| {
        local
            .segments
            .iter()
            .rev()
            .find(|s| s.name.session == session)
            .map(|s| (session, s.name.end_ms()))
    });
    for f in peer {
        let PeerFile::Segment { name, size } = *f else {
            continue;
        };
        if name.pdt_ms < window.from_ms
            || name.end_ms() > window.settle_before_ms
            || planned.contains(&name)
        {
            continue;
        }
        if let Some((session, edge)) = live_edge
            && name.session != session
            && name.mid_ms() >= edge
        {
            out.past_live_edge += 1;
            continue;
        }
        // A local segment of that time keeps its place, unless it is
        // provisional and the peer's copy replaces it (on import).
        if local.keeps_time_against(&name, size) {
            continue;
        }
        let ik = (name.session, name.init);
        let Some(&init_size) = peer_inits.get(&ik) else {
            // The peer lists no init for it: nothing to play it with.
            continue;
        };
        let need_init = match local.inits.get(&ik) {
            Some(have) if have.size != init_size => {
                out.conflicts += 1;
                continue;
            }
            Some(_) => false,
            None => !planned_inits.contains(&ik),
        };
        let add = size.saturating_add(if need_init { init_size } else { 0 });
        if !out.fetch.is_empty() && out.bytes.saturating_add(add) > max_bytes {
            break;
        }
        if need_init {
            planned_inits.insert(ik);
            out.fetch.push(PeerFile::Init {
                session: ik.0,
                n: ik.1,
                size: init_size,
            });
        }
        planned.insert(name);
        out.fetch.push(*f);
        out.bytes = out.bytes.saturating_add(add);
    }
    out
}

/// Wall-clock stretches of `[from_ms, to_ms)` that no segment of `index`
/// covers, longer than `tolerance_ms`: what neither origin recorded, after
/// replication, is reported, not hidden.
pub fn holes(
    index: Option<&TrackIndex>,
    from_ms: i64,
    to_ms: i64,
    tolerance_ms: u32,
) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    let mut at = from_ms;
    for s in index.map(|i| i.segments.iter()).into_iter().flatten() {
        if s.name.end_ms() <= at {
            continue;
        }
        if s.name.pdt_ms >= to_ms {
            break;
        }
        if s.name.pdt_ms.saturating_sub(at) > i64::from(tolerance_ms) {
            out.push((at, s.name.pdt_ms));
        }
        at = at.max(s.name.end_ms());
    }
    if to_ms.saturating_sub(at) > i64::from(tolerance_ms) {
        out.push((at, to_ms));
    }
    out
}

/// The most time one [`Pacer::reserve`] books.
pub const MAX_BOOKING: Duration = Duration::from_secs(60);

/// Paces fetches to `bytes_per_s` on average, so a restore never takes
/// the bandwidth live delivery needs: [`reserve`](Self::reserve) books a
/// fetch of `n` bytes and says how long to wait before sending it (the
/// line is free once the bytes booked before it have had their time).
#[derive(Debug, Clone)]
pub struct Pacer {
    bytes_per_s: u64,
    free_at: Option<Instant>,
}

impl Pacer {
    /// A pacer of `bytes_per_s` (0: unpaced).
    pub fn new(bytes_per_s: u64) -> Self {
        Pacer {
            bytes_per_s,
            free_at: None,
        }
    }

    /// Books `n` bytes at `now`: the wait before fetching them. One
    /// booking costs at most [`MAX_BOOKING`], whatever `n` a peer listed.
    pub fn reserve(&mut self, now: Instant, n: u64) -> Duration {
        if self.bytes_per_s == 0 {
            return Duration::ZERO;
        }
        let start = self.free_at.map_or(now, |f| f.max(now));
        let cost = Duration::try_from_secs_f64(n as f64 / self.bytes_per_s as f64)
            .unwrap_or(MAX_BOOKING)
            .min(MAX_BOOKING);
        self.free_at = Some(start.checked_add(cost).unwrap_or(start));
        start - now
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
