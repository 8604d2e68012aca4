//! The live window of a stream and the registry of live streams.
//!
//! A [`LiveStream`] is shared (`Arc`) between the packager task that applies
//! [`SegmenterOutput`]s and every HTTP request that renders a playlist or
//! fetches a segment. Reads take a short read lock and clone `Arc`s/`Bytes`
//! handles, never payloads.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use tokio::sync::watch;
use ugc_core::{MediaKind, StreamPath};

use bytes::Bytes;

use crate::chunks::Chunks;
use crate::playlist::{self, LowLatency, MediaPlaylist, RenditionReport, Variant, VariantStream};
use crate::segmenter::{InitSegment, Part, Segment, SegmentStart, SegmenterOutput};

/// Configuration of a [`LiveStream`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveConfig {
    /// Segments listed in the live playlist. Default 6.
    pub window_segments: usize,
    /// Segments kept fetchable after they left the playlist, so a player
    /// that just read the playlist can still get the oldest. Default 2.
    pub grace_segments: usize,
    /// The segmenter's target duration (floor of `#EXT-X-TARGETDURATION`).
    pub target_duration_ms: u32,
    /// The segmenter's part target: `Some` renders LL-HLS playlists
    /// (parts, preload hint, server control). Default `None`.
    pub part_target_ms: Option<u32>,
}

impl Default for LiveConfig {
    fn default() -> Self {
        LiveConfig {
            window_segments: 6,
            grace_segments: 2,
            target_duration_ms: 2000,
            part_target_ms: None,
        }
    }
}

/// What changed last in a [`LiveStream`]; watch it with
/// [`LiveStream::subscribe`] (blocking playlist reload waits on it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LiveUpdate {
    /// Increases on every change.
    pub version: u64,
    /// The newest closed segment.
    pub last_msn: Option<u64>,
    /// How many parts the newest closed segment has (LL-HLS).
    pub last_parts: Option<u32>,
    /// The open segment's msn and its number of published parts (LL-HLS).
    pub open_parts: Option<(u64, u32)>,
    /// The stream ended.
    pub ended: bool,
}

impl LiveUpdate {
    /// Whether a blocking playlist request for `_HLS_msn=msn` (and
    /// `_HLS_part=part`) can be answered: segment `msn` is complete, or (with
    /// `part`) part `part` of segment `msn` or a later part is published.
    ///
    /// The part after the last of a closed segment is the next segment's
    /// first (RFC 8216bis 6.2.5.2: the playlist must contain that part "or
    /// later"; the segment's close alone is not a later part). hls.js asks
    /// for it (part N + 1 of the newest part's segment) right after the
    /// segment's last part; answered at the close, one frame later, it got
    /// a playlist with no new media, often while it was still loading that
    /// last part, and asked again.
    pub fn reached(&self, msn: u64, part: Option<u32>) -> bool {
        match (self.last_msn, part) {
            (Some(m), None) if m >= msn => return true,
            (Some(m), Some(_)) if m > msn => return true,
            (Some(m), Some(p)) if m == msn && self.last_parts.is_none_or(|n| n > p) => {
                return true;
            }
            _ => {}
        }
        match (part, self.open_parts) {
            (Some(p), Some((m, n))) => (m > msn && n > 0) || (m == msn && n > p),
            _ => false,
        }
    }
}

/// How far part `(msn, index)` is; see [`LiveStream::part_progress`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartProgress {
    /// Complete: its bytes from the asked offset on (none when the offset
    /// is at its end).
    Complete(Chunks),
    /// Being written: the chunks (or the tail of one) after the asked
    /// offset, possibly none yet.
    Partial(Vec<Bytes>),
    /// Not started, but it may still come (the open or next segment).
    NotYet,
    /// It does not and will not exist here (dropped from the window, or its
    /// segment closed with fewer parts).
    Never,
}

