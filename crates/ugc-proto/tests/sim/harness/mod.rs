//! A simulated-time harness: RTMP bytes -> [`ServerSession`] ->
//! [`FlvIngest`] -> [`Hub`] -> [`Segmenter`] -> [`LiveStream`] /
//! [`LiveRegistry`] -> origin router, in one task, on one clock, with no
//! socket and no sleep.
//!
//! The clock is tokio's, paused (`#[tokio::test(start_paused = true)]`):
//! [`Sim::run_until`] sleeps from one scheduled instant to the next (a tag a
//! publisher sends, a grace period's end, an idle flush), so tokio's auto-advance
//! moves the clock exactly there, stopping at every timer of the origin on
//! the way, and does at each instant what the servers' tasks would do, in
//! order. The segmenter's
//! `now_unix_ms` is [`SimClock::unix_ms`]. The origin's blocking reloads and
//! part holds wait on tokio timers and `watch`es, so they see the same
//! time: a request spawned with [`Sim::spawn_get`] is answered at the
//! simulated instant its answer exists (or its hold expires), which
//! [`Resp::answered_ms`] records.
//!
//! What stands in for which production glue (keep them in step):
//! * a connection: `ugc_proto::rtmp::server` (`RtmpConnection::publish`,
//!   then the `RtmpPublish` source driven into a `HubPublisher`): every
//!   `PublishRequested` is accepted when `<app>/<key>` is a valid
//!   [`StreamPath`]; an ingest or Hub error closes the connection.
//! * packaging: `ugc_dvr::package_hub` and `run_packager`: one segmenter
//!   per life of a stream, idle flush after twice the target duration,
//!   a session larger than the previous life's, removal after the linger.
//! * the publisher grace: `serve` detaches a publisher whose connection
//!   closed and finishes it ([`ugc_core::Sink::finish`]) after
//!   `HubConfig::publisher_grace`, which ends the stream unless another
//!   publisher attached; the harness waits the grace on its own schedule
//!   and finishes the publisher then.
//!
//! Not modelled: TCP (bytes arrive when sent, in the plan's chunking), the
//! paced ingest runtime's tick and read batching, the DVR archive.
//!
//! ```ignore
//! #[tokio::test(start_paused = true)]
//! async fn example() {
//!     let mut sim = Sim::new(SimConfig::ll(2000, 200));
//!     sim.publish(Plan::av("cam", 6_000).gop_ms(1000));
//!     sim.run_until(3_000).await;
//!     let pl = Playlist::parse(&sim.get("/live/cam/mono.m3u8").await.ok_text("playlist"));
//!     let (m, p) = pl.preload_hint.unwrap();
//!     let held = sim.spawn_get(&format!("/live/cam/mono.m3u8?_HLS_msn={m}&_HLS_part={p}"));
//!     sim.run_until(3_500).await;
//!     let r = held.await.unwrap();
//!     assert_eq!(r.answered_ms, sim.life("live/cam").parts[&(m, p)]);
//! }
//! ```
#![allow(dead_code)]

pub mod http;
pub mod publisher;

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use bytes::BytesMut;
use ugc_codec::flv::FlvIngest;
use ugc_core::{
    AllowAll, DenyKind, Hub, HubConfig, HubPublisher, HubReader, MediaEvent, StreamPath,
};
use ugc_dvr::{
    LiveRegistry, LiveStream, PackagerConfig, SegmentObserver, Segmenter, SegmenterOutput,
    SegmenterStats,
};
use ugc_proto::origin::{OriginConfig, peer_is_client, router_with_config};
use ugc_proto::rtmp::chunk::msg_type;
use ugc_proto::rtmp::{
    ChunkEncoder, ClientConfig, ClientEvent, ClientSession, ServerEvent, ServerSession,
    SessionConfig,
};

pub use http::{Playlist, Resp, tfdts};
pub use publisher::{Chunking, Plan, Rng, Tag, TagKind};

/// The simulated clock: tokio's (paused) time since the [`Sim`] started.
#[derive(Debug, Clone)]
pub struct SimClock {
    start: tokio::time::Instant,
    unix_start_ms: i64,
}

