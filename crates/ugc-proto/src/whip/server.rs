//! The WHIP endpoint (RFC 9725) over a [`Hub`]: HTTP routes for the
//! signalling and one UDP socket per local address for every session's
//! media (ICE-lite; datagrams are routed to their session by str0m's
//! `accepts`, then by the peer's address).
//!
//! * `POST /whip/<stream>` with `Authorization: Bearer <stream key>` and
//!   `Content-Type: application/sdp`: the key is checked by the
//!   [`Authorizer`] (protocol `whip`, app `live`) and must be the key of
//!   `<stream>`; the answer comes back `201 Created` with
//!   `Location: /whip/<stream>/<session>`. Wrong or missing key 401,
//!   another stream's key 403, an offer without H.264 or Opus 400, a
//!   refusal for now (limits, auth backend down) 503.
//! * `DELETE /whip/<stream>/<session>` ends the publish (200; 404 for a
//!   session that is not there). The session id is 128 random bits: the
//!   URL is the capability, as RFC 9725 has it.
//! * `PATCH` (trickle ICE) is answered 405: the server is ICE-lite with
//!   host candidates in its answer, and learns the publisher's address from
//!   its STUN checks (which is also how an OBS that never trickles works).
//! * `OPTIONS` answers CORS preflights so a page on another origin (the
//!   creator panel) can publish.
//!
//! * ICE-TCP (RFC 6544): beside the UDP sockets, TCP listeners are
//!   offered as passive candidates (a lower priority than UDP's), for
//!   publishers and viewers whose network lets no UDP through. A
//!   connection's packets are RFC 4571 frames (a 16-bit length, then the
//!   packet); its first must be a STUN check a session takes, which binds
//!   the connection to that session; connections are capped
//!   ([`WhipConfig::max_tcp_connections`], per address
//!   [`WhipConfig::max_tcp_per_address`]; past a cap the oldest connection
//!   no session took is closed for the new one), and one no session takes
//!   within [`WhipConfig::connect_timeout`] is closed. A peer that does not read
//!   loses packets, as over UDP: the loop never waits for it; one whose
//!   socket takes no write for 5 s has its connection closed.
//! * Behind a 1:1 NAT or a port forward (a cloud VM whose public address
//!   is not on any interface), [`WhipConfig::public_ip`] is the candidate
//!   of every non-loopback socket, at its port; what arrives on such a
//!   socket is taken as sent to that address (the NAT rewrote it), and what
//!   the session sends from it leaves by the socket.
//!
//! The media goes into the Hub as the stream's publisher of the role the
//! authorizer gave; a session that is taken over (another publisher of the
//! same role) is closed. A session that does not connect within
//! [`WhipConfig::connect_timeout`] is dropped.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use ugc_core::auth::{
    DenyKind, PlayDecision, PlayRequest, Protocol, PublishDecision, PublishRequest,
};
use ugc_core::metrics::{Exposition, Family, Kind};
use ugc_core::{
    Authorizer, Hub, HubPublisher, HubReader, MediaEvent, StreamPath, Tracks, Transform,
};

use super::peer::{Packet, Transport};
use super::play::{WhepSession, WhepStats};
use super::session::{MAX_OFFER, SessionSetup, WhipSession, WhipStats};
use crate::origin::{ClientIp, token_param};

/// Settings of a [`WhipServer`].
#[derive(Debug, Clone)]
pub struct WhipConfig {
    /// Sessions at once; further offers are answered 503.
    pub max_sessions: usize,
    /// WHEP viewers at once; further offers are answered 503.
    pub max_viewers: usize,
    /// Sessions from one address (an IPv6 /64) that are not connected yet
    /// (publishers and viewers counted apart); more offers are answered
    /// 429. A real client connects within a second of its answer, so few
    /// are ever pending; without a cap, offers that never connect (held
    /// for `connect_timeout` each) from one address could take every slot.
    pub max_pending_per_address: usize,
    /// Makes the transform a stream goes through on its way to WHEP
    /// viewers (one per stream watched, shared by its viewers): an AAC ->
    /// Opus audio transcode, since WebRTC carries no AAC. `None`: the
    /// stream as the Hub has it.
    pub play_transform: Option<TransformMaker>,
    /// Whether `/whip` takes publishers (a node that only plays, an
    /// origin, serves `/whep` alone).
    pub accept_publish: bool,
    /// A session that has not connected (ICE and DTLS) by then is dropped.
    pub connect_timeout: Duration,
    /// How long the authorizer may take.
    pub auth_timeout: Duration,
    /// Ask publishers for a keyframe when the last is this old (see
    /// [`SessionSetup::keyframe_interval`]); set it to the HLS segment
    /// target.
    pub keyframe_interval: Option<Duration>,
    /// The address publishers reach the server at when a 1:1 NAT or a port
    /// forward stands in front of it: the ICE candidate of every
    /// non-loopback socket (at the socket's port) instead of the socket's
    /// own address. Loopback sockets keep theirs (publishers on the host
    /// itself). `None`: every socket's own address.
    pub public_ip: Option<IpAddr>,
    /// STUN and TURN servers for publishers, sent with every answer as
    /// `Link` headers (RFC 9725 4.6; OBS reads them): what a publisher
    /// behind a network that blocks UDP needs to relay through TURN.
    pub ice_servers: Vec<IceServer>,
    /// ICE-TCP connections open at once. A publisher or viewer opens one
    /// or two (one per pair of its addresses and our TCP candidates).
    /// Beyond it the oldest connection no session took is closed to make
    /// room, or the new one when every one is a session's.
    pub max_tcp_connections: usize,
    /// ICE-TCP connections open at once from one address (an IPv6 /64),
    /// made room for in the same way.
    pub max_tcp_per_address: usize,
    /// Publishers may send AV1 ([`SessionSetup::av1`]).
    pub av1: bool,
}

/// Makes a [`Transform`] (see [`WhipConfig::play_transform`]).
#[derive(Clone)]
pub struct TransformMaker(pub Arc<dyn Fn() -> Box<dyn Transform> + Send + Sync>);

impl std::fmt::Debug for TransformMaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TransformMaker")
    }
}

/// A STUN or TURN server a publisher may use; see [`IceServer::parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceServer {
    /// `stun:`, `stuns:`, `turn:` or `turns:` URI (RFC 7064, RFC 7065).
    pub uri: String,
    /// TURN's username and password (long-term credentials).
    pub credentials: Option<(String, String)>,
}

impl IceServer {
    /// Parses `stun[s]:HOST[:PORT]` or
    /// `turn[s]:USER:PASSWORD@HOST[:PORT][?transport=udp|tcp]` (TURN needs
    /// credentials, STUN takes none). Quotes, angle brackets, commas,
    /// spaces and control characters are refused: they would break the
    /// header.
    pub fn parse(s: &str) -> Result<IceServer, String> {
        if let Some(c) = s.chars().find(|c| {
            c.is_whitespace() || c.is_control() || matches!(c, '"' | '<' | '>' | ',' | '\\')
        }) {
            return Err(format!("ICE server {s:?}: {c:?} is not allowed"));
        }
        let (scheme, rest) = s
            .split_once(':')
            .ok_or_else(|| format!("ICE server {s:?}: no scheme (stun:, stuns:, turn:, turns:)"))?;
        let turn = match scheme {
            "stun" | "stuns" => false,
            "turn" | "turns" => true,
            other => return Err(format!("ICE server {s:?}: unknown scheme {other:?}")),
        };
        let (credentials, host) = match rest.rsplit_once('@') {
            Some((userinfo, host)) => {
                let (user, pass) = userinfo
                    .split_once(':')
                    .filter(|(u, p)| !u.is_empty() && !p.is_empty())
                    .ok_or_else(|| format!("ICE server {s:?}: credentials are USER:PASSWORD@"))?;
                (Some((user.to_owned(), pass.to_owned())), host)
            }
            None => (None, rest),
        };
        if host.is_empty() || host.starts_with(['?', ':']) {
            return Err(format!("ICE server {s:?}: no host"));
        }
        match (turn, &credentials) {
            (true, None) => Err(format!(
                "ICE server {s:?}: TURN needs USER:PASSWORD@ (browsers refuse TURN without)"
            )),
            (false, Some(_)) => Err(format!("ICE server {s:?}: STUN takes no credentials")),
            _ => Ok(IceServer {
                uri: format!("{scheme}:{host}"),
                credentials,
            }),
        }
    }