/// Options of [`LiveStream::render_media_playlist_with`].
#[derive(Debug, Clone, Default)]
pub struct PlaylistQuery {
    /// Render a delta update (`_HLS_skip=YES` or `v2`).
    pub skip: bool,
    /// `#EXT-X-RENDITION-REPORT`s of the other renditions.
    pub rendition_reports: Vec<RenditionReport>,
}

/// The part being written.
#[derive(Debug)]
struct Building {
    msn: u64,
    index: u32,
    chunks: Vec<Bytes>,
}

/// LL-HLS parts published by this process's live streams: how regularly
/// they become available, which is what players' blocking reloads wait for
/// (`ugc_llhls_*` in `/metrics`; one process-wide set, so a stream's end
/// never makes a counter go back).
pub static PART_STATS: PartStats = PartStats::new();

/// Upper bounds (seconds) of [`PartStats`]'s interval buckets: around the
/// usual part targets (0.2-1 s) and the stalls players notice.
pub const PART_INTERVAL_BOUNDS: [f64; 10] = [0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0];

/// See [`PART_STATS`].
#[derive(Debug)]
pub struct PartStats {
    /// Wall time between a stream's consecutive parts, by bucket of
    /// [`PART_INTERVAL_BOUNDS`] (and +Inf).
    buckets: [std::sync::atomic::AtomicU64; 11],
    sum_us: std::sync::atomic::AtomicU64,
    /// Parts that came over 1.5 part targets after the previous one.
    late: std::sync::atomic::AtomicU64,
}

impl Default for PartStats {
    fn default() -> Self {
        Self::new()
    }
}

impl PartStats {
    /// Nothing counted.
    pub const fn new() -> Self {
        #[allow(clippy::declare_interior_mutable_const)]
        const ZERO: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        PartStats {
            buckets: [ZERO; 11],
            sum_us: ZERO,
            late: ZERO,
        }
    }

    /// Counts a part published `interval` after its stream's previous one.
    pub fn observe(&self, interval: std::time::Duration, part_target_ms: Option<u32>) {
        use std::sync::atomic::Ordering::Relaxed;
        let s = interval.as_secs_f64();
        let i = PART_INTERVAL_BOUNDS
            .iter()
            .position(|b| s <= *b)
            .unwrap_or(PART_INTERVAL_BOUNDS.len());
        self.buckets[i].fetch_add(1, Relaxed);
        self.sum_us.fetch_add(interval.as_micros() as u64, Relaxed);
        if part_target_ms.is_some_and(|t| interval.as_millis() * 2 > u128::from(t) * 3) {
            self.late.fetch_add(1, Relaxed);
        }
    }

    /// Per-bucket counts (not cumulative), the sum in seconds, and the late
    /// parts.
    pub fn read(&self) -> ([u64; 11], f64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (
            std::array::from_fn(|i| self.buckets[i].load(Relaxed)),
            self.sum_us.load(Relaxed) as f64 / 1e6,
            self.late.load(Relaxed),
        )
    }
}

#[derive(Debug, Default)]
struct LiveState {
    /// Playlist window plus grace, oldest first, msn consecutive.
    segments: VecDeque<Arc<Segment>>,
    /// Discontinuity tags of segments already dropped from `segments`.
    discontinuities_dropped: u64,
    inits: BTreeMap<u32, Arc<InitSegment>>,
    /// Parts of the open segment (LL-HLS).
    open_parts: Vec<Arc<Part>>,
    open_msn: Option<u64>,
    /// The header of the open segment (LL-HLS).
    open_start: Option<SegmentStart>,
    /// The part being written (LL-HLS).
    building: Option<Building>,
    next_msn: u64,
    ended: bool,
    /// Where the segmenter expects the next part ([`SegmenterOutput::PreloadHint`]),
    /// until the next part is published.
    hint: Option<(u64, u32)>,
    /// When this stream last published a part (LL-HLS availability).
    last_part_at: Option<i64>,
}

