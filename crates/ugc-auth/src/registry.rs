//! The node registry of a platform of several machines, and the placement
//! of publishers and viewers on its nodes.
//!
//! Every media node (`ugc-publish`, `ugc-transcode`, `ugc-origin`) sends
//! `POST /api/v1/node/heartbeat` (node token) every two seconds with its
//! role, URLs, capacity, load and streams ([`NodeBeat`]); the first beat
//! registers it and a node that restarts simply beats again. The control
//! plane upserts one row per node, stamped by the database's clock, so
//! liveness is judged on one clock even with several control planes on
//! one PostgreSQL. `GET /api/v1/nodes` (admin) lists them with a state:
//! `live`, `draining` (it asked for no new work) or `down` (no beat for
//! [`ControlConfig::node_down_after`](crate::ControlConfig), 6 s by
//! default: three missed beats).
//!
//! Placement: the publish URLs a stream answer carries point at a live
//! publishing node, the one already carrying the stream with its main
//! publisher, else the one the stream was placed on (sticky while that
//! node lives), else the least loaded. The backup publisher's URLs point
//! at another live publishing node when there is one (a second publishing
//! point, sticky too), which beats that it stands by for the stream
//! ([`NodeBeat::standby`]). Load is the streams a node reports plus the streams placed on
//! it in the last [`PENDING`] that it does not report yet (so a burst of
//! new streams spreads instead of piling on the node that was idle at the
//! last beat), over its capacity. Play URLs point at the live origin with
//! the fewest viewers, preferring one that carries the stream: the viewers
//! its beats count plus those sent there lately ([`VIEWER_PICK_DECAY`]:
//! a burst of new viewers spreads, and players that send no beacons are
//! spread too), then the lowest egress. With no node registered, the
//! control plane's own [`PublicUrls`] answer, as on a single machine.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::api::ApiError;
use crate::error::{Error, Result};
use crate::{ControlPlane, PublicUrls};

/// How long a placement counts as load on its node before the node's own
/// beats must show the stream.
pub const PENDING: Duration = Duration::from_secs(10);

/// The beat interval the control plane asks for.
pub const BEAT_INTERVAL: Duration = Duration::from_secs(2);

/// Streams a node with no declared capacity is assumed to hold.
const DEFAULT_CAPACITY: u32 = 100;

/// Longest heartbeat body accepted, and longest answer read (a
/// transcoder's answer lists its leases: about 90 bytes each).
const MAX_BEAT: usize = 1024 * 1024;

/// What a media node does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeRole {
    /// Takes RTMP, SRT and WHIP from publishers.
    Publish,
    /// Makes the ladder.
    Transcode,
    /// Records and serves HLS to viewers and edges.
    Origin,
    /// Every role in one process (`ugc-server` as a node).
    All,
}

impl NodeRole {
    /// The role's name in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeRole::Publish => "publish",
            NodeRole::Transcode => "transcode",
            NodeRole::Origin => "origin",
            NodeRole::All => "all",
        }
    }

    fn parse(s: &str) -> Option<NodeRole> {
        serde_json::from_value(serde_json::Value::String(s.to_owned())).ok()
    }

    fn takes_publishers(self) -> bool {
        matches!(self, NodeRole::Publish | NodeRole::All)
    }

    pub(crate) fn serves_viewers(self) -> bool {
        matches!(self, NodeRole::Origin | NodeRole::All)
    }
}

/// A node's load at one beat.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeLoad {
    /// Streams it carries now.
    #[serde(default)]
    pub streams: u32,
    /// Its process's CPU use as a fraction of the machine (0..=1).
    #[serde(default)]
    pub cpu: f64,
    /// Bytes per second it sends (viewers, relay, restreams).
    #[serde(default)]
    pub egress_bps: u64,
}

/// The body of `POST /api/v1/node/heartbeat`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeBeat {
    /// Stable across restarts: `[A-Za-z0-9._-]{1,64}`.
    pub id: String,
    /// What it does.
    pub role: NodeRole,
    /// Its HTTP base, `http://host:port`, as other nodes reach it (relay,
    /// origins' HLS).
    pub url: String,
    /// Addresses publishers and viewers are told to use on this node.
    #[serde(default)]
    pub public: Option<PublicUrls>,
    /// Streams it takes at most (0: not declared).
    #[serde(default)]
    pub capacity: u32,
    /// Its load.
    #[serde(default)]
    pub load: NodeLoad,
    /// The Hub streams it carries (`live/news`, `live/news/720p`).
    #[serde(default)]
    pub streams: Vec<String>,
    /// Those of `streams` it carries for a backup publisher alone (no main
    /// publisher attached here): a publishing node standing by for the
    /// stream's main node. Main publish URLs avoid it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub standby: Vec<String>,
    /// Those of `streams` on their fallback alone (no publisher attached:
    /// one dropped and the node loops its fallback for the publisher
    /// grace). Still carried, so still a transcode job (the fallback goes
    /// through the ladder like live), but not live.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fallback: Vec<String>,
    /// It asks for no new work (it is being taken out of service).
    #[serde(default)]
    pub draining: bool,
    /// A transcoder's priority for transcode leases: the live transcoders
    /// of the highest one share the jobs (a main over its standby).
    #[serde(default)]
    pub priority: i32,
    /// An origin that carries streams on demand only (`--balance pull`):
    /// no node pushes to it; it pulls a stream from an origin that carries
    /// it when a viewer asks ([`crate::balance`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pulls: bool,
    /// The counters of the published streams it carries (no renditions),
    /// for the control plane's charts of each stream's last minutes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stats: Vec<StreamStat>,
    /// The timeline id (`ugc_core::Hub::live_timeline`) of each published
    /// stream its Hub holds with media and whose end did not come, a
    /// publisher gone within its grace included: a main publisher that
    /// arrives at another publishing node goes on with it (see
    /// `POST /api/v1/node/publish`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub timelines: BTreeMap<String, u64>,
}

