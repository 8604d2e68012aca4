//! Publish authorization for media nodes in other processes.
//!
//! A publishing node has no stream keys: the settings feed deliberately
//! leaves them out. It asks the control plane instead, with
//! `POST /api/v1/node/publish` (node or admin token) and the publisher's
//! protocol, app, key and address; the answer is the decision the control
//! plane's own ingest would take, external auth backend included:
//!
//! ```json
//! {"decision": "allow", "stream": "live/news"}
//! {"decision": "deny", "kind": "unauthorized", "reason": "unknown stream key"}
//! ```
//!
//! [`RemoteAuthorizer`] is that question as an [`Authorizer`] for the
//! node's ingest. It keeps an allow for [`RemoteAuthorizer::CACHE_TTL`]
//! (a reconnecting encoder asks again at once) and never keeps a denial.
//! [`RemoteAuthorizer::follow`] drops the publisher of a stream whose key
//! is rotated or which is deleted, as the control plane does for its own
//! Hub, when the settings feed announces it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::Uri;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use ugc_core::auth::{
    Authorizer, DenyKind, PlayDecision, PlayRequest, Protocol, PublishDecision, PublishRequest,
};
use ugc_core::{Hub, SourceRole, StreamPath};

use crate::ControlPlane;
use crate::error::{Error, Result};
use crate::plane::{ChangeKind, StreamChange};

/// Where media nodes send streams: the control plane's choice (`[cluster]`
/// in ugc-server's configuration file, `--transcoders`/`--origins` of
/// ugc-control; with no origins named, the registry's origins that are not
/// down), answered by `GET /api/v1/node/topology` (node or admin token) and
/// followed by the nodes ([`Topology::follow`]), so that no node's
/// configuration lists the others. Transcode jobs go by leases when no
/// transcoder is named.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    /// Transcoding nodes (`http://host:port`): publishing nodes push here.
    #[serde(default)]
    pub transcoders: Vec<String>,
    /// Origin nodes: transcoding nodes push here, and publishing nodes
    /// when there is no transcoder.
    #[serde(default)]
    pub origins: Vec<String>,
}

impl Topology {
    /// Every URL is `http://host:port` without a path.
    pub fn check(&self) -> std::result::Result<(), String> {
        for url in self.transcoders.iter().chain(&self.origins) {
            let uri: Uri = url
                .parse()
                .map_err(|e| format!("cluster node {url:?}: {e}"))?;
            let bare = uri.path() == "/" && uri.query().is_none() && !url.ends_with('/');
            if uri.scheme_str() != Some("http") || uri.host().is_none() || !bare {
                return Err(format!("cluster node {url:?}: want http://host:port"));
            }
        }
        Ok(())
    }

    /// Where a publishing node pushes its streams.
    pub fn publish_targets(&self) -> &[String] {
        match self.transcoders.is_empty() {
            true => &self.origins,
            false => &self.transcoders,
        }
    }