impl LiveState {
    /// Segment `msn` if it is retained.
    fn segment_of(&self, msn: u64) -> Option<&Arc<Segment>> {
        let first = self.segments.front()?.msn;
        let idx = usize::try_from(msn.checked_sub(first)?).ok()?;
        self.segments.get(idx).filter(|s| s.msn == msn)
    }
}

/// The live window of one stream; see the [module docs](self).
///
/// Feed it from one [`crate::Segmenter`] for its whole life (msn must keep
/// increasing); a new Hub stream gets a new `LiveStream`
/// ([`LiveRegistry::insert`] replaces the old one).
#[derive(Debug)]
pub struct LiveStream {
    config: LiveConfig,
    /// The session in every media URI ([`crate::MediaFile`]).
    session: u64,
    state: RwLock<LiveState>,
    updates: watch::Sender<LiveUpdate>,
    /// Bumped on every chunk of the part being written (and on every
    /// update), for readers of a part in progress.
    chunks: watch::Sender<u64>,
    /// The newest media playlists rendered, by what they were rendered
    /// from: the thousands of viewers one new part wakes all ask for the
    /// same text, and rendering it for each cost more than sending it.
    rendered: Mutex<Vec<(RenderKey, Bytes)>>,
}

/// What a media playlist's text depends on besides the stream's state,
/// and the state's version ([`LiveUpdate::version`]).
#[derive(Debug, PartialEq)]
struct RenderKey {
    version: u64,
    variant: Variant,
    skip: bool,
    reports: Vec<RenditionReport>,
}

/// Rendered playlists kept per stream: fMP4 and TS, full and delta.
const RENDERED_KEPT: usize = 4;

impl LiveStream {
    /// An empty live stream of session 0 (tests, a single stream that never
    /// restarts); see [`Self::with_session`].
    pub fn new(config: LiveConfig) -> Self {
        Self::with_session(config, 0)
    }

