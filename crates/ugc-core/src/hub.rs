//! The Hub: named live streams with GOP-shared fan-out.
//!
//! A stream is a bounded window of recent [`MediaEvent`]s shared by all of its
//! readers. Readers are cursors (sequence numbers) into that window, so fan-out
//! to N readers clones nothing but `Bytes` handles, and no reader owns a queue.
//!
//! * The publisher never waits for readers: [`HubPublisher::send`] appends to
//!   the window and wakes readers.
//! * A new reader starts at the newest keyframe (after the current track set).
//! * A reader whose position fell out of the window (it is slower than the
//!   stream) jumps to the newest keyframe, receives
//!   [`MediaEvent::Discontinuity`] with [`DiscontinuityReason::ReaderSkipped`],
//!   and the skip is counted in [`StreamStats::reader_skips`].
//! * The window holds at most [`HubConfig::max_gops`] GOPs and about
//!   [`HubConfig::max_bytes`] bytes.
//! * A stream outlives its publisher: a reconnecting publisher, a backup or a
//!   fallback file takes over ([`Hub::publish`]); readers see one
//!   [`MediaEvent::Discontinuity`] with [`DiscontinuityReason::SourceChanged`],
//!   the new track set, and timestamps rebased to continue the timeline. Only
//!   [`Hub::end`] ends a stream.
//! * A stream has sources in priority order ([`SourceRole`]): its main
//!   publisher, a backup publisher and a fallback. Only one, the *active*
//!   source, reaches readers; the others stand by. A lower source takes over
//!   on its keyframe once the active one is gone or silent for
//!   [`HubConfig::source_timeout`]; a higher one takes back over on its
//!   keyframe after sending for [`HubConfig::switch_back_after`] (so a source
//!   that comes and goes does not flap the stream; from the fallback:
//!   [`HubConfig::switch_back_from_fallback_after`]). Timestamps continue across
//!   every switch, never going back on any track; a discontinuity is
//!   announced only when the new source's tracks differ from the old ones.

use std::collections::{HashMap, VecDeque};
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, broadcast, mpsc};

use crate::error::{Error, Result};
use crate::media::{DiscontinuityReason, Frame, MediaEvent, MediaKind, TrackId, TrackInfo, Tracks};
use crate::name::StreamPath;
use crate::pipeline::{Sink, Source};
use crate::time::{MediaTime, Timescale};

/// Limits of every stream of a [`Hub`].
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// GOPs kept per stream (at least 1). A reader further behind skips.
    pub max_gops: usize,
    /// Bytes of frame payload kept per stream; older GOPs are dropped past it
    /// (the newest GOP is trimmed too when it alone exceeds the limit).
    pub max_bytes: usize,
    /// For streams without video: a start point every this many audio frames.
    pub audio_only_start_every: u32,
    /// How long a stream outlives a publisher that finished
    /// ([`crate::Sink::finish`], which [`crate::pump`] calls when its source
    /// ends): a publisher that reconnects within it continues the stream
    /// (one discontinuity, continuous timestamps); after it the stream ends
    /// ([`MediaEvent::End`] to its readers). Default zero: the source's end
    /// ends the stream.
    pub publisher_grace: Duration,
    /// How long the active source may send nothing before a standing-by
    /// source (a backup, the fallback) takes over. Default 3 s.
    pub source_timeout: Duration,
    /// How long a higher-priority source must have been sending before it
    /// takes the stream back from a lower one (hysteresis). Default 5 s.
    pub switch_back_after: Duration,
    /// The same, from the fallback: a publisher that comes back (a
    /// reconnect) takes over from a slate on its first keyframe by default
    /// (zero), since a slate is no content to hold on to; a flapping
    /// publisher then alternates with the slate instead of leaving viewers
    /// on it.
    pub switch_back_from_fallback_after: Duration,
    /// A new timeline ([`Hub::timeline`]: a stream not brought by a relay
    /// from upstream) starts on the wall clock: its first frame lands at
    /// its age, the milliseconds since the timeline id, and later sources
    /// continue from there. So the timeline id plus a frame's decode time
    /// is its date, at every node the timeline reaches (aligned origins
    /// date their segments so; see `ugc_dvr::SegmenterConfig::date_anchor_ms`).
    /// Default `false`: the first publisher's timestamps are kept.
    pub timeline_on_clock: bool,
    /// When a source with other tracks takes over (a switch to the slate
    /// or back, a backup or a reconnecting publisher with other settings:
    /// a discontinuity), its first frame lands on the first multiple of
    /// this on the timeline at or after where the old media ends, and the
    /// old sound is filled with silence up to there (in its own format,
    /// before the discontinuity). A publisher that changes tracks itself
    /// (a relay bringing a switch from upstream) keeps its timestamps.
    ///
    /// Set it to the segment duration of aligned segments
    /// (`ugc_dvr::SegmenterConfig::aligned`), or a multiple of it, on every
    /// node whose timeline those segments follow (origins, and publishing
    /// nodes for the sources they relay): aligned segments are numbered by
    /// cells of that length on the timeline, so a discontinuity inside a
    /// cell whose number is taken made the next segment run to the
    /// boundary after, up to twice the duration and past
    /// `#EXT-X-TARGETDURATION` (RFC 8216 4.3.3.1). On a boundary the new
    /// source's first segment is a whole one under its own cell's number.
    /// The price: a hole of less than this in the timeline at the
    /// discontinuity (players re-base there; a transcoder reading the
    /// stream holds its last picture over it, with the silence).
    /// `None` (the default): the new source lands where the old media ends.
    /// A grid longer than [`MAX_DISCONTINUITY_GRID`] (no segment is that
    /// long) is taken as `None`: it would fill that much silence at once.
    pub discontinuity_grid: Option<Duration>,
}

/// Which of a stream's sources a publisher is, highest priority first: see
/// the [module](self) documentation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SourceRole {
    /// The stream's own publisher.
    #[default]
    Main,
    /// A backup publisher (an encoder's second URL, a standby node).
    Backup,
    /// The fallback played while no publisher is there.
    Fallback,
}

impl SourceRole {
    /// All roles, highest priority first.
    pub const ALL: [SourceRole; 3] = [SourceRole::Main, SourceRole::Backup, SourceRole::Fallback];

    /// `"main"`, `"backup"` or `"fallback"`.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceRole::Main => "main",
            SourceRole::Backup => "backup",
            SourceRole::Fallback => "fallback",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for SourceRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            max_gops: 3,
            max_bytes: 64 << 20,
            audio_only_start_every: 50,
            publisher_grace: Duration::ZERO,
            source_timeout: Duration::from_secs(3),
            switch_back_after: Duration::from_secs(5),
            switch_back_from_fallback_after: Duration::ZERO,
            timeline_on_clock: false,
            discontinuity_grid: None,
        }
    }
}

/// Counters of one stream; read with [`Hub::stats`].
#[derive(Debug, Default)]
pub struct StreamStats {
    /// Frames accepted from publishers.
    pub frames_in: AtomicU64,
    /// Payload bytes accepted from publishers.
    pub bytes_in: AtomicU64,
    /// Times a reader fell out of the window and skipped to a keyframe.
    pub reader_skips: AtomicU64,
    /// Publisher sessions that took over this stream (including the first).
    pub publishers: AtomicU64,
    /// Switches of the active source between roles ([`SourceRole`]).
    pub source_switches: AtomicU64,
    /// Frames of standing-by sources, not passed to readers.
    pub standby_frames: AtomicU64,
    /// Frames of silence that closed a hole in an audio track at a switch.
    pub silent_frames: AtomicU64,
    /// Times a track's timestamps went back or forward by more than a
    /// second between two frames (a publisher's clock jump or a gap).
    pub timestamp_jumps: AtomicU64,
    /// The video's last keyframe interval, milliseconds (0: not yet two).
    pub keyframe_interval_ms: AtomicU64,
}

/// A snapshot of [`StreamStats`] and state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSnapshot {
    /// The stream.
    pub name: StreamPath,
    /// Whether a main or backup publisher is attached now (a stream on its
    /// fallback alone is not publishing).
    pub publishing: bool,
    /// The role whose frames readers get (whether or not it is attached).
    pub active_source: SourceRole,
    /// The roles attached now, highest priority first.
    pub sources: Vec<SourceRole>,
    /// Switches of the active source between roles.
    pub source_switches: u64,
    /// Time on the fallback before `fallback_since` (see
    /// [`Self::fallback_time`]).
    pub fallback_before: Duration,
    /// Since when the fallback is the active source, if it is.
    pub fallback_since: Option<Instant>,
    /// Frames accepted.
    pub frames_in: u64,
    /// Bytes accepted.
    pub bytes_in: u64,
    /// Reader skips.
    pub reader_skips: u64,
    /// Frames of silence inserted at switches.
    pub silent_frames: u64,
    /// Timestamp jumps of any track (see [`StreamStats::timestamp_jumps`]).
    pub timestamp_jumps: u64,
    /// The video's last keyframe interval, milliseconds (0: unknown).
    pub keyframe_interval_ms: u64,
    /// Publisher sessions so far.
    pub publishers: u64,
    /// Readers attached now.
    pub readers: u64,
    /// The current track set.
    pub tracks: Option<Tracks>,
    /// Until when a reader wants the stream at low latency
    /// ([`Hub::want_low_latency`]).
    pub low_latency_until: Option<Instant>,
}

impl StreamSnapshot {
    /// How long the stream has had the fallback as its active source, up
    /// to `now` (the stream's `ugc_stream_fallback_seconds_total`).
    pub fn fallback_time(&self, now: Instant) -> Duration {
        let current = self
            .fallback_since
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
        self.fallback_before + current
    }
}

struct Entry {
    seq: u64,
    event: MediaEvent,
    size: usize,
}

/// A place a reader can start: a video keyframe (or an audio start point).
struct StartPoint {
    seq: u64,
    tracks: Tracks,
}

/// Audio frames a standing-by source keeps for a switch to it
/// ([`Slot::lead_in`]): 32 AAC frames are 0.7 s at 48 kHz, far more than
/// the frame or two between the old source's last sound and the new one's
/// keyframe.
const LEAD_IN_FRAMES: usize = 32;

/// One role's publisher, if attached.
#[derive(Default)]
struct Slot {
    /// Its publisher's generation; 0 when none is attached.
    generation: u64,
    /// When its publisher attached (it has the source timeout to send).
    attached_at: Option<Instant>,
    /// The track set it announced last.
    tracks: Option<Tracks>,
    /// When it last sent a frame.
    last_frame: Option<Instant>,
    /// Since when it has sent without a gap longer than the source timeout.
    healthy_since: Option<Instant>,
    /// Standing by with video: its latest other (audio) frames, which the
    /// stream takes with the keyframe it switches on.
    lead_in: VecDeque<Frame>,
    /// Its timestamps are on the stream's own timeline (a relay of it,
    /// [`Hub::publish_on_timeline`]): where its keyframes fall on a grid
    /// means something (a ladder's IDRs are on one).
    on_timeline: bool,
}

impl Slot {
    fn attached(&self) -> bool {
        self.generation != 0
    }

    /// Attached and sent a frame within `timeout` of `now` (or attached
    /// within it and not sent yet).
    fn healthy(&self, now: Instant, timeout: Duration) -> bool {
        self.attached()
            && self
                .last_frame
                .or(self.attached_at)
                .is_some_and(|t| now.saturating_duration_since(t) <= timeout)
    }

    fn detach(&mut self) {
        *self = Slot::default();
    }
}

#[derive(Default)]
struct TrackClock {
    last_dts: Option<i64>,
    last_step: i64,
    /// Decode time of the track's last keyframe (video).
    last_key_dts: Option<i64>,
    /// The latest presentation time so far (B-frames present after their
    /// decode order ends).
    max_pts: Option<i64>,
}

struct State {
    window: VecDeque<Entry>,
    /// Sequence number the next event gets.
    next_seq: u64,
    starts: VecDeque<StartPoint>,
    bytes: usize,
    tracks: Option<Tracks>,
    ended: bool,
    /// The last publisher generation handed out.
    generation: u64,
    /// Publishers attached so far (not bumped by a disconnect): a finished
    /// publisher ends the stream only if no other attached since.
    attaches: u64,
    /// The publisher of each role ([`SourceRole::index`]).
    slots: [Slot; 3],
    /// The role whose frames reach readers.
    active: SourceRole,
    /// Tracks whose first frame after a rebase has not passed yet: one at
    /// or before the track's last timestamp is dropped (no going back).
    settling: Vec<TrackId>,
    /// Whether anything was ever published (so a takeover is a discontinuity).
    had_media: bool,
    /// The active source's publisher pushed [`MediaEvent::End`] (a relay
    /// of a stream that ended upstream) and no publisher attached since.
    source_ended: bool,
    /// The id of the stream's timeline (see [`Hub::timeline`]).
    timeline: u64,
    /// The first frame is still to land at the timeline's age
    /// ([`HubConfig::timeline_on_clock`]).
    place_on_clock: bool,
    /// The current publisher still has to send its first frame (rebase base).
    rebase_pending: bool,
    /// A takeover discontinuity is still to be announced.
    announce_pending: bool,
    /// Offset added to the current publisher's timestamps (before its first
    /// frame: where the previous timeline's decoding ends).
    offset: MediaTime,
    /// Before the current publisher's first frame: where the previous
    /// timeline's presentation ends (the first frame is presented no
    /// earlier).
    present_end: MediaTime,
    /// The next landing of this role's frames is at this time or later
    /// ([`HubPublisher::land_not_before`]).
    landing_floor: Option<(SourceRole, MediaTime)>,
    /// After a track set's change on [`HubConfig::discontinuity_grid`]:
    /// where the old media ends, the grid's period (µs), and whether the
    /// new source keeps its place on the grid (see [`land_on_grid`]).
    grid_floor: Option<(MediaTime, i64, bool)>,
    /// Last timestamps per track, to find where the timeline ends.
    clocks: HashMap<TrackId, (Timescale, TrackClock)>,
    audio_since_start: u32,
    readers: u64,
    /// When [`Hub::reap_idle`] first saw the stream without a publisher.
    idle_since: Option<Instant>,
    /// Since when the fallback is the active source.
    fallback_since: Option<Instant>,
    /// Time on the fallback before `fallback_since`.
    fallback_before: Duration,
    /// This stream's source timeout, as of the last publisher attach.
    source_timeout: Duration,
}