impl SimClock {
    /// Monotonic ms since the start.
    pub fn now_ms(&self) -> i64 {
        i64::try_from(self.start.elapsed().as_millis()).unwrap_or(i64::MAX)
    }

    /// Unix ms (what the packager reads as the wall clock).
    pub fn unix_ms(&self) -> i64 {
        self.unix_start_ms + self.now_ms()
    }
}

/// Settings of a [`Sim`].
#[derive(Clone)]
pub struct SimConfig {
    /// Segmenter, live window, linger and observers, as `package_hub` takes.
    pub packager: PackagerConfig,
    /// The origin's settings.
    pub origin: OriginConfig,
    /// The Hub's limits.
    pub hub: HubConfig,
    /// How long a stream without a publisher lives on before its publisher
    /// is finished, which ends it; `None`: never.
    pub publisher_grace_ms: Option<i64>,
    /// Unix ms at simulated time 0.
    pub unix_start_ms: i64,
    /// Settings of every RTMP server session.
    pub session: SessionConfig,
}

impl SimConfig {
    /// LL-HLS with `segment_ms` segments and `part_ms` parts, 6 segments
    /// listed, ugc-server's grace (20 s) and linger (60 s).
    pub fn ll(segment_ms: u32, part_ms: u32) -> SimConfig {
        let mut packager = PackagerConfig::default().with_part_target(Some(part_ms));
        packager.segmenter.target_duration_ms = segment_ms;
        packager.live.target_duration_ms = segment_ms;
        SimConfig {
            packager,
            origin: OriginConfig::default(),
            hub: HubConfig::default(),
            publisher_grace_ms: Some(20_000),
            unix_start_ms: 1_700_000_000_000,
            session: SessionConfig::default(),
        }
    }

    /// Classic HLS (no parts) with `segment_ms` segments.
    pub fn classic(segment_ms: u32) -> SimConfig {
        let mut c = SimConfig::ll(segment_ms, 200);
        c.packager = c.packager.with_part_target(None);
        c
    }

    /// Segments listed in the playlist.
    pub fn window(mut self, segments: usize) -> SimConfig {
        self.packager.live.window_segments = segments;
        self
    }

    /// The grace period of a stream without a publisher.
    pub fn grace_ms(mut self, ms: Option<i64>) -> SimConfig {
        self.publisher_grace_ms = ms;
        self
    }
}

/// A connection of [`Sim::publish`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct PubId(usize);

/// One life of a stream's packaging (a stream published again after it
/// ended has a new one), and what it produced when, in simulated ms.
pub struct Life {
    /// The stream.
    pub stream: StreamPath,
    /// Its live window, as the origin serves it.
    pub live: Arc<LiveStream>,
    /// When each part was published.
    pub parts: BTreeMap<(u64, u32), i64>,
    /// When each segment closed.
    pub segments: BTreeMap<u64, i64>,
    /// Every preload hint the segmenter gave, with its time.
    pub hints: Vec<(i64, (u64, u32))>,
    /// When it ended.
    pub ended_ms: Option<i64>,
    /// Idle flushes.
    pub flushes: u32,
    /// Segmenter errors (the packager logs and goes on).
    pub errors: Vec<String>,
    /// The segmenter's counters.
    pub stats: SegmenterStats,
}

struct Packager {
    reader: HubReader,
    segmenter: Segmenter,
    observer: Option<Box<dyn SegmentObserver>>,
    life: Life,
    last_event_ms: i64,
    done: bool,
    removed: bool,
}

struct Publishing {
    publisher: HubPublisher,
    ingest: FlvIngest,
}

struct Conn {
    plan: Plan,
    origin_ms: i64,
    client: ClientSession,
    server: ServerSession,
    queue: VecDeque<Tag>,
    sent: Vec<Tag>,
    rng: Rng,
    publishing: Option<Publishing>,
    open: bool,
    client_events: Vec<ClientEvent>,
    errors: Vec<String>,
    /// The publisher of a closed connection, until its grace is over and
    /// the harness finishes it (as `rtmp::server::serve` does with
    /// `Sink::finish` after the hub's publisher grace).
    gone: Option<HubPublisher>,
    gone_at_ms: i64,
}