    /// The `Link` header value that announces it.
    pub fn link(&self) -> String {
        let mut l = format!("<{}>; rel=\"ice-server\"", self.uri);
        if let Some((user, pass)) = &self.credentials {
            l.push_str(&format!(
                "; username=\"{user}\"; credential=\"{pass}\"; credential-type=\"password\""
            ));
        }
        l
    }
}

impl std::str::FromStr for IceServer {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        IceServer::parse(s)
    }
}

impl Default for WhipConfig {
    fn default() -> Self {
        WhipConfig {
            max_sessions: 256,
            max_viewers: 1000,
            max_pending_per_address: 8,
            accept_publish: true,
            play_transform: None,
            connect_timeout: Duration::from_secs(15),
            auth_timeout: Duration::from_secs(5),
            keyframe_interval: Some(Duration::from_secs(2)),
            public_ip: None,
            ice_servers: Vec::new(),
            max_tcp_connections: 1024,
            max_tcp_per_address: 16,
            av1: false,
        }
    }
}

/// The ICE candidate of each socket bound at `locals`: its own address, or
/// with `public_ip` that address at the socket's port for non-loopback
/// sockets. Two sockets may not end up with one candidate (the answer to a
/// datagram would leave by the wrong one).
fn candidates(
    locals: &[SocketAddr],
    public_ip: Option<IpAddr>,
) -> std::io::Result<Vec<SocketAddr>> {
    let mut out: Vec<SocketAddr> = Vec::new();
    for &local in locals {
        if local.ip().is_unspecified() {
            return Err(std::io::Error::other(format!(
                "WHIP socket {local}: bind a specific address (it is the ICE candidate)"
            )));
        }
        let c = match public_ip {
            Some(ip) if !local.ip().is_loopback() => SocketAddr::new(ip, local.port()),
            _ => local,
        };
        if out.contains(&c) {
            return Err(std::io::Error::other(format!(
                "WHIP sockets: two would be offered as {c} (one non-loopback socket per port with a public IP)"
            )));
        }
        out.push(c);
    }
    Ok(out)
}

/// One running session, as the stats show it: a publisher's
/// ([`WhipSessionStatus`]) or a viewer's ([`WhepSessionStatus`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionStatus<S> {
    /// The stream (played: a rendition's own name when one is played).
    pub stream: String,
    /// The peer's address (after trusted-proxy resolution).
    pub client: IpAddr,
    /// Whether ICE and DTLS are up.
    pub connected: bool,
    /// Counters.
    pub stats: S,
}

impl<S: Default> SessionStatus<S> {
    fn new(stream: &StreamPath, client: IpAddr) -> Self {
        SessionStatus {
            stream: stream.to_string(),
            client,
            connected: false,
            stats: S::default(),
        }
    }
}

/// One running publish.
pub type WhipSessionStatus = SessionStatus<WhipStats>;

/// One WHEP viewer.
pub type WhepSessionStatus = SessionStatus<WhepStats>;

/// Statuses by session id.
type Statuses<S> = Mutex<HashMap<String, SessionStatus<S>>>;

enum Command {
    Start {
        id: String,
        session: Box<WhipSession>,
        publisher: HubPublisher,
    },
    Play {
        id: String,
        session: Box<WhepSession>,
        reader: HubReader,
    },
    Stop {
        id: String,
        done: tokio::sync::oneshot::Sender<bool>,
    },
}

struct Shared<A> {
    hub: Hub,
    auth: Arc<A>,
    setup: SessionSetup,
    config: WhipConfig,
    client_ip: ClientIp,
    commands: mpsc::Sender<Command>,
    /// Session id -> its stream and status, for the routes and stats.
    sessions: Statuses<WhipStats>,
    /// The same of WHEP viewers.
    viewers: Statuses<WhepStats>,
    /// Counters of the viewers gone, by stream, kept while the stream has
    /// a viewer (the metrics' counters must not go down).
    viewers_gone: Mutex<HashMap<String, WhepStats>>,
    /// ICE-TCP connections: open now, refused (over a cap), closed unused
    /// (no session took them), packets dropped at a peer that did not read.
    tcp_open: AtomicU64,
    tcp_refused: AtomicU64,
    tcp_unused: AtomicU64,
    tcp_dropped: AtomicU64,
}

fn add_stats(to: &mut WhepStats, s: &WhepStats) {
    to.video_frames += s.video_frames;
    to.audio_frames += s.audio_frames;
    to.dropped_frames += s.dropped_frames;
    to.keyframe_requests += s.keyframe_requests;
    to.bad_datagrams += s.bad_datagrams;
}

/// The WHIP endpoint; see the [module documentation](self). Cheap to
/// clone.
pub struct WhipServer<A> {
    shared: Arc<Shared<A>>,
}