impl State {
    /// Whether a main or backup publisher is attached (the fallback is no
    /// publisher: a stream on it is waiting for one).
    fn publishing(&self) -> bool {
        self.slots[SourceRole::Main.index()].attached()
            || self.slots[SourceRole::Backup.index()].attached()
    }

    fn detach_all(&mut self) {
        for slot in &mut self.slots {
            slot.detach();
        }
    }

    /// Starts a new timeline segment: the next frame lands at the end of the
    /// current one, and no track goes back.
    fn rebase(&mut self) {
        self.rebase_pending = true;
        let video = self.tracks.as_ref().and_then(|t| t.video()).map(|t| t.id);
        (self.offset, self.present_end) = timeline_end(&self.clocks, video);
        self.settling = self.clocks.keys().copied().collect();
    }
}

struct StreamShared {
    name: StreamPath,
    config: HubConfig,
    state: Mutex<State>,
    notify: Notify,
    stats: StreamStats,
    /// Until when a reader wants this stream at low latency
    /// ([`Hub::want_low_latency`]). Its own lock: viewers' requests set it
    /// without contending with the publisher's pushes.
    low_latency: LowLatencyWish,
    /// The hub's [`Hub::source_switches`] channel.
    switches: broadcast::Sender<SourceSwitch>,
}

/// Until when readers want low latency ([`Hub::want_low_latency`]).
#[derive(Default)]
struct LowLatencyWish(Mutex<Option<Instant>>);

impl LowLatencyWish {
    /// Extends the wish to `until` (an earlier deadline changes nothing).
    fn extend(&self, until: Instant) {
        let mut at = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if at.is_none_or(|t| t < until) {
            *at = Some(until);
        }
    }

    fn until(&self) -> Option<Instant> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn holds_at(&self, now: Instant) -> bool {
        self.until().is_some_and(|until| until > now)
    }
}

impl StreamShared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock would be a bug in this module; the
        // state is still consistent event by event, so keep serving.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

struct HubInner {
    config: HubConfig,
    /// Per-stream source timeouts ([`Hub::set_source_timeouts`]).
    source_timeouts: std::sync::RwLock<Option<SourceTimeouts>>,
    /// The latest [`Hub::want_low_latency`] deadline of any stream.
    low_latency: LowLatencyWish,
    streams: Mutex<HashMap<StreamPath, Arc<StreamShared>>>,
    watchers: Mutex<Vec<mpsc::UnboundedSender<StreamPath>>>,
    switches: broadcast::Sender<SourceSwitch>,
}

/// Switches kept for a [`Hub::source_switches`] receiver that is behind;
/// one further behind loses the oldest (`RecvError::Lagged` says how many).
pub const SOURCE_SWITCHES_BUFFERED: usize = 1024;

/// A stream's active source changed ([`Hub::source_switches`]): a failover
/// to the backup or the fallback, or back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceSwitch {
    /// The stream.
    pub stream: StreamPath,
    /// The role readers got until now.
    pub from: SourceRole,
    /// The role readers get from now on.
    pub to: SourceRole,
    /// When the hub switched (the `now` of the push that did it).
    pub at: Instant,
}

/// A stream's own source timeout, where it has one (else
/// [`HubConfig::source_timeout`]): see [`Hub::set_source_timeouts`].
pub type SourceTimeouts = Arc<dyn Fn(&StreamPath) -> Option<Duration> + Send + Sync>;

/// Named live streams. Cheap to clone; all clones share the streams.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<HubInner>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("streams", &self.stream_names())
            .finish()
    }
}

impl Hub {
    /// An empty hub.
    pub fn new(config: HubConfig) -> Self {
        Hub {
            inner: Arc::new(HubInner {
                config,
                source_timeouts: std::sync::RwLock::new(None),
                low_latency: LowLatencyWish::default(),
                streams: Mutex::new(HashMap::new()),
                watchers: Mutex::new(Vec::new()),
                switches: broadcast::channel(SOURCE_SWITCHES_BUFFERED).0,
            }),
        }
    }

    /// Gives streams source timeouts of their own (a control plane's
    /// per-stream setting): `timeouts(name)`, or
    /// [`HubConfig::source_timeout`] where it answers `None`. Asked each
    /// time a publisher of the stream attaches (so a changed setting
    /// applies from the next attach: a reconnect, a backup, the
    /// fallback); it must answer from memory.
    pub fn set_source_timeouts(&self, timeouts: SourceTimeouts) {
        *self
            .inner
            .source_timeouts
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Some(timeouts);
    }

    /// The source timeout of stream `name`.
    pub fn source_timeout(&self, name: &StreamPath) -> Duration {
        let own = self
            .inner
            .source_timeouts
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .and_then(|f| f(name));
        own.unwrap_or(self.inner.config.source_timeout)
    }

    fn streams(&self) -> MutexGuard<'_, HashMap<StreamPath, Arc<StreamShared>>> {
        self.inner.streams.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get_or_create(&self, name: &StreamPath) -> Arc<StreamShared> {
        self.get_or_create_on(name, None)
    }

    /// [`Self::get_or_create`] on `timeline` (see [`Self::timeline`]): a
    /// new stream is created on it, before anyone watching the hub can
    /// see the stream, and one that has had no media yet takes it.
    fn get_or_create_on(&self, name: &StreamPath, timeline: Option<u64>) -> Arc<StreamShared> {
        let mut created = false;
        let mut streams = self.streams();
        let shared = streams
            .entry(name.clone())
            .or_insert_with(|| {
                created = true;
                Arc::new(StreamShared {
                    name: name.clone(),
                    config: self.inner.config.clone(),
                    state: Mutex::new(State {
                        window: VecDeque::new(),
                        next_seq: 0,
                        starts: VecDeque::new(),
                        bytes: 0,
                        tracks: None,
                        ended: false,
                        generation: 0,
                        attaches: 0,
                        slots: Default::default(),
                        active: SourceRole::Main,
                        settling: Vec::new(),
                        had_media: false,
                        source_ended: false,
                        timeline: timeline.unwrap_or_else(new_timeline_id),
                        place_on_clock: self.inner.config.timeline_on_clock && timeline.is_none(),
                        rebase_pending: false,
                        announce_pending: false,
                        offset: MediaTime::zero(Timescale::MICROS),
                        present_end: MediaTime::zero(Timescale::MICROS),
                        landing_floor: None,
                        grid_floor: None,
                        clocks: HashMap::new(),
                        audio_since_start: 0,
                        readers: 0,
                        idle_since: None,
                        fallback_since: None,
                        fallback_before: Duration::ZERO,
                        source_timeout: self.inner.config.source_timeout,
                    }),
                    notify: Notify::new(),
                    stats: StreamStats::default(),
                    low_latency: LowLatencyWish::default(),
                    switches: self.inner.switches.clone(),
                })
            })
            .clone();
        // Watchers hear of a stream while the map is locked, so one that
        // starts watching sees each stream exactly once (see `watch`).
        if created {
            let mut watchers = self
                .inner
                .watchers
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            watchers.retain(|w| w.send(name.clone()).is_ok());
        }
        drop(streams);
        shared
    }

    /// The id of stream `name`'s timeline: the same for every node of a
    /// platform that carries this life of the stream, so that they can
    /// name its media alike (origins' aligned segments). A stream takes
    /// the id its first publisher brings from upstream
    /// ([`Self::publish_on_timeline`]: a relay carries it), else a new
    /// one, its creation in unix milliseconds (larger than the ids of the
    /// name's earlier lives on this machine's clock).
    pub fn timeline(&self, name: &StreamPath) -> Option<u64> {
        let shared = self.streams().get(name).cloned()?;
        let id = shared.lock().timeline;
        Some(id)
    }

    /// The timeline of stream `name` while its life may go on elsewhere:
    /// it has had media here and its source did not end it (a publisher
    /// is attached, or the last one went without an end: its node killed,
    /// a connection cut). `None` once a relay brought the stream's end
    /// (it ended upstream), before any media, and for no such stream. A
    /// node's beats carry it, so that a publisher arriving at another
    /// publishing node goes on with it ([`Self::continue_timeline`]).
    pub fn live_timeline(&self, name: &StreamPath) -> Option<u64> {
        let shared = self.streams().get(name).cloned()?;
        let st = shared.lock();
        (st.had_media && !st.source_ended).then_some(st.timeline)
    }

    /// [`Self::publish_as`] by a publisher whose timestamps are on timeline
    /// `timeline` upstream: a stream that has had no media yet takes it as
    /// its own ([`Self::timeline`]).
    pub fn publish_on_timeline(
        &self,
        name: &StreamPath,
        role: SourceRole,
        timeline: Option<u64>,
    ) -> HubPublisher {
        let shared = self.get_or_create_on(name, timeline);
        if let Some(id) = timeline {
            let mut st = shared.lock();
            if !st.had_media {
                st.timeline = id;
                st.place_on_clock = false;
            }
        }
        let publisher = self.publish_at(name, role, Instant::now());
        if let Some(id) = timeline {
            let mut st = shared.lock();
            let same = st.timeline == id;
            let slot = &mut st.slots[role.index()];
            if slot.generation == publisher.generation {
                slot.on_timeline = same;
            }
        }
        publisher
    }

    /// Stream `name` goes on with timeline `id`, begun at another node
    /// (its publisher moved here, its old node gone): a stream not here
    /// yet is created on it and one with no media yet takes it; with
    /// [`HubConfig::timeline_on_clock`] its first frame lands at the
    /// timeline's age, as its first node's did. So the stream's media
    /// keeps one timeline and its dates the wall clock across the move
    /// (the nodes downstream keep the hole of the outage), and a node
    /// that joins later names it as the others do. A stream that has had
    /// media here keeps its own.
    pub fn continue_timeline(&self, name: &StreamPath, id: u64) {
        let shared = self.get_or_create_on(name, Some(id));
        let mut st = shared.lock();
        if !st.had_media {
            st.timeline = id;
            st.place_on_clock = self.inner.config.timeline_on_clock;
        }
    }

    /// Attaches the main publisher of stream `name`, creating the stream if
    /// needed: [`Self::publish_as`] with [`SourceRole::Main`].
    pub fn publish(&self, name: &StreamPath) -> HubPublisher {
        self.publish_as(name, SourceRole::Main)
    }

    /// Attaches a publisher of `role` to stream `name`, creating the stream
    /// if needed. If another publisher of that role is attached it is taken
    /// over: its next [`HubPublisher::send`] fails with [`Error::Closed`];
    /// when that role is the active source, readers see a discontinuity and
    /// continuous, rebased timestamps. A publisher of another role stands by
    /// until the stream switches to it (see the [module](self) doc).
    pub fn publish_as(&self, name: &StreamPath, role: SourceRole) -> HubPublisher {
        self.publish_at(name, role, Instant::now())
    }

    /// [`Self::publish_as`] attaching at `now`, on the clock of
    /// [`HubPublisher::push_at`]: a publisher that just attached has the
    /// source timeout to send before a lower source takes over.
    pub fn publish_at(&self, name: &StreamPath, role: SourceRole, now: Instant) -> HubPublisher {
        let timeout = self.source_timeout(name);
        let shared = self.get_or_create(name);
        let (generation, attach) = {
            let mut st = shared.lock();
            st.source_timeout = timeout;
            st.generation += 1;
            st.attaches += 1;
            let generation = st.generation;
            st.slots[role.index()] = Slot {
                generation,
                attached_at: Some(now),
                ..Slot::default()
            };
            st.idle_since = None;
            st.source_ended = false;
            if st.active == role && st.had_media {
                st.rebase();
                st.announce_pending = true;
            }
            (generation, st.attaches)
        };
        shared.stats.publishers.fetch_add(1, Ordering::Relaxed);
        HubPublisher {
            shared,
            role,
            generation,
            attach,
            hub: Arc::downgrade(&self.inner),
        }
    }

    /// A reader of stream `name`, creating the (empty) stream if needed. It
    /// starts at the newest keyframe, or waits for the first one.
    pub fn subscribe(&self, name: &StreamPath) -> HubReader {
        HubReader::new(self.get_or_create(name))
    }

    /// A reader of stream `name` if it exists.
    pub fn subscribe_existing(&self, name: &StreamPath) -> Option<HubReader> {
        let shared = self.streams().get(name).cloned()?;
        Some(HubReader::new(shared))
    }

    /// Detaches the publishers of `name`, of every role (e.g. its key was
    /// revoked); their next sends fail with [`Error::Closed`]. The stream
    /// stays.
    pub fn disconnect_publisher(&self, name: &StreamPath) {
        if let Some(shared) = self.streams().get(name).cloned() {
            shared.lock().detach_all();
        }
    }

    /// Ends stream `name`: readers get [`MediaEvent::End`] after what they
    /// have not read yet; the name is free for a new stream.
    pub fn end(&self, name: &StreamPath) {
        let Some(shared) = self.streams().remove(name) else {
            return;
        };
        end_stream(&shared);
    }

    /// Ends `shared` if it is still this hub's stream of its name, no
    /// publisher is attached and none attached after attach number
    /// `attach` (see [`HubPublisher`]'s [`Sink::finish`]).
    fn end_if_abandoned(&self, shared: &Arc<StreamShared>, attach: u64) {
        let mut streams = self.streams();
        let same = streams
            .get(&shared.name)
            .is_some_and(|s| Arc::ptr_eq(s, shared));
        let abandoned = same && {
            let st = shared.lock();
            !st.publishing() && st.attaches == attach
        };
        if abandoned {
            streams.remove(&shared.name);
            drop(streams);
            end_stream(shared);
        }
    }

    /// Ends stream `name` unless a main or backup publisher is attached
    /// (its fallback ran for as long as it may). Returns whether it ended.
    pub fn end_unless_published(&self, name: &StreamPath) -> bool {
        let mut streams = self.streams();
        let Some(shared) = streams.get(name).cloned() else {
            return false;
        };
        let published = {
            let st = shared.lock();
            st.slots[SourceRole::Main.index()].attached()
                || st.slots[SourceRole::Backup.index()].attached()
        };
        if published {
            return false;
        }
        streams.remove(name);
        drop(streams);
        end_stream(&shared);
        true
    }