/// One stream's counters on a node, as its beat carries them (see
/// `ugc_core::history`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamStat {
    /// The Hub stream (`live/news`).
    pub stream: String,
    /// Payload bytes accepted from its publishers so far.
    #[serde(default)]
    pub bytes_in: u64,
    /// Frames accepted from its publishers so far.
    #[serde(default)]
    pub frames_in: u64,
    /// Slow readers' skips to a keyframe so far.
    #[serde(default)]
    pub skips: u64,
    /// The source viewers get: 0 main, 1 backup, 2 fallback.
    #[serde(default)]
    pub source: u8,
    /// Its HLS viewers here, where this node counts them (an origin).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub viewers: Option<u32>,
}

impl NodeBeat {
    /// A beat the registry accepts: a well-formed id and URL, at most 10,000
    /// streams.
    pub fn check(&self) -> Result<()> {
        let id_ok = !self.id.is_empty()
            && self.id.len() <= 64
            && self
                .id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !id_ok {
            return Err(Error::Invalid {
                field: "id",
                reason: "want [A-Za-z0-9._-]{1,64}".into(),
            });
        }
        let uri: hyper::Uri = self.url.parse().map_err(|_| Error::Invalid {
            field: "url",
            reason: "want http://host:port".into(),
        })?;
        if uri.scheme_str() != Some("http") || uri.host().is_none() || self.url.len() > 256 {
            return Err(Error::Invalid {
                field: "url",
                reason: "want http://host:port".into(),
            });
        }
        let names = |v: &[String]| v.len() > 10_000 || v.iter().any(|s| s.len() > 256);
        if names(&self.streams)
            || names(&self.standby)
            || names(&self.fallback)
            || self.stats.len() > 10_000
            || self.stats.iter().any(|s| s.stream.len() > 256)
            || self.timelines.len() > 10_000
            || self.timelines.keys().any(|s| s.len() > 256)
        {
            return Err(Error::Invalid {
                field: "streams",
                reason: "at most 10,000 names of at most 256 bytes".into(),
            });
        }
        if self.public.as_ref().is_some_and(|p| {
            p.host.len() > 253 || p.http_base.as_ref().is_some_and(|b| b.len() > 256)
        }) {
            return Err(Error::Invalid {
                field: "public",
                reason: "host of at most 253 bytes, base of at most 256".into(),
            });
        }
        if !self.load.cpu.is_finite() {
            return Err(Error::Invalid {
                field: "load.cpu",
                reason: "not a number".into(),
            });
        }
        Ok(())
    }
}

/// A node's state, judged by the database clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    /// Beating and taking work.
    Live,
    /// Beating, asks for no new work.
    Draining,
    /// No beat for longer than the down threshold.
    Down,
}

/// One node as `GET /api/v1/nodes` answers it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeView {
    /// Node id.
    pub id: String,
    /// What it does.
    pub role: NodeRole,
    /// Its HTTP base URL.
    pub url: String,
    /// Live, draining or down.
    pub state: NodeState,
    /// Its load at the last beat.
    pub load: NodeLoad,
    /// Streams it carried at the last beat.
    pub streams: Vec<String>,
    /// Those it carried for a backup publisher alone ([`NodeBeat::standby`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub standby: Vec<String>,
    /// Those it carried on their fallback alone ([`NodeBeat::fallback`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fallback: Vec<String>,
    /// Streams it takes at most (0: not declared).
    pub capacity: u32,
    /// Its public addresses, if it declared them.
    pub public: Option<PublicUrls>,
    /// Last beat, unix milliseconds (database clock).
    pub last_seen: i64,
    /// Milliseconds since the last beat.
    pub age_ms: i64,
    /// First registration, unix seconds.
    pub registered_at: i64,
    /// Its priority for transcode leases.
    #[serde(default)]
    pub priority: i32,
    /// It carries streams on demand only ([`NodeBeat::pulls`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pulls: bool,
    /// The transcode leases it holds now (filled by `GET /api/v1/nodes`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub leases: Vec<HeldLease>,
    /// Its streams' counters at the last beat ([`NodeBeat::stats`]; not
    /// in `GET /api/v1/nodes`).
    #[serde(default, skip_serializing)]
    pub stats: Vec<StreamStat>,
    /// Its streams' timelines at the last beat ([`NodeBeat::timelines`];
    /// not in `GET /api/v1/nodes`).
    #[serde(default, skip_serializing)]
    pub timelines: BTreeMap<String, u64>,
}

/// A transcode lease a node holds, as `GET /api/v1/nodes` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldLease {
    /// The Hub stream (`live/news`).
    pub stream: String,
    /// Its epoch (grows on every claim).
    pub epoch: i64,
    /// Milliseconds until it ends unless renewed.
    pub expires_in_ms: i64,
}

/// Puts each unexpired lease of `rows` on its holder in `nodes` (the
/// database clock now is a node's `last_seen + age_ms`).
pub fn attach_leases(nodes: &mut [NodeView], rows: &[crate::store::LeaseRow]) {
    let Some(now) = nodes.first().map(|n| n.last_seen.saturating_add(n.age_ms)) else {
        return;
    };
    for n in nodes.iter_mut() {
        n.leases = rows
            .iter()
            .filter(|r| r.node_id == n.id && r.expires_ms > now)
            .map(|r| HeldLease {
                stream: r.stream.clone(),
                epoch: r.epoch,
                expires_in_ms: r.expires_ms.saturating_sub(now),
            })
            .collect();
    }
}

impl NodeView {
    pub(crate) fn usable(&self) -> bool {
        self.state == NodeState::Live && self.public.is_some()
    }

    pub(crate) fn carries(&self, stream: &str) -> bool {
        self.streams.iter().any(|s| s == stream)
    }

    /// Carries `stream` with a publisher (not on its fallback alone).
    fn publishes(&self, stream: &str) -> bool {
        self.carries(stream) && !self.fallback.iter().any(|s| s == stream)
    }

    /// Carries `stream` with its main publisher, or on its fallback after
    /// it dropped (not only standing by): where the main publisher goes
    /// back to.
    fn carries_main(&self, stream: &str) -> bool {
        self.carries(stream) && !self.standby.iter().any(|s| s == stream)
    }

    /// How this node carries `stream`, best first: `None` when it does
    /// not; else 0 with its main publisher, 1 with a backup publisher alone
    /// (standing by), 2 on its fallback alone. A publisher that moved to
    /// another node leaves its old node on the slate for the grace: the
    /// node with the publisher is the stream's source.
    pub(crate) fn carrying_rank(&self, stream: &str) -> Option<u8> {
        if !self.carries(stream) {
            return None;
        }
        let listed = |v: &[String]| v.iter().any(|s| s == stream);
        Some(if listed(&self.fallback) {
            2
        } else if listed(&self.standby) {
            1
        } else {
            0
        })
    }