    /// An empty live stream whose media URIs carry `session`
    /// ([`crate::MediaFile`]). Give each life of a stream name its own,
    /// larger than the last (e.g. its start in unix milliseconds, as
    /// [`crate::package_hub`] does): its segment numbers restart at 0, and
    /// its URIs must not name an earlier life's bytes that a cache keeps.
    pub fn with_session(config: LiveConfig, session: u64) -> Self {
        let (updates, _) = watch::channel(LiveUpdate::default());
        let (chunks, _) = watch::channel(0);
        LiveStream {
            config: LiveConfig {
                window_segments: config.window_segments.max(1),
                ..config
            },
            session,
            state: RwLock::new(LiveState::default()),
            updates,
            chunks,
            rendered: Mutex::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &LiveConfig {
        &self.config
    }

    /// The session in this stream's media URIs.
    pub fn session(&self) -> u64 {
        self.session
    }

    fn read(&self) -> RwLockReadGuard<'_, LiveState> {
        // A panic elsewhere while holding the lock leaves consistent data
        // (every mutation is a few pushes/pops), so poisoning is ignored.
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, LiveState> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies one segmenter output and notifies watchers; `now_ms` is the
    /// caller's clock in milliseconds (the packager's: what dates segments),
    /// which times the parts' intervals ([`PART_STATS`]).
    pub fn apply(&self, output: SegmenterOutput, now_ms: i64) {
        self.apply_all(std::iter::once(output), now_ms);
    }

    /// Applies the outputs of one segmenter input under one lock, then
    /// notifies watchers once: a blocking playlist request woken by a new
    /// part never sees the part without the preload hint that follows it.
    pub fn apply_all(&self, outputs: impl IntoIterator<Item = SegmenterOutput>, now_ms: i64) {
        let mut st = self.write();
        let mut changed = false;
        let mut chunk = false;
        for output in outputs {
            if Self::apply_one(&self.config, &mut st, output, now_ms) {
                changed = true;
            } else {
                chunk = true;
            }
        }
        if changed {
            self.notify(&st);
        } else if chunk {
            // Chunks change no playlist: wake only the part readers.
            drop(st);
            self.chunks.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// Applies one output; false when it changed no playlist (a chunk of
    /// the part being written).
    fn apply_one(
        config: &LiveConfig,
        st: &mut LiveState,
        output: SegmenterOutput,
        now_ms: i64,
    ) -> bool {
        match output {
            SegmenterOutput::Init(init) => {
                st.inits.insert(init.number, init);
            }
            SegmenterOutput::Opened(start) => {
                st.open_parts.clear();
                st.open_msn = Some(start.msn);
                st.open_start = Some(start);
                st.building = None;
            }
            SegmenterOutput::PartChunk { msn, part, data } => {
                match st.building.as_mut() {
                    Some(b) if b.msn == msn && b.index == part => b.chunks.push(data),
                    _ => {
                        st.building = Some(Building {
                            msn,
                            index: part,
                            chunks: vec![data],
                        })
                    }
                }
                return false;
            }
            SegmenterOutput::PreloadHint { msn, part } => st.hint = Some((msn, part)),
            SegmenterOutput::Part { msn, part } => {
                if let Some(prev) = st.last_part_at.replace(now_ms) {
                    let gap = u64::try_from(now_ms.saturating_sub(prev)).unwrap_or(0);
                    PART_STATS
                        .observe(std::time::Duration::from_millis(gap), config.part_target_ms);
                }
                if st.open_msn != Some(msn) {
                    st.open_parts.clear();
                    st.open_msn = Some(msn);
                }
                if st
                    .building
                    .as_ref()
                    .is_some_and(|b| b.msn == msn && b.index <= part.index)
                {
                    st.building = None;
                }
                st.open_parts.push(part);
                st.hint = None;
            }
            SegmenterOutput::Segment(seg) => {
                st.open_parts.clear();
                st.open_msn = None;
                st.open_start = None;
                st.building = None;
                st.next_msn = seg.msn.saturating_add(1);
                // A number jumped (aligned segments over a hole in the
                // media): a playlist cannot list the hole, so the window
                // starts again after it.
                if st
                    .segments
                    .back()
                    .is_some_and(|last| last.msn.saturating_add(1) != seg.msn)
                {
                    let dropped = st.segments.drain(..).filter(|s| s.discontinuity).count();
                    st.discontinuities_dropped += dropped as u64;
                }
                st.segments.push_back(seg);
                let keep = config.window_segments.saturating_add(config.grace_segments);
                while st.segments.len() > keep {
                    if let Some(old) = st.segments.pop_front()
                        && old.discontinuity
                    {
                        st.discontinuities_dropped += 1;
                    }
                }
                // Drop init segments no retained segment needs (keep the newest).
                let oldest_init = st.segments.front().map(|s| s.init);
                let newest_init = st.inits.keys().next_back().copied();
                if let Some(oldest) = oldest_init {
                    st.inits
                        .retain(|&n, _| n >= oldest || Some(n) == newest_init);
                }
            }
            SegmenterOutput::Ended => st.ended = true,
        }
        true
    }

    /// Marks the stream ended (`#EXT-X-ENDLIST`).
    pub fn set_ended(&self) {
        let mut st = self.write();
        st.ended = true;
        self.notify(&st);
    }

    fn notify(&self, st: &LiveState) {
        let last_msn = st.segments.back().map(|s| s.msn);
        let last_parts = st
            .segments
            .back()
            .map(|s| u32::try_from(s.parts.len()).unwrap_or(u32::MAX));
        let open_parts = st
            .open_msn
            .map(|m| (m, u32::try_from(st.open_parts.len()).unwrap_or(u32::MAX)));
        let ended = st.ended;
        self.updates.send_modify(|u| {
            u.version = u.version.wrapping_add(1);
            u.last_msn = last_msn;
            u.last_parts = last_parts;
            u.open_parts = open_parts;
            u.ended = ended;
        });
        self.chunks.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A receiver that changes on every chunk of a part in progress and on
    /// every [`LiveUpdate`]: wait on it between [`Self::part_progress`]
    /// calls.
    pub fn subscribe_chunks(&self) -> watch::Receiver<u64> {
        self.chunks.subscribe()
    }

    /// The current [`LiveUpdate`].
    pub fn update(&self) -> LiveUpdate {
        *self.updates.borrow()
    }

    /// Whether the playlists carry LL-HLS parts.
    pub fn low_latency(&self) -> bool {
        self.config.part_target_ms.is_some()
    }

    /// The next part to be produced (`#EXT-X-PRELOAD-HINT`): the part
    /// being written, else where the segmenter expects it (the first part
    /// of the next segment when the newest part is expected to be its
    /// segment's last), else the one after the newest.
    pub fn preload_hint(&self) -> Option<(u64, u32)> {
        Self::preload_of(&self.read())
    }

    fn preload_of(st: &LiveState) -> Option<(u64, u32)> {
        if st.ended {
            return None;
        }
        if let Some(b) = &st.building {
            return Some((b.msn, b.index));
        }
        let after_newest = match st.open_msn {
            Some(m) => (m, u32::try_from(st.open_parts.len()).unwrap_or(u32::MAX)),
            None => (st.next_msn, 0),
        };
        Some(
            st.hint
                .filter(|h| *h >= after_newest)
                .unwrap_or(after_newest),
        )
    }

    /// This stream as an `#EXT-X-RENDITION-REPORT` in another rendition's
    /// playlist, whose URI for it is `uri`: its newest published part (the
    /// open segment's last part, else the last part of the newest closed
    /// segment), or its newest segment without parts. `None` before the
    /// first segment or part.
    pub fn rendition_report(&self, uri: &str) -> Option<RenditionReport> {
        let st = self.read();
        let (last_msn, last_part) = match (st.open_msn, st.open_parts.len()) {
            (Some(m), n) if n > 0 => (m, Some(u32::try_from(n - 1).unwrap_or(u32::MAX))),
            _ => {
                let seg = st.segments.back()?;
                let part = seg.parts.len().checked_sub(1);
                let part = part.filter(|_| self.low_latency());
                (seg.msn, part.map(|p| u32::try_from(p).unwrap_or(u32::MAX)))
            }
        };
        Some(RenditionReport {
            uri: uri.to_owned(),
            last_msn,
            last_part,
        })
    }

    /// The msn of the segment being produced (open, or next to open).
    pub fn producing_msn(&self) -> u64 {
        let st = self.read();
        st.open_msn.unwrap_or(st.next_msn)
    }

    /// Part `index` of segment `msn`, published or in progress, from byte
    /// `offset` on. Never blocks; wait on [`Self::subscribe_chunks`] and ask
    /// again while it is [`PartProgress::Partial`] or
    /// [`PartProgress::NotYet`].
    ///
    /// The part just after the last of a closed segment is the next
    /// segment's first: a preload hint may have named it before the
    /// keyframe that closed the segment arrived, and a hinted resource must
    /// arrive (the same bytes under two URIs; neither URI ever changes).
    pub fn part_progress(&self, msn: u64, index: u32, offset: usize) -> PartProgress {
        let st = self.read();
        match Self::part_progress_of(&st, msn, index, offset) {
            PartProgress::Never
                if st.segment_of(msn).is_some_and(|s| {
                    s.parts.len() == usize::try_from(index).unwrap_or(usize::MAX)
                }) =>
            {
                Self::part_progress_of(&st, msn.saturating_add(1), 0, offset)
            }
            p => p,
        }
    }

    fn part_progress_of(st: &LiveState, msn: u64, index: u32, offset: usize) -> PartProgress {
        let idx = usize::try_from(index).unwrap_or(usize::MAX);
        if st.open_msn == Some(msn) {
            if let Some(p) = st.open_parts.get(idx) {
                return PartProgress::Complete(p.data.tail(offset));
            }
            if let Some(b) = st
                .building
                .as_ref()
                .filter(|b| b.index == index && b.msn == msn)
            {
                return PartProgress::Partial(crate::chunks::tail(&b.chunks, offset));
            }
            return if st.ended {
                PartProgress::Never
            } else {
                PartProgress::NotYet
            };
        }
        let first = st.segments.front().map_or(st.next_msn, |s| s.msn);
        if msn < first {
            return PartProgress::Never;
        }
        if msn < st.next_msn {
            let seg = usize::try_from(msn - first)
                .ok()
                .and_then(|i| st.segments.get(i));
            return match seg.and_then(|s| s.parts.get(idx)) {
                Some(p) => PartProgress::Complete(p.data.tail(offset)),
                None => PartProgress::Never,
            };
        }
        if st.ended {
            PartProgress::Never
        } else {
            PartProgress::NotYet
        }
    }

    /// A receiver of [`LiveUpdate`]s.
    pub fn subscribe(&self) -> watch::Receiver<LiveUpdate> {
        self.updates.subscribe()
    }

    /// Whether the stream ended.
    pub fn is_ended(&self) -> bool {
        self.read().ended
    }

    /// Whether at least one segment is available (a playlist is worth
    /// serving).
    pub fn has_segments(&self) -> bool {
        !self.read().segments.is_empty()
    }

    /// The segments listed in the playlist, oldest first.
    pub fn window(&self) -> Vec<Arc<Segment>> {
        let st = self.read();
        let skip = st
            .segments
            .len()
            .saturating_sub(self.config.window_segments);
        st.segments.iter().skip(skip).cloned().collect()
    }

    /// Segment `msn` if it is still (or already) retained.
    pub fn segment(&self, msn: u64) -> Option<Arc<Segment>> {
        self.read().segment_of(msn).cloned()
    }

    /// Init segment `n` if a retained segment (or the newest track set)
    /// uses it.
    pub fn init(&self, n: u32) -> Option<Arc<InitSegment>> {
        self.read().inits.get(&n).cloned()
    }

    /// The newest init segment.
    pub fn current_init(&self) -> Option<Arc<InitSegment>> {
        self.read().inits.values().next_back().cloned()
    }

    /// Renders the live media playlist for `variant` (LL-HLS tags for
    /// [`Variant::Fmp4`] when [`LiveConfig::part_target_ms`] is set).
    pub fn render_media_playlist(&self, variant: Variant) -> String {
        self.render_media_playlist_with(variant, &PlaylistQuery::default())
    }

    /// Renders the live media playlist for `variant` with `query`'s options
    /// (delta update, rendition reports).
    pub fn render_media_playlist_with(&self, variant: Variant, query: &PlaylistQuery) -> String {
        self.render_state(&self.read(), variant, query)
    }

    /// [`Self::render_media_playlist_with`] as bytes, rendered once per
    /// change of the stream (and per variant, delta or full, and rendition
    /// reports) however many viewers ask: what the origin serves.
    pub fn media_playlist(&self, variant: Variant, query: &PlaylistQuery) -> Bytes {
        let st = self.read();
        // Read under the state's lock: `notify` bumps it under the write
        // lock, so the version names exactly the state rendered below.
        let key = RenderKey {
            version: self.updates.borrow().version,
            variant,
            skip: query.skip,
            reports: query.rendition_reports.clone(),
        };
        let cache = self.rendered.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, hit)) = cache.iter().find(|(k, _)| *k == key) {
            return hit.clone();
        }
        drop(cache);
        let text = Bytes::from(self.render_state(&st, variant, query));
        drop(st);
        let mut cache = self.rendered.lock().unwrap_or_else(|e| e.into_inner());
        cache.retain(|(k, _)| k.version >= key.version);
        if cache.len() >= RENDERED_KEPT {
            cache.remove(0);
        }
        cache.push((key, text.clone()));
        text
    }

    fn render_state(&self, st: &LiveState, variant: Variant, query: &PlaylistQuery) -> String {
        let in_grace = st
            .segments
            .len()
            .saturating_sub(self.config.window_segments);
        let window: Vec<Arc<Segment>> = st.segments.iter().skip(in_grace).cloned().collect();
        let discontinuity_sequence = st.discontinuities_dropped
            + st.segments
                .iter()
                .take(in_grace)
                .filter(|s| s.discontinuity)
                .count() as u64;
        MediaPlaylist {
            session: self.session,
            segments: &window,
            target_duration_ms: self.config.target_duration_ms,
            discontinuity_sequence,
            next_msn: st.next_msn,
            ended: st.ended,
            low_latency: self.config.part_target_ms.map(|pt| LowLatency {
                part_target_ms: pt,
                open: st.open_start.filter(|o| Some(o.msn) == st.open_msn),
                open_parts: &st.open_parts,
                preload: Self::preload_of(st),
                skip: query.skip,
                rendition_reports: &query.rendition_reports,
            }),
        }
        .render(variant)
    }

    /// This stream as one multivariant entry whose media playlist is `uri`:
    /// bandwidth measured over the window (peak segment and average), or the
    /// declared bitrates before any segment.
    pub fn variant_stream(&self, uri: &str) -> VariantStream {
        let window = self.window();
        let init = self.current_init();
        let tracks = init.as_ref().map(|i| i.tracks.clone()).unwrap_or_default();
        let declared: u64 = tracks.iter().filter_map(|t| t.bitrate).map(u64::from).sum();
        let mut peak = 0u64;
        let mut total_bits = 0u64;
        let mut total_ms = 0u64;
        for s in &window {
            let bits = (s.fmp4_size() as u64).saturating_mul(8);
            if let Some(rate) = bits.saturating_mul(1000).checked_div(s.duration_ms) {
                peak = peak.max(rate);
            }
            total_bits = total_bits.saturating_add(bits);
            total_ms = total_ms.saturating_add(s.duration_ms);
        }
        let average = total_bits.saturating_mul(1000).checked_div(total_ms);
        let bandwidth = if peak > 0 { peak } else { declared };
        let video = tracks.video();
        let codecs = tracks
            .iter()
            .filter(|t| !t.codec_string.is_empty())
            .map(|t| t.codec_string.as_str())
            .collect::<Vec<_>>()
            .join(",");
        VariantStream {
            uri: uri.to_owned(),
            bandwidth,
            average_bandwidth: average.or((declared > 0).then_some(declared)),
            codecs,
            resolution: video
                .and_then(|t| t.video())
                .map(|v| (v.width, v.height))
                .filter(|&(w, h)| w > 0 && h > 0),
            frame_rate: video
                .filter(|t| t.kind() == MediaKind::Video)
                .and_then(|t| t.video())
                .and_then(|v| v.frame_rate)
                .or_else(|| {
                    // Declared nowhere: measured on the current track set's segments.
                    let init = init.as_ref().map(|i| i.number);
                    crate::frame_rate::of_segments(
                        window.iter().filter(|s| Some(s.init) == init).map(|s| &**s),
                    )
                }),
        }
    }

    /// Renders the multivariant playlist: one variant, `mono.m3u8`. (A
    /// stream with a transcoding ladder: [`LiveRegistry::render_multivariant`].)
    pub fn render_multivariant(&self) -> String {
        playlist::render_multivariant(&[self.variant_stream("mono.m3u8")])
    }
}

/// Live streams by path (`live/<stream>`, and `live/<stream>/<rendition>`
/// for the renditions of its ladder).
#[derive(Debug, Default)]
pub struct LiveRegistry {
    streams: RwLock<HashMap<StreamPath, Arc<LiveStream>>>,
}

impl LiveRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `stream` as `name`, returning the stream it replaces.
    pub fn insert(&self, name: &StreamPath, stream: Arc<LiveStream>) -> Option<Arc<LiveStream>> {
        self.streams
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.clone(), stream)
    }

    /// Removes `name`.
    pub fn remove(&self, name: &StreamPath) -> Option<Arc<LiveStream>> {
        self.streams
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name)
    }