/// The chunk size our client announces (and the absolute-timestamp writer
/// uses).
const CLIENT_CHUNK_SIZE: u32 = 4096;
/// Message stream of the publish: our server core numbers `createStream`
/// answers from 1, and the client creates one.
const PUBLISH_STREAM_ID: u32 = 1;
/// Chunk streams of the absolute-timestamp writer (not our client's).
const ABS_CSID_VIDEO: u32 = 20;
const ABS_CSID_AUDIO: u32 = 21;

impl Conn {
    fn end_publish(&mut self) {
        if let Some(mut p) = self.publishing.take() {
            p.ingest.finish();
            while let Some(ev) = p.ingest.poll_event() {
                if p.publisher.push(ev).is_err() {
                    break;
                }
            }
            p.publisher.detach();
            self.gone = Some(p.publisher);
        }
    }

    fn close(&mut self, error: Option<String>, now_ms: i64) {
        self.errors.extend(error);
        self.end_publish();
        self.open = false;
        self.queue.clear();
        self.gone_at_ms = now_ms;
    }

    /// What `rtmp::server` does with the session's events.
    fn handle_events(&mut self, hub: &Hub) -> Result<(), String> {
        while let Some(event) = self.server.poll_event() {
            match event {
                ServerEvent::PublishRequested { app, key, .. } => {
                    match StreamPath::new(&app, &key) {
                        Ok(stream) => {
                            let publisher = hub.publish(&stream);
                            self.server.accept_publish().map_err(|e| e.to_string())?;
                            self.publishing = Some(Publishing {
                                publisher,
                                ingest: FlvIngest::new(),
                            });
                        }
                        Err(e) => self
                            .server
                            .reject_publish(DenyKind::BadName, &e.to_string())
                            .map_err(|e| e.to_string())?,
                    }
                }
                ServerEvent::Metadata(meta) => {
                    if let Some(p) = &mut self.publishing {
                        p.ingest.set_metadata(meta);
                    }
                }
                ServerEvent::Audio { timestamp_ms, body } => {
                    if let Some(p) = &mut self.publishing {
                        p.ingest
                            .push_audio(timestamp_ms, body)
                            .map_err(|e| e.to_string())?;
                        drain(p)?;
                    }
                }
                ServerEvent::Video { timestamp_ms, body } => {
                    if let Some(p) = &mut self.publishing {
                        p.ingest
                            .push_video(timestamp_ms, body)
                            .map_err(|e| e.to_string())?;
                        drain(p)?;
                    }
                }
                ServerEvent::PublishEnded => self.end_publish(),
                _ => {}
            }
        }
        Ok(())
    }

    /// The reads `bytes` arrives in.
    fn cut(&mut self, bytes: &[u8]) -> Vec<std::ops::Range<usize>> {
        let mut reads = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let n = match self.plan.chunking {
                Chunking::Whole => bytes.len(),
                Chunking::Fixed(n) => n.max(1),
                Chunking::Random { max } => 1 + self.rng.below(max.max(1) as u64) as usize,
            };
            let end = (at + n).min(bytes.len());
            reads.push(at..end);
            at = end;
        }
        reads
    }
}