    /// Ends every stream that has had no publisher for `grace`, as seen by
    /// successive calls (the caller passes its clock; call it periodically).
    /// Returns the names ended. A stream that never had a publisher (readers
    /// waiting for one) is ended too once idle for `grace`.
    pub fn reap_idle(&self, now: Instant, grace: Duration) -> Vec<StreamPath> {
        let candidates: Vec<Arc<StreamShared>> = self.streams().values().cloned().collect();
        let mut ended = Vec::new();
        for shared in candidates {
            let expired = {
                let mut st = shared.lock();
                if st.publishing() {
                    st.idle_since = None;
                    false
                } else {
                    let since = *st.idle_since.get_or_insert(now);
                    now.saturating_duration_since(since) >= grace
                }
            };
            if expired {
                self.end(&shared.name);
                ended.push(shared.name.clone());
            }
        }
        ended
    }

    /// A reader of stream `name` wants it at low latency until `until` (a
    /// player on LL-HLS parts). Publishers may batch their input for
    /// efficiency while no reader does: see
    /// [`HubPublisher::low_latency_wanted`]. Does nothing if the stream does
    /// not exist; a later `until` than the current one extends it.
    pub fn want_low_latency(&self, name: &StreamPath, until: Instant) {
        let Some(shared) = self.streams().get(name).cloned() else {
            return;
        };
        shared.low_latency.extend(until);
        self.inner.low_latency.extend(until);
    }

    /// Whether a reader wants any stream at low latency at `now` (see
    /// [`Hub::want_low_latency`]): a runtime that only serves batching
    /// ingests may then wake less often.
    pub fn low_latency_wanted(&self, now: Instant) -> bool {
        self.inner.low_latency.holds_at(now)
    }

    /// Where stream `name`'s timeline ends now (microseconds): the decode
    /// time the next publisher's first frame would land at; `None` for a
    /// stream without media.
    pub fn timeline_end(&self, name: &StreamPath) -> Option<MediaTime> {
        let shared = self.streams().get(name).cloned()?;
        let st = shared.lock();
        if !st.had_media {
            return None;
        }
        let video = st.tracks.as_ref().and_then(|t| t.video()).map(|t| t.id);
        Some(timeline_end(&st.clocks, video).0)
    }

    /// All streams, sorted.
    pub fn stream_names(&self) -> Vec<StreamPath> {
        let mut v: Vec<StreamPath> = self.streams().keys().cloned().collect();
        v.sort();
        v
    }

    /// Whether stream `name` exists and has a publisher attached.
    pub fn is_publishing(&self, name: &StreamPath) -> bool {
        self.streams()
            .get(name)
            .is_some_and(|s| s.lock().publishing())
    }

    /// Counters and state of stream `name`.
    pub fn stats(&self, name: &StreamPath) -> Option<StreamSnapshot> {
        let shared = self.streams().get(name).cloned()?;
        let st = shared.lock();
        Some(StreamSnapshot {
            name: shared.name.clone(),
            publishing: st.publishing(),
            active_source: st.active,
            sources: SourceRole::ALL
                .into_iter()
                .filter(|r| st.slots[r.index()].attached())
                .collect(),
            source_switches: shared.stats.source_switches.load(Ordering::Relaxed),
            fallback_before: st.fallback_before,
            fallback_since: st.fallback_since,
            frames_in: shared.stats.frames_in.load(Ordering::Relaxed),
            bytes_in: shared.stats.bytes_in.load(Ordering::Relaxed),
            reader_skips: shared.stats.reader_skips.load(Ordering::Relaxed),
            silent_frames: shared.stats.silent_frames.load(Ordering::Relaxed),
            timestamp_jumps: shared.stats.timestamp_jumps.load(Ordering::Relaxed),
            keyframe_interval_ms: shared.stats.keyframe_interval_ms.load(Ordering::Relaxed),
            publishers: shared.stats.publishers.load(Ordering::Relaxed),
            readers: st.readers,
            tracks: st.tracks.clone(),
            low_latency_until: shared.low_latency.until(),
        })
    }

    /// Every switch of any stream's active source from now on, in the order
    /// they happen (for failover webhooks and logs). A receiver more than
    /// [`SOURCE_SWITCHES_BUFFERED`] behind loses the oldest; the hub never
    /// waits for it.
    pub fn source_switches(&self) -> broadcast::Receiver<SourceSwitch> {
        self.inner.switches.subscribe()
    }

    /// Every stream of the hub, each exactly once: those that exist now
    /// (sorted), then those created from now on, in order (for spawning a
    /// packager or recorder per stream). A stream that ends and is created
    /// again comes again.
    pub fn watch(&self) -> StreamWatcher {
        let (tx, rx) = mpsc::unbounded_channel();
        let streams = self.streams();
        let mut existing: Vec<&StreamPath> = streams.keys().collect();
        existing.sort();
        for name in existing {
            let _ = tx.send(name.clone());
        }
        self.inner
            .watchers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(tx);
        drop(streams);
        StreamWatcher { rx }
    }
}

/// Yields the hub's streams; see [`Hub::watch`].
#[derive(Debug)]
pub struct StreamWatcher {
    rx: mpsc::UnboundedReceiver<StreamPath>,
}

impl StreamWatcher {
    /// The next stream; `None` when the hub is gone.
    pub async fn next(&mut self) -> Option<StreamPath> {
        self.rx.recv().await
    }
}

fn push_event(shared: &StreamShared, st: &mut State, event: MediaEvent, size: usize) {
    let seq = st.next_seq;
    st.next_seq += 1;
    st.bytes += size;
    st.window.push_back(Entry { seq, event, size });
    trim(shared, st);
}

/// Drops the oldest events until the window fits the limits. Whole GOPs go
/// first; when one GOP alone is too large its head is dropped (readers then
/// wait for the next keyframe).
fn trim(shared: &StreamShared, st: &mut State) {
    let max_gops = shared.config.max_gops.max(1);
    while st.starts.len() > max_gops {
        st.starts.pop_front();
    }
    let keep_from = st.starts.front().map(|s| s.seq);
    while let Some(front) = st.window.front() {
        let before_start = keep_from.is_some_and(|k| front.seq < k);
        let too_big = st.bytes > shared.config.max_bytes && st.window.len() > 1;
        if !(before_start || too_big) {
            break;
        }
        if let Some(e) = st.window.pop_front() {
            st.bytes -= e.size;
            if st.starts.front().is_some_and(|s| s.seq <= e.seq) {
                st.starts.pop_front();
            }
        }
    }
}

/// Whether a reader wants a stream at low latency; see
/// [`HubPublisher::low_latency_probe`]. Cheap to clone.
#[derive(Clone)]
pub struct LowLatencyProbe(Arc<StreamShared>);

impl LowLatencyProbe {
    /// Whether a reader wants the stream at low latency at `now`.
    pub fn wanted(&self, now: Instant) -> bool {
        self.0.low_latency.holds_at(now)
    }
}

impl std::fmt::Debug for LowLatencyProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LowLatencyProbe({:?})", self.0.name)
    }
}

/// The publishing end of a Hub stream; a [`Sink`]. Its
/// [`Sink::finish`] ends the stream after [`HubConfig::publisher_grace`]
/// unless another publisher attached meanwhile; dropping it only detaches
/// (the stream then waits for one, or for [`Hub::end`] /
/// [`Hub::reap_idle`]).
pub struct HubPublisher {
    shared: Arc<StreamShared>,
    role: SourceRole,
    generation: u64,
    /// Its attach number (the stream's attach count right after it
    /// attached).
    attach: u64,
    hub: std::sync::Weak<HubInner>,
}

impl std::fmt::Debug for HubPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubPublisher")
            .field("stream", &self.shared.name)
            .field("role", &self.role)
            .field("generation", &self.generation)
            .finish()
    }
}

impl HubPublisher {
    /// The stream.
    pub fn stream(&self) -> &StreamPath {
        &self.shared.name
    }

    /// Its role among the stream's sources.
    pub fn role(&self) -> SourceRole {
        self.role
    }

    /// Its first frame lands on the stream's timeline at `at` or later
    /// (rather than where the timeline ends, when that is earlier): the
    /// fallbacks of several renditions start on one common point,
    /// whatever instant each rendition's own media stopped at.
    pub fn land_not_before(&self, at: MediaTime) {
        self.shared.lock().landing_floor = Some((self.role, at));
    }

    /// Whether this publisher still owns its role of the stream (not taken
    /// over, not disconnected, stream not ended).
    pub fn is_current(&self) -> bool {
        let st = self.shared.lock();
        st.slots[self.role.index()].generation == self.generation && !st.ended
    }

    /// Whether its frames reach readers now (it is current and its role is
    /// the active source), rather than standing by.
    pub fn is_live(&self) -> bool {
        let st = self.shared.lock();
        st.slots[self.role.index()].generation == self.generation
            && !st.ended
            && st.active == self.role
    }

    /// Whether a reader wants this stream at low latency at `now`
    /// ([`Hub::want_low_latency`]). While none does, an ingest may hold its
    /// input back for tens of milliseconds to take it in fewer, larger reads.
    pub fn low_latency_wanted(&self, now: Instant) -> bool {
        self.shared.low_latency.holds_at(now)
    }

    /// Detaches from the stream (it shows no publisher) without ending it:
    /// the stream waits for a reconnect. [`Sink::finish`] does this first,
    /// then ends the stream after the grace.
    pub fn detach(&self) {
        let mut st = self.shared.lock();
        let slot = &mut st.slots[self.role.index()];
        if slot.generation == self.generation {
            slot.detach();
        }
    }

    /// [`Self::low_latency_wanted`] as a handle of its own, for an ingest
    /// [`crate::Source`] whose publisher is the [`Sink`] of a pipeline.
    pub fn low_latency_probe(&self) -> LowLatencyProbe {
        LowLatencyProbe(self.shared.clone())
    }

    /// Appends one event, as received now: [`Self::push_at`] with
    /// [`Instant::now`].
    pub fn push(&mut self, event: MediaEvent) -> Result<()> {
        self.push_at(event, Instant::now())
    }

    /// Appends one event received at `now` (the clock the source timeout and
    /// the switch-back hysteresis are measured on). Never waits for
    /// readers. A standing-by source's frames are dropped until the stream
    /// switches to it. Fails with [`Error::Closed`] once taken over,
    /// disconnected or ended, and with [`Error::InvalidMedia`] /
    /// [`Error::UnknownTrack`] for frames that do not fit the announced
    /// tracks.
    pub fn push_at(&mut self, event: MediaEvent, now: Instant) -> Result<()> {
        let shared = &*self.shared;
        let role = self.role;
        {
            let mut st = shared.lock();
            if st.slots[role.index()].generation != self.generation || st.ended {
                return Err(Error::Closed);
            }
            match event {
                MediaEvent::Tracks(tracks) => {
                    st.slots[role.index()].tracks = Some(tracks.clone());
                    if st.active == role {
                        if st.rebase_pending && st.tracks.as_ref() == Some(&tracks) {
                            // A new publisher of the active role (a reconnect,
                            // a relay's new epoch) with the same tracks: the
                            // timeline goes on, as at a switch between roles,
                            // with nothing for readers to reset. hls.js
                            // realigns a new discontinuity onto the playlist's
                            // durations, which opened 80-150 ms holes in its
                            // buffer at a transcoder takeover.
                            st.announce_pending = false;
                        } else {
                            adopt_tracks(shared, &mut st, tracks);
                        }
                    }
                }
                MediaEvent::Frame(frame) => {
                    let Some(tracks) = st.slots[role.index()].tracks.clone() else {
                        return Err(Error::InvalidMedia("frame before any track set".into()));
                    };
                    let Some(info) = tracks.get(frame.track) else {
                        return Err(Error::UnknownTrack(frame.track));
                    };
                    let is_video = info.kind() == MediaKind::Video;
                    let timeout = st.source_timeout;
                    let slot = &mut st.slots[role.index()];
                    if slot
                        .last_frame
                        .is_none_or(|t| now.saturating_duration_since(t) > timeout)
                    {
                        slot.healthy_since = Some(now);
                    }
                    slot.last_frame = Some(now);
                    let lead_in = if st.active != role {
                        let start = frame.keyframe && is_video || tracks.video().is_none();
                        if !(start && should_switch(&st, &shared.config, role, now)) {
                            shared.stats.standby_frames.fetch_add(1, Ordering::Relaxed);
                            if !is_video && tracks.video().is_some() {
                                let lead_in = &mut st.slots[role.index()].lead_in;
                                lead_in.push_back(frame);
                                if lead_in.len() > LEAD_IN_FRAMES {
                                    lead_in.pop_front();
                                }
                            }
                            return Ok(());
                        }
                        switch_to(shared, &mut st, role, tracks.clone(), now);
                        std::mem::take(&mut st.slots[role.index()].lead_in)
                    } else {
                        VecDeque::new()
                    };
                    // The keyframe first: it sets where the new source lands.
                    // With no sound of its own from before it, the sound up
                    // to where it lands is silence.
                    let fill = lead_in.is_empty();
                    accept(shared, &mut st, frame, &tracks, fill);
                    // Then the new source's sound from just before it, so
                    // that the old sound runs into the new without a gap:
                    // what would go back on the audio track is dropped.
                    for f in lead_in {
                        accept(shared, &mut st, f, &tracks, false);
                    }
                }
                MediaEvent::Discontinuity(reason) => {
                    if st.active == role {
                        push_event(shared, &mut st, MediaEvent::Discontinuity(reason), 0);
                    }
                }
                MediaEvent::End => {
                    // A publisher that finishes does not end the stream (a
                    // backup may take over); it detaches.
                    st.slots[role.index()].detach();
                    if st.active == role {
                        st.source_ended = true;
                    }
                }
            }
        }
        shared.notify.notify_waiters();
        Ok(())
    }
}