    /// `GET /api/v1/node/topology` of the control plane at `url`, retried
    /// every second until it answers (it may start after the node).
    pub async fn fetch(url: &str, token: &str) -> Topology {
        let client = topology_client();
        loop {
            match Self::fetch_once(&client, url, token).await {
                Ok(t) => return t,
                Err(why) => tracing::warn!(error = %why, "cluster topology; retrying"),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    async fn fetch_once(
        client: &Client<HttpConnector, Full<Bytes>>,
        url: &str,
        token: &str,
    ) -> std::result::Result<Topology, String> {
        let uri = format!("{}/api/v1/node/topology", url.trim_end_matches('/'));
        let attempt = async {
            let auth = format!("Bearer {token}");
            let body = get_bounded(client, uri.as_str(), &auth, MAX_ANSWER).await?;
            let t: Topology = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
            t.check().map(|()| t)
        };
        tokio::time::timeout(Duration::from_secs(5), attempt)
            .await
            .map_err(|_| "timed out".to_owned())?
    }

    /// Follows the control plane's topology: `pick`ed from its first answer
    /// ([`fetch`](Self::fetch)), then from an answer every `every` (a
    /// failed one keeps the last), for as long as a receiver lives. Where a
    /// node sends its streams changes while it runs: origins that register
    /// or go down (a control plane that names none answers its live
    /// origins), a topology edited and the control plane restarted.
    pub async fn follow(
        url: &str,
        token: &str,
        every: Duration,
        pick: fn(&Topology) -> Vec<String>,
    ) -> tokio::sync::watch::Receiver<Vec<String>> {
        let first = pick(&Self::fetch(url, token).await);
        let (tx, rx) = tokio::sync::watch::channel(first);
        let (url, token) = (url.to_owned(), token.to_owned());
        tokio::spawn(async move {
            let client = topology_client();
            loop {
                tokio::time::sleep(every).await;
                if tx.is_closed() {
                    return;
                }
                match Self::fetch_once(&client, &url, &token).await {
                    Ok(t) => {
                        let want = pick(&t);
                        tx.send_if_modified(|have| {
                            let changed = *have != want;
                            if changed {
                                tracing::info!(targets = ?want, "cluster topology changed");
                                *have = want;
                            }
                            changed
                        });
                    }
                    Err(why) => tracing::debug!(error = %why, "cluster topology; keeping the last"),
                }
            }
        });
        rx
    }
}

fn topology_client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

/// `GET /api/v1/node/topology`.
pub(crate) async fn get_topology(State(cp): State<ControlPlane>, headers: HeaderMap) -> Response {
    if let Err(e) = crate::provision::node_auth(&cp, &headers).await {
        return e.into_response();
    }
    let mut t = cp.inner.topology.clone();
    // Origins named nowhere: those of the registry that are not down, so
    // an origin that registers gets every stream and one that is down none
    // (one that pulls on demand gets none pushed).
    if t.origins.is_empty() {
        t.origins = registry_origins(&cp).await;
    }
    axum::Json(t).into_response()
}

/// The registry's origins that are not down (bare `http://host:port` URLs
/// only), read at most once a second.
async fn registry_origins(cp: &ControlPlane) -> Vec<String> {
    const FRESH: Duration = Duration::from_secs(1);
    let cached = |cp: &ControlPlane| {
        cp.inner
            .registry_origins
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .filter(|(at, _)| at.elapsed() < FRESH)
            .map(|(_, o)| o.clone())
    };
    if let Some(o) = cached(cp) {
        return o;
    }
    let mut live: Vec<String> = cp
        .nodes()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|n| {
            n.role == crate::registry::NodeRole::Origin
                && n.state != crate::registry::NodeState::Down
                // It pulls what its viewers ask for.
                && !n.pulls
        })
        .map(|n| n.url)
        .filter(|url| {
            let one = Topology {
                transcoders: Vec::new(),
                origins: vec![url.clone()],
            };
            one.check().is_ok()
        })
        .collect();
    live.sort();
    *cp.inner
        .registry_origins
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((Instant::now(), live.clone()));
    live
}

/// The body of `POST /api/v1/node/publish`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishCheck {
    /// `rtmp`, `srt` or `whip`.
    pub protocol: String,
    /// The application the publisher named (`live`).
    pub app: String,
    /// The key it sent.
    pub key: String,
    /// Its address, as the node saw it.
    pub client_ip: IpAddr,
    /// The asking node's id when it has no room for another publisher
    /// (its declared capacity reached): the control plane then refuses a
    /// stream that node does not carry already, naming the node with the
    /// most room in the reason, and places the stream there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full: Option<String>,
}

/// The answer of `POST /api/v1/node/publish`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "lowercase")]
pub enum PublishAnswer {
    /// Publish as `stream` (`<app>/<name>`).
    Allow {
        /// The stream path.
        stream: String,
        /// `main` or `backup` (absent: `main`, from older control planes).
        #[serde(default)]
        role: Option<String>,
        /// For a backup publisher: the relay URL of the publishing node the
        /// stream's main publisher is sent to, which the backup's stream is
        /// pushed to as well (see [`RemoteAuthorizer::standby`]).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        main_node: Option<String>,
        /// The stream's timeline id while a node reported it lately
        /// ([`TIMELINE_KEPT_FOR`]): a publisher that moved here from
        /// another node (its node killed) goes on with it
        /// ([`ugc_core::Hub::continue_timeline`]), so the stream's media
        /// and dates stay on one timeline at every node.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeline: Option<u64>,
    },
    /// Refuse.
    Deny {
        /// `unauthorized`, `bad_name` or `unavailable`.
        kind: String,
        /// For the publisher and the log; never a secret.
        reason: String,
    },
}

fn protocol_of(name: &str) -> Option<Protocol> {
    match name {
        "rtmp" => Some(Protocol::Rtmp),
        "srt" => Some(Protocol::Srt),
        "whip" => Some(Protocol::Whip),
        _ => None,
    }
}

fn protocol_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Srt => "srt",
        Protocol::Whip => "whip",
        _ => "rtmp",
    }
}