impl<A> Clone for WhipServer<A> {
    fn clone(&self) -> Self {
        WhipServer {
            shared: Arc::clone(&self.shared),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl<A: Authorizer> WhipServer<A> {
    /// Starts the media loop on `sockets` and the ICE-TCP `listeners`
    /// (each bound to a specific local address, which is the host
    /// candidate it stands for) and returns the server, whose
    /// [`router`](Self::router) takes the signalling.
    pub fn start(
        sockets: Vec<UdpSocket>,
        listeners: Vec<TcpListener>,
        hub: Hub,
        auth: Arc<A>,
        client_ip: ClientIp,
        config: WhipConfig,
    ) -> std::io::Result<WhipServer<A>> {
        let locals = sockets
            .iter()
            .map(UdpSocket::local_addr)
            .collect::<std::io::Result<Vec<_>>>()?;
        let candidates = candidates(&locals, config.public_ip)?;
        let tcp_locals = listeners
            .iter()
            .map(TcpListener::local_addr)
            .collect::<std::io::Result<Vec<_>>>()?;
        let tcp_candidates = self::candidates(&tcp_locals, config.public_ip)?;
        let socks = sockets.into_iter().map(Arc::new).collect();
        let (tx, rx) = mpsc::channel(64);
        let mut setup = SessionSetup::new(candidates.clone());
        setup.tcp_candidates = tcp_candidates.clone();
        setup.av1 = config.av1;
        setup.keyframe_interval = config.keyframe_interval;
        let shared = Arc::new(Shared {
            hub,
            auth,
            setup,
            config,
            client_ip,
            commands: tx,
            sessions: Mutex::new(HashMap::new()),
            viewers: Mutex::new(HashMap::new()),
            viewers_gone: Mutex::new(HashMap::new()),
            tcp_open: AtomicU64::new(0),
            tcp_refused: AtomicU64::new(0),
            tcp_unused: AtomicU64::new(0),
            tcp_dropped: AtomicU64::new(0),
        });
        let wire = Wire {
            sockets: socks,
            locals: candidates,
            tcp_locals: tcp_candidates,
            conns: HashMap::new(),
            by_peer: HashMap::new(),
            next_conn: 0,
        };
        tokio::spawn(media_loop(wire, listeners, rx, Arc::clone(&shared)));
        Ok(WhipServer { shared })
    }

    /// The running sessions, by stream.
    pub fn sessions(&self) -> Vec<WhipSessionStatus> {
        let mut v: Vec<_> = lock(&self.shared.sessions).values().cloned().collect();
        v.sort_by(|a, b| a.stream.cmp(&b.stream));
        v
    }

    /// The WHEP viewers, by stream.
    pub fn viewers(&self) -> Vec<WhepSessionStatus> {
        let mut v: Vec<_> = lock(&self.shared.viewers).values().cloned().collect();
        v.sort_by(|a, b| a.stream.cmp(&b.stream));
        v
    }

    /// The sessions' families for `/metrics`, by `stream` and `session`
    /// (the session id is the DELETE capability: only its first 8 hex
    /// digits are shown): `ugc_whip_connected` (ICE and DTLS up) and the
    /// `ugc_whip_*_total` counters.
    pub fn write_metrics(&self, m: &mut Exposition) {
        let rows: Vec<(String, WhipSessionStatus)> = {
            let sessions = lock(&self.shared.sessions);
            let mut v: Vec<_> = sessions
                .iter()
                .map(|(id, s)| (id.chars().take(8).collect(), s.clone()))
                .collect();
            v.sort_by(|a, b| (&a.1.stream, &a.0).cmp(&(&b.1.stream, &b.0)));
            v
        };
        type Row = (String, WhipSessionStatus);
        let families: &[Family<Row>] = &[
            Family::gauge(
                "ugc_whip_connected",
                "1 once ICE and DTLS are up.",
                |(_, s)| f64::from(u8::from(s.connected)),
            ),
            Family::counter(
                "ugc_whip_video_frames_total",
                "Pictures into the Hub.",
                |(_, s)| s.stats.video_frames as f64,
            ),
            Family::counter(
                "ugc_whip_audio_frames_total",
                "Audio frames into the Hub.",
                |(_, s)| s.stats.audio_frames as f64,
            ),
            Family::counter(
                "ugc_whip_dropped_frames_total",
                "Frames dropped: before the first keyframe, of a codec not taken, or audio a sync step overlapped.",
                |(_, s)| s.stats.dropped_frames as f64,
            ),
            Family::counter(
                "ugc_whip_keyframe_requests_total",
                "Keyframe requests (PLI) sent to the publisher.",
                |(_, s)| s.stats.keyframe_requests as f64,
            ),
            Family::counter(
                "ugc_whip_discontinuities_total",
                "Holes in the video's RTP sequence that NACK did not fill.",
                |(_, s)| s.stats.discontinuities as f64,
            ),
            Family::counter(
                "ugc_whip_av_sync_steps_total",
                "Times the audio was moved onto the video by the publisher's sender reports.",
                |(_, s)| s.stats.av_sync_steps as f64,
            ),
        ];
        m.families(families, &rows, |(id, s)| {
            vec![("stream", s.stream.clone()), ("session", id.clone())]
        });
        self.write_viewer_metrics(m);
        self.write_tcp_metrics(m);
    }

    /// ICE-TCP: `ugc_webrtc_tcp_connections` and its counters (when TCP
    /// candidates are offered).
    fn write_tcp_metrics(&self, m: &mut Exposition) {
        let s = &self.shared;
        if s.setup.tcp_candidates.is_empty() {
            return;
        }
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed) as f64;
        m.family(
            "ugc_webrtc_tcp_connections",
            Kind::Gauge,
            "ICE-TCP connections open (publishers' and viewers').",
        )
        .sample(&[], get(&s.tcp_open));
        m.family(
            "ugc_webrtc_tcp_refused_total",
            Kind::Counter,
            "ICE-TCP connections over the caps: the oldest unused one closed for the new one, or the new one when none was unused.",
        )
        .sample(&[], get(&s.tcp_refused));
        m.family(
            "ugc_webrtc_tcp_unused_total",
            Kind::Counter,
            "ICE-TCP connections closed that no session took.",
        )
        .sample(&[], get(&s.tcp_unused));
        m.family(
            "ugc_webrtc_tcp_dropped_packets_total",
            Kind::Counter,
            "Packets for ICE-TCP peers dropped: their connection gone or not reading.",
        )
        .sample(&[], get(&s.tcp_dropped));
    }

    /// WHEP viewers by stream (a series per viewer would be thousands):
    /// `ugc_whep_viewers`, `ugc_whep_connected_viewers`, and counters over
    /// the stream's viewers, those gone included while any is left.
    fn write_viewer_metrics(&self, m: &mut Exposition) {
        #[derive(Default)]
        struct Row {
            viewers: u64,
            connected: u64,
            stats: WhepStats,
        }
        let mut rows: std::collections::BTreeMap<String, Row> = Default::default();
        for (stream, stats) in lock(&self.shared.viewers_gone).iter() {
            add_stats(&mut rows.entry(stream.clone()).or_default().stats, stats);
        }
        for s in lock(&self.shared.viewers).values() {
            let row = rows.entry(s.stream.clone()).or_default();
            row.viewers += 1;
            row.connected += u64::from(s.connected);
            add_stats(&mut row.stats, &s.stats);
        }
        let rows: Vec<(String, Row)> = rows.into_iter().collect();
        type R = (String, Row);
        let families: &[Family<R>] = &[
            Family::gauge("ugc_whep_viewers", "WHEP viewers.", |(_, r)| {
                r.viewers as f64
            }),
            Family::gauge(
                "ugc_whep_connected_viewers",
                "WHEP viewers with ICE and DTLS up.",
                |(_, r)| r.connected as f64,
            ),
            Family::counter(
                "ugc_whep_video_frames_total",
                "Pictures sent to WHEP viewers.",
                |(_, r)| r.stats.video_frames as f64,
            ),
            Family::counter(
                "ugc_whep_audio_frames_total",
                "Audio frames sent to WHEP viewers.",
                |(_, r)| r.stats.audio_frames as f64,
            ),
            Family::counter(
                "ugc_whep_dropped_frames_total",
                "Frames not sent to WHEP viewers: before they connected, waiting for a keyframe, or of a codec WebRTC does not carry here.",
                |(_, r)| r.stats.dropped_frames as f64,
            ),
            Family::counter(
                "ugc_whep_keyframe_requests_total",
                "Keyframe requests (PLI, FIR) from WHEP viewers.",
                |(_, r)| r.stats.keyframe_requests as f64,
            ),
        ];
        m.families(families, &rows, |(stream, _)| {
            vec![("stream", stream.clone())]
        });
    }

    /// The signalling routes (`/whip/...` unless publishing is off,
    /// `/whep/...`).
    pub fn router(&self) -> Router {
        let mut r = Router::new();
        if self.shared.config.accept_publish {
            r = r
                .route("/whip/{stream}", post(offer::<A>).options(preflight))
                .route(
                    "/whip/{stream}/{session}",
                    delete(end::<A>).patch(no_trickle).options(preflight),
                );
        }
        r.route("/whep/{stream}", post(play::<A>).options(preflight))
            // A rendition is offered to at `/whep/<stream>/<rendition>`;
            // a session (32 hex digits) is ended at `/whep/<stream>/<id>`.
            .route(
                "/whep/{stream}/{session}",
                post(play_rendition::<A>)
                    .delete(end_play::<A>)
                    .patch(no_trickle)
                    .options(preflight),
            )
            .with_state(self.clone())
    }
}

fn cors(h: &mut HeaderMap) {
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("Location, ETag, Link"),
    );
}

fn plain(status: StatusCode, text: impl Into<String>) -> Response {
    let mut r = (status, text.into()).into_response();
    cors(r.headers_mut());
    r
}

async fn preflight() -> Response {
    let mut r = StatusCode::NO_CONTENT.into_response();
    let h = r.headers_mut();
    cors(h);
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST, DELETE, PATCH, OPTIONS"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Authorization, Content-Type, If-Match"),
    );
    h.insert("Accept-Post", HeaderValue::from_static("application/sdp"));
    r
}

async fn no_trickle() -> Response {
    let mut r = plain(
        StatusCode::METHOD_NOT_ALLOWED,
        "trickle ICE is not supported: the answer has the server's candidates",
    );
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("DELETE, OPTIONS"));
    r
}

/// A session id: 128 bits from the OS's CSPRNG (the session URL is what
/// ends the session, so it must not be guessable). `None` if the OS has
/// none to give.
fn random_id() -> Option<String> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).ok()?;
    Some(b.iter().map(|x| format!("{x:02x}")).collect())
}