fn drain(p: &mut Publishing) -> Result<(), String> {
    while let Some(ev) = p.ingest.poll_event() {
        p.publisher.push(ev).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The harness; see the module docs.
pub struct Sim {
    clock: SimClock,
    config: SimConfig,
    hub: Hub,
    registry: Arc<LiveRegistry>,
    router: Router,
    conns: Vec<Conn>,
    packagers: Vec<Packager>,
}

impl Sim {
    /// A harness at simulated time 0. Call inside a runtime with paused
    /// time (`#[tokio::test(start_paused = true)]`).
    pub fn new(config: SimConfig) -> Sim {
        // The harness waits out the publisher grace on its own clock and
        // then finishes the publisher: the hub itself waits no more.
        let hub = Hub::new(HubConfig {
            publisher_grace: Duration::ZERO,
            ..config.hub.clone()
        });
        let registry = Arc::new(LiveRegistry::new());
        let router = router_with_config(
            registry.clone(),
            Arc::new(AllowAll),
            peer_is_client(),
            config.origin.clone(),
        );
        Sim {
            clock: SimClock {
                start: tokio::time::Instant::now(),
                unix_start_ms: config.unix_start_ms,
            },
            config,
            hub,
            registry,
            router,
            conns: Vec::new(),
            packagers: Vec::new(),
        }
    }

    /// The clock.
    pub fn clock(&self) -> &SimClock {
        &self.clock
    }

    /// Simulated ms.
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// The Hub.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// The registry the origin serves.
    pub fn registry(&self) -> &Arc<LiveRegistry> {
        &self.registry
    }

    /// The origin's router.
    pub fn router(&self) -> &Router {
        &self.router
    }

    /// Connects a publisher now: handshake, `connect`, `createStream`,
    /// `publish` (accepted when `<app>/<key>` is a valid stream path), then
    /// `onMetaData` and the sequence headers; the plan's tags follow at
    /// their times, from now on.
    pub fn publish(&mut self, plan: Plan) -> PubId {
        let now = self.now_ms();
        let client = ClientSession::new(ClientConfig {
            app: plan.app.clone(),
            tc_url: format!("rtmp://sim/{}", plan.app),
            stream_key: plan.key.clone(),
            chunk_size: CLIENT_CHUNK_SIZE,
            seed: plan.seed,
        });
        let queue = plan
            .tags()
            .into_iter()
            .map(|mut t| {
                t.at_ms += now;
                t
            })
            .collect();
        let id = PubId(self.conns.len());
        self.conns.push(Conn {
            rng: Rng::new(plan.seed ^ 0xc0ff_ee00),
            origin_ms: now,
            client,
            server: ServerSession::new(self.config.session.clone()),
            queue,
            sent: Vec::new(),
            publishing: None,
            open: true,
            client_events: Vec::new(),
            errors: Vec::new(),
            gone: None,
            gone_at_ms: 0,
            plan,
        });
        self.exchange(id.0);
        let c = &mut self.conns[id.0];
        if c.client.is_publishing() {
            // What encoders send right after `NetStream.Publish.Start`.
            let ts = c.plan.rtmp_start_ts;
            c.client.send_metadata(c.plan.metadata()).unwrap();
            c.client
                .send_video(ts, &publisher::video_sequence_header())
                .unwrap();
            if c.plan.audio {
                c.client
                    .send_audio(ts, &publisher::audio_sequence_header())
                    .unwrap();
            }
            self.exchange(id.0);
        }
        self.pump();
        id
    }

    /// Whether the server accepted the publish and the connection is open.
    pub fn is_publishing(&self, id: PubId) -> bool {
        let c = &self.conns[id.0];
        c.open && c.client.is_publishing()
    }

    /// What the client heard from the server.
    pub fn client_events(&self, id: PubId) -> &[ClientEvent] {
        &self.conns[id.0].client_events
    }

    /// The tags sent so far (`at_ms` in simulated time).
    pub fn sent(&self, id: PubId) -> &[Tag] {
        &self.conns[id.0].sent
    }

    /// Simulated time of media time 0 of `id`'s plan.
    pub fn origin_ms(&self, id: PubId) -> i64 {
        self.conns[id.0].origin_ms
    }

    /// Drops the connection now, as a killed encoder does (no
    /// `FCUnpublish`): the stream waits for its grace period.
    pub fn disconnect(&mut self, id: PubId) {
        let now = self.now_ms();
        self.conns[id.0].close(None, now);
        self.pump();
    }

    /// Ends the publish politely now (`FCUnpublish`, `deleteStream`), then
    /// closes the connection.
    pub fn unpublish(&mut self, id: PubId) {
        self.conns[id.0].client.unpublish();
        self.exchange(id.0);
        let now = self.now_ms();
        self.conns[id.0].close(None, now);
        self.pump();
    }

    /// Moves bytes both ways until neither side has more: client output in
    /// the plan's reads to the server, the server's events handled after
    /// each read (and the packagers pumped), the server's output back.
    fn exchange(&mut self, ci: usize) {
        let now = self.now_ms();
        loop {
            let c = &mut self.conns[ci];
            if !c.open {
                return;
            }
            let mut wire = BytesMut::new();
            while let Some(b) = c.client.poll_output() {
                wire.extend_from_slice(&b);
            }
            let mut progressed = !wire.is_empty();
            self.deliver(ci, &wire);
            let c = &mut self.conns[ci];
            let mut back = BytesMut::new();
            while let Some(b) = c.server.poll_output() {
                back.extend_from_slice(&b);
            }
            if !back.is_empty() && !c.client.is_closed() {
                progressed = true;
                if let Err(e) = c.client.handle_input(&back) {
                    c.errors.push(format!("client: {e}"));
                }
            }
            while let Some(e) = c.client.poll_event() {
                c.client_events.push(e);
            }
            if c.server.is_closed() && c.open {
                // Refused (or a peer error, already recorded).
                c.close(None, now);
            }
            if !progressed {
                return;
            }
        }
    }

    /// `wire` reaches the server, in the plan's reads.
    fn deliver(&mut self, ci: usize, wire: &[u8]) {
        let now = self.now_ms();
        let reads = self.conns[ci].cut(wire);
        for r in reads {
            let c = &mut self.conns[ci];
            if !c.open || c.server.is_closed() {
                return;
            }
            let input = c.server.handle_input(&wire[r]);
            let events = c.handle_events(&self.hub);
            match (input, events) {
                (Ok(()), Ok(())) => {}
                (Err(e), _) => c.close(Some(format!("session: {e}")), now),
                (_, Err(e)) => c.close(Some(format!("ingest: {e}")), now),
            }
            self.pump();
        }
    }

    /// Sends every tag due now.
    fn send_due(&mut self, ci: usize) {
        let now = self.now_ms();
        let c = &mut self.conns[ci];
        if !c.open || !c.client.is_publishing() {
            return;
        }
        let mut wire = BytesMut::new();
        while c.queue.front().is_some_and(|t| t.at_ms <= now) {
            let Some(tag) = c.queue.pop_front() else {
                break;
            };
            let ts = c.plan.rtmp_start_ts.wrapping_add(tag.ts_ms as u32);
            let video = matches!(tag.kind, TagKind::Video { .. });
            if c.plan.absolute_timestamps {
                while let Some(b) = c.client.poll_output() {
                    wire.extend_from_slice(&b);
                }
                // A fresh encoder writes a type 0 header: the absolute
                // timestamp, as some encoders send every message.
                let mut enc = ChunkEncoder::new();
                enc.set_chunk_size(CLIENT_CHUNK_SIZE);
                let (csid, ty) = if video {
                    (ABS_CSID_VIDEO, msg_type::VIDEO)
                } else {
                    (ABS_CSID_AUDIO, msg_type::AUDIO)
                };
                enc.write(csid, ts, ty, PUBLISH_STREAM_ID, &tag.body, &mut wire);
            } else {
                let r = if video {
                    c.client.send_video(ts, &tag.body)
                } else {
                    c.client.send_audio(ts, &tag.body)
                };
                r.unwrap();
            }
            c.sent.push(tag);
        }
        while let Some(b) = c.client.poll_output() {
            wire.extend_from_slice(&b);
        }
        self.deliver(ci, &wire);
        self.exchange(ci);
    }

    /// What the packaging tasks do now: new streams get a packager, every
    /// packager takes what its reader has.
    fn pump(&mut self) {
        let now = self.now_ms();
        let unix = self.clock.unix_ms();
        for name in self.hub.stream_names() {
            if self
                .packagers
                .iter()
                .any(|p| !p.done && p.life.stream == name)
            {
                continue;
            }
            let Some(reader) = self.hub.subscribe_existing(&name) else {
                continue;
            };
            // As package_hub: the start in unix ms, above the last life's.
            let session = u64::try_from(unix).unwrap_or(0).max(
                self.registry
                    .get(&name)
                    .map_or(0, |old| old.session().saturating_add(1)),
            );
            let live = Arc::new(LiveStream::with_session(
                self.config.packager.live.clone(),
                session,
            ));
            self.registry.insert(&name, live.clone());
            let observer = self
                .config
                .packager
                .observer
                .as_ref()
                .and_then(|f| f.observe(&name));
            self.packagers.push(Packager {
                reader,
                segmenter: Segmenter::new(self.config.packager.segmenter.clone()),
                observer,
                life: Life {
                    stream: name,
                    live,
                    parts: BTreeMap::new(),
                    segments: BTreeMap::new(),
                    hints: Vec::new(),
                    ended_ms: None,
                    flushes: 0,
                    errors: Vec::new(),
                    stats: SegmenterStats::default(),
                },
                last_event_ms: now,
                done: false,
                removed: false,
            });
        }
        for p in &mut self.packagers {
            while !p.done {
                let Some(event) = p.reader.try_next() else {
                    if p.reader.is_done() {
                        // The stream is gone without an End.
                        p.push(MediaEvent::End, now, unix);
                    }
                    break;
                };
                p.push(event, now, unix);
            }
        }
    }

    /// The timed work due now: idle flushes, grace ends, the linger.
    fn timers(&mut self) {
        let now = self.now_ms();
        let unix = self.clock.unix_ms();
        let idle = self.idle_ms();
        for p in &mut self.packagers {
            if !p.done && now - p.last_event_ms >= idle {
                p.life.flushes += 1;
                if let Err(e) = p.segmenter.flush(unix) {
                    p.life.errors.push(format!("flush: {e}"));
                }
                p.drain(now);
                p.last_event_ms = now;
            }
        }
        if let Some(grace) = self.config.publisher_grace_ms {
            for c in &mut self.conns {
                if now >= c.gone_at_ms.saturating_add(grace)
                    && let Some(mut p) = c.gone.take()
                {
                    // Ends the stream unless another publisher attached
                    // since; with no grace left in the hub it is ready now.
                    let _ = futures_util::FutureExt::now_or_never(ugc_core::Sink::finish(&mut p));
                }
            }
        }
        self.pump();
        let linger = self.linger_ms();
        for p in &mut self.packagers {
            if let Some(end) = p.life.ended_ms
                && !p.removed
                && now >= end + linger
            {
                p.removed = true;
                self.registry.remove_if_same(&p.life.stream, &p.life.live);
            }
        }
    }

    fn idle_ms(&self) -> i64 {
        2 * i64::from(self.config.packager.segmenter.target_duration_ms.max(1))
    }

    fn linger_ms(&self) -> i64 {
        i64::try_from(self.config.packager.linger.as_millis()).unwrap_or(i64::MAX)
    }

    /// The next instant with work, after now.
    fn next_wakeup(&self) -> i64 {
        let mut next = i64::MAX;
        for c in &self.conns {
            if c.open
                && let Some(t) = c.queue.front()
            {
                next = next.min(t.at_ms);
            }
        }
        let idle = self.idle_ms();
        let linger = self.linger_ms();
        for p in &self.packagers {
            if !p.done {
                next = next.min(p.last_event_ms + idle);
            }
            if let Some(end) = p.life.ended_ms
                && !p.removed
            {
                next = next.min(end.saturating_add(linger));
            }
        }
        if let Some(grace) = self.config.publisher_grace_ms {
            for c in &self.conns {
                if c.gone.is_some() {
                    next = next.min(c.gone_at_ms.saturating_add(grace));
                }
            }
        }
        next
    }

    /// Lets every task woken so far run (held requests answer) without
    /// moving the clock.
    pub async fn settle(&self) {
        for _ in 0..16 {
            tokio::task::yield_now().await;
        }
    }

    /// Runs the simulation until simulated time `t_ms`: at each instant
    /// with work (tags due, timers), tokio's clock is advanced to it (timers
    /// of held requests fire), the work is done, and woken tasks run.
    pub async fn run_until(&mut self, t_ms: i64) {
        loop {
            let now = self.now_ms();
            let at = self.next_wakeup().min(t_ms).max(now);
            if at > now {
                // Sleeping (not `advance`) lets tokio's auto-advance stop at
                // every timer before `at`: a held request's hold expires at
                // its own instant, not at ours.
                let deadline = self.clock.start + Duration::from_millis(at as u64);
                tokio::time::sleep_until(deadline).await;
            }
            for ci in 0..self.conns.len() {
                self.send_due(ci);
            }
            self.timers();
            self.settle().await;
            if at >= t_ms {
                return;
            }
        }
    }

    /// [`Self::run_until`] `ms` from now.
    pub async fn run_for(&mut self, ms: i64) {
        let t = self.now_ms() + ms;
        self.run_until(t).await;
    }

    /// Runs until every open publisher has sent its whole plan.
    pub async fn run_plans(&mut self) {
        let last = self
            .conns
            .iter()
            .filter(|c| c.open)
            .filter_map(|c| c.queue.back().map(|t| t.at_ms))
            .max();
        if let Some(t) = last {
            self.run_until(t).await;
        }
    }

    fn path(stream: &str) -> StreamPath {
        StreamPath::parse(stream).unwrap_or_else(|e| panic!("{stream}: {e}"))
    }

    /// Every life of `stream` (`"live/cam"`), oldest first.
    pub fn lives(&self, stream: &str) -> Vec<&Life> {
        let path = Self::path(stream);
        self.packagers
            .iter()
            .filter(|p| p.life.stream == path)
            .map(|p| &p.life)
            .collect()
    }

    /// The newest life of `stream`.
    pub fn life(&self, stream: &str) -> &Life {
        self.lives(stream)
            .pop()
            .unwrap_or_else(|| panic!("{stream} was never packaged"))
    }

    /// GET `uri` from the origin; awaits the whole answer (time moves
    /// only as far as the origin's own timers take it).
    pub async fn get(&self, uri: &str) -> Resp {
        http::get(&self.router, &self.clock, uri).await
    }

    /// GET `uri` in a task of its own, answered while the simulation runs.
    pub fn spawn_get(&self, uri: &str) -> tokio::task::JoinHandle<Resp> {
        let (router, clock, uri) = (self.router.clone(), self.clock.clone(), uri.to_owned());
        tokio::spawn(async move { http::get(&router, &clock, &uri).await })
    }

    /// [`Self::spawn_get`] as client `from` (its peer address).
    pub fn spawn_get_from(
        &self,
        uri: &str,
        from: std::net::SocketAddr,
    ) -> tokio::task::JoinHandle<Resp> {
        let (router, clock, uri) = (self.router.clone(), self.clock.clone(), uri.to_owned());
        tokio::spawn(async move { http::get_from(&router, &clock, &uri, Some(from)).await })
    }

    /// Panics if a connection or a segmenter reported an error.
    pub fn assert_clean(&self) {
        for (i, c) in self.conns.iter().enumerate() {
            assert!(c.errors.is_empty(), "connection {i}: {:?}", c.errors);
        }
        for p in &self.packagers {
            assert!(
                p.life.errors.is_empty(),
                "{}: {:?}",
                p.life.stream,
                p.life.errors
            );
        }
    }

    /// Errors of connection `id`.
    pub fn errors(&self, id: PubId) -> &[String] {
        &self.conns[id.0].errors
    }
}

impl Packager {
    /// One event into the segmenter, as `run_packager` does.
    fn push(&mut self, event: MediaEvent, now: i64, unix: i64) {
        self.last_event_ms = now;
        let end = matches!(event, MediaEvent::End);
        if let Err(e) = self.segmenter.push(event, unix) {
            self.life.errors.push(e.to_string());
        }
        self.drain(now);
        if end {
            self.life.live.set_ended();
            self.life.ended_ms = Some(now);
            self.done = true;
        }
    }

    fn drain(&mut self, now: i64) {
        let mut outputs = Vec::new();
        while let Some(out) = self.segmenter.poll() {
            match &out {
                SegmenterOutput::Part { msn, part } => {
                    self.life.parts.insert((*msn, part.index), now);
                }
                SegmenterOutput::Segment(seg) => {
                    self.life.segments.insert(seg.msn, now);
                }
                SegmenterOutput::PreloadHint { msn, part } => {
                    self.life.hints.push((now, (*msn, *part)));
                }
                _ => {}
            }
            if let Some(o) = self.observer.as_mut() {
                o.on_output(&out, true);
            }
            outputs.push(out);
        }
        self.life.stats = self.segmenter.stats().clone();
        self.life.live.apply_all(outputs, now);
    }
}