fn kind_name(k: DenyKind) -> &'static str {
    match k {
        DenyKind::BadName => "bad_name",
        DenyKind::Unavailable => "unavailable",
        _ => "unauthorized",
    }
}

impl PublishAnswer {
    fn of(d: PublishDecision) -> Self {
        match d {
            PublishDecision::Allow { stream, role } => PublishAnswer::Allow {
                stream: stream.to_string(),
                role: Some(role.as_str().into()),
                main_node: None,
                timeline: None,
            },
            PublishDecision::Deny { kind, reason } => PublishAnswer::Deny {
                kind: kind_name(kind).into(),
                reason,
            },
        }
    }

    /// The decision this answer carries; a malformed answer is
    /// `unavailable` (the publisher may retry), never an allow.
    fn decision(self) -> PublishDecision {
        match self {
            PublishAnswer::Allow { stream, role, .. } => {
                let role = match role.as_deref() {
                    None | Some("main") => SourceRole::Main,
                    Some("backup") => SourceRole::Backup,
                    Some("fallback") => SourceRole::Fallback,
                    Some(_) => {
                        return PublishDecision::unavailable(
                            "the control plane answered an unknown source role",
                        );
                    }
                };
                match stream.parse::<StreamPath>() {
                    Ok(stream) => PublishDecision::Allow { stream, role },
                    Err(_) => {
                        PublishDecision::unavailable("the control plane answered a bad stream")
                    }
                }
            }
            PublishAnswer::Deny { kind, reason } => PublishDecision::Deny {
                kind: match kind.as_str() {
                    "bad_name" => DenyKind::BadName,
                    "unavailable" => DenyKind::Unavailable,
                    _ => DenyKind::Unauthorized,
                },
                reason,
            },
        }
    }
}

/// `POST /api/v1/node/publish`.
pub(crate) async fn publish_check(
    State(cp): State<ControlPlane>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(e) = crate::provision::node_auth(&cp, &headers).await {
        return e.into_response();
    }
    let bad = |why: String| {
        crate::api::ApiError::new(axum::http::StatusCode::BAD_REQUEST, why).into_response()
    };
    let check: PublishCheck = match serde_json::from_slice(&body) {
        Ok(c) => c,
        Err(e) => return bad(format!("bad body: {e}")),
    };
    let Some(protocol) = protocol_of(&check.protocol) else {
        return bad(format!("unknown protocol {:?}", check.protocol));
    };
    let req = PublishRequest {
        protocol,
        app: check.app,
        key: check.key,
        client_ip: check.client_ip,
    };
    let mut decision = cp.authorizer().authorize_publish(&req).await;
    if let (Some(full), PublishDecision::Allow { stream, role }) = (&check.full, &decision)
        && let Some(refusal) = elsewhere(&cp, full, stream, *role, protocol).await
    {
        decision = refusal;
    }
    let main_of = match &decision {
        PublishDecision::Allow {
            stream,
            role: SourceRole::Backup,
        } => Some(stream.name().to_owned()),
        _ => None,
    };
    // A main publisher goes on with the stream's timeline (a backup's
    // stream, pushed to the main's node, stays on its own there: it lands
    // on a segment boundary at a switch, which a timeline's relay does
    // not).
    let allowed = match &decision {
        PublishDecision::Allow {
            stream,
            role: SourceRole::Main,
        } => Some(stream.to_string()),
        _ => None,
    };
    let mut answer = PublishAnswer::of(decision);
    if let (Some(path), PublishAnswer::Allow { timeline, .. }) = (allowed, &mut answer) {
        match cp.nodes().await {
            Ok(nodes) => *timeline = timeline_of(&nodes, &path),
            Err(e) => {
                tracing::warn!(error = %e, "publish check: no registry for the stream's timeline")
            }
        }
    }
    // A backup publisher: where the main one goes (placing it if need be,
    // as the API would), so the backup's node pushes there too.
    if let (Some(name), PublishAnswer::Allow { main_node, .. }) = (main_of, &mut answer) {
        match cp.nodes().await {
            Ok(nodes) => *main_node = cp.publish_node(&name, &nodes, true).map(|n| n.url.clone()),
            Err(e) => tracing::warn!(error = %e, "publish check: no registry for the main's node"),
        }
    }
    axum::Json(answer).into_response()
}