/// Takes `frame` of the active source (whose track set is `tracks`) into
/// the window: rebased onto the stream's timeline, dropped when it would
/// go back on its track.
///
/// The first frame after a rebase with `fill_to_it` (a new source with no
/// sound from before its keyframe) has the audio tracks' holes up to where
/// it lands filled with silence first, so the old timeline's sound ends
/// where its picture does (in the segment the picture ends in).
fn accept(
    shared: &StreamShared,
    st: &mut State,
    mut frame: Frame,
    tracks: &Tracks,
    fill_to_it: bool,
) {
    let Some(info) = tracks.get(frame.track) else {
        return;
    };
    let is_video = info.kind() == MediaKind::Video;
    let scale = info.timescale;
    announce(shared, st);
    if std::mem::take(&mut st.place_on_clock) {
        // A new timeline on the wall clock: this first frame lands at its
        // age; every track of the source moves by as much (lip sync).
        let age_ms = unix_ms().saturating_sub(st.timeline);
        let age = MediaTime::from_millis(i64::try_from(age_ms).unwrap_or(i64::MAX));
        st.offset = age
            .rescale(Timescale::MICROS)
            .saturating_sub(MediaTime::new(frame.dts, scale));
    }
    let landing = st.rebase_pending;
    if st.rebase_pending {
        // offset holds where the old timeline's decoding
        // ends: the first frame lands there, or later if it
        // would be presented before the old presentation
        // ends (a source with B-frames presents its last
        // frames after its last decode time).
        let by_dts = st.offset.saturating_sub(MediaTime::new(frame.dts, scale));
        let by_pts = st
            .present_end
            .saturating_sub(MediaTime::new(frame.pts, scale));
        st.offset = by_dts.max(by_pts);
        if let Some((role, at)) = st.landing_floor
            && role == st.active
        {
            st.landing_floor = None;
            let by_floor = at
                .rescale(Timescale::MICROS)
                .saturating_sub(MediaTime::new(frame.dts, scale));
            st.offset = st.offset.max(by_floor);
        }
        st.rebase_pending = false;
        // A source on the stream's own timeline (a relay of it) whose
        // frames come at or after every floor keeps its timestamps: a hole
        // upstream (its publishing node's outage) stays a hole here, as
        // at a node that joined after it, so both name its media alike
        // and date it by the timeline.
        let own = MediaTime::new(frame.dts, scale).as_micros();
        let past_grid = st
            .grid_floor
            .is_none_or(|(end, period, _)| own >= grid_ceil(end.as_micros(), period));
        if st.slots[st.active.index()].on_timeline && st.offset.as_micros() <= 0 && past_grid {
            st.offset = MediaTime::zero(Timescale::MICROS);
            st.grid_floor = None;
        }
    }
    if let Some((end, period, keep_phase)) = st.grid_floor.take() {
        let dts = MediaTime::new(frame.dts, scale).as_micros();
        let landed = st.offset.as_micros().saturating_add(dts);
        let boundary = grid_ceil(landed.max(end.as_micros()), period);
        let at = if keep_phase {
            // Whole periods from its own place: the first point at or
            // after the boundary where its own phase falls.
            boundary.saturating_add(dts.saturating_sub(boundary).rem_euclid(period))
        } else {
            boundary
        };
        st.offset = MediaTime::new(at.saturating_sub(dts), Timescale::MICROS);
    }
    let off = st.offset.ticks_at(scale);
    frame.dts = frame.dts.saturating_add(off);
    frame.pts = frame.pts.saturating_add(off);
    if landing && fill_to_it && is_video {
        let at = MediaTime::new(frame.dts, scale);
        for audio in tracks.iter().filter(|t| t.kind() == MediaKind::Audio) {
            let until = at.ticks_at(audio.timescale);
            fill_silence(shared, st, audio, until, tracks);
        }
    }
    if let Some(i) = st.settling.iter().position(|t| *t == frame.track) {
        let behind = st
            .clocks
            .get(&frame.track)
            .and_then(|(_, c)| c.last_dts)
            .is_some_and(|last| frame.dts <= last);
        if behind {
            // Interleaving of the new source put this frame
            // before the old timeline's end on its track.
            shared.stats.standby_frames.fetch_add(1, Ordering::Relaxed);
            return;
        }
        st.settling.swap_remove(i);
        if !is_video {
            fill_silence(shared, st, info, frame.dts, tracks);
        }
    }
    commit(shared, st, frame, tracks, is_video);
}

/// Longest hole in an audio track that a switch fills with silence.
/// The longest [`HubConfig::discontinuity_grid`] the Hub lands on (an
/// HLS origin's longest segment): the silence filled at a landing is at
/// most this plus [`MAX_SILENCE_FILL`].
pub const MAX_DISCONTINUITY_GRID: Duration = Duration::from_secs(30);

const MAX_SILENCE_FILL: MediaTime = MediaTime::new(500_000, Timescale::MICROS);

/// Fills the hole on audio track `info` from where its timeline ends up to
/// `until` (its clock) with frames of silence: as many whole frames as fit
/// (what is left is under a frame long), none if the hole is longer than
/// [`MAX_SILENCE_FILL`] (a real gap).
///
/// A switch lands the new source where the old video ends and keeps the
/// new audio's offset to its video, so the audio track has a hole of the
/// old audio's lag behind its video plus the new audio's lag: a
/// transcoder killed mid-stream leaves its audio a third of a second
/// behind (the video encoder's lookahead), which left 0.15 s holes in
/// players' buffers at a transcoder takeover, more than hls.js jumps by
/// itself. Silence keeps the buffer continuous and the sound in sync.
fn fill_silence(
    shared: &StreamShared,
    st: &mut State,
    info: &TrackInfo,
    until: i64,
    tracks: &Tracks,
) {
    fill_silence_within(shared, st, info, until, tracks, MAX_SILENCE_FILL);
}

/// [`fill_silence`] of holes up to `most` long.
fn fill_silence_within(
    shared: &StreamShared,
    st: &mut State,
    info: &TrackInfo,
    until: i64,
    tracks: &Tracks,
    most: MediaTime,
) {
    let Some((_, clock)) = st.clocks.get(&info.id) else {
        return;
    };
    let (Some(last), observed) = (clock.last_dts, clock.last_step) else {
        return;
    };
    // The frame step comes from the track's parameters, never from the
    // timestamps alone: those are the publisher's, and a 1-tick step would
    // turn half a second into thousands of frames. A track whose timestamps
    // do not advance by whole frames (to within a tick) gets no fill.
    let Some(audio) = info.audio() else {
        return;
    };
    let ts = i128::from(info.timescale.get());
    let samples = i128::from(audio.samples_per_frame);
    let rate = i128::from(audio.sample_rate);
    // One frame lasts samples / rate seconds = samples * ts / rate ticks.
    let frame_ticks = samples * ts;
    if rate == 0 || frame_ticks < rate || (i128::from(observed) * rate - frame_ticks).abs() > rate {
        return;
    }
    let end = last.saturating_add(observed);
    let hole = i128::from(until.saturating_sub(end));
    if hole > i128::from(most.ticks_at(info.timescale)) {
        return;
    }
    let count = (hole * rate / frame_ticks).max(0);
    let Some(data) = crate::silence::silent_frame(info) else {
        return;
    };
    for k in 0..count {
        let at = end.saturating_add((k * frame_ticks / rate) as i64);
        let frame = Frame {
            track: info.id,
            dts: at,
            pts: at,
            keyframe: true,
            data: data.clone(),
        };
        shared.stats.silent_frames.fetch_add(1, Ordering::Relaxed);
        commit(shared, st, frame, tracks, false);
    }
}

/// Appends `frame` (on the stream's timeline already) to the window.
fn commit(shared: &StreamShared, st: &mut State, frame: Frame, tracks: &Tracks, is_video: bool) {
    if let Some((scale, clock)) = st.clocks.get_mut(&frame.track) {
        let second = i64::from(scale.get()).max(1);
        if let Some(last) = clock.last_dts {
            let step = frame.dts.saturating_sub(last);
            if step > 0 {
                clock.last_step = step;
            }
            if !(0..=second).contains(&step) {
                shared.stats.timestamp_jumps.fetch_add(1, Ordering::Relaxed);
            }
        }
        if is_video && frame.keyframe {
            if let Some(k) = clock.last_key_dts
                && frame.dts > k
            {
                let ms = frame.dts.saturating_sub(k).saturating_mul(1000) / second;
                shared
                    .stats
                    .keyframe_interval_ms
                    .store(u64::try_from(ms).unwrap_or(0), Ordering::Relaxed);
            }
            clock.last_key_dts = Some(frame.dts);
        }
        clock.last_dts = Some(frame.dts);
        clock.max_pts = Some(clock.max_pts.map_or(frame.pts, |p| p.max(frame.pts)));
    }
    let has_video = tracks.video().is_some();
    let is_start = if has_video {
        frame.keyframe && is_video
    } else {
        st.audio_since_start += 1;
        if st.starts.is_empty() || st.audio_since_start >= shared.config.audio_only_start_every {
            st.audio_since_start = 0;
            true
        } else {
            false
        }
    };
    let size = frame.data.len();
    shared.stats.frames_in.fetch_add(1, Ordering::Relaxed);
    shared
        .stats
        .bytes_in
        .fetch_add(size as u64, Ordering::Relaxed);
    st.had_media = true;
    if is_start {
        let seq = st.next_seq;
        st.starts.push_back(StartPoint {
            seq,
            tracks: tracks.clone(),
        });
    }
    push_event(shared, st, MediaEvent::Frame(frame), size);
}

/// Makes `tracks` the stream's track set (readers get it as an event),
/// keeping each track's timeline end in its new clock.
fn adopt_tracks(shared: &StreamShared, st: &mut State, tracks: Tracks) {
    // The old sound's silence goes before the discontinuity.
    if let Some(grid) = shared
        .config
        .discontinuity_grid
        .filter(|g| !g.is_zero() && *g <= MAX_DISCONTINUITY_GRID)
        && st.had_media
        && st.tracks.as_ref().is_some_and(|old| *old != tracks)
    {
        land_on_grid(shared, st, grid);
    }
    announce(shared, st);
    for t in tracks.iter() {
        st.clocks
            .entry(t.id)
            .and_modify(|(scale, clock)| {
                // Keep the timeline end, in the new clock.
                if *scale != t.timescale {
                    clock.last_dts = clock
                        .last_dts
                        .map(|d| crate::time::rescale(d, *scale, t.timescale));
                    clock.last_step = crate::time::rescale(clock.last_step, *scale, t.timescale);
                    clock.max_pts = clock
                        .max_pts
                        .map(|p| crate::time::rescale(p, *scale, t.timescale));
                    clock.last_key_dts = clock
                        .last_key_dts
                        .map(|d| crate::time::rescale(d, *scale, t.timescale));
                    *scale = t.timescale;
                }
            })
            .or_insert((t.timescale, TrackClock::default()));
    }
    st.tracks = Some(tracks.clone());
    push_event(shared, st, MediaEvent::Tracks(tracks), 0);
}

/// Whether standing-by `role`, at a start point of its media at `now`,
/// should become the active source.
fn should_switch(st: &State, config: &HubConfig, role: SourceRole, now: Instant) -> bool {
    let timeout = st.source_timeout;
    let active = &st.slots[st.active.index()];
    if active.healthy(now, timeout) {
        // Only a higher source takes back over, once it has kept sending.
        let hold = if st.active == SourceRole::Fallback {
            config.switch_back_from_fallback_after
        } else {
            config.switch_back_after
        };
        return role < st.active
            && st.slots[role.index()]
                .healthy_since
                .is_some_and(|t| now.saturating_duration_since(t) >= hold);
    }
    // The active source is gone or silent: take over unless a higher one
    // that is sending will (at its own start point).
    !SourceRole::ALL
        .into_iter()
        .filter(|r| *r < role && *r != st.active)
        .any(|r| st.slots[r.index()].healthy(now, timeout))
}

/// Makes `role` (whose track set is `tracks`) the active source: its next
/// frame continues the timeline; a discontinuity only if the tracks differ.
fn switch_to(
    shared: &StreamShared,
    st: &mut State,
    role: SourceRole,
    tracks: Tracks,
    now: Instant,
) {
    let from = std::mem::replace(&mut st.active, role);
    shared.stats.source_switches.fetch_add(1, Ordering::Relaxed);
    if let Some(since) = st.fallback_since.take() {
        st.fallback_before += now.saturating_duration_since(since);
    }
    if role == SourceRole::Fallback {
        st.fallback_since = Some(now);
    }
    // No receiver is no error.
    let _ = shared.switches.send(SourceSwitch {
        stream: shared.name.clone(),
        from,
        to: role,
        at: now,
    });
    if st.had_media {
        st.rebase();
    }
    if st.tracks.as_ref() != Some(&tracks) {
        if st.had_media {
            end_old_sound(shared, st);
        }
        st.announce_pending = st.had_media;
        adopt_tracks(shared, st, tracks);
    } else {
        // Same tracks, continuous timestamps: nothing for readers to reset
        // (a takeover of the old role that never sent is moot too).
        st.announce_pending = false;
    }
}

/// Before a switch to other tracks (a discontinuity): the old source's
/// audio tracks filled with silence up to where its picture ends (the
/// timeline end [`State::rebase`] just took), in the old tracks' format.
///
/// A transcoder killed just after a keyframe leaves a last segment of a
/// frame or two of video whose sound ends before that video starts (the
/// encoder's lookahead held it back). A takeover on the same tracks fills
/// that hole at its landing; a switch to other tracks (the origin's slate
/// when every transcoder is down) closed that segment as it was, and
/// hls.js, whose buffer is audio and video's intersection, never got past
/// it: 15-17 s frozen on a slate it had listed, in the e2e test. Filled,
/// the segment's sound reaches its picture's end and the player moves on
/// to the next one.
fn end_old_sound(shared: &StreamShared, st: &mut State) {
    let Some(old) = st.tracks.clone() else {
        return;
    };
    if old.video().is_none() {
        return;
    }
    let end = st.present_end;
    for audio in old.iter().filter(|t| t.kind() == MediaKind::Audio) {
        fill_silence(shared, st, audio, end.ticks_at(audio.timescale), &old);
    }
}