async fn offer<A: Authorizer>(
    State(server): State<WhipServer<A>>,
    Path(stream): Path<String>,
    req: Request,
) -> Response {
    let shared = &server.shared;
    let offer = match Offer::read(req).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    let (peer, headers, sdp) = (offer.peer, &offer.headers, offer.sdp.as_str());
    let Some(key) = offer.bearer.as_deref() else {
        return unauthorized("Authorization: Bearer <stream key> is required");
    };
    if lock(&shared.sessions).len() >= shared.config.max_sessions {
        return plain(StatusCode::SERVICE_UNAVAILABLE, "too many WHIP sessions");
    }
    let peer_ip = peer.map_or(IpAddr::from([0, 0, 0, 0]), |p| p.ip());
    let req = PublishRequest {
        protocol: Protocol::Whip,
        app: "live".into(),
        key: key.to_owned(),
        client_ip: (shared.client_ip)(peer_ip, headers),
    };
    if let Some(refused) = too_many_pending(&shared.sessions, req.client_ip, &shared.config) {
        return refused;
    }
    let decision = match tokio::time::timeout(
        shared.config.auth_timeout,
        shared.auth.authorize_publish(&req),
    )
    .await
    {
        Ok(d) => d,
        Err(_) => PublishDecision::unavailable("the publish check timed out"),
    };
    let (path, role) = match decision {
        PublishDecision::Allow { stream, role } => (stream, role),
        PublishDecision::Deny { kind, reason } => {
            tracing::info!(%stream, client = %req.client_ip, %reason, "whip publish refused");
            return match kind {
                DenyKind::Unauthorized => unauthorized(&reason),
                DenyKind::BadName => plain(StatusCode::CONFLICT, reason),
                _ => plain(StatusCode::SERVICE_UNAVAILABLE, reason),
            };
        }
    };
    if path.name() != stream {
        return plain(
            StatusCode::FORBIDDEN,
            format!("this key publishes {}, not {stream}", path.name()),
        );
    }
    let (session, answer) = match WhipSession::new(sdp, &shared.setup, Instant::now()) {
        Ok(s) => s,
        Err(e) => return plain(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let Some(id) = random_id() else {
        return no_randomness();
    };
    let publisher = shared.hub.publish_as(&path, role);
    lock(&shared.sessions).insert(id.clone(), SessionStatus::new(&path, req.client_ip));
    let start = Command::Start {
        id: id.clone(),
        session: Box::new(session),
        publisher,
    };
    if shared.commands.send(start).await.is_err() {
        lock(&shared.sessions).remove(&id);
        return plain(StatusCode::SERVICE_UNAVAILABLE, "the WHIP server stopped");
    }
    tracing::info!(stream = %path, client = %req.client_ip, session = %id, "whip publish started");
    created(&shared.config, answer, &format!("/whip/{stream}/{id}"))
}

/// A `201 Created` answer at `location`, with the ICE servers.
fn created(config: &WhipConfig, answer: String, location: &str) -> Response {
    let mut r = (StatusCode::CREATED, answer).into_response();
    let h = r.headers_mut();
    cors(h);
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/sdp"),
    );
    if let Ok(v) = HeaderValue::from_str(location) {
        h.insert(header::LOCATION, v);
    }
    for server in &config.ice_servers {
        if let Ok(v) = HeaderValue::from_str(&server.link()) {
            h.append(header::LINK, v);
        }
    }
    r
}

/// How many of `sessions` (address, connected) are from `client`'s
/// address (its /64 for IPv6) and not connected yet.
fn pending_from(sessions: impl Iterator<Item = (IpAddr, bool)>, client: IpAddr) -> usize {
    let key = |ip: IpAddr| match ip {
        IpAddr::V4(v4) => u128::from(v4.to_bits()),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => u128::from(v4.to_bits()),
            None => (v6.to_bits() >> 64) | (1 << 127),
        },
    };
    let me = key(client);
    sessions
        .filter(|&(ip, connected)| !connected && key(ip) == me)
        .count()
}

/// 429 when `client` has as many sessions in `statuses` still connecting
/// as the config allows.
fn too_many_pending<S>(
    statuses: &Statuses<S>,
    client: IpAddr,
    config: &WhipConfig,
) -> Option<Response> {
    let pending = pending_from(
        lock(statuses).values().map(|s| (s.client, s.connected)),
        client,
    );
    if pending < config.max_pending_per_address {
        return None;
    }
    let mut r = plain(
        StatusCode::TOO_MANY_REQUESTS,
        "too many sessions from this address are still connecting",
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    Some(r)
}

/// 503 for a session id [`random_id`] could not make.
fn no_randomness() -> Response {
    plain(
        StatusCode::SERVICE_UNAVAILABLE,
        "no randomness for a session id",
    )
}

fn unauthorized(why: &str) -> Response {
    let mut r = plain(StatusCode::UNAUTHORIZED, why);
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    r
}

/// An offer's request: checked to be SDP, of bounded size, UTF-8.
struct Offer {
    peer: Option<SocketAddr>,
    headers: HeaderMap,
    /// The `Authorization: Bearer` credential, if any.
    bearer: Option<String>,
    query: Option<String>,
    sdp: String,
}

impl Offer {
    async fn read(req: Request) -> Result<Offer, Response> {
        let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().copied();
        let headers = req.headers().clone();
        let query = req.uri().query().map(str::to_owned);
        let Ok(body) = axum::body::to_bytes(req.into_body(), MAX_OFFER + 1).await else {
            return Err(plain(StatusCode::PAYLOAD_TOO_LARGE, "offer too large"));
        };
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(str::to_owned);
        let is_sdp = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().starts_with("application/sdp"));
        if !is_sdp {
            return Err(plain(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "the offer must be Content-Type: application/sdp",
            ));
        }
        if body.len() > MAX_OFFER {
            return Err(plain(StatusCode::PAYLOAD_TOO_LARGE, "offer too large"));
        }
        let Ok(sdp) = String::from_utf8(body.to_vec()) else {
            return Err(plain(StatusCode::BAD_REQUEST, "the offer is not UTF-8"));
        };
        Ok(Offer {
            peer: peer.map(|c| c.0),
            headers,
            bearer,
            query,
            sdp,
        })
    }
}