/// How long after a node last reported a stream its timeline goes on
/// for a publisher that arrives at a publishing node ([`timeline_of`]):
/// past the publishing nodes' publisher grace (20 s by default), after
/// which the stream has ended everywhere and a publisher begins a new
/// life of it.
pub const TIMELINE_KEPT_FOR: Duration = Duration::from_secs(30);

/// The timeline of `stream` (`live/news`) that a node of `nodes`
/// reported within [`TIMELINE_KEPT_FOR`] (a node killed included: its
/// last beat), the newest if several: the life of the stream that a
/// publisher arriving now goes on with.
fn timeline_of(nodes: &[crate::registry::NodeView], stream: &str) -> Option<u64> {
    let within = i64::try_from(TIMELINE_KEPT_FOR.as_millis()).unwrap_or(i64::MAX);
    nodes
        .iter()
        .filter(|n| n.age_ms <= within)
        .filter_map(|n| n.timelines.get(stream).copied())
        .max()
}

/// The refusal of a publisher of `stream` allowed at node `full`, which
/// has no room: `None` when that node carries the stream already (a
/// publisher coming back, or the other one of a main/backup pair), else
/// `unavailable` with the URL of the live publishing node with the most
/// room (the stream is placed there, so the API's publish URLs follow) or,
/// with none, a plain "full". The way there is the reason publishers
/// print (without the key): RTMP's connect-refused redirect (`ex.redirect`)
/// is followed by neither ffmpeg (5.1 here: a refused connect is read only
/// for an auth challenge) nor OBS's librtmp.
async fn elsewhere(
    cp: &ControlPlane,
    full: &str,
    stream: &StreamPath,
    role: SourceRole,
    protocol: Protocol,
) -> Option<PublishDecision> {
    let nodes = match cp.nodes().await {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "publish check: no registry to place a full node's publisher");
            Vec::new()
        }
    };
    let path = stream.to_string();
    if nodes.iter().any(|n| n.id == full && n.carries(&path)) {
        return None;
    }
    let others: Vec<_> = nodes.into_iter().filter(|n| n.id != full).collect();
    let target = cp
        .publish_node(stream.name(), &others, true)
        .and_then(|n| n.public.clone());
    let reason = match target {
        Some(at) => {
            let app = match role {
                SourceRole::Backup => crate::authz::BACKUP_APP,
                _ => crate::authz::APP,
            };
            let url = match protocol {
                Protocol::Srt => format!("srt://{}:{} (same streamid)", at.host, at.srt_port),
                Protocol::Whip => at.whip(stream.name()),
                _ => format!(
                    "rtmp://{}:{}/{app} (same stream key)",
                    at.host, at.rtmp_port
                ),
            };
            format!("publishing node {full} is full; publish to {url}")
        }
        None => format!("publishing node {full} is full and no other has room; try again later"),
    };
    tracing::info!(node = %full, stream = %path, %reason, "publisher sent elsewhere");
    Some(PublishDecision::Deny {
        kind: DenyKind::Unavailable,
        reason,
    })
}

/// A cached allow: the stream it names and when it stops counting.
struct Cached {
    stream: StreamPath,
    role: SourceRole,
    main_node: Option<String>,
    timeline: Option<u64>,
    until: Instant,
}

/// An [`Authorizer`] for a media node: publish decisions from a control
/// plane in another process (see the module doc). Play requests are
/// refused (a publishing node serves no viewers) unless
/// [`Self::with_public_play`] gave it the settings feed: then public
/// streams play and unknown ones are not found. Private ones are refused
/// too, unless [`Self::with_play_tokens`] gave it the control plane's
/// play-token key ([`PlayKeys`]): then their viewers' tokens are checked
/// here, as the control plane checks them, with no request to it.
#[derive(Clone)]
pub struct RemoteAuthorizer {
    inner: Arc<Inner>,
}