    /// [`carrying_rank`](Self::carrying_rank) behind whether the node's
    /// last beat is older than [`STALE_BEAT_MS`]: a node killed a moment
    /// ago still reads live (until the down threshold, 10 s) with the
    /// streams of its last beat, while their publishers have reconnected
    /// elsewhere; the fresh node that has them now comes first.
    pub(crate) fn source_rank(&self, stream: &str) -> Option<(bool, u8)> {
        Some((self.age_ms > STALE_BEAT_MS, self.carrying_rank(stream)?))
    }
}

/// A node's beat older than this (one and a half of a publishing node's
/// 2 s interval) makes it stale for choosing where a stream is: the
/// source of its transcode lease, where its publisher goes back to.
pub(crate) const STALE_BEAT_MS: i64 = 3_000;

/// The Hub stream of control-plane stream `name`, as nodes report it
/// (empty, matching nothing, for a name that is not one).
fn hub_name(name: &str) -> String {
    ugc_core::StreamPath::live(name).map_or_else(|_| String::new(), |p| p.to_string())
}

/// Placements of streams on publishing nodes, in memory: a stream keeps
/// its node while the node lives, and its backup publisher's node (another
/// one when there are two) too.
#[derive(Debug, Default)]
pub(crate) struct Placements {
    by_stream: Mutex<HashMap<String, (String, Instant)>>,
    backup_by_stream: Mutex<HashMap<String, (String, Instant)>>,
}

/// Where a stream's publishers are sent: [`ControlPlane::publish_points`].
#[derive(Debug, Clone)]
pub struct PublishPoints {
    /// The main publisher's node (the control plane's own addresses when
    /// no publishing node is live).
    pub main: PublicUrls,
    /// The main node's registry entry (its id and relay URL), if any.
    pub main_node: Option<NodeView>,
    /// The backup publisher's: another live publishing node when there is
    /// one (a second publishing point), else the main's.
    pub backup: PublicUrls,
}

/// Streams placed in the last [`PENDING`] per node that the node does not
/// report yet.
fn pending(
    placed: &HashMap<String, (String, Instant)>,
    nodes: &[NodeView],
) -> HashMap<String, u32> {
    let now = Instant::now();
    let mut pending: HashMap<String, u32> = HashMap::new();
    for (stream, (id, at)) in placed {
        let other = hub_name(stream);
        let reported = nodes.iter().any(|n| n.carries(&other));
        if now.duration_since(*at) < PENDING && !reported {
            *pending.entry(id.clone()).or_default() += 1;
        }
    }
    pending
}

/// The least-loaded node of `candidates`: (reported streams + pending
/// placements) over capacity, then CPU, then id.
fn least_loaded<'a>(
    candidates: impl Iterator<Item = &'a NodeView>,
    pending: &HashMap<String, u32>,
) -> Option<&'a NodeView> {
    let score = |n: &NodeView| {
        let held = n
            .load
            .streams
            .saturating_add(pending.get(n.id.as_str()).copied().unwrap_or(0));
        let cap = if n.capacity == 0 {
            DEFAULT_CAPACITY
        } else {
            n.capacity
        };
        ((f64::from(held) + 1.0) / f64::from(cap), 0)
    };
    lowest(candidates, score)
}

/// The node of `candidates` with the lowest `score` (a load, then a
/// tie-break), then the lowest CPU, then id.
fn lowest<'a>(
    candidates: impl Iterator<Item = &'a NodeView>,
    score: impl Fn(&NodeView) -> (f64, u64),
) -> Option<&'a NodeView> {
    candidates.min_by(|a, b| {
        let ((la, ta), (lb, tb)) = (score(a), score(b));
        la.total_cmp(&lb)
            .then(ta.cmp(&tb))
            .then(a.load.cpu.total_cmp(&b.load.cpu))
            .then(a.id.cmp(&b.id))
    })
}

/// How fast the viewers sent to an origin ([`ControlPlane::play_node`])
/// stop counting as its load, on top of the viewers its beats count: a
/// weight that decays with this time constant. A player's first beacon
/// reaches the origin's count within seconds and the control plane a beat
/// later; a player that sends none is never counted, so its pick is its
/// only trace, and arrivals alternate over tens of seconds.
pub const VIEWER_PICK_DECAY: Duration = Duration::from_secs(20);

/// The viewers sent to each origin lately: a weight per node, decaying with
/// [`VIEWER_PICK_DECAY`] (bounded: one entry per node picked, dropped once
/// it has decayed to nothing).
#[derive(Debug, Default)]
pub(crate) struct ViewerPicks(Mutex<HashMap<String, (Instant, f64)>>);

impl ViewerPicks {
    fn decayed(at: Instant, weight: f64, now: Instant) -> f64 {
        let age = now.saturating_duration_since(at).as_secs_f64();
        weight * (-age / VIEWER_PICK_DECAY.as_secs_f64()).exp()
    }

    fn weights(&self, now: Instant) -> HashMap<String, f64> {
        let picks = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        picks
            .iter()
            .map(|(id, &(at, w))| (id.clone(), Self::decayed(at, w, now)))
            .collect()
    }

    fn add(&self, id: &str, now: Instant) {
        let mut picks = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        picks.retain(|_, &mut (at, w)| Self::decayed(at, w, now) > 0.01);
        let (at, w) = picks.entry(id.to_owned()).or_insert((now, 0.0));
        *w = Self::decayed(*at, *w, now) + 1.0;
        *at = now;
    }
}

/// The origin of `candidates` a new viewer goes to: the fewest viewers
/// (those its beats count plus `picks`, those sent there lately), then
/// the lowest egress, CPU, id.
fn least_viewed<'a>(
    candidates: impl Iterator<Item = &'a NodeView>,
    picks: &HashMap<String, f64>,
) -> Option<&'a NodeView> {
    let score = |n: &NodeView| {
        let counted = n
            .stats
            .iter()
            .filter_map(|s| s.viewers)
            .fold(0u32, u32::saturating_add);
        let viewers = f64::from(counted) + picks.get(&n.id).copied().unwrap_or(0.0);
        (viewers, n.load.egress_bps)
    };
    lowest(candidates, score)
}