    /// Removes `name` only if it is still `stream` (a packager that ends
    /// must not remove the stream of a newer publisher). True if removed.
    pub fn remove_if_same(&self, name: &StreamPath, stream: &Arc<LiveStream>) -> bool {
        let mut map = self.streams.write().unwrap_or_else(|e| e.into_inner());
        if map.get(name).is_some_and(|s| Arc::ptr_eq(s, stream)) {
            map.remove(name);
            true
        } else {
            false
        }
    }

    /// The stream `name`.
    pub fn get(&self, name: &StreamPath) -> Option<Arc<LiveStream>> {
        self.streams
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    /// The renditions of `name` (a published stream): registered streams
    /// `<name>/<rendition>` that have segments and have not ended (a ladder
    /// that was turned off leaves ended renditions behind for a while), as
    /// `(rendition, stream)`, sorted by rendition name.
    pub fn renditions(&self, name: &StreamPath) -> Vec<(String, Arc<LiveStream>)> {
        let mut v: Vec<(String, Arc<LiveStream>)> = self
            .streams
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter_map(|(k, s)| {
                let r = k.rendition().filter(|_| k.source() == *name)?;
                (s.has_segments() && !s.is_ended()).then(|| (r.to_owned(), s.clone()))
            })
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// The multivariant playlist of stream `name`. With a transcoding
    /// ladder (streams `<name>/<rendition>` with segments) it lists every
    /// rendition, highest bandwidth first, each with its own media playlist
    /// `<rendition>/mono.m3u8`; otherwise the stream itself as
    /// `mono.m3u8`. `None` when nothing has segments yet.
    pub fn render_multivariant(&self, name: &StreamPath) -> Option<String> {
        let renditions = self.renditions(name);
        if renditions.is_empty() {
            let own = self.get(name)?;
            return own.has_segments().then(|| own.render_multivariant());
        }
        let mut variants: Vec<VariantStream> = renditions
            .iter()
            .map(|(r, s)| s.variant_stream(&format!("{r}/mono.m3u8")))
            .collect();
        variants.sort_by(|a, b| b.bandwidth.cmp(&a.bandwidth).then(a.uri.cmp(&b.uri)));
        Some(playlist::render_multivariant(&variants))
    }

    /// All streams, sorted.
    pub fn list(&self) -> Vec<StreamPath> {
        let mut names: Vec<StreamPath> = self
            .streams
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        names.sort();
        names
    }
}

#[cfg(test)]
mod part_stats_tests {
    use super::PartStats;
    use std::time::Duration;

    #[test]
    fn intervals_land_in_their_buckets_and_late_parts_count() {
        let s = PartStats::new();
        s.observe(Duration::from_millis(500), Some(500));
        s.observe(Duration::from_millis(740), Some(500));
        // Over 1.5 targets: late.
        s.observe(Duration::from_millis(760), Some(500));
        s.observe(Duration::from_secs(9), None);
        let (buckets, sum, late) = s.read();
        assert_eq!(buckets[3], 1, "0.5 s is in le=0.5");
        assert_eq!(
            (buckets[4], buckets[5]),
            (1, 1),
            "0.74 s in le=0.75, 0.76 s in le=1"
        );
        assert_eq!(buckets[10], 1, "+Inf");
        assert_eq!(buckets.iter().sum::<u64>(), 4);
        assert!((sum - 11.0).abs() < 1e-6, "{sum}");
        assert_eq!(late, 1);
    }
}