struct Inner {
    uri: Uri,
    token: String,
    timeout: Duration,
    client: Client<HttpConnector, Full<Bytes>>,
    /// Allows by (protocol, app, key).
    cache: Mutex<HashMap<(&'static str, String, String), Cached>>,
    /// The settings feed, for play decisions.
    play: Option<crate::RemoteSettings>,
    /// The play-token key and revocations, for private streams.
    play_keys: Option<PlayKeys>,
    /// Streams whose latest allow here was a backup publisher's, with the
    /// main publisher's node the control plane named.
    backups: Mutex<HashMap<StreamPath, Option<String>>>,
    /// This node's id while it has no room ([`RemoteAuthorizer::with_room`]).
    room: Option<RoomCheck>,
    /// The Hub whose streams go on with the timeline the control plane
    /// names ([`RemoteAuthorizer::with_timelines`]).
    hub: Option<Hub>,
}

/// See [`RemoteAuthorizer::with_room`].
pub type RoomCheck = Arc<dyn Fn() -> Option<String> + Send + Sync>;

impl std::fmt::Debug for RemoteAuthorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteAuthorizer")
            .field("uri", &self.inner.uri)
            .finish_non_exhaustive()
    }
}

/// Largest answer read from the control plane.
const MAX_ANSWER: usize = 64 << 10;

impl RemoteAuthorizer {
    /// How long an allow is reused for the same protocol, app and key: a
    /// rotation that the settings feed fails to announce reaches new
    /// publishers within it.
    pub const CACHE_TTL: Duration = Duration::from_secs(2);

    /// Asks the control plane at `url` (`http://host:port`) with `token`
    /// (the node token); each question waits at most `timeout`.
    pub fn new(url: &str, token: impl Into<String>, timeout: Duration) -> Result<Self> {
        let base = url.trim_end_matches('/');
        let remote = |reason: String| Error::Remote {
            url: url.to_owned(),
            status: None,
            reason,
        };
        let uri: Uri = format!("{base}/api/v1/node/publish")
            .parse()
            .map_err(|e| remote(format!("bad URL: {e}")))?;
        if uri.scheme_str() != Some("http") || uri.host().is_none() {
            return Err(remote(
                "only http://host[:port] is supported (no TLS stack)".into(),
            ));
        }
        let token = token.into();
        if token.is_empty() || token.len() > 256 {
            return Err(remote("token must be 1 to 256 characters".into()));
        }
        let mut conn = HttpConnector::new();
        conn.set_connect_timeout(Some(timeout));
        conn.set_nodelay(true);
        Ok(RemoteAuthorizer {
            inner: Arc::new(Inner {
                uri,
                token,
                timeout,
                client: Client::builder(TokioExecutor::new()).build(conn),
                cache: Mutex::default(),
                play: None,
                play_keys: None,
                backups: Mutex::default(),
                room: None,
                hub: None,
            }),
        })
    }

    /// Asks `full` before every publish check: `Some(node id)` while the
    /// node has no room for another publisher. The control plane then
    /// refuses a stream the node does not carry yet and names the node to
    /// publish to instead (see `POST /api/v1/node/publish`).
    pub fn with_room(self, full: RoomCheck) -> Self {
        let mut next = self.rebuilt(self.inner.play.clone(), self.inner.play_keys.clone());
        if let Some(inner) = Arc::get_mut(&mut next.inner) {
            inner.room = Some(full);
        }
        next
    }

    /// A publishing node's `hub`: a main publisher allowed here goes on
    /// with the timeline the control plane names for its stream (the
    /// publisher moved here from a node that failed):
    /// [`Hub::continue_timeline`] before it attaches.
    pub fn with_timelines(self, hub: Hub) -> Self {
        let mut next = self.rebuilt(self.inner.play.clone(), self.inner.play_keys.clone());
        if let Some(inner) = Arc::get_mut(&mut next.inner) {
            inner.hub = Some(hub);
        }
        next
    }

    /// A main publisher of `stream` allowed with `timeline`: the Hub's
    /// stream goes on with it.
    fn continue_timeline(&self, stream: &StreamPath, role: SourceRole, timeline: Option<u64>) {
        if let (Some(hub), Some(id), SourceRole::Main) = (&self.inner.hub, timeline, role) {
            hub.continue_timeline(stream, id);
        }
    }

    /// Lets viewers play the public streams of `settings` (an origin node);
    /// see the type's doc.
    pub fn with_public_play(self, settings: crate::RemoteSettings) -> Self {
        self.rebuilt(Some(settings), self.inner.play_keys.clone())
    }

    /// Lets viewers with a good play token play the private streams of the
    /// settings feed ([`Self::with_public_play`], needed too).
    pub fn with_play_tokens(self, keys: PlayKeys) -> Self {
        self.rebuilt(self.inner.play.clone(), Some(keys))
    }