/// Before a change of the stream's track set after media that the Hub
/// announces as a discontinuity (a switch between sources, a new
/// publisher of the active role), with [`HubConfig::discontinuity_grid`]
/// `grid`: the first frame after it lands on the first multiple of `grid`
/// at or after where the old media ends, and the old source's sound (with
/// video) is filled with silence up to there, so that its last segment's
/// sound reaches the new media and a transcoder reading the stream gets no
/// hole in its sound.
///
/// A source on the stream's own timeline (a relay of it: a transcoder's
/// renditions back at an origin) lands whole periods from its own place,
/// at the first point after the boundary where its own phase falls: its
/// keyframes stay where its timeline put them relative to the grid (a
/// ladder's IDRs, as before the switch), its first keyframe opens a cell
/// whose number is free, and every origin that saw the switch lands it
/// alike. Its sound is
/// filled up to the boundary only (the rest of the hole is at the
/// discontinuity; nothing reads an origin's stream to transcode it).
///
/// A publisher that changes tracks itself (a relay whose source switched
/// upstream, with the discontinuity it brought) keeps its timestamps: its
/// upstream lands on the grid (a publishing node does), and a shift here
/// would set this node's timeline apart from other nodes' that joined the
/// relay later.
fn land_on_grid(shared: &StreamShared, st: &mut State, grid: Duration) {
    if !(st.announce_pending && st.rebase_pending) {
        return;
    }
    let period = i64::try_from(grid.as_micros()).unwrap_or(i64::MAX).max(1);
    // `rebase` took where the old media ends.
    let end = st.offset.max(st.present_end);
    let keep_phase = st.slots[st.active.index()].on_timeline;
    st.grid_floor = Some((end, period, keep_phase));
    let at = MediaTime::new(grid_ceil(end.as_micros(), period), Timescale::MICROS);
    let Some(old) = st.tracks.clone() else {
        return;
    };
    if old.video().is_none() {
        return;
    }
    let most = MAX_SILENCE_FILL.saturating_add(MediaTime::new(period, Timescale::MICROS));
    for audio in old.iter().filter(|t| t.kind() == MediaKind::Audio) {
        fill_silence_within(shared, st, audio, at.ticks_at(audio.timescale), &old, most);
    }
}

/// The first multiple of `period` at or after `t`.
fn grid_ceil(t: i64, period: i64) -> i64 {
    t.saturating_add(period - 1)
        .div_euclid(period)
        .saturating_mul(period)
}

/// Pushes [`MediaEvent::End`] (once) and detaches any publisher.
fn end_stream(shared: &StreamShared) {
    {
        let mut st = shared.lock();
        st.detach_all();
        if !st.ended {
            push_event(shared, &mut st, MediaEvent::End, 0);
            st.ended = true;
        }
    }
    shared.notify.notify_waiters();
}

/// Pushes the takeover discontinuity once per takeover.
fn announce(shared: &StreamShared, st: &mut State) {
    if st.announce_pending {
        st.announce_pending = false;
        push_event(
            shared,
            st,
            MediaEvent::Discontinuity(DiscontinuityReason::SourceChanged),
            0,
        );
    }
}

/// How far another track may run past the video's end for a switch to still
/// land where the video ends (see [`timeline_end`]): a frame or two of
/// interleaving is normal; more means the old source's video had stalled,
/// and its audio is worth more than a gapless picture.
const MAX_LEAD_OVER_VIDEO: MediaTime = MediaTime::new(250_000, Timescale::MICROS);

/// The end of the previous source's timeline, in microseconds: where its
/// decoding ends (`last_dts + step`) and where its presentation ends
/// (`max_pts + step`), on its `video` track, unless another track runs
/// more than [`MAX_LEAD_OVER_VIDEO`] past that; then (and without video)
/// the latest ends over all tracks.
///
/// A switch starts on a video keyframe, so landing it where the video ends
/// keeps the picture gapless. Landing it at the latest end of any track
/// instead left a hole of up to a frame in the video whenever the old
/// source's audio ran ahead of its video (as interleaved RTMP does), and a
/// segmenter closing at the switch also drops that trailing audio: players
/// saw a gap in the buffer that hls.js' gap controller jumps by waiting for
/// the next part (0.4–1.3 s freezes at a switch in LL-HLS). The new
/// source's audio keeps its own offset to its video (lip sync); whatever of
/// it would land at or before the old audio's end is dropped (no going
/// back): less than a frame in practice, at most the bound.
/// Now, in unix milliseconds.
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A new stream's timeline id: now in unix milliseconds, and larger than
/// the last one this process gave.
fn new_timeline_id() -> u64 {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = unix_ms();
    let prev = LAST.fetch_max(now, Ordering::Relaxed);
    if prev >= now {
        LAST.fetch_add(1, Ordering::Relaxed) + 1
    } else {
        now
    }
}

fn timeline_end(
    clocks: &HashMap<TrackId, (Timescale, TrackClock)>,
    video: Option<TrackId>,
) -> (MediaTime, MediaTime) {
    let end_of = |(scale, c): &(Timescale, TrackClock)| {
        let step = c.last_step.max(1);
        let at = |t: i64| MediaTime::new(t.saturating_add(step), *scale).rescale(Timescale::MICROS);
        c.last_dts
            .map(|last| (at(last), at(c.max_pts.unwrap_or(last).max(last))))
    };
    let zero = MediaTime::zero(Timescale::MICROS);
    let latest = clocks
        .values()
        .filter_map(end_of)
        .fold((zero, zero), |a, b| (a.0.max(b.0), a.1.max(b.1)));
    match video.and_then(|v| clocks.get(&v)).and_then(end_of) {
        Some(v) if latest.1.saturating_sub(v.1) <= MAX_LEAD_OVER_VIDEO => v,
        _ => latest,
    }
}

impl Drop for HubPublisher {
    fn drop(&mut self) {
        self.detach();
    }
}

impl Sink for HubPublisher {
    async fn send(&mut self, event: MediaEvent) -> Result<()> {
        self.push(event)
    }

    /// Detaches, waits out the hub's publisher grace time (a reconnect
    /// continues the stream), then ends the stream unless another publisher
    /// attached since. The hub reads no clock: the wait is this future's.
    async fn finish(&mut self) -> Result<()> {
        self.detach();
        let grace = self.shared.config.publisher_grace;
        if !grace.is_zero() {
            tokio::time::sleep(grace).await;
        }
        if let Some(inner) = self.hub.upgrade() {
            Hub { inner }.end_if_abandoned(&self.shared, self.attach);
        }
        Ok(())
    }
}

/// A cursor over a Hub stream; a [`Source`].
pub struct HubReader {
    shared: Arc<StreamShared>,
    /// Next sequence number to read; `None` until positioned at a start.
    next: Option<u64>,
    pending: VecDeque<MediaEvent>,
    skips: u64,
    done: bool,
}

impl std::fmt::Debug for HubReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubReader")
            .field("stream", &self.shared.name)
            .field("next", &self.next)
            .finish()
    }
}

impl HubReader {
    fn new(shared: Arc<StreamShared>) -> Self {
        shared.lock().readers += 1;
        HubReader {
            shared,
            next: None,
            pending: VecDeque::new(),
            skips: 0,
            done: false,
        }
    }

    /// The stream.
    pub fn stream(&self) -> &StreamPath {
        &self.shared.name
    }

    /// How often this reader fell behind and skipped.
    pub fn skips(&self) -> u64 {
        self.skips
    }

    /// The next event if one is ready, without waiting. `Ok(None)` means
    /// "nothing yet" unless [`Self::is_done`].
    pub fn try_next(&mut self) -> Option<MediaEvent> {
        if let Some(e) = self.pending.pop_front() {
            return Some(e);
        }
        if self.done {
            return None;
        }
        let st = self.shared.lock();
        let oldest = st.window.front().map(|e| e.seq);
        let pos = match self.next {
            Some(n) if oldest.is_some_and(|o| n < o) => {
                // Fell out of the window: jump to the newest start point.
                self.skips += 1;
                self.shared
                    .stats
                    .reader_skips
                    .fetch_add(1, Ordering::Relaxed);
                let Some(sp) = st.starts.back() else {
                    // No start point retained: wait for the next keyframe.
                    self.next = None;
                    self.pending.push_back(MediaEvent::Discontinuity(
                        DiscontinuityReason::ReaderSkipped,
                    ));
                    return self.pending.pop_front();
                };
                self.pending.push_back(MediaEvent::Discontinuity(
                    DiscontinuityReason::ReaderSkipped,
                ));
                self.pending
                    .push_back(MediaEvent::Tracks(sp.tracks.clone()));
                sp.seq
            }
            Some(n) => n,
            None => {
                if let Some(sp) = st.starts.back() {
                    self.pending
                        .push_back(MediaEvent::Tracks(sp.tracks.clone()));
                    sp.seq
                } else if st.ended {
                    // Ended before any start point: deliver the end.
                    st.next_seq.saturating_sub(1)
                } else {
                    return None;
                }
            }
        };
        let idx = oldest.map(|o| (pos - o) as usize);
        match idx.and_then(|i| st.window.get(i)) {
            Some(entry) => {
                self.next = Some(entry.seq + 1);
                if matches!(entry.event, MediaEvent::End) {
                    self.done = true;
                }
                self.pending.push_back(entry.event.clone());
            }
            None => {
                self.next = Some(pos);
            }
        }
        drop(st);
        self.pending.pop_front()
    }

    /// Whether [`MediaEvent::End`] was delivered.
    pub fn is_done(&self) -> bool {
        self.done && self.pending.is_empty()
    }

    /// The next event, waiting for it; `None` after the end.
    pub async fn recv(&mut self) -> Option<MediaEvent> {
        loop {
            let shared = Arc::clone(&self.shared);
            let mut notified = pin!(shared.notify.notified());
            notified.as_mut().enable();
            if let Some(e) = self.try_next() {
                return Some(e);
            }
            if self.done {
                return None;
            }
            notified.await;
        }
    }
}

impl Drop for HubReader {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        st.readers = st.readers.saturating_sub(1);
    }
}

impl Source for HubReader {
    async fn next_event(&mut self) -> Result<Option<MediaEvent>> {
        Ok(self.recv().await)
    }
}

/// Helpers for tests and doctests in this and other crates.
#[doc(hidden)]
pub mod tests_support {
    use bytes::Bytes;

    use crate::media::{AudioParams, Codec, TrackId, TrackInfo, TrackParams, Tracks, VideoParams};
    use crate::time::{Rational, Timescale};