impl ControlPlane {
    /// Every registered node with its state, by id.
    pub async fn nodes(&self) -> Result<Vec<NodeView>> {
        let (now_ms, rows) = self.inner.store.nodes().await?;
        let down_ms = i64::try_from(self.inner.node_down_after.as_millis()).unwrap_or(i64::MAX);
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let beat: NodeBeat = serde_json::from_str(&r.info).map_err(|e| Error::Corrupt {
                table: "nodes",
                reason: format!("info of {}: {e}", r.id),
            })?;
            // A node is judged by the beats this process could hear: one
            // that beat before a restart of the control plane has the
            // down time from the restart on to beat again (else a restart
            // longer than `node_down_after` would mark every node down and
            // hand their streams and leases to others).
            let heard_from = r.last_seen_ms.max(self.inner.started_ms.min(now_ms));
            let age_ms = now_ms.saturating_sub(heard_from).max(0);
            let state = if age_ms > down_ms {
                NodeState::Down
            } else if beat.draining {
                NodeState::Draining
            } else {
                NodeState::Live
            };
            out.push(NodeView {
                id: r.id,
                role: NodeRole::parse(&r.role).unwrap_or(beat.role),
                url: r.url,
                state,
                load: beat.load,
                streams: beat.streams,
                standby: beat.standby,
                fallback: beat.fallback,
                capacity: beat.capacity,
                public: beat.public,
                last_seen: r.last_seen_ms,
                age_ms,
                registered_at: r.registered_at,
                priority: beat.priority,
                pulls: beat.pulls,
                leases: Vec::new(),
                stats: beat.stats,
                timelines: beat.timelines,
            });
        }
        Ok(out)
    }

    /// Records a node's heartbeat.
    pub async fn node_beat(&self, beat: &NodeBeat) -> Result<()> {
        beat.check()?;
        let info = serde_json::to_string(beat).map_err(|e| Error::Invalid {
            field: "beat",
            reason: e.to_string(),
        })?;
        let now = i64::try_from(crate::util::unix_now()).unwrap_or(i64::MAX);
        self.inner
            .store
            .node_beat(&beat.id, beat.role.as_str(), &beat.url, &info, now)
            .await
    }

    /// The addresses a publisher of stream `name` is told, given the
    /// registry `nodes`; `place` records the choice (sticky for the
    /// stream, counted as load for [`PENDING`]). The control plane's own
    /// addresses when no publishing node is live.
    pub fn publish_urls(&self, name: &str, nodes: &[NodeView], place: bool) -> PublicUrls {
        let public = |n: &NodeView| n.public.clone().unwrap_or_default();
        self.publish_node(name, nodes, place)
            .map_or_else(|| self.inner.public.clone(), public)
    }

    /// The main publisher's node of stream `name` (see
    /// [`Self::publish_urls`]): the live one carrying it with a main
    /// publisher (or on its fallback, the main one gone), else the one it
    /// was placed on, else the least loaded
    /// (that not standing by for the stream, when another is live).
    pub fn publish_node<'a>(
        &self,
        name: &str,
        nodes: &'a [NodeView],
        place: bool,
    ) -> Option<&'a NodeView> {
        let path = hub_name(name);
        let live = || {
            nodes
                .iter()
                .filter(|n| n.role.takes_publishers() && n.usable())
        };
        // Fresh before stale, with its main publisher before on its
        // fallback alone.
        if let Some(n) = live()
            .filter(|n| n.carries_main(&path))
            .min_by_key(|n| n.source_rank(&path))
        {
            return Some(n);
        }
        // One lock at a time: the backup placement first.
        let standing_by = self.placed(true).get(name).map(|(id, _)| id.clone());
        let mut placed = self.placed(false);
        if let Some((id, _)) = placed.get(name)
            && let Some(n) = live().find(|n| &n.id == id)
        {
            return Some(n);
        }
        let pending = pending(&placed, nodes);
        let n = least_loaded(
            live().filter(|n| Some(&n.id) != standing_by.as_ref() && !n.carries(&path)),
            &pending,
        )
        .or_else(|| least_loaded(live(), &pending))?;
        if place {
            placed.insert(name.to_owned(), (n.id.clone(), Instant::now()));
        }
        Some(n)
    }

    /// Both publishing points of stream `name`: the main's
    /// ([`Self::publish_node`]) and the backup's, on another live
    /// publishing node when there is one (sticky like the main's), so that
    /// the loss of one node leaves the other publisher on air. `place`
    /// records both.
    pub fn publish_points(&self, name: &str, nodes: &[NodeView], place: bool) -> PublishPoints {
        let public = |n: &NodeView| n.public.clone().unwrap_or_default();
        let main_node = self.publish_node(name, nodes, place);
        let main = main_node.map_or_else(|| self.inner.public.clone(), public);
        let Some(main_node) = main_node else {
            return PublishPoints {
                backup: main.clone(),
                main,
                main_node: None,
            };
        };
        let others = || {
            nodes
                .iter()
                .filter(|n| n.role.takes_publishers() && n.usable() && n.id != main_node.id)
        };
        let pending = pending(&self.placed(false), nodes);
        let mut backups = self.placed(true);
        let sticky = backups
            .get(name)
            .and_then(|(id, _)| others().find(|n| &n.id == id));
        let backup_node = sticky.or_else(|| {
            let n = least_loaded(others(), &pending)?;
            if place {
                backups.insert(name.to_owned(), (n.id.clone(), Instant::now()));
            }
            Some(n)
        });
        PublishPoints {
            backup: backup_node.map_or_else(|| main.clone(), public),
            main,
            main_node: Some(main_node.clone()),
        }
    }

    /// The main (`backup: false`) or backup placements, forgetting those
    /// older than a day.
    fn placed(
        &self,
        backup: bool,
    ) -> std::sync::MutexGuard<'_, HashMap<String, (String, Instant)>> {
        let p = &self.inner.placements;
        let mut placed = if backup {
            &p.backup_by_stream
        } else {
            &p.by_stream
        }
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        placed.retain(|_, (_, at)| now.duration_since(*at) < Duration::from_secs(24 * 3600));
        placed
    }

    /// Whether stream `name` has a publisher on a publishing node that is
    /// not down (a control plane without media of its own learns it from
    /// the nodes' beats; see [`ControlPlane::is_live`] for its own Hub).
    pub fn published_on_nodes(&self, name: &str, nodes: &[NodeView]) -> bool {
        let path = hub_name(name);
        nodes
            .iter()
            .any(|n| n.role.takes_publishers() && n.state != NodeState::Down && n.publishes(&path))
    }

    /// Where the control plane's play URLs may point, for the pages' CSP
    /// ([`crate::web::router_with`]): its own public HTTP address and each
    /// live origin's (none when the registry cannot be read).
    pub fn media_origins(&self) -> crate::web::MediaOrigins {
        let cp = self.clone();
        std::sync::Arc::new(move || {
            let cp = cp.clone();
            Box::pin(async move {
                let mut out = vec![cp.inner.public.http()];
                for n in cp.nodes().await.unwrap_or_default() {
                    if n.role.serves_viewers()
                        && n.usable()
                        && let Some(p) = &n.public
                    {
                        out.push(p.http());
                    }
                }
                out
            })
        })
    }

    /// The origin a viewer of stream `name` goes to: of the live origins
    /// carrying the stream (any live origin when none does), the one with
    /// the fewest viewers ([`least_viewed`]). `pick`: a viewer is sent
    /// there now, which counts until its beats do ([`VIEWER_PICK_DECAY`]).
    pub fn play_node<'a>(
        &self,
        name: &str,
        nodes: &'a [NodeView],
        pick: bool,
    ) -> Option<&'a NodeView> {
        let path = hub_name(name);
        let live = || {
            nodes
                .iter()
                .filter(|n| n.role.serves_viewers() && n.usable())
        };
        let now = Instant::now();
        let picks = self.inner.viewer_picks.weights(now);
        let n = least_viewed(live().filter(|n| n.carries(&path)), &picks)
            .or_else(|| least_viewed(live(), &picks))?;
        if pick {
            self.inner.viewer_picks.add(&n.id, now);
        }
        Some(n)
    }

    /// The addresses a viewer of stream `name` is told: those of
    /// [`Self::play_node`] (`pick`: a viewer is sent there now); the
    /// control plane's own when no origin is live.
    pub fn play_urls(&self, name: &str, nodes: &[NodeView], pick: bool) -> PublicUrls {
        match self.play_node(name, nodes, pick) {
            Some(n) => n.public.clone().unwrap_or_default(),
            None => self.inner.public.clone(),
        }
    }
}