    fn rebuilt(&self, play: Option<crate::RemoteSettings>, play_keys: Option<PlayKeys>) -> Self {
        let inner = &self.inner;
        RemoteAuthorizer {
            inner: Arc::new(Inner {
                uri: inner.uri.clone(),
                token: inner.token.clone(),
                timeout: inner.timeout,
                client: inner.client.clone(),
                cache: Mutex::default(),
                play,
                play_keys,
                backups: Mutex::default(),
                room: inner.room.clone(),
                hub: inner.hub.clone(),
            }),
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<(&'static str, String, String), Cached>> {
        self.inner
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// When the latest publisher allowed here for `stream` is its backup
    /// publisher: the relay URL of the node the control plane sends the
    /// main publisher to (`Some(None)`: it named none). A node standing by
    /// like that pushes the stream as a backup, to that node too
    /// (`ugc_proto::relay::push::PushOptions::standby`). `None` after a
    /// main publisher's allow.
    pub fn backup_main_node(&self, stream: &StreamPath) -> Option<Option<String>> {
        self.inner
            .backups
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(stream)
            .cloned()
    }

    fn note_allow(&self, stream: &StreamPath, role: SourceRole, main_node: Option<String>) {
        let mut backups = self
            .inner
            .backups
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match role {
            SourceRole::Backup => {
                // Bounded by the streams this node ever took a backup of.
                backups.insert(stream.clone(), main_node);
            }
            _ => {
                backups.remove(stream);
            }
        }
    }

    /// Forgets every allow of `stream`.
    fn forget(&self, stream: &StreamPath) {
        self.cache().retain(|_, c| c.stream != *stream);
    }

    /// Follows `changes` (the node's settings feed): a stream whose key is
    /// rotated or which is deleted loses its cached allows and its
    /// publisher on `hub`, within the feed's delay. Runs until the feed
    /// closes.
    pub async fn follow(self, hub: Hub, mut changes: broadcast::Receiver<StreamChange>) {
        loop {
            let change = match changes.recv().await {
                Ok(c) => c,
                // Missed changes: forget everything, the next publishers ask again.
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    self.cache().clear();
                    continue;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            };
            if !matches!(change.kind, ChangeKind::KeyRotated | ChangeKind::Deleted) {
                continue;
            }
            let Ok(path) = StreamPath::live(&change.name) else {
                continue;
            };
            self.forget(&path);
            hub.disconnect_publisher(&path);
            tracing::info!(stream = %path, "key rotated or stream deleted: its publisher, if any, dropped");
        }
    }

    /// The control plane's decision, with the main's node for a backup and
    /// the stream's timeline for a main publisher.
    async fn ask(&self, req: &PublishRequest) -> (PublishDecision, Option<String>, Option<u64>) {
        let body = PublishCheck {
            protocol: protocol_name(req.protocol).into(),
            app: req.app.clone(),
            key: req.key.clone(),
            client_ip: req.client_ip,
            full: self.inner.room.as_ref().and_then(|full| full()),
        };
        let Ok(body) = serde_json::to_vec(&body) else {
            return (
                PublishDecision::unavailable("publish check could not be encoded"),
                None,
                None,
            );
        };
        let request = hyper::Request::post(self.inner.uri.clone())
            .header(
                hyper::header::AUTHORIZATION,
                format!("Bearer {}", self.inner.token),
            )
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)));
        let Ok(request) = request else {
            return (
                PublishDecision::unavailable("publish check could not be built"),
                None,
                None,
            );
        };
        let exchange = async {
            let body = answer_body(&self.inner.client, request, MAX_ANSWER).await?;
            serde_json::from_slice::<PublishAnswer>(&body).map_err(|e| format!("bad answer: {e}"))
        };
        match tokio::time::timeout(self.inner.timeout, exchange).await {
            Ok(Ok(answer)) => {
                let (main_node, timeline) = match &answer {
                    PublishAnswer::Allow {
                        main_node,
                        timeline,
                        ..
                    } => (main_node.clone(), *timeline),
                    PublishAnswer::Deny { .. } => (None, None),
                };
                return (answer.decision(), main_node, timeline);
            }
            // May name the control plane's address: log only.
            Ok(Err(why)) => {
                tracing::warn!(error = %why, "publish check at the control plane failed")
            }
            Err(_) => tracing::warn!("publish check at the control plane timed out"),
        }
        (
            PublishDecision::unavailable("control plane unavailable; try again"),
            None,
            None,
        )
    }
}