    /// A 1280x720 H.264 track (id 1, ms clock) and an AAC track (id 2, ms).
    pub fn av_tracks() -> Tracks {
        Tracks::new(vec![
            TrackInfo {
                id: TrackId(1),
                codec: Codec::H264,
                timescale: Timescale::MILLIS,
                // A real avcC (x264, High@3.1, 1280x720) so muxers accept it.
                config: Bytes::from_static(&[
                    0x01, 0x64, 0x00, 0x1f, 0xff, 0xe1, 0x00, 0x1a, 0x67, 0x64, 0x00, 0x1f, 0xac,
                    0xd9, 0x40, 0x50, 0x05, 0xbb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10, 0x00,
                    0x00, 0x03, 0x03, 0xc0, 0xf1, 0x83, 0x19, 0x60, 0x01, 0x00, 0x06, 0x68, 0xeb,
                    0xe3, 0xcb, 0x22, 0xc0,
                ]),
                codec_string: "avc1.64001f".into(),
                params: TrackParams::Video(VideoParams {
                    width: 1280,
                    height: 720,
                    frame_rate: Some(Rational::new(30, 1)),
                }),
                bitrate: None,
            },
            TrackInfo {
                id: TrackId(2),
                codec: Codec::Aac,
                timescale: Timescale::MILLIS,
                config: Bytes::from_static(&[0x12, 0x10]),
                codec_string: "mp4a.40.2".into(),
                params: TrackParams::Audio(AudioParams {
                    sample_rate: 44_100,
                    channels: 2,
                    samples_per_frame: 1024,
                }),
                bitrate: None,
            },
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::av_tracks;
    use super::*;
    use crate::media::Frame;
    use bytes::Bytes;

    fn path(s: &str) -> StreamPath {
        StreamPath::parse(s).unwrap()
    }

    fn video(dts: i64, key: bool) -> MediaEvent {
        MediaEvent::Frame(Frame {
            track: TrackId(1),
            dts,
            pts: dts,
            keyframe: key,
            data: Bytes::from(vec![0u8; 100]),
        })
    }

    fn audio(dts: i64) -> MediaEvent {
        MediaEvent::Frame(Frame {
            track: TrackId(2),
            dts,
            pts: dts,
            keyframe: true,
            data: Bytes::from(vec![1u8; 10]),
        })
    }

    fn drain(r: &mut HubReader) -> Vec<MediaEvent> {
        let mut v = Vec::new();
        while let Some(e) = r.try_next() {
            v.push(e);
        }
        v
    }

    fn frame_dts(events: &[MediaEvent]) -> Vec<(u32, i64, bool)> {
        events
            .iter()
            .filter_map(|e| match e {
                MediaEvent::Frame(f) => Some((f.track.0, f.dts, f.keyframe)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_stream_is_on_its_first_publishers_timeline_or_a_new_one() {
        let hub = Hub::new(HubConfig::default());
        // Made here: a new id, larger for each new stream.
        let mut a = hub.publish(&path("live/a"));
        let own = hub.timeline(&path("live/a")).unwrap();
        assert!(own > 1_700_000_000_000, "{own}");
        let b = hub.publish(&path("live/b"));
        assert!(hub.timeline(&path("live/b")).unwrap() > own);
        drop(b);
        // Brought from upstream (a relay's hello): taken as is, also by a
        // stream that exists without media yet.
        let _c = hub.publish_on_timeline(&path("live/c"), SourceRole::Main, Some(42));
        assert_eq!(hub.timeline(&path("live/c")), Some(42));
        let _b = hub.publish_on_timeline(&path("live/b"), SourceRole::Main, Some(43));
        assert_eq!(hub.timeline(&path("live/b")), Some(43));
        // A stream with media keeps its own: a later publisher is rebased
        // onto it.
        a.push(MediaEvent::Tracks(av_tracks())).unwrap();
        a.push(video(0, true)).unwrap();
        let _a2 = hub.publish_on_timeline(&path("live/a"), SourceRole::Backup, Some(7));
        assert_eq!(hub.timeline(&path("live/a")), Some(own));
        assert_eq!(hub.timeline(&path("live/none")), None);
    }

    #[test]
    fn a_timeline_on_the_clock_dates_its_frames_from_its_id() {
        let hub = Hub::new(HubConfig {
            timeline_on_clock: true,
            ..HubConfig::default()
        });
        let dts_of = |events: Vec<MediaEvent>| -> Vec<i64> {
            events
                .into_iter()
                .filter_map(|e| match e {
                    MediaEvent::Frame(f) => Some(f.dts),
                    _ => None,
                })
                .collect()
        };
        // A publisher whose clock starts ten hours in (an MPEG-TS PTS):
        // its first frame lands at the timeline's age, the others keep
        // their distance to it, on every track.
        let mut a = hub.publish(&path("live/a"));
        let mut r = hub.subscribe(&path("live/a"));
        std::thread::sleep(Duration::from_millis(30));
        a.push(MediaEvent::Tracks(av_tracks())).unwrap();
        let ten_hours = 36_000_000;
        let before = unix_ms();
        a.push(video(ten_hours, true)).unwrap();
        a.push(audio(ten_hours + 5)).unwrap();
        a.push(video(ten_hours + 40, false)).unwrap();
        let now = unix_ms();
        let id = hub.timeline(&path("live/a")).unwrap();
        let dts = dts_of(drain(&mut r));
        assert_eq!(dts.len(), 3, "{dts:?}");
        // (The id is the creation's ms, or a little later when other
        // streams were made in the same ms.)
        let age = |at: u64| at.saturating_sub(id) as i64;
        assert!((age(before)..=age(now)).contains(&dts[0]), "{dts:?}");
        assert!(dts[0] < ten_hours, "{dts:?}");
        assert_eq!((dts[1] - dts[0], dts[2] - dts[0]), (5, 40));
        // Brought from upstream: the timestamps are that timeline's already.
        let mut b = hub.publish_on_timeline(&path("live/b"), SourceRole::Main, Some(42));
        let mut rb = hub.subscribe(&path("live/b"));
        b.push(MediaEvent::Tracks(av_tracks())).unwrap();
        b.push(video(1_000, true)).unwrap();
        assert_eq!(dts_of(drain(&mut rb)), vec![1_000]);
        // Off (the default): the first publisher's own.
        let hub = Hub::new(HubConfig::default());
        let mut c = hub.publish(&path("live/c"));
        let mut rc = hub.subscribe(&path("live/c"));
        c.push(MediaEvent::Tracks(av_tracks())).unwrap();
        c.push(video(ten_hours, true)).unwrap();
        assert_eq!(dts_of(drain(&mut rc)), vec![ten_hours]);
    }

    #[test]
    fn low_latency_is_wanted_until_the_latest_deadline_and_survives_takeover() {
        let hub = Hub::new(HubConfig::default());
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        // No stream yet: nothing to mark, and nothing is created.
        hub.want_low_latency(&path("live/a"), t0 + 10 * s);
        assert!(hub.stream_names().is_empty());
        assert!(!hub.low_latency_wanted(t0));
        let p = hub.publish(&path("live/a"));
        assert!(!p.low_latency_wanted(t0));
        hub.want_low_latency(&path("live/a"), t0 + 10 * s);
        // An earlier deadline does not shorten a later one.
        hub.want_low_latency(&path("live/a"), t0 + 2 * s);
        assert!(p.low_latency_wanted(t0 + 9 * s));
        assert!(!p.low_latency_wanted(t0 + 10 * s));
        // Another stream is not affected, but the hub has a stream wanted.
        let other = hub.publish(&path("live/b"));
        assert!(!other.low_latency_wanted(t0));
        assert!(hub.low_latency_wanted(t0 + 9 * s));
        assert!(!hub.low_latency_wanted(t0 + 10 * s));
        // The viewers' wish belongs to the stream: a new publisher has it.
        let p2 = hub.publish(&path("live/a"));
        assert!(p2.low_latency_wanted(t0 + 5 * s));
    }

    #[test]
    fn keyframe_interval_and_timestamp_jumps_are_counted() {
        let hub = Hub::new(HubConfig::default());
        let name = StreamPath::live("k").unwrap();
        let mut p = hub.publish(&name);
        p.push(MediaEvent::Tracks(av_tracks())).unwrap();
        // 10 fps, a keyframe every 2 s; then both tracks jump 5 s ahead.
        for i in 0..50i64 {
            let t = i * 100 + if i >= 45 { 5_000 } else { 0 };
            p.push(video(t, i % 20 == 0)).unwrap();
            p.push(audio(t)).unwrap();
        }
        let s = hub.stats(&name).unwrap();
        assert_eq!(s.keyframe_interval_ms, 2_000);
        assert_eq!(s.timestamp_jumps, 2, "one per track");
    }

    #[test]
    fn new_reader_starts_at_newest_keyframe_with_tracks() {
        let hub = Hub::new(HubConfig::default());
        let mut p = hub.publish(&path("live/a"));
        p.push(MediaEvent::Tracks(av_tracks())).unwrap();
        for i in 0..10 {
            p.push(video(i * 100, i % 4 == 0)).unwrap();
            p.push(audio(i * 100)).unwrap();
        }
        let mut r = hub.subscribe(&path("live/a"));
        let ev = drain(&mut r);
        assert!(matches!(ev[0], MediaEvent::Tracks(_)));
        let f = frame_dts(&ev);
        assert_eq!(f[0], (1, 800, true));
        assert_eq!(f.len(), 4); // v800 a800 v900 a900
    }

    #[test]
    fn reader_before_first_keyframe_waits_for_it() {
        let hub = Hub::new(HubConfig::default());
        let mut r = hub.subscribe(&path("live/a"));
        let mut p = hub.publish(&path("live/a"));
        p.push(MediaEvent::Tracks(av_tracks())).unwrap();
        p.push(video(0, false)).unwrap(); // mid-GOP start from the encoder
        assert!(r.try_next().is_none());
        p.push(video(33, true)).unwrap();
        let ev = drain(&mut r);
        assert_eq!(frame_dts(&ev), vec![(1, 33, true)]);
    }

    #[test]
    fn slow_reader_skips_to_newest_keyframe_and_is_counted() {
        let hub = Hub::new(HubConfig {
            max_gops: 2,
            ..HubConfig::default()
        });
        let mut p = hub.publish(&path("live/a"));
        p.push(MediaEvent::Tracks(av_tracks())).unwrap();
        p.push(video(0, true)).unwrap();
        let mut r = hub.subscribe(&path("live/a"));
        assert!(matches!(r.try_next(), Some(MediaEvent::Tracks(_))));
        assert!(matches!(r.try_next(), Some(MediaEvent::Frame(_))));
        // The publisher runs 5 GOPs ahead without waiting.
        for i in 1..=50 {
            p.push(video(i * 10, i % 10 == 0)).unwrap();
        }
        let ev = drain(&mut r);
        assert_eq!(
            ev[0],
            MediaEvent::Discontinuity(DiscontinuityReason::ReaderSkipped)
        );
        assert!(matches!(ev[1], MediaEvent::Tracks(_)));
        assert_eq!(frame_dts(&ev)[0], (1, 500, true));
        assert_eq!(r.skips(), 1);
        assert_eq!(hub.stats(&path("live/a")).unwrap().reader_skips, 1);
    }

    #[test]
    fn window_is_bounded_by_gops_and_bytes() {
        let hub = Hub::new(HubConfig {
            max_gops: 2,
            max_bytes: 5_000,
            ..HubConfig::default()
        });
        let mut p = hub.publish(&path("live/a"));
        p.push(MediaEvent::Tracks(av_tracks())).unwrap();
        for i in 0..1000 {
            p.push(video(i, i % 7 == 0)).unwrap();
            let st = p.shared.lock();
            assert!(st.bytes <= 5_000 + 100, "bytes {}", st.bytes);
            assert!(st.starts.len() <= 2);
        }
    }

    #[test]
    fn takeover_rebases_and_signals_a_discontinuity_if_tracks_differ() {
        for same in [true, false] {
            let hub = Hub::new(HubConfig::default());
            let mut r = hub.subscribe(&path("live/a"));
            let mut p1 = hub.publish(&path("live/a"));
            p1.push(MediaEvent::Tracks(av_tracks())).unwrap();
            for i in 0..5 {
                p1.push(video(1000 + i * 40, i == 0)).unwrap();
            }
            let mut ev = drain(&mut r);
            // Reconnect: the old session is taken over and restarts at 0.
            let mut p2 = hub.publish(&path("live/a"));
            assert!(matches!(p1.push(video(2000, false)), Err(Error::Closed)));
            let mut tracks = av_tracks();
            if !same {
                tracks = Tracks::new(tracks.iter().take(1).cloned().collect());
            }
            p2.push(MediaEvent::Tracks(tracks)).unwrap();
            p2.push(video(0, true)).unwrap();
            p2.push(video(40, false)).unwrap();
            ev.extend(drain(&mut r));
            let discs = ev
                .iter()
                .filter(|e| matches!(e, MediaEvent::Discontinuity(_)))
                .count();
            let track_sets = ev
                .iter()
                .filter(|e| matches!(e, MediaEvent::Tracks(_)))
                .count();
            // Same tracks: the reconnect is invisible but for the rebase.
            assert_eq!((discs, track_sets), if same { (0, 1) } else { (1, 2) });
            let f = frame_dts(&ev);
            // 1000..1160, then continues at 1200, 1240.
            assert_eq!(f[4].1, 1160);
            assert_eq!(f[5].1, 1200);
            assert_eq!(f[6].1, 1240);
        }
    }

    /// `av_tracks` with the audio at `rate` Hz and `samples` per frame, on
    /// a clock of `timescale` ticks per second.
    fn tracks_with_audio(rate: u32, samples: u32, timescale: Timescale) -> Tracks {
        let mut t: Vec<TrackInfo> = av_tracks().iter().cloned().collect();
        t[1].timescale = timescale;
        t[1].params = crate::media::TrackParams::Audio(crate::media::AudioParams {
            sample_rate: rate,
            channels: 2,
            samples_per_frame: samples,
        });
        Tracks::new(t)
    }

    /// AAC-LC at 48 kHz in 960-sample frames: exactly 20 ms a frame.
    /// A hub landing switches on `grid`, whose standing-by sources take
    /// over as soon as the active one stops (no source timeout).
    fn grid_hub(grid: Option<Duration>) -> Hub {
        Hub::new(HubConfig {
            discontinuity_grid: grid,
            source_timeout: Duration::ZERO,
            ..HubConfig::default()
        })
    }

    fn tracks_20ms_audio() -> Tracks {
        tracks_with_audio(48_000, 960, Timescale::MILLIS)
    }

    /// [`tracks_20ms_audio`] with a picture of another size.
    fn tracks_20ms_audio_640() -> Tracks {
        let mut t: Vec<TrackInfo> = tracks_20ms_audio().iter().cloned().collect();
        t[0].params = crate::media::TrackParams::Video(crate::media::VideoParams {
            width: 640,
            height: 360,
            frame_rate: Some(crate::Rational::new(30, 1)),
        });
        Tracks::new(t)
    }

    /// The three ways a stream's track set changes after media: a new
    /// publisher of the active role, a switch to another role (the
    /// fallback), the same publisher (a relay whose source switched
    /// upstream). With a 1 s `discontinuity_grid` the new tracks' first
    /// frame lands on 2.0 s, not where the old media ends (1.4 s), and the
    /// old sound is silence up to there, before the discontinuity; without
    /// it, at 1.4 s; nor with a grid past [`MAX_DISCONTINUITY_GRID`] (an
    /// hour of it would be an hour of silence). A change back to the same
    /// tracks is not moved.
    #[test]
    fn a_new_track_set_lands_on_the_discontinuity_grid() {
        #[derive(Debug, Clone, Copy)]
        enum How {
            Takeover,
            Fallback,
            SamePublisher,
        }
        for how in [How::Takeover, How::Fallback, How::SamePublisher] {
            let too_long = MAX_DISCONTINUITY_GRID + Duration::from_millis(1);
            for grid in [Some(Duration::from_secs(1)), None, Some(too_long)] {
                let hub = grid_hub(grid);
                let name = path("live/a");
                let mut r = hub.subscribe(&name);
                let mut p1 = hub.publish(&name);
                let fb = hub.publish_as(&name, SourceRole::Fallback);
                p1.push(MediaEvent::Tracks(tracks_20ms_audio())).unwrap();
                for i in 0..10 {
                    p1.push(video(1000 + i * 40, i == 0)).unwrap(); // ends at 1400
                }
                for i in 0..20 {
                    p1.push(audio(1000 + i * 20)).unwrap(); // ends at 1400
                }
                drain(&mut r);
                let mut p2 = match how {
                    How::Takeover => hub.publish(&name),
                    How::Fallback => {
                        drop(p1);
                        fb
                    }
                    How::SamePublisher => p1,
                };
                if matches!(how, How::SamePublisher) {
                    // As a relay brings it from upstream.
                    p2.push(MediaEvent::Discontinuity(
                        DiscontinuityReason::SourceChanged,
                    ))
                    .unwrap();
                }
                p2.push(MediaEvent::Tracks(tracks_20ms_audio_640()))
                    .unwrap();
                p2.push(video(7010, true)).unwrap();
                p2.push(audio(7010)).unwrap();
                p2.push(video(7050, false)).unwrap();
                let ev = drain(&mut r);
                let disc = ev
                    .iter()
                    .position(|e| matches!(e, MediaEvent::Discontinuity(_)));
                let first_new = ev
                    .iter()
                    .position(|e| matches!(e, MediaEvent::Tracks(_)))
                    .expect("the new track set");
                assert_eq!(disc.map(|d| d < first_new), Some(true), "{how:?}");
                let old_sound: Vec<i64> = frame_dts(&ev[..first_new])
                    .into_iter()
                    .map(|(_, dts, _)| dts)
                    .collect();
                let new = frame_dts(&ev[first_new..]);
                match grid.filter(|g| *g <= MAX_DISCONTINUITY_GRID) {
                    Some(_) => {
                        // 1400..2000 in 20 ms frames of the old format (but
                        // after a discontinuity that came from upstream).
                        let silence: Vec<i64> = match how {
                            How::SamePublisher => Vec::new(),
                            _ => (0..30).map(|k| 1400 + k * 20).collect(),
                        };
                        assert_eq!(old_sound, silence, "{how:?}");
                        // The same publisher: its own timestamps (7.01 s).
                        let at = if matches!(how, How::SamePublisher) {
                            7010
                        } else {
                            2000
                        };
                        assert_eq!(new, vec![(1, at, true), (2, at, true), (1, at + 40, false)]);
                    }
                    None if matches!(how, How::SamePublisher) => {
                        assert!(old_sound.is_empty(), "{how:?}: {old_sound:?}");
                        assert_eq!(
                            new,
                            vec![(1, 7010, true), (2, 7010, true), (1, 7050, false)]
                        );
                    }
                    None => {
                        assert!(old_sound.is_empty(), "{how:?}: {old_sound:?}");
                        assert_eq!(
                            new,
                            vec![(1, 1400, true), (2, 1400, true), (1, 1440, false)]
                        );
                    }
                }
                // Back to the first track set: its own timestamps again.
                if matches!(how, How::SamePublisher) {
                    for t in [7030, 7050, 7070] {
                        p2.push(audio(t)).unwrap();
                    }
                    p2.push(MediaEvent::Tracks(tracks_20ms_audio())).unwrap();
                    p2.push(video(7090, true)).unwrap();
                    let ev = drain(&mut r);
                    let want = 7090;
                    assert_eq!(frame_dts(&ev).last(), Some(&(1, want, true)));
                }
            }
        }
    }

    /// A source on the stream's own timeline (a transcoder's renditions
    /// relayed back to an origin after its slate) whose own place is
    /// taken keeps its phase on the grid: after the slate (landed on
    /// 2.0 s, ending at 2.4 s) it lands at 3.3 s, whole seconds from its
    /// own 2.3 s, so that its later IDRs (on whole seconds of the
    /// timeline) stay on the boundaries. A publisher not on the timeline
    /// lands on the boundary, 3.0 s.
    #[test]
    fn a_source_on_the_streams_timeline_keeps_its_phase_on_the_grid() {
        for on_timeline in [true, false] {
            let hub = grid_hub(Some(Duration::from_secs(1)));
            let name = path("live/a");
            let id = 1_700_000_000_000;
            let mut r = hub.subscribe(&name);
            let mut main = hub.publish_on_timeline(&name, SourceRole::Main, Some(id));
            let mut slate = hub.publish_as(&name, SourceRole::Fallback);
            main.push(MediaEvent::Tracks(tracks_20ms_audio())).unwrap();
            for i in 0..10 {
                main.push(video(1000 + i * 40, i == 0)).unwrap();
            }
            drop(main);
            slate
                .push(MediaEvent::Tracks(tracks_20ms_audio_640()))
                .unwrap();
            for i in 0..10 {
                slate.push(video(i * 40, i == 0)).unwrap(); // 2.0 s on
            }
            drain(&mut r);
            let mut back = if on_timeline {
                hub.publish_on_timeline(&name, SourceRole::Main, Some(id))
            } else {
                hub.publish(&name)
            };
            back.push(MediaEvent::Tracks(tracks_20ms_audio())).unwrap();
            back.push(video(2300, true)).unwrap();
            let ev = drain(&mut r);
            let want = if on_timeline { 3300 } else { 3000 };
            assert_eq!(
                frame_dts(&ev).last(),
                Some(&(1, want, true)),
                "{on_timeline}"
            );
        }
    }

    /// A relay of the stream's own timeline back after a hole upstream (its
    /// publishing node killed, the publisher gone on at another node on
    /// the same timeline) keeps its timestamps: the hole stays, as at a
    /// node that joined after it (and so do the dates). One whose place
    /// is taken, or a publisher not on the timeline, lands where the old
    /// media ends; with the grid, on or after its boundary.
    #[test]
    fn a_relay_on_the_streams_timeline_keeps_the_hole_before_it() {
        for (grid, on_timeline, own, want) in [
            (None, true, 6000, 6000),
            (None, true, 300, 400),
            (None, false, 6000, 400),
            (Some(1), true, 6300, 6300),
            (Some(1), true, 900, 1900),
            (Some(1), false, 6300, 1000),
        ] {
            let hub = grid_hub(grid.map(Duration::from_secs));
            let name = path("live/a");
            let id = 1_700_000_000_000;
            let mut r = hub.subscribe(&name);
            let mut first = hub.publish_on_timeline(&name, SourceRole::Main, Some(id));
            first.push(MediaEvent::Tracks(tracks_20ms_audio())).unwrap();
            for i in 0..10 {
                first.push(video(i * 40, i == 0)).unwrap();
            }
            drop(first);
            drain(&mut r);
            let mut back = if on_timeline {
                hub.publish_on_timeline(&name, SourceRole::Main, Some(id))
            } else {
                hub.publish(&name)
            };
            // Other tracks: a discontinuity, landed on the grid if any.
            back.push(MediaEvent::Tracks(tracks_20ms_audio_640()))
                .unwrap();
            back.push(video(own, true)).unwrap();
            back.push(video(own + 40, false)).unwrap();
            let ev = drain(&mut r);
            let got: Vec<i64> = frame_dts(&ev)
                .iter()
                .filter(|(track, _, _)| *track == 1)
                .map(|(_, dts, _)| *dts)
                .collect();
            assert_eq!(
                got,
                vec![want, want + 40],
                "grid {grid:?}, on the timeline {on_timeline}, own {own}"
            );
            assert_eq!(hub.timeline(&name), Some(id));
        }
    }

    /// A publisher that moved here from another node (the control plane
    /// names the stream's timeline): its first frame lands at that
    /// timeline's age, as on the node where it began, whatever its own
    /// clock. A stream with media here keeps its own timeline.
    #[test]
    fn a_continued_timeline_lands_its_first_frame_at_its_age() {
        let hub = Hub::new(HubConfig {
            timeline_on_clock: true,
            ..HubConfig::default()
        });
        let name = path("live/a");
        let id = unix_ms() - 60_000;
        hub.continue_timeline(&name, id);
        assert_eq!(hub.timeline(&name), Some(id));
        let mut r = hub.subscribe(&name);
        let mut a = hub.publish(&name);
        a.push(MediaEvent::Tracks(tracks_20ms_audio())).unwrap();
        let before = unix_ms();
        a.push(video(5_000, true)).unwrap();
        let after = unix_ms();
        let dts: Vec<i64> = frame_dts(&drain(&mut r)).iter().map(|f| f.1).collect();
        let age = |at: u64| (at - id) as i64;
        assert_eq!(dts.len(), 1);
        assert!((age(before)..=age(after)).contains(&dts[0]), "{dts:?}");
        // Its media keeps its timeline.
        hub.continue_timeline(&name, id + 5);
        assert_eq!(hub.timeline(&name), Some(id));
    }

    /// A stream's timeline goes on elsewhere while its life may: with media
    /// and a publisher attached or gone without an end (its node killed);
    /// not once a relay brought its end (it ended upstream), until a
    /// publisher attaches again.
    #[test]
    fn a_streams_timeline_goes_on_until_its_end_comes() {
        let hub = Hub::new(HubConfig::default());
        let name = path("live/a");
        let mut a = hub.publish_on_timeline(&name, SourceRole::Main, Some(42));
        assert_eq!(hub.live_timeline(&name), None, "no media yet");
        a.push(MediaEvent::Tracks(tracks_20ms_audio())).unwrap();
        a.push(video(0, true)).unwrap();
        assert_eq!(hub.live_timeline(&name), Some(42));
        drop(a);
        assert_eq!(hub.live_timeline(&name), Some(42), "gone without its end");
        let mut b = hub.publish_on_timeline(&name, SourceRole::Main, Some(42));
        b.push(MediaEvent::End).unwrap();
        assert_eq!(hub.live_timeline(&name), None, "ended upstream");
        let _c = hub.publish_on_timeline(&name, SourceRole::Main, Some(42));
        assert_eq!(hub.live_timeline(&name), Some(42));
        assert_eq!(hub.live_timeline(&path("live/none")), None);
    }

    /// A transcoder killed mid-stream: its audio stopped 120 ms before its
    /// video (the encoder's lookahead held it). The new source lands where
    /// the video ends and its audio starts 20 ms after its video; the
    /// 180 ms hole in the audio is filled with silence, in whole frames.
    #[test]
    fn a_takeover_fills_the_hole_in_the_audio_with_silence() {
        let hub = Hub::new(HubConfig::default());
        let name = path("live/a");
        let mut r = hub.subscribe(&name);
        let mut p1 = hub.publish(&name);
        p1.push(MediaEvent::Tracks(tracks_20ms_audio())).unwrap();
        for i in 0..10 {
            p1.push(video(1000 + i * 40, i == 0)).unwrap();
        }
        for i in 0..12 {
            p1.push(audio(1000 + i * 20)).unwrap(); // ends at 1240
        }
        drain(&mut r);
        let mut p2 = hub.publish(&name);
        p2.push(MediaEvent::Tracks(tracks_20ms_audio())).unwrap();
        p2.push(video(5000, true)).unwrap(); // lands at 1400
        p2.push(audio(5020)).unwrap(); // at 1420
        p2.push(audio(5040)).unwrap();
        let ev = drain(&mut r);
        let silent = crate::silence::silent_frame(&av_tracks().iter().nth(1).unwrap().clone())
            .expect("AAC-LC stereo has a silent frame");
        let audio: Vec<(i64, bool)> = ev
            .iter()
            .filter_map(|e| match e {
                MediaEvent::Frame(f) if f.track == TrackId(2) => Some((f.dts, f.data == silent)),
                _ => None,
            })
            .collect();
        // 1240..1420 is 180 ms: nine 20 ms frames of silence, then the new
        // audio where it belongs.
        let mut want: Vec<(i64, bool)> = (0..9).map(|k| (1240 + k * 20, true)).collect();
        want.extend([(1420, false), (1440, false)]);
        assert_eq!(audio, want);
        assert_eq!(hub.stats(&name).unwrap().silent_frames, 9);
        // The silence up to where the picture lands comes before it (so the
        // old timeline's sound ends in the segment its picture ends in),
        // the rest at the new sound.
        let order: Vec<(u32, i64)> = frame_dts(&ev).iter().map(|f| (f.0, f.1)).collect();
        let mut want: Vec<(u32, i64)> = (0..8).map(|k| (2, 1240 + k * 20)).collect();
        want.extend([(1, 1400), (2, 1400), (2, 1420), (2, 1440)]);
        assert_eq!(order, want);
    }

    /// A switch to other tracks (the slate, in its own codec parameters):
    /// the old audio, stopped 120 ms before the old video's end, is filled
    /// with silence up to that end before the new tracks are announced, so
    /// the old timeline's last segment has sound to its picture's end.
    #[test]
    fn a_switch_to_other_tracks_ends_the_old_sound_with_the_picture() {
        let hub = Hub::new(HubConfig::default());
        let name = path("live/a");
        let mut r = hub.subscribe(&name);
        let mut main = hub.publish(&name);
        main.push(MediaEvent::Tracks(tracks_20ms_audio())).unwrap();
        for i in 0..10 {
            main.push(video(1000 + i * 40, i == 0)).unwrap(); // ends at 1400
        }
        for i in 0..12 {
            main.push(audio(1000 + i * 20)).unwrap(); // ends at 1240
        }
        drop(main);
        drain(&mut r);
        let mut other = tracks_20ms_audio().iter().cloned().collect::<Vec<_>>();
        if let crate::media::TrackParams::Video(v) = &mut other[0].params {
            v.width += 16;
        }
        let other = Tracks::new(other);
        let mut fallback = hub.publish_as(&name, SourceRole::Fallback);
        fallback.push(MediaEvent::Tracks(other.clone())).unwrap();
        fallback.push(video(0, true)).unwrap();
        fallback.push(audio(0)).unwrap();
        let ev = drain(&mut r);
        let at_tracks = ev
            .iter()
            .position(|e| matches!(e, MediaEvent::Tracks(t) if *t == other))
            .expect("the new tracks announced");
        let before: Vec<(u32, i64)> = frame_dts(&ev[..at_tracks])
            .iter()
            .map(|f| (f.0, f.1))
            .collect();
        // 1240..1400: eight 20 ms frames of silence, all before the new
        // tracks.
        let want: Vec<(u32, i64)> = (0..8).map(|k| (2, 1240 + k * 20)).collect();
        assert_eq!(before, want);
        assert_eq!(hub.stats(&name).unwrap().silent_frames, 8);
        // The new source lands where the old picture ended.
        let after = frame_dts(&ev[at_tracks..]);
        assert_eq!(after.first().map(|f| (f.0, f.1)), Some((1, 1400)));
    }

    /// The fill steps by the track's frame duration, not by the spacing of
    /// the publisher's timestamps: AAC at 44.1 kHz on a millisecond clock
    /// (23.2 ms frames, stamped 23 or 24 ms apart) gets frames placed on
    /// the exact frame grid, as many as fit in the hole.
    #[test]
    fn the_fill_follows_the_frame_duration_on_a_rounded_clock() {
        let tracks = tracks_with_audio(44_100, 1024, Timescale::MILLIS);
        let hub = Hub::new(HubConfig::default());
        let name = path("live/a");
        let mut r = hub.subscribe(&name);
        let mut p1 = hub.publish(&name);
        p1.push(MediaEvent::Tracks(tracks.clone())).unwrap();
        for i in 0..10 {
            p1.push(video(1000 + i * 40, i == 0)).unwrap();
        }
        // Frame k at 1000 + floor(k * 1024 / 44.1): ends at 1232 + 24.
        for k in 0..11 {
            p1.push(audio(1000 + k * 1_024_000 / 44_100)).unwrap();
        }
        drain(&mut r);
        let mut p2 = hub.publish(&name);
        p2.push(MediaEvent::Tracks(tracks)).unwrap();
        p2.push(video(0, true)).unwrap(); // lands at 1400
        p2.push(audio(0)).unwrap(); // at 1400
        let f = frame_dts(&drain(&mut r));
        let audio: Vec<i64> = f.iter().filter(|f| f.0 == 2).map(|f| f.1).collect();
        // 1256..1400 holds six frames of 23.2 ms (139 ms); the seventh
        // would end past the new audio.
        assert_eq!(audio, vec![1256, 1279, 1302, 1325, 1348, 1372, 1400]);
        assert_eq!(hub.stats(&name).unwrap().silent_frames, 6);
    }

    /// A publisher whose audio timestamps advance by one tick (a 48 kHz
    /// clock, frames one tick apart: nonsense, but untrusted) gets no fill:
    /// stepping by what the timestamps say would commit half a second of
    /// one-tick frames, 24,000 of them, at each takeover.
    #[test]
    fn audio_stamped_off_its_frame_duration_gets_no_fill() {
        let scale = Timescale::new(48_000).unwrap();
        let tracks = tracks_with_audio(48_000, 1024, scale);
        let hub = Hub::new(HubConfig::default());
        let name = path("live/a");
        let mut r = hub.subscribe(&name);
        let mut p1 = hub.publish(&name);
        p1.push(MediaEvent::Tracks(tracks.clone())).unwrap();
        for i in 0..10 {
            p1.push(video(1000 + i * 40, i == 0)).unwrap();
        }
        // Audio at 1.000 s, one tick apart: ends 0.4 s before the video.
        for k in 0..20 {
            p1.push(audio(48_000 + k)).unwrap();
        }
        drain(&mut r);
        let mut p2 = hub.publish(&name);
        p2.push(MediaEvent::Tracks(tracks)).unwrap();
        p2.push(video(0, true)).unwrap();
        p2.push(audio(0)).unwrap();
        let f = frame_dts(&drain(&mut r));
        assert_eq!(hub.stats(&name).unwrap().silent_frames, 0);
        assert_eq!(f.len(), 2, "{f:?}");
    }

    /// No fill past [`MAX_SILENCE_FILL`] (the old source's audio had
    /// stopped long before: a real gap), nor for a hole under a frame.
    #[test]
    fn long_or_tiny_audio_holes_are_left() {
        // (first audio dts, audio frames): the old audio ends at 1020
        // (1.18 s before the video's end at 2200) or at 2190 (10 ms before).
        for (first, frames) in [(1000, 1), (1010, 59)] {
            let hub = Hub::new(HubConfig::default());
            let name = path("live/a");
            let mut r = hub.subscribe(&name);
            let mut p1 = hub.publish(&name);
            p1.push(MediaEvent::Tracks(av_tracks())).unwrap();
            for i in 0..30 {
                p1.push(video(1000 + i * 40, i == 0)).unwrap();
            }
            for i in 0..frames {
                p1.push(audio(first + i * 20)).unwrap();
            }
            drain(&mut r);
            let mut p2 = hub.publish(&name);
            p2.push(MediaEvent::Tracks(av_tracks())).unwrap();
            p2.push(video(0, true)).unwrap();
            p2.push(audio(0)).unwrap();
            assert_eq!(hub.stats(&name).unwrap().silent_frames, 0);
            let f = frame_dts(&drain(&mut r));
            assert_eq!(f, vec![(1, 2200, true), (2, 2200, true)], "{first}");
        }
    }

    /// The old source's audio ran a frame ahead of its video (interleaving):
    /// the new source lands where the video ended, so the picture has no
    /// hole; the new audio keeps its offset to its video, and what of it
    /// would go back on the audio track is dropped.
    #[test]
    fn a_takeover_lands_where_the_video_ends() {
        let hub = Hub::new(HubConfig::default());
        let mut r = hub.subscribe(&path("live/a"));
        let mut p1 = hub.publish(&path("live/a"));
        p1.push(MediaEvent::Tracks(av_tracks())).unwrap();
        for i in 0..5 {
            p1.push(video(1000 + i * 40, i == 0)).unwrap();
            p1.push(audio(1000 + i * 40)).unwrap();
            p1.push(audio(1020 + i * 40)).unwrap();
        }
        // Audio ends at 1200 + 20, video at 1160 + 40.
        p1.push(audio(1200)).unwrap();
        drain(&mut r);
        let mut p2 = hub.publish(&path("live/a"));
        p2.push(MediaEvent::Tracks(av_tracks())).unwrap();
        p2.push(video(0, true)).unwrap();
        p2.push(audio(0)).unwrap();
        p2.push(audio(20)).unwrap();
        p2.push(video(40, false)).unwrap();
        let f = frame_dts(&drain(&mut r));
        // The new audio at 0 would land at 1200, not after the old audio.
        assert_eq!(f, vec![(1, 1200, true), (2, 1220, true), (1, 1240, false)]);
    }

    /// A backup standing by sends sound before the keyframe it takes over
    /// on: that sound comes along, so the old audio runs into the new one
    /// without a gap (a gap in the audio is a hole in a player's buffer).
    #[test]
    fn a_takeover_brings_the_sound_from_just_before_its_keyframe() {
        let hub = Hub::new(HubConfig::default());
        let mut r = hub.subscribe(&path("live/a"));
        let mut main = hub.publish(&path("live/a"));
        main.push(MediaEvent::Tracks(av_tracks())).unwrap();
        for i in 0..5 {
            main.push(video(i * 40, i == 0)).unwrap();
            main.push(audio(i * 40)).unwrap();
            main.push(audio(i * 40 + 20)).unwrap();
        }
        // Video ends at 200, audio at 180 + 20.
        let mut backup = hub.publish_as(&path("live/a"), SourceRole::Backup);
        backup.push(MediaEvent::Tracks(av_tracks())).unwrap();
        for t in [1000, 1020, 1040] {
            backup.push(audio(t)).unwrap();
        }
        drain(&mut r);
        drop(main);
        backup.push(video(1050, true)).unwrap();
        backup.push(audio(1060)).unwrap();
        let audio_dts: Vec<i64> = frame_dts(&drain(&mut r))
            .into_iter()
            .filter(|f| f.0 == 2)
            .map(|f| f.1)
            .collect();
        // The keyframe lands at 200; the sound from 1040 at 190 (1000 and
        // 1020 would go back), then 210: no gap after the old 200.
        assert_eq!(audio_dts, vec![190, 210]);
    }

    /// The old source had B-frames: its last frames are presented after
    /// its last decode time. The new source is presented from where the
    /// old presentation ends (no picture shown twice at one time), and
    /// decoded no earlier than the old decoding ends.
    #[test]
    fn a_takeover_after_b_frames_is_presented_after_them() {
        let frame = |dts: i64, pts: i64, key: bool| {
            MediaEvent::Frame(Frame {
                track: TrackId(1),
                dts,
                pts,
                keyframe: key,
                data: Bytes::from(vec![0u8; 100]),
            })
        };
        let takeover = |first: MediaEvent| {
            let hub = Hub::new(HubConfig::default());
            let mut r = hub.subscribe(&path("live/a"));
            let mut p1 = hub.publish(&path("live/a"));
            p1.push(MediaEvent::Tracks(av_tracks())).unwrap();
            // I P B B: decoding ends at 1160, presentation at 1240.
            for (dts, pts) in [(1000, 1080), (1040, 1200), (1080, 1120), (1120, 1160)] {
                p1.push(frame(dts, pts, dts == 1000)).unwrap();
            }
            drain(&mut r);
            let mut p2 = hub.publish(&path("live/a"));
            p2.push(MediaEvent::Tracks(av_tracks())).unwrap();
            p2.push(first).unwrap();
            match drain(&mut r).into_iter().find_map(|e| match e {
                MediaEvent::Frame(f) => Some(f),
                _ => None,
            }) {
                Some(f) => (f.dts, f.pts),
                None => panic!("no frame"),
            }
        };
        // Without B-frames: decoded and presented at 1240.
        assert_eq!(takeover(frame(0, 0, true)), (1240, 1240));
        // With them (presented 80 after decoding): decoded at 1160.
        assert_eq!(takeover(frame(0, 80, true)), (1160, 1240));
    }

    /// The old source's video had stalled while its audio went on: landing
    /// at the video's end would drop the new audio for as long, so the
    /// switch lands after the audio instead.
    #[test]
    fn a_takeover_after_a_video_stall_lands_after_the_audio() {
        let hub = Hub::new(HubConfig::default());
        let mut r = hub.subscribe(&path("live/a"));
        let mut p1 = hub.publish(&path("live/a"));
        p1.push(MediaEvent::Tracks(av_tracks())).unwrap();
        p1.push(video(1000, true)).unwrap();
        p1.push(video(1040, false)).unwrap();
        for i in 0..50 {
            p1.push(audio(1000 + i * 20)).unwrap();
        }
        drain(&mut r);
        let mut p2 = hub.publish(&path("live/a"));
        p2.push(MediaEvent::Tracks(av_tracks())).unwrap();
        p2.push(video(0, true)).unwrap();
        p2.push(audio(0)).unwrap();
        let f = frame_dts(&drain(&mut r));
        assert_eq!(f, vec![(1, 2000, true), (2, 2000, true)]);
    }

    #[test]
    fn frames_must_fit_announced_tracks() {
        let hub = Hub::new(HubConfig::default());
        let mut p = hub.publish(&path("live/a"));
        assert!(matches!(
            p.push(video(0, true)),
            Err(Error::InvalidMedia(_))
        ));
        p.push(MediaEvent::Tracks(av_tracks())).unwrap();
        let bad = MediaEvent::Frame(Frame {
            track: TrackId(9),
            dts: 0,
            pts: 0,
            keyframe: true,
            data: Bytes::new(),
        });
        assert!(matches!(p.push(bad), Err(Error::UnknownTrack(TrackId(9)))));
    }

    #[test]
    fn end_reaches_readers_after_pending_events() {
        let hub = Hub::new(HubConfig::default());
        let mut p = hub.publish(&path("live/a"));
        let mut r = hub.subscribe(&path("live/a"));
        p.push(MediaEvent::Tracks(av_tracks())).unwrap();
        p.push(video(0, true)).unwrap();
        hub.end(&path("live/a"));
        let ev = drain(&mut r);
        assert_eq!(ev.last(), Some(&MediaEvent::End));
        assert!(r.is_done());
        assert!(hub.stream_names().is_empty());
        assert!(matches!(p.push(video(40, false)), Err(Error::Closed)));
    }

    #[test]
    fn idle_streams_are_reaped_after_grace_only() {
        let hub = Hub::new(HubConfig::default());
        let t0 = Instant::now();
        let grace = Duration::from_secs(10);
        let p = hub.publish(&path("live/a"));
        assert!(hub.reap_idle(t0, grace).is_empty());
        drop(p);
        assert!(hub.reap_idle(t0 + Duration::from_secs(1), grace).is_empty());
        // A reconnect within the grace resets the idle clock.
        let p = hub.publish(&path("live/a"));
        assert!(
            hub.reap_idle(t0 + Duration::from_secs(20), grace)
                .is_empty()
        );
        drop(p);
        assert!(
            hub.reap_idle(t0 + Duration::from_secs(21), grace)
                .is_empty()
        );
        assert_eq!(
            hub.reap_idle(t0 + Duration::from_secs(31), grace),
            vec![path("live/a")]
        );
        assert!(hub.stream_names().is_empty());
    }

    #[tokio::test]
    async fn async_reader_wakes_on_publish() {
        let hub = Hub::new(HubConfig::default());
        let mut r = hub.subscribe(&path("live/a"));
        let mut watch = hub.watch();
        let h = hub.clone();
        let task = tokio::spawn(async move {
            let mut p = h.publish(&path("live/a"));
            let _ = p.push(MediaEvent::Tracks(av_tracks()));
            let _ = p.push(video(0, true));
            h.end(&path("live/a"));
        });
        let mut frames = 0;
        while let Some(e) = r.recv().await {
            if let MediaEvent::Frame(_) = e {
                frames += 1;
            }
        }
        task.await.unwrap();
        assert_eq!(frames, 1);
        // "live/a" existed when watch() was called: it came first, then the
        // streams created later, each once.
        assert_eq!(watch.next().await, Some(path("live/a")));
        hub.subscribe(&path("live/b"));
        assert_eq!(watch.next().await, Some(path("live/b")));
        hub.subscribe(&path("live/b"));
        hub.subscribe(&path("live/c"));
        assert_eq!(watch.next().await, Some(path("live/c")));
        // A second watcher starts with every stream that exists.
        let mut second = hub.watch();
        for want in ["live/b", "live/c"] {
            assert_eq!(second.next().await, Some(path(want)));
        }
    }

    fn graced(grace_s: u64) -> Hub {
        Hub::new(HubConfig {
            publisher_grace: Duration::from_secs(grace_s),
            ..HubConfig::default()
        })
    }

    #[tokio::test]
    async fn a_finished_publisher_ends_its_stream() {
        let hub = graced(0);
        let mut r = hub.subscribe(&path("live/a"));
        let mut p = hub.publish(&path("live/a"));
        p.push(MediaEvent::Tracks(av_tracks())).unwrap();
        p.push(video(0, true)).unwrap();
        p.finish().await.unwrap();
        assert!(hub.stream_names().is_empty());
        let mut events = Vec::new();
        while let Some(e) = r.recv().await {
            events.push(e);
        }
        assert!(matches!(events.last(), Some(MediaEvent::End)), "{events:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_reconnect_within_the_grace_continues_the_stream() {
        let hub = graced(20);
        let a = path("live/a");
        let mut p1 = hub.publish(&a);
        p1.push(MediaEvent::Tracks(av_tracks())).unwrap();
        let first = tokio::spawn(async move { p1.finish().await });
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(!hub.is_publishing(&a));
        assert_eq!(hub.stream_names(), vec![a.clone()], "kept for the grace");
        // A reconnect takes the stream over; the first finish then ends nothing.
        let mut p2 = hub.publish(&a);
        first.await.unwrap().unwrap();
        assert_eq!(hub.stream_names(), vec![a.clone()]);
        assert!(hub.is_publishing(&a));
        // The second publisher's end ends the stream after its own grace.
        let second = tokio::spawn(async move { p2.finish().await });
        tokio::time::sleep(Duration::from_secs(19)).await;
        assert_eq!(hub.stream_names(), vec![a.clone()]);
        tokio::time::sleep(Duration::from_secs(2)).await;
        second.await.unwrap().unwrap();
        assert!(hub.stream_names().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_disconnected_publisher_still_ends_its_stream_after_the_grace() {
        let hub = graced(3);
        let a = path("live/a");
        let mut p = hub.publish(&a);
        hub.disconnect_publisher(&a);
        assert!(matches!(
            p.push(MediaEvent::Tracks(av_tracks())),
            Err(Error::Closed)
        ));
        p.finish().await.unwrap();
        assert!(hub.stream_names().is_empty());
    }
}