/// `POST /api/v1/node/heartbeat` (node or admin token).
pub(crate) async fn heartbeat(
    State(cp): State<ControlPlane>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(e) = crate::provision::node_auth(&cp, &headers).await {
        return e.into_response();
    }
    // axum's default body limit (2 MiB) bounds what was read; a beat is
    // far smaller (10,000 stream names fit).
    if body.len() > MAX_BEAT {
        return ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "heartbeat too large".into())
            .into_response();
    }
    let beat: NodeBeat = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return ApiError::new(StatusCode::BAD_REQUEST, format!("bad JSON: {e}"))
                .into_response();
        }
    };
    if let Err(e) = cp.node_beat(&beat).await {
        return ApiError::from(e).into_response();
    }
    let mut answer = json!({
        "interval_ms": BEAT_INTERVAL.as_millis(),
        "down_after_ms": cp.inner.node_down_after.as_millis(),
    });
    // Transcoders take their jobs from leases unless the topology names
    // them (then publishing nodes push to them and they take what comes).
    if beat.role == NodeRole::Transcode && cp.inner.topology.transcoders.is_empty() {
        match cp.transcode_leases(&beat).await {
            Ok(leases) => {
                answer["leases"] = json!(leases);
                // A third of the lease: two beats may be lost in a row.
                answer["interval_ms"] = json!((cp.inner.lease_ttl / 3).as_millis());
            }
            Err(e) => return ApiError::from(e).into_response(),
        }
    }
    axum::Json(answer).into_response()
}

async fn admin(cp: &ControlPlane, headers: &HeaderMap) -> std::result::Result<(), Response> {
    match crate::api::auth(cp, headers).await {
        Ok(p) if p.admin => Ok(()),
        Ok(_) => {
            Err(ApiError::from(Error::Forbidden("nodes are the admin's".into())).into_response())
        }
        Err(e) => Err(e.into_response()),
    }
}