impl Authorizer for RemoteAuthorizer {
    async fn authorize_publish(&self, req: &PublishRequest) -> PublishDecision {
        let key = (
            protocol_name(req.protocol),
            req.app.clone(),
            req.key.clone(),
        );
        let now = Instant::now();
        let cached = self
            .cache()
            .get(&key)
            .filter(|c| c.until > now)
            .map(|c| (c.stream.clone(), c.role, c.main_node.clone(), c.timeline));
        if let Some((stream, role, main_node, timeline)) = cached {
            self.note_allow(&stream, role, main_node);
            self.continue_timeline(&stream, role, timeline);
            return PublishDecision::Allow { stream, role };
        }
        let (d, main_node, timeline) = self.ask(req).await;
        let mut cache = self.cache();
        cache.retain(|_, c| c.until > now);
        match &d {
            PublishDecision::Allow { stream, role } => {
                cache.insert(
                    key,
                    Cached {
                        stream: stream.clone(),
                        role: *role,
                        main_node: main_node.clone(),
                        timeline,
                        until: now + Self::CACHE_TTL,
                    },
                );
                drop(cache);
                self.note_allow(stream, *role, main_node);
                self.continue_timeline(stream, *role, timeline);
            }
            _ => {
                cache.remove(&key);
            }
        }
        d
    }

    async fn authorize_play(&self, req: &PlayRequest) -> PlayDecision {
        let Some(settings) = &self.inner.play else {
            return PlayDecision::Deny {
                reason: "this node does not serve viewers".into(),
            };
        };
        // Renditions (`live/<name>/<rendition>`) follow their source.
        let known = (req.stream.app() == crate::authz::APP)
            .then(|| crate::SettingsSource::settings(settings, req.stream.name()))
            .flatten();
        match known {
            None => PlayDecision::NotFound {
                reason: "no such stream".into(),
            },
            Some(s) if s.private => match &self.inner.play_keys {
                Some(keys) => keys.check(req, crate::util::unix_now()),
                None => PlayDecision::Deny {
                    reason: "private stream: this node does not check play tokens".into(),
                },
            },
            Some(_) => PlayDecision::Allow,
        }
    }
}

/// The answer of `GET /api/v1/node/play-auth` (node or admin token): what
/// an origin needs to check play tokens itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlayAuth {
    /// The play-token secret, base64url without padding.
    pub key: String,
    /// Sessions revoked before their tokens expire (32 hex digits each).
    pub revoked: Vec<String>,
}

pub(crate) async fn get_play_auth(State(cp): State<ControlPlane>, headers: HeaderMap) -> Response {
    // The node token (or the admin's, who may sign tokens anyway).
    if let Err(e) = crate::provision::node_auth(&cp, &headers).await {
        return e.into_response();
    }
    use base64::Engine as _;
    let mut revoked: Vec<String> = cp
        .inner
        .revoked
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .map(|s| s.to_string())
        .collect();
    revoked.sort();
    let key = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&cp.inner.play_secret);
    no_store(axum::Json(PlayAuth { key, revoked }).into_response())
}

/// `resp` with `Cache-Control: no-store` (an answer for one node, now).
pub(crate) fn no_store(mut resp: Response) -> Response {
    resp.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    resp
}

/// The control plane's play-token key and revoked sessions, kept current
/// on a media node by polling `GET /api/v1/node/play-auth` (a revocation
/// reaches the node within one poll). Until the first answer, private
/// streams are refused (fail closed); when the control plane is away, the
/// last answer stays in force, so viewers keep playing. Cheap to clone;
/// polling stops when the last clone is dropped.
#[derive(Clone)]
pub struct PlayKeys {
    shared: Arc<PlayKeysShared>,
}

struct PlayKeysShared {
    current: std::sync::RwLock<Option<PlayKeysNow>>,
    task: Mutex<Option<tokio::task::AbortHandle>>,
}

impl Drop for PlayKeysShared {
    fn drop(&mut self) {
        if let Some(t) = self.task.get_mut().ok().and_then(Option::take) {
            t.abort();
        }
    }
}

struct PlayKeysNow {
    key: crate::token::TokenKey,
    revoked: std::collections::HashSet<crate::token::SessionId>,
}

impl std::fmt::Debug for PlayKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlayKeys")
            .field("loaded", &self.loaded())
            .finish_non_exhaustive()
    }
}