/// `POST /whep/<stream>`: a viewer's offer.
async fn play<A: Authorizer>(
    State(server): State<WhipServer<A>>,
    Path(stream): Path<String>,
    req: Request,
) -> Response {
    match StreamPath::new("live", &stream) {
        Ok(path) => start_play(server, path, req).await,
        Err(e) => plain(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

/// `POST /whep/<stream>/<rendition>`: a viewer's offer for one rendition
/// of the stream's ladder (played under the stream's authorization).
async fn play_rendition<A: Authorizer>(
    State(server): State<WhipServer<A>>,
    Path((stream, rendition)): Path<(String, String)>,
    req: Request,
) -> Response {
    match StreamPath::new("live", &stream).and_then(|p| p.with_rendition(&rendition)) {
        Ok(path) => start_play(server, path, req).await,
        Err(e) => plain(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

/// Plays `path` to the offer of `req`: the play token (as bearer, or the
/// `token` query parameter as HLS takes it) is checked on the source
/// stream; 403 refused, 404 no such stream or not live, 503 too many
/// viewers.
async fn start_play<A: Authorizer>(
    server: WhipServer<A>,
    path: StreamPath,
    req: Request,
) -> Response {
    let shared = &server.shared;
    let offer = match Offer::read(req).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    if lock(&shared.viewers).len() >= shared.config.max_viewers {
        return plain(StatusCode::SERVICE_UNAVAILABLE, "too many WHEP viewers");
    }
    let peer_ip = offer.peer.map_or(IpAddr::from([0, 0, 0, 0]), |p| p.ip());
    let play = PlayRequest {
        stream: path.source(),
        token: offer
            .bearer
            .clone()
            .or_else(|| token_param(offer.query.as_deref())),
        client_ip: (shared.client_ip)(peer_ip, &offer.headers),
    };
    if let Some(refused) = too_many_pending(&shared.viewers, play.client_ip, &shared.config) {
        return refused;
    }
    let decision = match tokio::time::timeout(
        shared.config.auth_timeout,
        shared.auth.authorize_play(&play),
    )
    .await
    {
        Ok(d) => d,
        Err(_) => {
            return plain(StatusCode::SERVICE_UNAVAILABLE, "the play check timed out");
        }
    };
    match decision {
        PlayDecision::Allow => {}
        PlayDecision::Deny { reason } => {
            tracing::debug!(stream = %play.stream, client = %play.client_ip, %reason, "whep play denied");
            return plain(StatusCode::FORBIDDEN, "not allowed to play this stream");
        }
        PlayDecision::NotFound { .. } => return plain(StatusCode::NOT_FOUND, "no such stream"),
    }
    let Some(reader) = shared
        .hub
        .subscribe_existing(&path)
        .filter(|_| shared.hub.is_publishing(&path))
    else {
        return plain(StatusCode::NOT_FOUND, "the stream is not live");
    };
    let (session, answer) = match WhepSession::new(&offer.sdp, &shared.setup, Instant::now()) {
        Ok(s) => s,
        Err(e) => return plain(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let Some(id) = random_id() else {
        return no_randomness();
    };
    lock(&shared.viewers).insert(id.clone(), SessionStatus::new(&path, play.client_ip));
    let start = Command::Play {
        id: id.clone(),
        session: Box::new(session),
        reader,
    };
    if shared.commands.send(start).await.is_err() {
        lock(&shared.viewers).remove(&id);
        return plain(StatusCode::SERVICE_UNAVAILABLE, "the WHEP server stopped");
    }
    tracing::info!(stream = %path, client = %play.client_ip, session = %id, "whep play started");
    let location = match path.rendition() {
        Some(_) => format!("/whep/{}/{id}", path.source().name()),
        None => format!("/whep/{}/{id}", path.name()),
    };
    created(&shared.config, answer, &location)
}

/// `DELETE /whep/<stream>/<session>`.
async fn end_play<A: Authorizer>(
    State(server): State<WhipServer<A>>,
    Path((stream, id)): Path<(String, String)>,
) -> Response {
    let known = lock(&server.shared.viewers)
        .get(&id)
        .is_some_and(|s| StreamPath::parse(&s.stream).is_ok_and(|p| p.source().name() == stream));
    if !known {
        return plain(StatusCode::NOT_FOUND, "no such WHEP session");
    }
    stop(&server, id).await
}

/// Ends session `id`: 200, or 404 if it is not running.
async fn stop<A>(server: &WhipServer<A>, id: String) -> Response {
    let (done, stopped) = tokio::sync::oneshot::channel();
    let _ = server
        .shared
        .commands
        .send(Command::Stop { id, done })
        .await;
    match stopped.await {
        Ok(true) => plain(StatusCode::OK, ""),
        _ => plain(StatusCode::NOT_FOUND, "no such session"),
    }
}

async fn end<A: Authorizer>(
    State(server): State<WhipServer<A>>,
    Path((stream, id)): Path<(String, String)>,
) -> Response {
    let known = lock(&server.shared.sessions)
        .get(&id)
        .is_some_and(|s| StreamPath::parse(&s.stream).is_ok_and(|p| p.name() == stream));
    if !known {
        return plain(StatusCode::NOT_FOUND, "no such WHIP session");
    }
    stop(&server, id).await
}

/// This host's source address on its default IPv4 route, found without
/// sending anything (connecting a UDP socket only picks a route). The probe
/// is a unicast address (TEST-NET-3): a broadcast one is refused without
/// `SO_BROADCAST`, which hid the route on a host whose own subnet was the
/// probe's.
pub fn default_route_ip() -> Option<IpAddr> {
    let probe = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    probe.connect("203.0.113.1:9").ok()?;
    let ip = probe.local_addr().ok()?.ip();
    (!ip.is_unspecified()).then_some(ip)
}

/// WHIP's UDP sockets: `addr` itself, or with an unspecified IP one socket
/// per address of `ips` (default 127.0.0.1 and the default route's), each
/// an ICE candidate on the same port when `addr` names one.
pub async fn bind_sockets(
    addr: SocketAddr,
    ips: &[std::net::IpAddr],
) -> std::io::Result<Vec<UdpSocket>> {
    let mut sockets = Vec::new();
    let mut port = addr.port();
    for ip in listen_ips(addr, ips) {
        let s = UdpSocket::bind((ip, port)).await?;
        if port == 0 {
            port = s.local_addr()?.port();
        }
        sockets.push(s);
    }
    Ok(sockets)
}

/// Where WebRTC's ICE-TCP listens (`--whip-tcp`): beside the UDP sockets
/// (the default), at an address (`ADDR`), or nowhere (`off`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IceTcp {
    /// A listener at each UDP socket's address and port (another port if
    /// that one is taken over TCP).
    #[default]
    BesideUdp,
    /// At this address (with an unspecified IP, one per local address, as
    /// the UDP sockets).
    At(SocketAddr),
    /// UDP only.
    Off,
}

impl std::str::FromStr for IceTcp {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "off" => Ok(IceTcp::Off),
            _ => s
                .parse()
                .map(IceTcp::At)
                .map_err(|e| format!("{s:?}: {e} (an address or off)")),
        }
    }
}

/// WHIP's ICE-TCP listeners, as `tcp` says: beside the UDP `sockets`, or
/// at an address (with an unspecified IP, one per address of `ips`, as
/// [`bind_sockets`]).
pub async fn bind_tcp(
    tcp: IceTcp,
    ips: &[IpAddr],
    sockets: &[UdpSocket],
) -> std::io::Result<Vec<TcpListener>> {
    let mut listeners = Vec::new();
    let addr = match tcp {
        IceTcp::Off => return Ok(listeners),
        IceTcp::At(addr) => addr,
        IceTcp::BesideUdp => {
            for s in sockets {
                let at = s.local_addr()?;
                let l = match TcpListener::bind(at).await {
                    Ok(l) => l,
                    Err(_) => TcpListener::bind((at.ip(), 0)).await?,
                };
                listeners.push(l);
            }
            return Ok(listeners);
        }
    };
    let mut port = addr.port();
    for ip in listen_ips(addr, ips) {
        let l = TcpListener::bind((ip, port)).await?;
        if port == 0 {
            port = l.local_addr()?.port();
        }
        listeners.push(l);
    }
    Ok(listeners)
}

/// The addresses to bind for `addr`: itself, or with an unspecified IP
/// those of `ips` (default 127.0.0.1 and the default route's).
fn listen_ips(addr: SocketAddr, ips: &[IpAddr]) -> Vec<IpAddr> {
    if !addr.ip().is_unspecified() {
        return vec![addr.ip()];
    }
    let mut ips = ips.to_vec();
    if ips.is_empty() {
        ips.push(std::net::Ipv4Addr::LOCALHOST.into());
        if let Some(ip) = default_route_ip().filter(|ip| !ips.contains(ip)) {
            ips.push(ip);
        }
    }
    ips
}

/// A running session: a publisher's, or a viewer's with the task that
/// reads its stream from the Hub.
enum Running {
    Publish {
        session: Box<WhipSession>,
        publisher: Option<HubPublisher>,
        started: Instant,
    },
    Play {
        session: Box<WhepSession>,
        started: Instant,
        /// The stream played.
        stream: StreamPath,
    },
}

/// A stream being watched over WHEP: read from the Hub (and transformed)
/// once, by one task, for all its viewers.
struct Feed {
    task: tokio::task::JoinHandle<()>,
    viewers: Vec<String>,
    /// The last track set, for a viewer who joins.
    tracks: Option<Tracks>,
}

/// Everything the media loop keeps.
struct Loop {
    running: HashMap<String, Running>,
    /// Peer address -> session, learned from what each session accepted
    /// (UDP; an ICE-TCP connection knows its session).
    routes: HashMap<SocketAddr, String>,
    feeds: HashMap<StreamPath, Feed>,
    wire: Wire,
}

/// The network side of the media loop: the UDP sockets and the ICE-TCP
/// connections, by the candidate each stands for.
struct Wire {
    sockets: Vec<Arc<UdpSocket>>,
    /// `locals[i]`: the address the sessions know socket `i` by (its ICE
    /// candidate): datagrams it receives were sent there, and what a
    /// session sends from there leaves by it.
    locals: Vec<SocketAddr>,
    /// The same of the TCP listeners.
    tcp_locals: Vec<SocketAddr>,
    conns: HashMap<u64, TcpConn>,
    /// (peer, our candidate) -> its connection: where a session's TCP
    /// packet goes.
    by_peer: HashMap<(SocketAddr, SocketAddr), u64>,
    next_conn: u64,
}

/// An ICE-TCP connection a peer opened.
struct TcpConn {
    /// The peer's address, and our candidate it connected to.
    peer: SocketAddr,
    local: SocketAddr,
    /// Packets to send (framed by the writer task); full: dropped.
    out: mpsc::Sender<Vec<u8>>,
    /// The session its STUN check went to.
    session: Option<String>,
    opened: Instant,
    /// Packets no session took before one did.
    strangers: u32,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for TcpConn {
    fn drop(&mut self) {
        // The writer ends with `out`, shutting the connection down.
        self.reader.abort();
    }
}

/// Packets queued to one ICE-TCP peer: 1.5 MB, over a second of a
/// 6 Mbit/s stream.
const TCP_QUEUE: usize = 1024;

/// How long a write to an ICE-TCP peer may wait (the peer not reading)
/// before its connection is closed: a connection closed meanwhile, its
/// queue gone, would otherwise keep its socket and task for as long as
/// the peer keeps it open without reading.
const TCP_WRITE_STALL: Duration = Duration::from_secs(5);

/// Packets on an unbound ICE-TCP connection that no session takes before
/// it is closed (a real peer's first packet is its STUN check).
const TCP_STRANGERS: u32 = 8;

impl Wire {
    /// Opens connection `stream` from `peer` to TCP listener `local` if the
    /// caps allow.
    fn open<A>(
        &mut self,
        shared: &Shared<A>,
        net: &mpsc::Sender<Net>,
        local: usize,
        peer: SocketAddr,
        stream: TcpStream,
    ) {
        let c = &shared.config;
        let here = |o: &TcpConn| same_address(o.peer.ip(), peer.ip());
        let from_there = self.conns.values().filter(|o| here(o)).count();
        let Some(&candidate) = self.tcp_locals.get(local) else {
            return;
        };
        let full_here = from_there >= c.max_tcp_per_address;
        if self.conns.len() >= c.max_tcp_connections || full_here {
            // Room is made by closing the oldest connection no session
            // took (of this address when its cap is the one reached): it
            // carries no one's media, and a real peer's STUN check binds
            // its connection within a round trip, so idle connections
            // cannot lock an address (a NAT's publishers) out. Refused
            // when every one is some session's.
            shared.tcp_refused.fetch_add(1, Ordering::Relaxed);
            let idle = self
                .conns
                .iter()
                .filter(|(_, o)| o.session.is_none() && (!full_here || here(o)))
                .map(|(id, _)| *id)
                .min();
            match idle {
                Some(oldest) => self.close(shared, oldest),
                None => {
                    tracing::debug!(%peer, "ICE-TCP connection refused: over a cap");
                    return;
                }
            }
        }
        let _ = stream.set_nodelay(true);
        let id = self.next_conn;
        self.next_conn += 1;
        let (r, w) = stream.into_split();
        let (out, queue) = mpsc::channel(TCP_QUEUE);
        tokio::spawn(write_frames(id, w, queue, net.clone(), TCP_WRITE_STALL));
        let reader = tokio::spawn(read_frames(id, r, net.clone()));
        self.by_peer.insert((peer, candidate), id);
        self.conns.insert(
            id,
            TcpConn {
                peer,
                local: candidate,
                out,
                session: None,
                opened: Instant::now(),
                strangers: 0,
                reader,
            },
        );
        shared
            .tcp_open
            .store(self.conns.len() as u64, Ordering::Relaxed);
    }

    fn close<A>(&mut self, shared: &Shared<A>, id: u64) {
        if let Some(c) = self.conns.remove(&id) {
            if self.by_peer.get(&(c.peer, c.local)) == Some(&id) {
                self.by_peer.remove(&(c.peer, c.local));
            }
            if c.session.is_none() {
                shared.tcp_unused.fetch_add(1, Ordering::Relaxed);
            }
        }
        shared
            .tcp_open
            .store(self.conns.len() as u64, Ordering::Relaxed);
    }

    /// Closes the connections of session `id`, and those no session took
    /// within the connect timeout.
    fn close_stale<A>(&mut self, shared: &Shared<A>, now: Instant, ended: Option<&str>) {
        let stale: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, c)| match c.session.as_deref() {
                Some(s) => Some(s) == ended,
                None => now.saturating_duration_since(c.opened) > shared.config.connect_timeout,
            })
            .map(|(id, _)| *id)
            .collect();
        for id in stale {
            self.close(shared, id);
        }
    }

    /// Sends `p`; to a TCP peer without a connection (closed) or whose
    /// queue is full it is lost, as a datagram would be.
    async fn send<A>(&self, shared: &Shared<A>, p: Packet) {
        match p.transport {
            Transport::Udp => {
                let i = self.locals.iter().position(|l| *l == p.source).unwrap_or(0);
                if let Some(s) = self.sockets.get(i) {
                    let _ = s.send_to(&p.data, p.destination).await;
                }
            }
            Transport::Tcp => {
                let conn = self
                    .by_peer
                    .get(&(p.destination, p.source))
                    .and_then(|id| self.conns.get(id));
                if conn.is_none_or(|c| c.out.try_send(p.data).is_err()) {
                    shared.tcp_dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

/// Whether two peers count as one address for the caps: the same IPv4
/// address, or the same IPv6 /64.
fn same_address(a: IpAddr, b: IpAddr) -> bool {
    match (a, b) {
        (IpAddr::V6(a), IpAddr::V6(b)) => a.octets()[..8] == b.octets()[..8],
        _ => a == b,
    }
}

/// `$e` with `$s` bound to the session of either kind of [`Running`].
macro_rules! either {
    ($r:expr, $s:ident => $e:expr) => {
        match $r {
            Running::Publish { session: $s, .. } => $e,
            Running::Play { session: $s, .. } => $e,
        }
    };
}

impl Running {
    fn started(&self) -> Instant {
        match self {
            Running::Publish { started, .. } | Running::Play { started, .. } => *started,
        }
    }

    fn poll_timeout(&self) -> Instant {
        either!(self, session => session.poll_timeout())
    }

    fn handle_timeout(&mut self, now: Instant) {
        either!(self, session => session.handle_timeout(now))
    }

    fn is_connected(&self) -> bool {
        either!(self, session => session.is_connected())
    }

    fn closed(&self) -> Option<&str> {
        either!(self, session => session.closed())
    }

    fn close_because(&mut self, why: &str) {
        either!(self, session => session.close_because(why))
    }

    fn last_error(&self) -> Option<&str> {
        either!(self, session => session.last_error())
    }

    fn accepts(
        &self,
        now: Instant,
        via: Transport,
        from: SocketAddr,
        to: SocketAddr,
        data: &[u8],
    ) -> bool {
        either!(self, session => session.accepts(now, via, from, to, data))
    }

    fn handle_datagram(
        &mut self,
        now: Instant,
        via: Transport,
        from: SocketAddr,
        to: SocketAddr,
        data: &[u8],
    ) {
        either!(self, session => session.handle_datagram(now, via, from, to, data))
    }

    fn poll_transmit(&mut self) -> Option<Packet> {
        either!(self, session => session.poll_transmit())
    }

    /// Copies the session's state into the status the routes show.
    fn report<A>(&self, shared: &Shared<A>, id: &str) {
        match self {
            Running::Publish { session, .. } => {
                if let Some(s) = lock(&shared.sessions).get_mut(id) {
                    s.connected = session.is_connected();
                    s.stats = session.stats().clone();
                }
            }
            Running::Play { session, .. } => {
                if let Some(s) = lock(&shared.viewers).get_mut(id) {
                    s.connected = session.is_connected();
                    s.stats = session.stats().clone();
                }
            }
        }
    }
}

/// What the network tasks hand the media loop.
enum Net {
    /// A datagram on UDP socket `.0` from `.1`.
    Udp(usize, SocketAddr, Vec<u8>),
    /// A connection to TCP listener `local`.
    TcpOpen {
        local: usize,
        peer: SocketAddr,
        stream: TcpStream,
    },
    /// A packet (its RFC 4571 length taken off) on connection `.0`.
    Tcp(u64, Vec<u8>),
    /// Connection `.0` ended: closed by the peer, or broken.
    TcpClosed(u64),
}

/// Reads connection `conn`'s RFC 4571 frames (a 16-bit big-endian length,
/// then the packet; at most 64 KiB, so nothing a peer sends makes it hold
/// more) into the loop, until it ends.
async fn read_frames(conn: u64, mut r: OwnedReadHalf, net: mpsc::Sender<Net>) {
    let mut buf = vec![0u8; usize::from(u16::MAX)];
    while let Ok(n) = r.read_u16().await {
        let packet = &mut buf[..usize::from(n)];
        if r.read_exact(packet).await.is_err() {
            break;
        }
        if n > 0 && net.send(Net::Tcp(conn, packet.to_vec())).await.is_err() {
            return;
        }
    }
    let _ = net.send(Net::TcpClosed(conn)).await;
}

/// Writes the packets queued for connection `conn` as RFC 4571 frames,
/// those waiting together, until the queue's sender is gone (the
/// connection closed), the peer is, or a write waited `stall` (the peer
/// does not read: the loop is told to close the connection, and this
/// half goes at once).
async fn write_frames(
    conn: u64,
    mut w: OwnedWriteHalf,
    mut queue: mpsc::Receiver<Vec<u8>>,
    net: mpsc::Sender<Net>,
    stall: Duration,
) {
    let mut buf = Vec::new();
    while let Some(first) = queue.recv().await {
        buf.clear();
        let mut next = Some(first);
        while let Some(p) = next {
            // Ours are under the MTU; a longer one cannot be framed.
            if let Ok(n) = u16::try_from(p.len()) {
                buf.extend_from_slice(&n.to_be_bytes());
                buf.extend_from_slice(&p);
            }
            next = if buf.len() < 64 * 1024 {
                queue.try_recv().ok()
            } else {
                None
            };
        }
        match tokio::time::timeout(stall, w.write_all(&buf)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => break,
            Err(_) => {
                let _ = tokio::time::timeout(stall, net.send(Net::TcpClosed(conn))).await;
                return;
            }
        }
    }
    let _ = tokio::time::timeout(stall, w.shutdown()).await;
}

/// Reads a watched stream from the Hub into the media loop, through
/// `transform` if any (whose failure passes events on as they were), until
/// the stream ends or its last viewer goes.
fn feed(
    mut reader: HubReader,
    mut transform: Option<Box<dyn Transform>>,
    media: mpsc::Sender<(StreamPath, MediaEvent)>,
) -> tokio::task::JoinHandle<()> {
    let stream = reader.stream().clone();
    tokio::spawn(async move {
        let mut out = Vec::new();
        while let Some(e) = reader.recv().await {
            match transform.as_mut() {
                Some(t) => {
                    let kept = (!matches!(e, MediaEvent::Frame(_))).then(|| e.clone());
                    if t.push(e, &mut out).is_err() {
                        transform = None;
                        out.extend(kept);
                    }
                }
                None => out.push(e),
            }
            for e in out.drain(..) {
                if media.send((stream.clone(), e)).await.is_err() {
                    return;
                }
            }
        }
        let _ = media.send((stream, MediaEvent::End)).await;
    })
}

/// Runs every session: the UDP sockets' datagrams and the ICE-TCP
/// connections' packets to their sessions, the sessions' packets out,
/// their timers, the watched streams to their viewers, and the commands of
/// the routes.
async fn media_loop<A>(
    wire: Wire,
    listeners: Vec<TcpListener>,
    mut commands: mpsc::Receiver<Command>,
    shared: Arc<Shared<A>>,
) {
    let (net_tx, mut net) = mpsc::channel::<Net>(1024);
    for (i, s) in wire.sockets.iter().enumerate() {
        let (s, tx) = (Arc::clone(s), net_tx.clone());
        tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            loop {
                match s.recv_from(&mut buf).await {
                    Ok((n, from)) => {
                        if tx.send(Net::Udp(i, from, buf[..n].to_vec())).await.is_err() {
                            return;
                        }
                    }
                    // ICMP errors of earlier sends; keep going.
                    Err(_) => tokio::task::yield_now().await,
                }
            }
        });
    }
    for (local, l) in listeners.into_iter().enumerate() {
        let tx = net_tx.clone();
        tokio::spawn(async move {
            loop {
                match l.accept().await {
                    Ok((stream, peer)) => {
                        let open = Net::TcpOpen {
                            local,
                            peer,
                            stream,
                        };
                        if tx.send(open).await.is_err() {
                            return;
                        }
                    }
                    // Out of descriptors, most likely: let some close.
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
    }
    // The watched streams, read by one task each.
    let (media_tx, mut media) = mpsc::channel::<(StreamPath, MediaEvent)>(1024);
    let mut l = Loop {
        running: HashMap::new(),
        routes: HashMap::new(),
        feeds: HashMap::new(),
        wire,
    };
    loop {
        let now = Instant::now();
        let mut next = now + Duration::from_secs(1);
        let mut ended = Vec::new();
        for (id, r) in l.running.iter_mut() {
            if r.poll_timeout() <= now {
                r.handle_timeout(now);
            }
            flush(&shared, &l.wire, r).await;
            if !r.is_connected()
                && now.saturating_duration_since(r.started()) > shared.config.connect_timeout
            {
                let why = format!(
                    "not connected within {:?}{}",
                    shared.config.connect_timeout,
                    r.last_error()
                        .map(|e| format!(" (last refused: {e})"))
                        .unwrap_or_default()
                );
                r.close_because(&why);
            }
            if r.closed().is_some() {
                ended.push(id.clone());
            } else {
                next = next.min(r.poll_timeout());
            }
        }
        for id in ended {
            finish(&shared, &mut l, &id);
        }
        l.wire.close_stale(&shared, now, None);
        tokio::select! {
            n = net.recv() => {
                let Some(n) = n else { return };
                let now = Instant::now();
                let (via, from, to, data) = match n {
                    Net::Udp(i, from, data) => (Transport::Udp, from, l.wire.locals[i], data),
                    Net::TcpOpen { local, peer, stream } => {
                        l.wire.open(&shared, &net_tx, local, peer, stream);
                        continue;
                    }
                    Net::TcpClosed(conn) => {
                        l.wire.close(&shared, conn);
                        continue;
                    }
                    Net::Tcp(conn, data) => {
                        let Some(c) = l.wire.conns.get(&conn) else { continue };
                        (Transport::Tcp, c.peer, c.local, data)
                    }
                };
                let running = &l.running;
                let known = match via {
                    Transport::Udp => l.routes.get(&from),
                    Transport::Tcp => l.wire.by_peer.get(&(from, to)).and_then(|c| l.wire.conns.get(c)).and_then(|c| c.session.as_ref()),
                };
                // An ICE-TCP connection is bound by a STUN check alone
                // (RFC 7983: first byte 0-3): str0m also takes a packet by
                // its source address, which over TCP is any port number
                // that happens to be a UDP peer's.
                let may_bind = via == Transport::Udp || data.first().is_some_and(|&b| b < 4);
                let id = known.filter(|id| running.contains_key(*id)).cloned().or_else(|| {
                    running
                        .iter()
                        .find(|(_, r)| may_bind && r.accepts(now, via, from, to, &data))
                        .map(|(id, _)| id.clone())
                });
                let conn = match via {
                    Transport::Udp => None,
                    Transport::Tcp => l.wire.by_peer.get(&(from, to)).copied(),
                };
                let Some(id) = id else {
                    // A connection whose peer is no session's is closed.
                    if let Some(conn) = conn
                        && let Some(c) = l.wire.conns.get_mut(&conn)
                    {
                        c.strangers += 1;
                        if c.strangers >= TCP_STRANGERS {
                            l.wire.close(&shared, conn);
                        }
                    }
                    continue;
                };
                match conn.and_then(|c| l.wire.conns.get_mut(&c)) {
                    Some(c) => c.session = Some(id.clone()),
                    None => {
                        l.routes.insert(from, id.clone());
                    }
                }
                if let Some(r) = l.running.get_mut(&id) {
                    r.handle_datagram(now, via, from, to, &data);
                    flush(&shared, &l.wire, r).await;
                    r.report(&shared, &id);
                    keyframe_for_viewer(&shared, &mut l.running, &id, &l.wire).await;
                }
            }
            m = media.recv() => {
                let Some((stream, event)) = m else { return };
                let Some(feed) = l.feeds.get_mut(&stream) else { continue };
                if let MediaEvent::Tracks(t) = &event {
                    feed.tracks = Some(t.clone());
                }
                let viewers = feed.viewers.clone();
                if matches!(event, MediaEvent::End) {
                    l.feeds.remove(&stream);
                }
                for id in viewers {
                    to_viewer(&shared, &mut l.running, &id, &event, &l.wire).await;
                }
            }
            c = commands.recv() => match c {
                Some(Command::Start { id, session, publisher }) => {
                    l.running.insert(id, Running::Publish { session, publisher: Some(publisher), started: Instant::now() });
                }
                Some(Command::Play { id, session, reader }) => {
                    let stream = reader.stream().clone();
                    let joined = match l.feeds.get_mut(&stream) {
                        Some(feed) => {
                            // Reading already: this reader is not needed.
                            feed.viewers.push(id.clone());
                            feed.tracks.clone()
                        }
                        None => {
                            let transform = shared.config.play_transform.as_ref().map(|m| (m.0)());
                            let task = feed(reader, transform, media_tx.clone());
                            l.feeds.insert(stream.clone(), Feed { task, viewers: vec![id.clone()], tracks: None });
                            None
                        }
                    };
                    l.running.insert(id.clone(), Running::Play { session, started: Instant::now(), stream });
                    if let Some(t) = joined {
                        to_viewer(&shared, &mut l.running, &id, &MediaEvent::Tracks(t), &l.wire).await;
                    }
                }
                Some(Command::Stop { id, done }) => {
                    let found = match l.running.get_mut(&id) {
                        Some(r) => {
                            r.close_because("closed");
                            true
                        }
                        None => false,
                    };
                    finish(&shared, &mut l, &id);
                    let _ = done.send(found);
                }
                None => return,
            },
            () = tokio::time::sleep_until(next.into()) => {}
        }
    }
}

/// One event of the stream viewer `id` watches, to its session.
async fn to_viewer<A>(
    shared: &Shared<A>,
    running: &mut HashMap<String, Running>,
    id: &str,
    event: &MediaEvent,
    wire: &Wire,
) {
    let Some(r) = running.get_mut(id) else {
        return;
    };
    let Running::Play { session, .. } = r else {
        return;
    };
    session.push(Instant::now(), event);
    flush(shared, wire, r).await;
    if matches!(event, MediaEvent::Tracks(_) | MediaEvent::End) {
        r.report(shared, id);
    }
    keyframe_for_viewer(shared, running, id, wire).await;
}

/// When viewer `id` waits for a keyframe of a stream a WHIP session of
/// this server publishes, asks that publisher for one (it comes in a
/// round trip and an encode, instead of at the publisher's next keyframe,
/// up to the segment target later).
async fn keyframe_for_viewer<A>(
    shared: &Shared<A>,
    running: &mut HashMap<String, Running>,
    id: &str,
    wire: &Wire,
) {
    let Some(Running::Play {
        session, stream, ..
    }) = running.get_mut(id)
    else {
        return;
    };
    if !session.wish_keyframe() {
        return;
    }
    let stream = stream.to_string();
    let publisher = lock(&shared.sessions)
        .iter()
        .find(|(_, s)| s.stream == stream)
        .map(|(id, _)| id.clone());
    if let Some(r) = publisher.and_then(|p| running.get_mut(&p))
        && let Running::Publish { session, .. } = r
    {
        session.request_keyframe_for_viewer(Instant::now());
        flush(shared, wire, r).await;
    }
}

/// Sends what the session has for the network and pushes a publisher's
/// media into the Hub; a publisher that was taken over closes the session.
async fn flush<A>(shared: &Shared<A>, wire: &Wire, r: &mut Running) {
    while let Some(p) = r.poll_transmit() {
        wire.send(shared, p).await;
    }
    let Running::Publish {
        session, publisher, ..
    } = r
    else {
        return;
    };
    while let Some(event) = session.poll_event() {
        let Some(p) = publisher.as_mut() else { break };
        if p.push(event).is_err() {
            // Taken over by another publisher, or the key was revoked.
            session.close();
            *publisher = None;
            break;
        }
    }
}

fn finish<A>(shared: &Shared<A>, l: &mut Loop, id: &str) {
    let Some(r) = l.running.remove(id) else {
        return;
    };
    l.routes.retain(|_, v| v != id);
    l.wire.close_stale(shared, Instant::now(), Some(id));
    let why = r.closed().unwrap_or("closed").to_owned();
    match r {
        Running::Publish {
            session,
            mut publisher,
            ..
        } => {
            let status = lock(&shared.sessions).remove(id);
            tracing::info!(
                stream = status.as_ref().map_or("", |s| s.stream.as_str()),
                session = id,
                reason = %why,
                stats = ?session.stats(),
                "whip publish ended"
            );
            if let Some(mut p) = publisher.take() {
                // Detaches now; the stream ends after the Hub's publisher
                // grace unless the publisher comes back. That wait is this
                // task's, not the media loop's.
                tokio::spawn(async move {
                    let _ = ugc_core::Sink::finish(&mut p).await;
                });
            }
        }
        Running::Play {
            session, stream, ..
        } => {
            if let Some(feed) = l.feeds.get_mut(&stream) {
                feed.viewers.retain(|v| v != id);
                if feed.viewers.is_empty() {
                    feed.task.abort();
                    l.feeds.remove(&stream);
                }
            }
            let mut viewers = lock(&shared.viewers);
            let status = viewers.remove(id);
            let stream = status.as_ref().map_or("", |s| s.stream.as_str());
            let others = viewers.values().any(|s| s.stream == stream);
            drop(viewers);
            let mut gone = lock(&shared.viewers_gone);
            if others {
                add_stats(gone.entry(stream.to_owned()).or_default(), session.stats());
            } else {
                gone.remove(stream);
            }
            tracing::info!(
                stream,
                session = id,
                reason = %why,
                stats = ?session.stats(),
                "whep play ended"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ICE-TCP peer that never reads: once the socket's buffers are
    /// full a write waits, and after the stall the writer tells the loop
    /// to close the connection and ends (its half of the socket with it),
    /// however long the peer keeps the connection open.
    #[tokio::test]
    async fn a_tcp_peer_that_does_not_read_has_its_connection_closed() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let peer = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().await.unwrap();
        let (_r, w) = s.into_split();
        let (out, queue) = mpsc::channel(TCP_QUEUE);
        let (net_tx, mut net) = mpsc::channel(4);
        let writer = tokio::spawn(write_frames(
            7,
            w,
            queue,
            net_tx,
            Duration::from_millis(200),
        ));
        // Far more than loopback's socket buffers hold.
        let feeder = tokio::spawn(async move {
            for _ in 0..100_000 {
                if out.send(vec![0u8; 1200]).await.is_err() {
                    return;
                }
            }
        });
        let closed = tokio::time::timeout(Duration::from_secs(20), net.recv()).await;
        assert!(
            matches!(closed, Ok(Some(Net::TcpClosed(7)))),
            "the writer did not give up"
        );
        tokio::time::timeout(Duration::from_secs(1), writer)
            .await
            .expect("the writer ended")
            .unwrap();
        feeder.abort();
        drop(peer);
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    /// Behind a 1:1 NAT the public address stands for the non-loopback
    /// sockets at their ports; loopback ones stay for publishers on the
    /// host; two sockets offered as one address, or a wildcard, are errors.
    #[test]
    fn a_public_ip_stands_for_the_non_loopback_sockets() {
        let locals = [addr("127.0.0.1:8189"), addr("10.0.0.7:8189")];
        assert_eq!(candidates(&locals, None).ok(), Some(locals.to_vec()));
        let public = "203.0.113.9".parse().ok();
        assert_eq!(
            candidates(&locals, public).ok(),
            Some(vec![addr("127.0.0.1:8189"), addr("203.0.113.9:8189")])
        );
        let two = [addr("10.0.0.7:8189"), addr("10.0.1.7:8189")];
        assert!(candidates(&two, None).is_ok());
        let e = candidates(&two, public).unwrap_err().to_string();
        assert!(e.contains("203.0.113.9:8189"), "{e}");
        let e = candidates(&[addr("0.0.0.0:8189")], None).unwrap_err();
        assert!(e.to_string().contains("bind a specific address"), "{e}");
    }

    /// Pending sessions are counted per address, an IPv6 /64 as one (a
    /// host has a whole /64 to pick from), connected ones not at all.
    #[test]
    fn pending_sessions_are_counted_per_address() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let sessions = [
            (ip("192.0.2.1"), false),
            (ip("192.0.2.1"), true),
            (ip("::ffff:192.0.2.1"), false),
            (ip("192.0.2.2"), false),
            (ip("2001:db8:1:2::5"), false),
            (ip("2001:db8:1:2:ffff::9"), false),
            (ip("2001:db8:1:3::5"), false),
        ];
        let n = |client: &str| pending_from(sessions.iter().copied(), ip(client));
        assert_eq!(n("192.0.2.1"), 2);
        assert_eq!(n("192.0.2.2"), 1);
        assert_eq!(n("192.0.2.3"), 0);
        assert_eq!(n("2001:db8:1:2::77"), 2);
        assert_eq!(n("2001:db8:1:3::1"), 1);
    }

    /// ICE servers as RFC 9725 4.6 sends them, and what would break the
    /// header or a browser refused.
    #[test]
    fn ice_servers_become_link_headers() {
        let stun = IceServer::parse("stun:stun.example.net:3478").unwrap();
        assert_eq!(
            stun.link(),
            "<stun:stun.example.net:3478>; rel=\"ice-server\""
        );
        let turn =
            IceServer::parse("turns:u1:p@ss:w0rd@turn.example.net:443?transport=tcp").unwrap();
        assert_eq!(
            turn.link(),
            "<turns:turn.example.net:443?transport=tcp>; rel=\"ice-server\"; \
             username=\"u1\"; credential=\"p@ss:w0rd\"; credential-type=\"password\""
        );
        for (bad, says) in [
            ("turn:turn.example.net", "TURN needs"),
            ("stun:u:p@stun.example.net", "no credentials"),
            ("http://x", "unknown scheme"),
            ("stun.example.net", "no scheme"),
            ("turn:u:\"p@x", "not allowed"),
            ("stun:a,stun:b", "not allowed"),
            ("turn:u@x", "USER:PASSWORD@"),
            ("stun:", "no host"),
        ] {
            let e = IceServer::parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