/// `GET /api/v1/nodes` (admin), each transcoder with the leases it holds.
pub(crate) async fn list_nodes(State(cp): State<ControlPlane>, headers: HeaderMap) -> Response {
    if let Err(r) = admin(&cp, &headers).await {
        return r;
    }
    let listed = async {
        let mut nodes = cp.nodes().await?;
        if nodes.iter().any(|n| n.role == NodeRole::Transcode) {
            attach_leases(&mut nodes, &cp.lease_rows().await?);
        }
        Ok::<_, Error>(nodes)
    };
    match listed.await {
        Ok(nodes) => axum::Json(nodes).into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// Prometheus HTTP service discovery: one target group per registered
/// node (`host:port` of its URL), labelled `node` and `role`, with its
/// registry state and URL as `__meta_ugc_state` / `__meta_ugc_url` for
/// relabelling. Down nodes stay listed, so their `up` reads 0 until an
/// admin forgets them.
pub fn prometheus_targets(nodes: &[NodeView]) -> serde_json::Value {
    let groups: Vec<serde_json::Value> = nodes
        .iter()
        .filter_map(|n| {
            let uri: hyper::Uri = n.url.parse().ok()?;
            let authority = uri.authority()?.as_str().to_owned();
            let state = serde_json::to_value(n.state).ok()?;
            Some(serde_json::json!({
                "targets": [authority],
                "labels": {
                    "node": n.id,
                    "role": n.role.as_str(),
                    "__meta_ugc_state": state,
                    "__meta_ugc_url": n.url,
                },
            }))
        })
        .collect();
    serde_json::Value::Array(groups)
}

/// `GET /api/v1/prometheus/targets` (admin): [`prometheus_targets`] of the
/// registry, for Prometheus' `http_sd_configs`.
pub(crate) async fn prometheus_sd(State(cp): State<ControlPlane>, headers: HeaderMap) -> Response {
    if let Err(r) = admin(&cp, &headers).await {
        return r;
    }
    match cp.nodes().await {
        Ok(nodes) => axum::Json(prometheus_targets(&nodes)).into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// `DELETE /api/v1/nodes/{id}` (admin): forget a node taken out of service.
pub(crate) async fn delete_node(
    State(cp): State<ControlPlane>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(r) = admin(&cp, &headers).await {
        return r;
    }
    match cp.inner.store.delete_node(&id).await {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => ApiError::from(Error::NotFound {
            what: "node",
            id: id.chars().take(64).collect(),
        })
        .into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// The control plane's answer to a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BeatAnswer {
    /// Beat again after this long.
    pub interval: Duration,
    /// A transcoder's leases (the jobs it is to run), when the control
    /// plane leases transcode jobs; `None` otherwise.
    pub leases: Option<Vec<crate::lease::Lease>>,
}

/// A node's side of the registry: sends [`NodeBeat`]s to the control
/// plane at the interval it answers.
#[derive(Debug, Clone)]
pub struct Heartbeat {
    uri: String,
    token: String,
    client: Client<HttpConnector, Full<Bytes>>,
    viewers: Option<std::sync::Arc<ugc_core::viewers::ViewerCounter>>,
}

impl Heartbeat {
    /// Beats to the control plane at `control_url` with the node token.
    pub fn new(control_url: &str, token: &str) -> Heartbeat {
        Heartbeat {
            uri: format!(
                "{}/api/v1/node/heartbeat",
                control_url.trim_end_matches('/')
            ),
            token: token.to_owned(),
            client: Client::builder(TokioExecutor::new()).build(HttpConnector::new()),
            viewers: None,
        }
    }

    /// Beats of [`run_hub`](Self::run_hub) carry each stream's viewers
    /// from `viewers` (an origin's count).
    pub fn with_viewers(
        mut self,
        viewers: Option<std::sync::Arc<ugc_core::viewers::ViewerCounter>>,
    ) -> Heartbeat {
        self.viewers = viewers;
        self
    }

    /// Sends one beat; the interval the control plane asks for.
    pub async fn send(&self, beat: &NodeBeat) -> Result<Duration> {
        Ok(self.send_for_answer(beat).await?.interval)
    }

    /// Sends one beat; the control plane's whole answer.
    pub async fn send_for_answer(&self, beat: &NodeBeat) -> Result<BeatAnswer> {
        let remote = |status: Option<u16>, reason: String| Error::Remote {
            url: self.uri.clone(),
            status,
            reason,
        };
        let body = serde_json::to_vec(beat).map_err(|e| remote(None, e.to_string()))?;
        let req = hyper::Request::post(self.uri.as_str())
            .header(
                hyper::header::AUTHORIZATION,
                format!("Bearer {}", self.token),
            )
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| remote(None, e.to_string()))?;
        let attempt = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| remote(None, e.to_string()))?;
            let status = resp.status();
            let body = Limited::new(resp.into_body(), MAX_BEAT)
                .collect()
                .await
                .map_err(|e| remote(Some(status.as_u16()), e.to_string()))?
                .to_bytes();
            if !status.is_success() {
                let why: String = String::from_utf8_lossy(&body).chars().take(200).collect();
                return Err(remote(
                    Some(status.as_u16()),
                    format!("answered {status}: {why}"),
                ));
            }
            let v: serde_json::Value = serde_json::from_slice(&body)
                .map_err(|e| remote(Some(status.as_u16()), e.to_string()))?;
            let ms = v["interval_ms"].as_u64().unwrap_or(2000).clamp(100, 60_000);
            let leases = match v.get("leases") {
                Some(l) => Some(
                    serde_json::from_value(l.clone())
                        .map_err(|e| remote(Some(status.as_u16()), format!("leases: {e}")))?,
                ),
                None => None,
            };
            Ok(BeatAnswer {
                interval: Duration::from_millis(ms),
                leases,
            })
        };
        tokio::time::timeout(Duration::from_secs(5), attempt)
            .await
            .map_err(|_| remote(None, "timed out".into()))?
    }

    /// Beats forever: `beat()` is asked for the node's current state before
    /// each one. A failed beat is logged and retried at the next interval
    /// (the control plane may restart; media keeps flowing meanwhile).
    pub async fn run(self, beat: impl FnMut() -> NodeBeat + Send) {
        self.run_with(beat, |_| {}).await;
    }

    /// [`run`](Self::run), handing each answer to `answered` (a failed
    /// beat hands nothing: the node keeps what it was last told).
    pub async fn run_with(
        self,
        beat: impl FnMut() -> NodeBeat + Send,
        answered: impl FnMut(&BeatAnswer) + Send,
    ) {
        self.run_waking(beat, answered, None).await;
    }

    /// [`run_with`](Self::run_with); a notification of `wake` brings the
    /// next beat forward (after 100 ms, which gathers a burst into one).
    async fn run_waking(
        self,
        mut beat: impl FnMut() -> NodeBeat + Send,
        mut answered: impl FnMut(&BeatAnswer) + Send,
        wake: Option<std::sync::Arc<tokio::sync::Notify>>,
    ) {
        let mut interval = BEAT_INTERVAL;
        let mut failing = false;
        loop {
            let b = beat();
            match self.send_for_answer(&b).await {
                Ok(a) => {
                    if failing {
                        tracing::info!(node = %b.id, "heartbeat: control plane answers again");
                    }
                    failing = false;
                    interval = a.interval;
                    answered(&a);
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(node = %b.id, error = %e, "heartbeat failed; retrying");
                    }
                    failing = true;
                }
            }
            match &wake {
                Some(w) => {
                    tokio::select! {
                        () = tokio::time::sleep(interval) => {}
                        () = w.notified() => {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
                None => tokio::time::sleep(interval).await,
            }
        }
    }
}

impl Heartbeat {
    /// [`run`](Self::run) for a node whose streams are `hub`'s (those with
    /// a publisher: an encoder, a relay, a transcoder): `template` with its
    /// load and streams filled in at each beat; `egress_total` is the
    /// node's bytes sent so far.
    pub async fn run_hub(
        self,
        template: NodeBeat,
        hub: ugc_core::Hub,
        egress_total: impl Fn() -> u64 + Send,
    ) {
        self.run_hub_with(template, hub, egress_total, |_| {}).await;
    }

    /// [`run_hub`](Self::run_hub), handing each answer to `answered`; a new
    /// stream in the Hub brings the next beat forward.
    pub async fn run_hub_with(
        self,
        template: NodeBeat,
        hub: ugc_core::Hub,
        egress_total: impl Fn() -> u64 + Send,
        answered: impl FnMut(&BeatAnswer) + Send,
    ) {
        // A new stream is told at once, not at the next beat: a leased
        // ladder starts that much sooner.
        let wake = std::sync::Arc::new(tokio::sync::Notify::new());
        let mut watch = hub.watch();
        let woken = wake.clone();
        tokio::spawn(async move {
            while watch.next().await.is_some() {
                woken.notify_one();
            }
        });
        let mut meter = LoadMeter::default();
        let viewers = self.viewers.clone();
        self.run_waking(
            move || {
                let (cpu, egress_bps) = meter.sample(egress_total());
                let carried = hub_streams(&hub, viewers.as_deref(), Instant::now());
                NodeBeat {
                    load: NodeLoad {
                        streams: u32::try_from(carried.streams.len()).unwrap_or(u32::MAX),
                        cpu,
                        egress_bps,
                    },
                    streams: carried.streams,
                    standby: carried.standby,
                    fallback: carried.fallback,
                    stats: carried.stats,
                    timelines: carried.timelines,
                    ..template.clone()
                }
            },
            answered,
            Some(wake),
        )
        .await;
    }
}

/// A node id from its role and address (`publish-10.0.0.5-8081`): stable
/// across restarts, unique per listening port, within the id alphabet.
pub fn default_node_id(role: NodeRole, host: &str, http_port: u16) -> String {
    let host: String = host
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '-' | '_' => c,
            _ => '-',
        })
        .collect();
    let mut id = format!("{}-{host}-{http_port}", role.as_str());
    id.truncate(64);
    id
}

/// CPU use of this process and the rate of a byte counter between two
/// samples, for [`NodeLoad`].
#[derive(Debug)]
pub struct LoadMeter {
    last: Instant,
    cpu_s: f64,
    bytes: u64,
    cores: f64,
}

impl Default for LoadMeter {
    fn default() -> Self {
        LoadMeter {
            last: Instant::now(),
            cpu_s: process_cpu_seconds(),
            bytes: 0,
            cores: std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64),
        }
    }
}

impl LoadMeter {
    /// (CPU fraction of the machine, bytes per second of `bytes_total`)
    /// since the previous sample.
    pub fn sample(&mut self, bytes_total: u64) -> (f64, u64) {
        let now = Instant::now();
        let dt = now.duration_since(self.last).as_secs_f64();
        let cpu_s = process_cpu_seconds();
        let (cpu, bps) = if dt > 0.0 {
            (
                ((cpu_s - self.cpu_s) / dt / self.cores).clamp(0.0, 1.0),
                (bytes_total.saturating_sub(self.bytes) as f64 / dt) as u64,
            )
        } else {
            (0.0, 0)
        };
        self.last = now;
        self.cpu_s = cpu_s;
        self.bytes = bytes_total;
        (cpu, bps)
    }
}

/// What a beat says a Hub carries ([`hub_streams`]).
#[derive(Debug, Default, PartialEq)]
struct Carried {
    streams: Vec<String>,
    standby: Vec<String>,
    fallback: Vec<String>,
    stats: Vec<StreamStat>,
    timelines: BTreeMap<String, u64>,
}

/// The streams of `hub` a beat reports: those with a publisher, and those
/// on their fallback alone (a publisher gone, within its grace: still
/// carried, so their transcode lease holds and the fallback goes through
/// the ladder); not those with readers waiting and nothing attached.
fn hub_streams(
    hub: &ugc_core::Hub,
    viewers: Option<&ugc_core::viewers::ViewerCounter>,
    now: Instant,
) -> Carried {
    use ugc_core::SourceRole;
    let mut out = Carried::default();
    for s in hub.stream_names() {
        if s.rendition().is_none()
            && let Some(id) = hub.live_timeline(&s)
        {
            out.timelines.insert(s.to_string(), id);
        }
        let Some(st) = hub
            .stats(&s)
            .filter(|st| st.publishing || st.sources.contains(&SourceRole::Fallback))
        else {
            continue;
        };
        if !st.publishing {
            out.fallback.push(s.to_string());
        }
        if !st.sources.contains(&SourceRole::Main) && st.sources.contains(&SourceRole::Backup) {
            out.standby.push(s.to_string());
        }
        if s.rendition().is_none() {
            out.stats.push(StreamStat {
                stream: s.to_string(),
                bytes_in: st.bytes_in,
                frames_in: st.frames_in,
                skips: st.reader_skips,
                source: st.active_source as u8,
                viewers: viewers.map(|v| u32::try_from(v.count(&s, now)).unwrap_or(u32::MAX)),
            });
        }
        out.streams.push(s.to_string());
    }
    out
}

/// User + system CPU seconds of this process (`/proc/self/stat` on Linux;
/// 0 elsewhere). Clock ticks are taken as 100 per second, the value of
/// every Linux architecture ugc builds for.
fn process_cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // The command name (field 2) may hold spaces; count from its ')'.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 (utime, stime) are the 12th and 13th after ')'.
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    (ticks(11) + ticks(12)) as f64 / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where a stream is carried best: with its main publisher, then
    /// standing by, then on its fallback alone.
    #[test]
    fn a_node_with_the_publisher_ranks_before_one_on_the_slate() {
        let mut n = node("a", NodeRole::Publish, 3, 0);
        n.streams = vec!["live/x".into(), "live/y".into(), "live/z".into()];
        n.standby = vec!["live/y".into()];
        n.fallback = vec!["live/z".into()];
        let ranks: Vec<_> = ["live/x", "live/y", "live/z", "live/w"]
            .iter()
            .map(|s| n.carrying_rank(s))
            .collect();
        assert_eq!(ranks, [Some(0), Some(1), Some(2), None]);
        // A node silent for longer than a beat and a half (killed, not yet
        // down) comes after a fresh one, whatever either carries.
        let mut dead = n.clone();
        dead.age_ms = STALE_BEAT_MS + 1;
        assert!(dead.source_rank("live/x") > n.source_rank("live/z"));
        assert!(n.source_rank("live/x") < n.source_rank("live/z"));
    }

    /// A beat reports the streams with a publisher and those on their
    /// fallback alone (flagged: still transcode jobs, not live), not those
    /// whose readers wait for a publisher.
    #[test]
    fn a_beat_carries_streams_on_their_fallback_and_flags_them() {
        use ugc_core::{Hub, HubConfig, SourceRole, StreamPath};
        let hub = Hub::new(HubConfig::default());
        let path = |s: &str| StreamPath::parse(s).unwrap();
        let _live = hub.publish(&path("live/a"));
        let gone = hub.publish(&path("live/b"));
        let _slate = hub.publish_as(&path("live/b"), SourceRole::Fallback);
        let _backup = hub.publish_as(&path("live/c"), SourceRole::Backup);
        let _waiting = hub.subscribe(&path("live/d"));
        let before = hub_streams(&hub, None, Instant::now());
        assert_eq!(before.streams, ["live/a", "live/b", "live/c"]);
        assert!(before.fallback.is_empty(), "{before:?}");
        assert_eq!(before.standby, ["live/c"]);
        drop(gone);
        let after = hub_streams(&hub, None, Instant::now());
        assert_eq!(after.streams, ["live/a", "live/b", "live/c"]);
        assert_eq!(after.fallback, ["live/b"]);
        assert_eq!(after.stats.len(), 3);
    }

    fn node(id: &str, role: NodeRole, streams: u32, capacity: u32) -> NodeView {
        NodeView {
            id: id.into(),
            role,
            url: format!("http://{id}:8080"),
            state: NodeState::Live,
            load: NodeLoad {
                streams,
                ..NodeLoad::default()
            },
            streams: Vec::new(),
            standby: Vec::new(),
            fallback: Vec::new(),
            stats: Vec::new(),
            timelines: BTreeMap::new(),
            capacity,
            public: Some(PublicUrls {
                host: id.into(),
                ..PublicUrls::default()
            }),
            last_seen: 0,
            age_ms: 0,
            registered_at: 0,
            priority: 0,
            pulls: false,
            leases: Vec::new(),
        }
    }

    #[test]
    fn held_leases_go_on_their_holder_until_they_expire() {
        let mut nodes = vec![
            node("t1", NodeRole::Transcode, 0, 0),
            node("t2", NodeRole::Transcode, 0, 0),
        ];
        for n in &mut nodes {
            n.last_seen = 10_000;
            n.age_ms = 500; // the database clock: 10 500
        }
        let row = |stream: &str, node: &str, epoch, expires_ms| crate::store::LeaseRow {
            stream: stream.into(),
            node_id: node.into(),
            epoch,
            expires_ms,
        };
        let rows = [
            row("live/a", "t1", 3, 12_000),
            row("live/b", "t1", 1, 10_400), // expired
            row("live/c", "t2", 7, 13_500),
            row("live/d", "", 2, 0), // released
        ];
        attach_leases(&mut nodes, &rows);
        let held = |i: usize| {
            nodes[i]
                .leases
                .iter()
                .map(|l| (l.stream.as_str(), l.epoch, l.expires_in_ms))
                .collect::<Vec<_>>()
        };
        assert_eq!(held(0), [("live/a", 3, 1_500)]);
        assert_eq!(held(1), [("live/c", 7, 3_000)]);
    }

    #[test]
    fn least_loaded_weighs_capacity_and_pending() {
        let a = node("a", NodeRole::Publish, 4, 10);
        let b = node("b", NodeRole::Publish, 4, 100);
        let none: HashMap<String, u32> = HashMap::new();
        let pick =
            |p: &HashMap<String, u32>| least_loaded([&a, &b].into_iter(), p).unwrap().id.clone();
        assert_eq!(pick(&none), "b");
        let c = node("c", NodeRole::Publish, 0, 0);
        let d = node("d", NodeRole::Publish, 0, 0);
        let mut p = HashMap::new();
        assert_eq!(least_loaded([&c, &d].into_iter(), &p).unwrap().id, "c");
        p.insert("c".to_owned(), 1);
        assert_eq!(least_loaded([&c, &d].into_iter(), &p).unwrap().id, "d");
        // Counts a node reports do not overflow the score.
        let e = node("e", NodeRole::Publish, u32::MAX, 0);
        p.insert("e".to_owned(), 5);
        assert_eq!(least_loaded([&e, &d].into_iter(), &p).unwrap().id, "d");
    }

    #[test]
    fn beats_are_checked() {
        let ok = NodeBeat {
            id: "pub-1".into(),
            role: NodeRole::Publish,
            url: "http://10.0.0.1:8081".into(),
            public: None,
            capacity: 0,
            load: NodeLoad::default(),
            streams: vec!["live/a".into()],
            standby: Vec::new(),
            fallback: Vec::new(),
            stats: Vec::new(),
            timelines: BTreeMap::new(),
            draining: false,
            priority: 0,
            pulls: false,
        };
        assert!(ok.check().is_ok());
        for bad in [
            NodeBeat {
                id: "a b".into(),
                ..ok.clone()
            },
            NodeBeat {
                id: String::new(),
                ..ok.clone()
            },
            NodeBeat {
                url: "ftp://x".into(),
                ..ok.clone()
            },
            NodeBeat {
                public: Some(PublicUrls {
                    host: "h".repeat(300),
                    ..PublicUrls::default()
                }),
                ..ok.clone()
            },
            NodeBeat {
                load: NodeLoad {
                    cpu: f64::NAN,
                    ..NodeLoad::default()
                },
                ..ok.clone()
            },
        ] {
            assert!(bad.check().is_err(), "{bad:?}");
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn cpu_seconds_are_read() {
        // Burn about 0.1 s of CPU: the counter (10 ms ticks) must move.
        let before = process_cpu_seconds();
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed() < Duration::from_millis(150) {
            for i in 0..100_000u64 {
                x = x.wrapping_mul(31).wrapping_add(std::hint::black_box(i));
            }
        }
        std::hint::black_box(x);
        assert!(process_cpu_seconds() > before);
    }
}