impl PlayKeys {
    /// Polls the control plane at `url` (`http://host:port`) with the node
    /// `token` every `every`, each request waiting at most `timeout`. The
    /// first poll runs now; [`Self::loaded`] says when it has answered.
    pub fn follow(url: &str, token: &str, every: Duration, timeout: Duration) -> Result<Self> {
        let base = url.trim_end_matches('/');
        let uri: Uri = format!("{base}/api/v1/node/play-auth")
            .parse()
            .map_err(|e| Error::Config(format!("control URL {url:?}: {e}")))?;
        if uri.scheme_str() != Some("http") || uri.host().is_none() {
            return Err(Error::Config(format!(
                "control URL {url:?}: only http://host[:port] is supported (no TLS stack)"
            )));
        }
        let shared = Arc::new(PlayKeysShared {
            current: std::sync::RwLock::new(None),
            task: Mutex::new(None),
        });
        let weak = Arc::downgrade(&shared);
        let mut conn = HttpConnector::new();
        conn.set_connect_timeout(Some(timeout));
        let client: Client<HttpConnector, Full<Bytes>> =
            Client::builder(TokioExecutor::new()).build(conn);
        let auth = format!("Bearer {token}");
        let task = tokio::spawn(async move {
            let mut failing = false;
            loop {
                let got =
                    tokio::time::timeout(timeout, fetch_play_auth(&client, &uri, &auth)).await;
                let Some(shared) = weak.upgrade() else { return };
                match got.unwrap_or_else(|_| Err("timed out".into())) {
                    Ok(now) => {
                        *shared
                            .current
                            .write()
                            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(now);
                        if failing {
                            tracing::info!("play-token key reachable again");
                        }
                        failing = false;
                    }
                    Err(why) => {
                        if !failing {
                            // May name the control plane's address: log only.
                            tracing::warn!(error = %why, "play-token key not refreshed; keeping the last one");
                        }
                        failing = true;
                    }
                }
                drop(shared);
                tokio::time::sleep(every).await;
            }
        });
        *shared
            .task
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(task.abort_handle());
        Ok(PlayKeys { shared })
    }

    /// Whether the control plane has answered once.
    pub fn loaded(&self) -> bool {
        self.shared
            .current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_some()
    }

    /// The decision for a viewer of a private stream at `now` (unix s).
    pub fn check(&self, req: &PlayRequest, now: u64) -> PlayDecision {
        let current = self
            .shared
            .current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match current.as_ref() {
            Some(c) => crate::authz::check_play_token(&c.key, &c.revoked, req, now),
            None => PlayDecision::Deny {
                reason: "private stream: play tokens cannot be checked yet; try again".into(),
            },
        }
    }
}

async fn fetch_play_auth(
    client: &Client<HttpConnector, Full<Bytes>>,
    uri: &Uri,
    auth: &str,
) -> std::result::Result<PlayKeysNow, String> {
    // Revocations of a busy platform: bounded, but generous.
    let body = get_bounded(client, uri.clone(), auth, 16 << 20).await?;
    let answer: PlayAuth = serde_json::from_slice(&body).map_err(|e| format!("bad answer: {e}"))?;
    use base64::Engine as _;
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(answer.key.as_bytes())
        .map_err(|e| format!("bad key: {e}"))?;
    if secret.len() < 16 {
        return Err("key shorter than 16 bytes".into());
    }
    Ok(PlayKeysNow {
        key: crate::token::TokenKey::new(&secret),
        revoked: answer
            .revoked
            .iter()
            .filter_map(|s| crate::token::SessionId::parse(s))
            .collect(),
    })
}

/// `GET uri` with `Authorization: auth`: the body (at most `max` bytes) of
/// a 2xx answer, or why not.
pub(crate) async fn get_bounded(
    client: &Client<HttpConnector, Full<Bytes>>,
    uri: impl TryInto<Uri, Error: std::fmt::Display>,
    auth: &str,
    max: usize,
) -> std::result::Result<Bytes, String> {
    let uri = uri.try_into().map_err(|e| e.to_string())?;
    let req = hyper::Request::get(uri)
        .header(hyper::header::AUTHORIZATION, auth)
        .body(Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    answer_body(client, req, max).await
}

/// Sends `req`: the body (at most `max` bytes) of a 2xx answer, or why not.
async fn answer_body(
    client: &Client<HttpConnector, Full<Bytes>>,
    req: hyper::Request<Full<Bytes>>,
    max: usize,
) -> std::result::Result<Bytes, String> {
    let resp = client.request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let body = Limited::new(resp.into_body(), max)
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    if !status.is_success() {
        return Err(format!("answered {status}"));
    }
    Ok(body)
}
