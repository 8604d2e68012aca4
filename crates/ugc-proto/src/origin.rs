//! The HTTP origin: HLS playlists and segments of the live streams in a
//! [`LiveRegistry`].
//!
//! Routes (`<s>` is the stream of app `live`, the registry's
//! [`StreamPath`] `live/<s>`; a stream of another app `<a>`, which the
//! [`Authorizer`] allows, is served the same way below `/<a>/<s>/`):
//!
//! | path | answer |
//! |---|---|
//! | `/live/<s>/index.m3u8` | multivariant playlist (every rendition of a transcoding ladder, else `mono.m3u8`) |
//! | `/live/<s>/<r>/mono.m3u8`, `.../init-<id>-<n>.mp4`, `.../seg-<id>-<msn>.m4s` ... | rendition `<r>` (registry name `live/<s>/<r>`): the same files as below |
//! | `/live/<s>/mono.m3u8` | fMP4 media playlist |
//! | `/live/<s>/mono-ts.m3u8` | MPEG-TS media playlist |
//! | `/live/<s>/init-<id>-<n>.mp4` | init segment |
//! | `/live/<s>/seg-<id>-<msn>.m4s` | fMP4 media segment |
//! | `/live/<s>/seg-<id>-<msn>.ts` | MPEG-TS media segment (muxed on first request) |
//! | `/live/<s>/part-<id>-<msn>.<i>.m4s` | LL-HLS part `i` of segment `msn` (streamed while being written) |
//!
//! `<id>` is the stream's session ([`LiveStream::session`]): a stream that
//! is published again after it ended restarts its numbers under a new one,
//! so no media URI, which is served `immutable`, ever names other bytes.
//! Media of another session is `404`.
//!
//! ## LL-HLS
//!
//! When the stream's [`ugc_dvr::LiveConfig::part_target_ms`] is set,
//! `mono.m3u8` carries parts, `#EXT-X-PRELOAD-HINT` and
//! `#EXT-X-SERVER-CONTROL` (RFC 8216bis), and takes:
//!
//! * `_HLS_msn=<M>[&_HLS_part=<P>]`: blocking reload. The answer waits until
//!   segment `M` is complete (or part `P` of it, or any later part, exists:
//!   the part after the last of a closed segment is the next segment's
//!   first, see [`ugc_dvr::LiveUpdate::reached`]), and comes at once when it
//!   does; at most [`OriginConfig::hold`] (default
//!   three target durations), then `503`. `M` more than two segments past the
//!   newest complete one, `_HLS_part` without `_HLS_msn`, or values that are
//!   not decimal numbers are `400`. Every held request is one future parked on
//!   a `tokio::sync::watch` (a waker, no task); past
//!   [`OriginConfig::max_held_requests`] more are `503` at once, and so are
//!   those of one client past [`OriginConfig::max_held_per_client`].
//! * `_HLS_skip=YES|v2`: delta update (`#EXT-X-SKIP`).
//!
//! A part that is not complete yet (the preload hint) is answered as soon as
//! its first chunk exists, with a chunked body that grows as its frames
//! arrive.
//!
//! Names are validated with [`StreamPath`]; nothing here touches the file
//! system. Every answer carries `Access-Control-Allow-Origin: *`, `OPTIONS`
//! preflights are answered, `HEAD` works like `GET` without a body.
//!
//! Cache headers keep a CDN edge (nginx `proxy_cache`, keyed on the full
//! URI) correct: segments, parts and init segments are immutable (a year);
//! classic live playlists, and playlists of ended streams (the stream may be
//! published again under the same URL), one second; LL-HLS playlists without `_HLS_msn`
//! `no-cache` (they change every part, and HTTP freshness has whole seconds
//! only, so "at most half a part" is zero); a blocking answer is final for
//! its query (it contains the asked part, and later clients ask for later
//! parts), so it is cached for one target duration and an edge may collapse
//! identical blocking requests into one; errors are never cached.
//!
//! Every request is put to an [`Authorizer`]'s `authorize_play` with the
//! `token` query parameter and the client address (see [`ClientIp`]); a
//! denial is `403`, a stream the authorizer does not know `404`. A playlist served to a request that carried a token lists
//! its URIs with the same `?token=`, so players that resolve relative URIs
//! (and drop the query) keep sending it.
//!
//! ## Viewer counts
//!
//! With [`OriginConfig::viewers`], every media playlist request names its
//! play session to a [`ViewerCounter`]: its token, or on public streams the
//! `vs` parameter that the multivariant playlist puts on its variant URIs
//! (a new id per multivariant request without one; such answers are
//! `private`, as each is one viewer's). Segments and parts carry no `vs`,
//! so they stay one cache entry for every viewer. Behind a CDN edge the
//! per-viewer media playlist URLs are one cache entry per viewer, which
//! defeats the collapsing of blocking reloads: turn counting off there
//! (`None`) and count from the players' beacons instead.
//!
//! ## Viewer experience
//!
//! With [`OriginConfig::qoe`], `POST /<app>/<stream>/qoe` takes a player's
//! beacon ([`ugc_core::qoe`]): `204` when taken; `429` (with
//! `Retry-After`) past its address's or the total rate, checked before the
//! body is read; `413` for a body over [`ugc_core::qoe::MAX_BEACON_BYTES`],
//! `400` for a malformed one, `408` for one not complete within
//! [`BEACON_BODY_TIMEOUT`]; `403`/`404` as a play request of the stream
//! with the same `token` would get, and `404` for a stream not live here;
//! `503` when the collector keeps its most streams. The path is the
//! stream's, so an edge that passes the stream's URLs to the origin passes
//! beacons too (POSTs are not cached). A beacon names its session: the
//! request's play token, else the player's `sid` (the `vs` of its variant
//! URIs when the origin counts playlists, so both count one viewer once).
//! Its multivariant playlists then tell players how often to post one:
//! `#EXT-X-SESSION-DATA:DATA-ID="com.ugc.qoe-interval",VALUE="<seconds>"`
//! ([`ugc_core::qoe::QoeConfig::player_interval`]).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::http::ServeConfig;
use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::extract::{Path, Request, State};
use axum::http::HeaderMap;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use bytes::Bytes;
use ugc_core::{AllowAll, Authorizer, Hub, PlayDecision, PlayRequest, StreamPath};

use ugc_core::qoe::{Beacon, QoeCollector, Refusal};
use ugc_core::viewers::{ViewerCounter, session_id_is_valid};
use ugc_dvr::{
    Chunks, LiveRegistry, LiveStream, MediaFile, MediaFileError, PartProgress, PlaylistQuery,
    RenditionReport, Variant,
};

/// `Content-Type` of playlists.
pub const PLAYLIST_TYPE: &str = "application/vnd.apple.mpegurl";
/// `Cache-Control` of segments and init segments.
pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// `Cache-Control` of live playlists: a shared cache (CDN edge) may keep one
/// for a second, a browser fetches it anew. A player computes the live edge
/// from the time it fetched the playlist; a copy up to a second old from
/// the browser's own cache would put it that much further behind live than
/// it believes.
pub const LIVE_PLAYLIST_CACHE: &str = "public, max-age=0, s-maxage=1";
/// `Cache-Control` of playlists of ended streams: as live ones. The same
/// URL goes live again when the stream is published again, and a copy of
/// the ended playlist kept longer would hide the new broadcast (players
/// that got `#EXT-X-ENDLIST` stop reloading anyway).
pub const ENDED_PLAYLIST_CACHE: &str = LIVE_PLAYLIST_CACHE;
/// `Cache-Control` of errors and of LL-HLS playlists without `_HLS_msn`.
pub const NO_CACHE: &str = "no-cache";

/// Settings of the origin.
#[derive(Debug, Clone)]
pub struct OriginConfig {
    /// Longest hold of a blocking playlist reload or of a part that has not
    /// started; `None`: three target durations of the stream.
    pub hold: Option<Duration>,
    /// Blocking requests held at once (all streams); more get `503`.
    pub max_held_requests: usize,
    /// Blocking requests one client address (the play request's client IP:
    /// the TCP peer, or the viewer a trusted proxy names) may hold at once;
    /// more get `503`. Without it one client could take every held slot
    /// (over HTTP/2, 256 requests per connection) and leave every other
    /// viewer's blocking reloads `503`. A player holds one or two; a NAT of
    /// many viewers, or a CDN edge that does not collapse requests, holds
    /// more: raise it for them.
    pub max_held_per_client: usize,
    /// The hub to tell when a viewer plays a stream at low latency (a
    /// blocking LL-HLS playlist reload or a part): [`Hub::want_low_latency`]
    /// for [`LOW_LATENCY_DEMAND`] from the request, so that the stream's
    /// ingest stops batching its reads. `None`: nobody is told.
    pub low_latency_hub: Option<Hub>,
    /// Counts each stream's viewers (see the module doc, "Viewer counts");
    /// `None` (the default): no counting and no `vs` parameter.
    pub viewers: Option<Arc<ViewerCounter>>,
    /// Takes players' QoE beacons (`POST /<app>/<stream>/qoe`; see the
    /// module doc, "Viewer experience"); `None` (the default): `404`.
    pub qoe: Option<Arc<QoeCollector>>,
    /// Balances new viewers over origins: an authorized request for a
    /// stream's multivariant playlist without [`BALANCED_PARAM`] asks it,
    /// and where it names another origin the answer is `302` to the same
    /// path and query there, plus `balanced=1` (that origin serves it: no
    /// chain of redirects). Asked also for a stream this origin does not
    /// carry. `None` (the default): every viewer plays here.
    pub balance: Option<Balance>,
    /// Pulls a stream this origin does not carry when a viewer asks for it
    /// ([`crate::relay::on_demand`]): the request waits up to
    /// [`PULL_WAIT`] for its first segment; every authorized request keeps
    /// its stream pulled. `None` (the default): `404`.
    pub on_demand: Option<crate::relay::on_demand::OnDemandPulls>,
}

/// Longest wait of a viewer's request for a stream being pulled on demand
/// ([`OriginConfig::on_demand`]) until it has a segment: an aligned
/// segmenter publishes from its second cut, two or three segment
/// durations after the pull starts.
pub const PULL_WAIT: Duration = Duration::from_secs(12);

/// Where a new viewer of a stream plays ([`OriginConfig::balance`]): given
/// the stream (`live/news`), the `http://host:port` of another origin, or
/// `None` to play here.
#[derive(Clone)]
pub struct Balance(pub Arc<dyn Fn(StreamPath) -> BalanceAnswer + Send + Sync>);

/// What a [`Balance`] answers, in time.
pub type BalanceAnswer = std::pin::Pin<Box<dyn Future<Output = Option<String>> + Send>>;

impl std::fmt::Debug for Balance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Balance")
    }
}

/// The query parameter of a viewer that a balancing origin redirected:
/// the origin it was sent to serves it ([`OriginConfig::balance`]).
pub const BALANCED_PARAM: &str = "balanced";

/// How long one LL-HLS request keeps its stream wanted at low latency
/// ([`OriginConfig::low_latency_hub`]). A low-latency player asks every part
/// (a fraction of a second); this spans a few seconds of stalls.
pub const LOW_LATENCY_DEMAND: Duration = Duration::from_secs(10);

impl Default for OriginConfig {
    fn default() -> Self {
        OriginConfig {
            hold: None,
            max_held_requests: 20_000,
            max_held_per_client: 1_000,
            low_latency_hub: None,
            viewers: None,
            qoe: None,
            balance: None,
            on_demand: None,
        }
    }
}

/// Resolves the viewer's address from the TCP peer and the request headers
/// (e.g. `X-Forwarded-For` from trusted proxies only).
pub type ClientIp = Arc<dyn Fn(IpAddr, &HeaderMap) -> IpAddr + Send + Sync>;

/// A [`ClientIp`] that believes no header: the TCP peer is the viewer.
pub fn peer_is_client() -> ClientIp {
    Arc::new(|peer, _| peer)
}

struct Origin<A> {
    registry: Arc<LiveRegistry>,
    auth: Arc<A>,
    client_ip: ClientIp,
    config: OriginConfig,
    held: AtomicUsize,
    /// Held requests per client address (entries at zero are removed).
    held_by_client: Mutex<HashMap<IpAddr, usize>>,
}

/// One held request; releases its slots (all clients', its client's) when
/// dropped.
struct Held<'a> {
    total: &'a AtomicUsize,
    by_client: &'a Mutex<HashMap<IpAddr, usize>>,
    client: IpAddr,
}

impl<'a> Held<'a> {
    /// A slot for `client`'s request, or `None` when all clients hold
    /// `max_held_requests` or `client` holds its `max_held_per_client`.
    fn take<A>(origin: &'a Origin<A>, client: IpAddr) -> Option<Held<'a>> {
        let total = &origin.held;
        let prev = total.fetch_add(1, Ordering::AcqRel);
        if prev >= origin.config.max_held_requests {
            total.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        let mut by_client = lock(&origin.held_by_client);
        let n = by_client.entry(client).or_insert(0);
        if *n >= origin.config.max_held_per_client {
            if *n == 0 {
                by_client.remove(&client);
            }
            drop(by_client);
            total.fetch_sub(1, Ordering::AcqRel);
            tracing::debug!(%client, "held requests per client at the limit: 503");
            return None;
        }
        *n += 1;
        Some(Held {
            total,
            by_client: &origin.held_by_client,
            client,
        })
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        let mut by_client = lock(self.by_client);
        if let Some(n) = by_client.get_mut(&self.client) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                by_client.remove(&self.client);
            }
        }
        drop(by_client);
        self.total.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A lock that survives a panic elsewhere (the map stays consistent: each
/// change is one insert or remove).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Serves `app` (the origin's routes, and any others) on `listener` over
/// HTTP/1.1 and HTTP/2 (h2c), with each request's peer address known to the
/// handlers: the client address of play requests, which IP-bound play
/// tokens need (served without it, every client is `0.0.0.0`). The limits
/// on slow, idle and greedy clients are [`ServeConfig::default`]'s; choose
/// others with [`crate::http::serve`].
pub async fn serve(listener: tokio::net::TcpListener, app: Router) -> std::io::Result<()> {
    crate::http::serve(listener, app, ServeConfig::default()).await
}

/// The origin's routes over `registry`, open to every viewer.
pub fn router(registry: Arc<LiveRegistry>) -> Router {
    router_with_auth(registry, Arc::new(AllowAll), peer_is_client())
}

/// The origin's routes over `registry`; every request is authorized by
/// `auth`. Serve with `into_make_service_with_connect_info::<SocketAddr>()`
/// so the peer address is known (without it the client is `0.0.0.0`, which
/// no IP-bound token matches).
pub fn router_with_auth<A: Authorizer>(
    registry: Arc<LiveRegistry>,
    auth: Arc<A>,
    client_ip: ClientIp,
) -> Router {
    router_with_config(registry, auth, client_ip, OriginConfig::default())
}

/// [`router_with_auth`] with explicit [`OriginConfig`].
pub fn router_with_config<A: Authorizer>(
    registry: Arc<LiveRegistry>,
    auth: Arc<A>,
    client_ip: ClientIp,
    config: OriginConfig,
) -> Router {
    Router::new()
        .route(
            "/{app}/{stream}/{file}",
            get(live_file::<A>).post(beacon::<A>),
        )
        .route(
            "/{app}/{stream}/{rendition}/{file}",
            get(rendition_file::<A>),
        )
        .fallback(|| async { error(StatusCode::NOT_FOUND) })
        .layer(middleware::from_fn(cors))
        .with_state(Arc::new(Origin {
            registry,
            auth,
            client_ip,
            config,
            held: AtomicUsize::new(0),
            held_by_client: Mutex::default(),
        }))
}

/// The value of the first `token` parameter in a raw query string (not
/// percent-decoded; see [`token_is_url_safe`] before echoing it).
pub fn token_param(query: Option<&str>) -> Option<String> {
    query_param(query, "token")
}

/// Whether `token` may be copied into playlist URIs as is (tokens are
/// base64url plus separators; anything else is not echoed).
pub fn token_is_url_safe(token: &str) -> bool {
    token.len() <= 1024
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~'))
}

/// The value of the first `key` parameter in a raw query string (not
/// percent-decoded).
pub fn query_param(query: Option<&str>, key: &str) -> Option<String> {
    query?.split('&').find_map(|kv| {
        kv.strip_prefix(key)
            .and_then(|rest| rest.strip_prefix('='))
            .map(str::to_owned)
    })
}

/// `Cache-Control` of a multivariant playlist made for one viewer (its
/// viewer session id in the variant URIs): no shared cache may give it to
/// another.
pub const VIEWER_PLAYLIST_CACHE: &str = "private, no-cache";

/// Appends `?token=<token>` to every URI of a playlist: URI lines and
/// `URI="..."` attributes.
pub fn with_token(playlist: &str, token: &str) -> String {
    with_param(playlist, "token", token)
}

/// Appends `?<key>=<value>` (`&` when the URI has a query) to every URI of
/// a playlist: URI lines and `URI="..."` attributes.
pub fn with_param(playlist: &str, key: &str, value: &str) -> String {
    let token = value;
    let mut out = String::with_capacity(playlist.len() + 64 * (token.len() + key.len()) / 8);
    for line in playlist.lines() {
        if line.is_empty() {
        } else if !line.starts_with('#') {
            out.push_str(line);
            out.push(if line.contains('?') { '&' } else { '?' });
            out.push_str(key);
            out.push('=');
            out.push_str(token);
        } else if let Some(start) = line.find("URI=\"") {
            let value_start = start + 5;
            match line[value_start..].find('"') {
                Some(len) => {
                    let end = value_start + len;
                    let sep = if line[value_start..end].contains('?') {
                        "&"
                    } else {
                        "?"
                    };
                    out.push_str(&line[..end]);
                    out.push_str(sep);
                    out.push_str(key);
                    out.push('=');
                    out.push_str(token);
                    out.push_str(&line[end..]);
                }
                None => out.push_str(line),
            }
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

/// Adds CORS headers and answers preflights.
async fn cors(req: Request, next: Next) -> Response {
    let allow_any = HeaderValue::from_static("*");
    if req.method() == Method::OPTIONS {
        let allow_headers = req
            .headers()
            .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
            .cloned()
            .unwrap_or_else(|| allow_any.clone());
        let mut res = Response::new(Body::empty());
        *res.status_mut() = StatusCode::NO_CONTENT;
        let h = res.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow_any);
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, HEAD, POST, OPTIONS"),
        );
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, allow_headers);
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("86400"),
        );
        return res;
    }
    let mut res = next.run(req).await;
    res.headers_mut()
        .insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow_any);
    res
}

fn respond(content_type: &'static str, cache: &'static str, body: Bytes) -> Response {
    respond_body(content_type, cache, Body::from(body))
}

/// A response whose body is `chunks` as they are, without joining them.
fn respond_chunks(content_type: &'static str, cache: &'static str, chunks: Chunks) -> Response {
    let body = match chunks.pieces() {
        [] => Body::empty(),
        [one] => Body::from(one.clone()),
        _ => Body::new(ChunksBody {
            remaining: chunks.len() as u64,
            chunks,
            next: 0,
        }),
    };
    respond_body(content_type, cache, body)
}

fn respond_body(content_type: &'static str, cache: &'static str, body: Body) -> Response {
    let mut res = Response::new(body);
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    res
}

/// A body of shared pieces with an exact length (a `Content-Length`
/// response, which hyper writes with vectored writes).
struct ChunksBody {
    chunks: Chunks,
    next: usize,
    remaining: u64,
}

impl http_body::Body for ChunksBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let piece = this.chunks.pieces().get(this.next).cloned();
        std::task::Poll::Ready(piece.map(|p| {
            this.next += 1;
            this.remaining = this.remaining.saturating_sub(p.len() as u64);
            Ok(http_body::Frame::data(p))
        }))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.remaining)
    }
}

fn error(status: StatusCode) -> Response {
    let mut res = Response::new(Body::from(
        status.canonical_reason().unwrap_or("error").to_owned() + "\n",
    ));
    *res.status_mut() = status;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(NO_CACHE));
    res
}

/// A file below `/live/<s>/`, as named in a viewer's request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveFile {
    /// `index.m3u8`.
    Multivariant,
    /// `mono.m3u8` (fMP4) or `mono-ts.m3u8` (MPEG-TS).
    MediaPlaylist(Variant),
    /// An init section, segment or part ([`MediaFile`]'s names).
    Media(MediaFile),
}

/// Why a file name was not served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileNameError {
    /// Not a file name we know.
    Unknown,
    /// A known pattern with a malformed number.
    BadNumber,
}

/// Parses the last path component of a request below `/live/<s>/` (from
/// any viewer): `Unknown` answers 404, `BadNumber` 400.
pub fn parse_live_file(file: &str) -> Result<LiveFile, FileNameError> {
    match file {
        "index.m3u8" => return Ok(LiveFile::Multivariant),
        "mono.m3u8" => return Ok(LiveFile::MediaPlaylist(Variant::Fmp4)),
        "mono-ts.m3u8" => return Ok(LiveFile::MediaPlaylist(Variant::Ts)),
        _ => {}
    }
    MediaFile::parse(file)
        .map(LiveFile::Media)
        .map_err(|e| match e {
            MediaFileError::BadNumber => FileNameError::BadNumber,
            _ => FileNameError::Unknown,
        })
}

/// The LL-HLS delivery directives of a playlist request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Directives {
    /// `_HLS_msn`: block until this media sequence number is available.
    pub msn: Option<u64>,
    /// `_HLS_part`: and this part of it (only with `msn`).
    pub part: Option<u32>,
    /// `_HLS_skip=YES|v2`: a delta update.
    pub skip: bool,
}

/// Malformed LL-HLS directives: the request is answered 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadDirectives;

/// Parses `_HLS_msn`, `_HLS_part` and `_HLS_skip` from a raw query string
/// (from any viewer); `Err` is a bad request (not a decimal number, out of
/// range, `_HLS_part` without `_HLS_msn`, repeated, unknown `_HLS_skip`
/// value). Other parameters are ignored.
pub fn parse_directives(query: Option<&str>) -> Result<Directives, BadDirectives> {
    let mut d = Directives::default();
    let number = |v: &str| -> Result<u64, BadDirectives> {
        if v.is_empty() || v.len() > 20 || !v.bytes().all(|b| b.is_ascii_digit()) {
            return Err(BadDirectives);
        }
        v.parse().map_err(|_| BadDirectives)
    };
    for kv in query.unwrap_or("").split('&') {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        match k {
            "_HLS_msn" if d.msn.is_none() => d.msn = Some(number(v)?),
            "_HLS_part" if d.part.is_none() => {
                d.part = Some(u32::try_from(number(v)?).map_err(|_| BadDirectives)?)
            }
            "_HLS_skip" if !d.skip => match v {
                "YES" | "v2" => d.skip = true,
                _ => return Err(BadDirectives),
            },
            "_HLS_msn" | "_HLS_part" | "_HLS_skip" => return Err(BadDirectives),
            _ => {}
        }
    }
    if d.part.is_some() && d.msn.is_none() {
        return Err(BadDirectives);
    }
    Ok(d)
}

async fn live_file<A: Authorizer>(
    State(origin): State<Arc<Origin<A>>>,
    path: Result<Path<(String, String, String)>, axum::extract::rejection::PathRejection>,
    req: Request,
) -> Response {
    let Ok(Path((app, stream, file))) = path else {
        return error(StatusCode::BAD_REQUEST);
    };
    let Ok(name) = StreamPath::new(&app, &stream) else {
        return error(StatusCode::BAD_REQUEST);
    };
    live_request(origin, name, file, req).await
}

/// How long a beacon's body may take to arrive (a player sends a few
/// hundred bytes at once).
pub const BEACON_BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// A multivariant playlist with the beacon interval for players (the
/// `#EXT-X-SESSION-DATA` of [`ugc_core::qoe::QoeConfig::session_data`])
/// after its first line, when this origin takes beacons.
fn with_qoe_interval(config: &OriginConfig, text: String) -> String {
    let Some(qoe) = &config.qoe else {
        return text;
    };
    match text.split_once('\n') {
        Some((first, rest)) => format!("{first}\n{}{rest}", qoe.config().session_data()),
        None => text,
    }
}

/// `POST /<app>/<stream>/qoe`: a player's beacon (see the module doc,
/// "Viewer experience").
async fn beacon<A: Authorizer>(
    State(origin): State<Arc<Origin<A>>>,
    path: Result<Path<(String, String, String)>, axum::extract::rejection::PathRejection>,
    req: Request,
) -> Response {
    let Some(qoe) = origin.config.qoe.clone() else {
        return error(StatusCode::NOT_FOUND);
    };
    let Ok(Path((app, stream, file))) = path else {
        return error(StatusCode::BAD_REQUEST);
    };
    if file != "qoe" {
        return error(StatusCode::METHOD_NOT_ALLOWED);
    }
    let Ok(name) = StreamPath::new(&app, &stream) else {
        return error(StatusCode::BAD_REQUEST);
    };
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
    let client_ip = (origin.client_ip)(peer, req.headers());
    if !qoe.admit(client_ip, std::time::Instant::now()) {
        let mut res = error(StatusCode::TOO_MANY_REQUESTS);
        res.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("10"));
        return res;
    }
    let token = token_param(req.uri().query());
    // A request being answered is never idle to the HTTP server, so a body
    // trickled a byte a minute would hold this task and its connection
    // for a day: the whole body comes within BEACON_BODY_TIMEOUT or 408.
    let read = axum::body::to_bytes(req.into_body(), ugc_core::qoe::MAX_BEACON_BYTES);
    let body = match tokio::time::timeout(BEACON_BODY_TIMEOUT, read).await {
        Ok(Ok(b)) => b,
        Ok(Err(_)) => {
            qoe.refuse(Refusal::Malformed);
            return error(StatusCode::PAYLOAD_TOO_LARGE);
        }
        Err(_) => {
            qoe.refuse(Refusal::Malformed);
            return error(StatusCode::REQUEST_TIMEOUT);
        }
    };
    let beacon = match Beacon::parse(&body) {
        Ok(b) => b,
        Err(e) => {
            qoe.refuse(Refusal::Malformed);
            tracing::debug!(stream = %name, client = %client_ip, error = %e, "QoE beacon refused");
            return error(StatusCode::BAD_REQUEST);
        }
    };
    let play = PlayRequest {
        stream: name.clone(),
        token: token.clone(),
        client_ip,
    };
    match origin.auth.authorize_play(&play).await {
        PlayDecision::Allow => {}
        PlayDecision::Deny { .. } => {
            qoe.refuse(Refusal::Denied);
            return error(StatusCode::FORBIDDEN);
        }
        PlayDecision::NotFound { .. } => {
            qoe.refuse(Refusal::UnknownStream);
            return error(StatusCode::NOT_FOUND);
        }
    }
    if origin.registry.get(&name).is_none() {
        qoe.refuse(Refusal::UnknownStream);
        return error(StatusCode::NOT_FOUND);
    }
    let session = token.as_deref().unwrap_or(&beacon.session);
    let now = std::time::Instant::now();
    match qoe.record(&name, &beacon, session, client_ip, now) {
        Ok(()) => {
            let mut res = Response::new(Body::empty());
            *res.status_mut() = StatusCode::NO_CONTENT;
            res.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            res
        }
        Err(_) => error(StatusCode::SERVICE_UNAVAILABLE),
    }
}

/// A file of one rendition of a transcoding ladder.
async fn rendition_file<A: Authorizer>(
    State(origin): State<Arc<Origin<A>>>,
    path: Result<Path<(String, String, String, String)>, axum::extract::rejection::PathRejection>,
    req: Request,
) -> Response {
    let Ok(Path((app, stream, rendition, file))) = path else {
        return error(StatusCode::BAD_REQUEST);
    };
    let Ok(name) = StreamPath::new(&app, &stream).and_then(|s| s.with_rendition(&rendition)) else {
        return error(StatusCode::BAD_REQUEST);
    };
    live_request(origin, name, file, req).await
}

/// A file of `path`: a published stream, or (with a rendition) one
/// rendition of its ladder, which plays under its source's authorization.
async fn live_request<A: Authorizer>(
    origin: Arc<Origin<A>>,
    path: StreamPath,
    file: String,
    req: Request,
) -> Response {
    let name = path.source();
    let file = match parse_live_file(&file) {
        Ok(f) => f,
        Err(FileNameError::BadNumber) => return error(StatusCode::BAD_REQUEST),
        Err(FileNameError::Unknown) => return error(StatusCode::NOT_FOUND),
    };
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
    let token = token_param(req.uri().query());
    let play = PlayRequest {
        stream: name.clone(),
        token: token.clone(),
        client_ip: (origin.client_ip)(peer, req.headers()),
    };
    match origin.auth.authorize_play(&play).await {
        PlayDecision::Allow => {}
        PlayDecision::Deny { reason } => {
            tracing::debug!(stream = %play.stream, client = %play.client_ip, %reason, "play denied");
            return error(StatusCode::FORBIDDEN);
        }
        PlayDecision::NotFound { .. } => return error(StatusCode::NOT_FOUND),
    }
    let token = token.filter(|t| token_is_url_safe(t));
    // Play is authorized on the stream; its renditions follow it.
    let rendition = path.rendition();
    // A new viewer (its first request), perhaps sent to another origin.
    if let (LiveFile::Multivariant, None, Some(balance)) =
        (&file, rendition, &origin.config.balance)
        && query_param(req.uri().query(), BALANCED_PARAM).is_none()
        && let Some(base) = (balance.0)(name.clone()).await
        && let Some(redirect) = balanced_redirect(&base, req.uri())
    {
        return redirect;
    }
    let live = match (origin.registry.get(&path), &origin.config.on_demand) {
        (Some(live), None) => live,
        (None, None) => return error(StatusCode::NOT_FOUND),
        (live, Some(pulls)) => {
            pulls.used(&name);
            // An ended life (a pull stopped, its playlist lingering) is
            // pulled again. One carried here without a segment yet (it
            // began moments ago) is not pulled: its playlist waits for
            // the first segment (`media_playlist`).
            match live.filter(|l| !l.is_ended()) {
                // ... unless its pull's sender went away for good: it is
                // located again, and the request waits for the new pull.
                Some(live) if live.has_segments() || !pulls.pull_again_if_lost(&name).await => live,
                Some(_) => match pulled(&origin.registry, &path, PULL_WAIT).await {
                    Some(live) => live,
                    None => return error(StatusCode::NOT_FOUND),
                },
                None if pulls.pull(&name).await => {
                    match pulled(&origin.registry, &path, PULL_WAIT).await {
                        Some(live) => live,
                        None => return error(StatusCode::NOT_FOUND),
                    }
                }
                None => return error(StatusCode::NOT_FOUND),
            }
        }
    };
    // A media file of another life of the stream (published before, and
    // perhaps still in a cache) is gone.
    if let LiveFile::Media(m) = file
        && m.session() != live.session()
    {
        return error(StatusCode::NOT_FOUND);
    }
    match (file, rendition) {
        (LiveFile::Multivariant, Some(_)) => error(StatusCode::NOT_FOUND),
        (LiveFile::Multivariant, None) => match origin
            .registry
            .render_multivariant(&path)
            .map(|text| with_qoe_interval(&origin.config, text))
        {
            Some(text) => match (&origin.config.viewers, &token) {
                // A public stream's viewer: one session id for its variants.
                (Some(viewers), None) => {
                    let id = query_param(req.uri().query(), "vs")
                        .filter(|id| session_id_is_valid(id))
                        .unwrap_or_else(|| viewers.new_session_id());
                    respond(
                        PLAYLIST_TYPE,
                        VIEWER_PLAYLIST_CACHE,
                        Bytes::from(with_param(&text, "vs", &id)),
                    )
                }
                _ => respond(
                    PLAYLIST_TYPE,
                    playlist_cache(&live),
                    playlist_body(text, token.as_deref()),
                ),
            },
            None => error(StatusCode::NOT_FOUND),
        },
        (LiveFile::MediaPlaylist(v), _) => {
            let Ok(d) = parse_directives(req.uri().query()) else {
                return error(StatusCode::BAD_REQUEST);
            };
            if v == Variant::Fmp4 && live.low_latency() && d.msn.is_some() {
                want_low_latency(&origin, &name);
            }
            if let Some(viewers) = &origin.config.viewers {
                let vs = query_param(req.uri().query(), "vs").filter(|id| session_id_is_valid(id));
                if let Some(session) = token.as_deref().or(vs.as_deref()) {
                    viewers.seen(&name, session, play.client_ip, std::time::Instant::now());
                }
            }
            // A rendition of a ladder reports every other rendition.
            let ladder = rendition.map(|r| (&*origin.registry, &name, r));
            let client = play.client_ip;
            media_playlist(&origin, client, live, v, d, token.as_deref(), ladder).await
        }
        (LiveFile::Media(MediaFile::Part(_, msn, index)), _) => {
            want_low_latency(&origin, &name);
            part(&origin, play.client_ip, live, msn, index).await
        }
        (file, _) => serve_file(&live, file, token.as_deref()),
    }
}

/// Stream `path` of `registry` once it has a segment (pulled on demand),
/// within `wait`.
async fn pulled(
    registry: &LiveRegistry,
    path: &StreamPath,
    wait: Duration,
) -> Option<Arc<LiveStream>> {
    let until = tokio::time::Instant::now() + wait;
    loop {
        if let Some(live) = registry
            .get(path)
            .filter(|l| l.has_segments() && !l.is_ended())
        {
            return Some(live);
        }
        if tokio::time::Instant::now() >= until {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `302` to the same path and query at `base` (another origin's
/// `http://host:port`), marked [`BALANCED_PARAM`]; never cached (the next
/// viewer may go elsewhere). `None` when that is no valid URL.
fn balanced_redirect(base: &str, uri: &axum::http::Uri) -> Option<Response> {
    let query = match uri.query() {
        Some(q) if !q.is_empty() => format!("{q}&{BALANCED_PARAM}=1"),
        _ => format!("{BALANCED_PARAM}=1"),
    };
    let to = format!("{}{}?{query}", base.trim_end_matches('/'), uri.path());
    let location = HeaderValue::from_str(&to).ok()?;
    Response::builder()
        .status(StatusCode::FOUND)
        .header(header::LOCATION, location)
        .header(header::CACHE_CONTROL, "no-store")
        .body(Body::empty())
        .ok()
}

/// A viewer of `stream` plays at low latency (a blocking reload or a part):
/// tell the hub, if any ([`OriginConfig::low_latency_hub`]). The ingest feeds
/// the stream itself; its renditions follow it.
fn want_low_latency<A>(origin: &Origin<A>, stream: &StreamPath) {
    if let Some(hub) = &origin.config.low_latency_hub {
        hub.want_low_latency(stream, std::time::Instant::now() + LOW_LATENCY_DEMAND);
    }
}

fn hold_of<A>(origin: &Origin<A>, live: &LiveStream) -> Duration {
    origin.config.hold.unwrap_or_else(|| {
        Duration::from_millis(u64::from(live.config().target_duration_ms.max(500)) * 3)
    })
}

/// The media playlist, after a blocking wait when `_HLS_msn` asks for it.
async fn media_playlist<A>(
    origin: &Origin<A>,
    client: IpAddr,
    live: Arc<LiveStream>,
    variant: Variant,
    d: Directives,
    token: Option<&str>,
    ladder: Option<(&LiveRegistry, &StreamPath, &str)>,
) -> Response {
    let ll = live.low_latency() && variant == Variant::Fmp4;
    let mut cache = if !ll {
        playlist_cache(&live)
    } else if live.is_ended() {
        ENDED_PLAYLIST_CACHE
    } else {
        NO_CACHE
    };
    let mut blocking_cache = None;
    if let (true, Some(msn)) = (ll, d.msn) {
        let mut rx = live.subscribe();
        let now = *rx.borrow_and_update();
        // More than two segments past the newest complete one: never
        // answerable in time (RFC 8216bis 6.2.5.2).
        let limit = now.last_msn.map_or(2, |m| m.saturating_add(2));
        let max_part = 4 * live.config().target_duration_ms.max(1000)
            / live.config().part_target_ms.unwrap_or(1000).max(1);
        if msn > limit || d.part.is_some_and(|p| p > max_part.max(64)) {
            return error(StatusCode::BAD_REQUEST);
        }
        if !now.ended && !now.reached(msn, d.part) {
            let Some(_held) = Held::take(origin, client) else {
                return error(StatusCode::SERVICE_UNAVAILABLE);
            };
            let wait = rx.wait_for(|u| u.ended || u.reached(msn, d.part));
            match tokio::time::timeout(hold_of(origin, &live), wait).await {
                Ok(Ok(_)) => {}
                // The stream was replaced or the hold expired.
                Ok(Err(_)) | Err(_) => return error(StatusCode::SERVICE_UNAVAILABLE),
            }
        }
        let secs = live.config().target_duration_ms.div_ceil(1000).max(1);
        blocking_cache = Some(format!("public, max-age={secs}"));
        cache = "";
    }
    if !live.has_segments() {
        // A stream that began moments ago (an aligned segmenter publishes
        // from its second cut, two or three segment durations in): its
        // first viewers wait for its first segment, as for a pull
        // ([`PULL_WAIT`]), instead of a 404 that hls.js takes as fatal
        // after one retry (the chaos run's player that never started).
        if live.is_ended() {
            return error(StatusCode::NOT_FOUND);
        }
        let Some(_held) = Held::take(origin, client) else {
            return error(StatusCode::SERVICE_UNAVAILABLE);
        };
        let mut rx = live.subscribe();
        let first = rx.wait_for(|u| u.ended || u.last_msn.is_some());
        let _ = tokio::time::timeout(PULL_WAIT, first).await;
        if !live.has_segments() {
            return error(StatusCode::NOT_FOUND);
        }
    }
    let query = PlaylistQuery {
        skip: d.skip && ll,
        rendition_reports: match ladder.filter(|_| ll) {
            Some((registry, stream, own)) => rendition_reports(registry, stream, own),
            None => Vec::new(),
        },
    };
    let body = playlist_body(live.media_playlist(variant, &query), token);
    let mut res = respond(PLAYLIST_TYPE, NO_CACHE, body);
    let value = match blocking_cache {
        Some(v) => HeaderValue::from_str(&v).ok(),
        None => Some(HeaderValue::from_static(cache)),
    };
    if let Some(v) = value {
        res.headers_mut().insert(header::CACHE_CONTROL, v);
    }
    res
}

/// `#EXT-X-RENDITION-REPORT`s of the renditions of `stream` other than
/// `own`, with URIs relative to `own`'s (LL-HLS, fMP4) media playlist.
fn rendition_reports(
    registry: &LiveRegistry,
    stream: &StreamPath,
    own: &str,
) -> Vec<RenditionReport> {
    registry
        .renditions(stream)
        .iter()
        .filter(|(r, s)| r != own && s.low_latency())
        .filter_map(|(r, s)| s.rendition_report(&format!("../{r}/mono.m3u8")))
        .collect()
}

/// A part: at once when complete, streamed while it is being written, after
/// a bounded wait when it has not started.
async fn part<A>(
    origin: &Origin<A>,
    client: IpAddr,
    live: Arc<LiveStream>,
    msn: u64,
    index: u32,
) -> Response {
    let mut rx = live.subscribe_chunks();
    rx.borrow_and_update();
    let first = match live.part_progress(msn, index, 0) {
        PartProgress::Complete(b) => return respond_chunks("video/mp4", IMMUTABLE, b),
        PartProgress::Never => return error(StatusCode::NOT_FOUND),
        PartProgress::Partial(c) => c,
        PartProgress::NotYet => {
            // Only the part being produced next (or the first of the next
            // segment) is worth waiting for.
            let producing = live.producing_msn();
            let max_part = 4 * live.config().target_duration_ms.max(1000)
                / live.config().part_target_ms.unwrap_or(1000).max(1);
            if msn > producing.saturating_add(1) || index > max_part.max(64) {
                return error(StatusCode::NOT_FOUND);
            }
            let Some(_held) = Held::take(origin, client) else {
                return error(StatusCode::SERVICE_UNAVAILABLE);
            };
            let deadline = tokio::time::Instant::now() + hold_of(origin, &live);
            loop {
                match tokio::time::timeout_at(deadline, rx.changed()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) | Err(_) => return error(StatusCode::SERVICE_UNAVAILABLE),
                }
                match live.part_progress(msn, index, 0) {
                    PartProgress::Complete(b) => return respond_chunks("video/mp4", IMMUTABLE, b),
                    PartProgress::Never => return error(StatusCode::NOT_FOUND),
                    PartProgress::Partial(c) => break c,
                    PartProgress::NotYet => {}
                }
            }
        }
    };
    let hold = hold_of(origin, &live);
    let sent: usize = first.iter().map(Bytes::len).sum();
    let head = futures_util::stream::iter(first.into_iter().map(Ok::<Bytes, std::io::Error>));
    let tail = futures_util::stream::unfold(
        (live, rx, sent, false),
        move |(live, mut rx, offset, done)| async move {
            if done {
                return None;
            }
            loop {
                match live.part_progress(msn, index, offset) {
                    PartProgress::Complete(rest) => {
                        let rest = rest.pieces().to_vec();
                        return Some((Ok(rest), (live, rx, offset, true)));
                    }
                    PartProgress::Partial(chunks) if !chunks.is_empty() => {
                        let n: usize = chunks.iter().map(Bytes::len).sum();
                        return Some((Ok(chunks), (live, rx, offset + n, false)));
                    }
                    PartProgress::Partial(_) => {}
                    // The part was abandoned: abort the body so no cache
                    // keeps a truncated part.
                    PartProgress::Never | PartProgress::NotYet => {
                        let e = std::io::Error::other("part abandoned");
                        return Some((Err(e), (live, rx, offset, true)));
                    }
                }
                if !matches!(tokio::time::timeout(hold, rx.changed()).await, Ok(Ok(()))) {
                    let e = std::io::Error::other("part stalled");
                    return Some((Err(e), (live, rx, offset, true)));
                }
            }
        },
    );
    use futures_util::StreamExt as _;
    let tail = tail.flat_map(|step: std::io::Result<Vec<Bytes>>| {
        let pieces: Vec<std::io::Result<Bytes>> = match step {
            Ok(chunks) => chunks.into_iter().map(Ok).collect(),
            Err(e) => vec![Err(e)],
        };
        futures_util::stream::iter(pieces)
    });
    let mut res = Response::new(Body::from_stream(head.chain(tail)));
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("video/mp4"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE));
    res
}

fn playlist_cache(live: &LiveStream) -> &'static str {
    if live.is_ended() {
        ENDED_PLAYLIST_CACHE
    } else {
        LIVE_PLAYLIST_CACHE
    }
}

fn playlist_body(text: impl Into<Bytes>, token: Option<&str>) -> Bytes {
    let text = text.into();
    match token {
        // Our own rendering: always UTF-8.
        Some(t) => Bytes::from(with_token(&String::from_utf8_lossy(&text), t)),
        None => text,
    }
}

fn serve_file(live: &LiveStream, file: LiveFile, token: Option<&str>) -> Response {
    match file {
        LiveFile::Multivariant | LiveFile::MediaPlaylist(_) if !live.has_segments() => {
            // Nothing to play yet: players retry.
            error(StatusCode::NOT_FOUND)
        }
        LiveFile::Multivariant => respond(
            PLAYLIST_TYPE,
            playlist_cache(live),
            playlist_body(live.render_multivariant(), token),
        ),
        LiveFile::MediaPlaylist(v) => respond(
            PLAYLIST_TYPE,
            playlist_cache(live),
            playlist_body(live.media_playlist(v, &PlaylistQuery::default()), token),
        ),
        LiveFile::Media(MediaFile::Init(_, n)) => match live.init(n) {
            Some(init) => respond("video/mp4", IMMUTABLE, init.data.clone()),
            None => error(StatusCode::NOT_FOUND),
        },
        LiveFile::Media(MediaFile::Part(_, msn, index)) => {
            match live.part_progress(msn, index, 0) {
                PartProgress::Complete(b) => respond_chunks("video/mp4", IMMUTABLE, b),
                _ => error(StatusCode::NOT_FOUND),
            }
        }
        LiveFile::Media(MediaFile::Segment(v, _, msn)) => {
            let Some(seg) = live.segment(msn) else {
                return error(StatusCode::NOT_FOUND);
            };
            match v {
                Variant::Fmp4 => respond_chunks("video/iso.segment", IMMUTABLE, seg.data.clone()),
                // Muxing one segment takes well under a millisecond; it runs
                // once per segment and is cached.
                Variant::Ts => match seg.ts() {
                    Ok(ts) => respond("video/mp2t", IMMUTABLE, ts),
                    Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR),
                },
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn tokens_reach_every_playlist_uri() {
        let pl = "#EXTM3U\n#EXT-X-MAP:URI=\"init-0.mp4\"\n#EXTINF:2.000,\nseg-1.m4s\n\
                  #EXT-X-STREAM-INF:BANDWIDTH=1\nmono.m3u8?x=1\n";
        let out = with_token(pl, "abc");
        assert_eq!(
            out,
            "#EXTM3U\n#EXT-X-MAP:URI=\"init-0.mp4?token=abc\"\n#EXTINF:2.000,\n\
             seg-1.m4s?token=abc\n#EXT-X-STREAM-INF:BANDWIDTH=1\nmono.m3u8?x=1&token=abc\n"
        );
        assert_eq!(
            token_param(Some("a=1&token=xyz&b=2")).as_deref(),
            Some("xyz")
        );
        assert_eq!(token_param(Some("tokens=1")), None);
        assert!(!token_is_url_safe("a\"b"));
        assert!(token_is_url_safe("AZaz09-_.~"));
    }

    #[test]
    fn directives() {
        let d = |q: &str| parse_directives(Some(q));
        assert_eq!(
            d("_HLS_msn=5&_HLS_part=2&token=x"),
            Ok(Directives {
                msn: Some(5),
                part: Some(2),
                skip: false
            })
        );
        assert_eq!(d("_HLS_skip=YES").map(|d| d.skip), Ok(true));
        assert_eq!(d("_HLS_skip=v2").map(|d| d.skip), Ok(true));
        assert_eq!(parse_directives(None), Ok(Directives::default()));
        for bad in [
            "_HLS_part=1",
            "_HLS_msn=-1",
            "_HLS_msn=+1",
            "_HLS_msn=abc",
            "_HLS_msn=",
            "_HLS_msn",
            "_HLS_msn=99999999999999999999999",
            "_HLS_msn=18446744073709551616",
            "_HLS_msn=1&_HLS_part=4294967296",
            "_HLS_msn=1&_HLS_part=-2",
            "_HLS_msn=1&_HLS_msn=2",
            "_HLS_skip=NO",
            "_HLS_msn=1.5",
        ] {
            assert_eq!(d(bad), Err(BadDirectives), "{bad}");
        }
    }

    #[test]
    fn file_names() {
        use MediaFile::*;
        assert_eq!(parse_live_file("index.m3u8"), Ok(LiveFile::Multivariant));
        let ok = |name: &str, want: MediaFile| {
            assert_eq!(parse_live_file(name), Ok(LiveFile::Media(want)), "{name}");
            assert_eq!(want.to_string(), name);
        };
        ok("seg-5-17.m4s", Segment(Variant::Fmp4, 5, 17));
        ok(
            "seg-1764757328123-0.ts",
            Segment(Variant::Ts, 1764757328123, 0),
        );
        ok("init-5-3.mp4", Init(5, 3));
        ok("part-5-7.3.m4s", Part(5, 7, 3));
        for bad in [
            "seg-x.m4s",
            "seg-.m4s",
            "seg-17.m4s",
            "seg-5-x.m4s",
            "seg-5--1.m4s",
            "seg-5-+1.m4s",
            "seg--5-1.m4s",
            "part-5-7.x.m4s",
            "part-5--1.0.m4s",
            "part-7.3.m4s",
            "init-3.mp4",
        ] {
            assert_eq!(parse_live_file(bad), Err(FileNameError::BadNumber), "{bad}");
        }
        assert_eq!(
            parse_live_file(&format!("seg-1-{}.m4s", "9".repeat(5000))),
            Err(FileNameError::BadNumber)
        );
        for unknown in [
            "seg-1-99999999999999999999.m4s",
            "init-1-4294967296.mp4",
            "part-1-1.4294967296.m4s",
            "passwd",
            "seg-1-1.mp4",
        ] {
            assert_eq!(
                parse_live_file(unknown),
                Err(FileNameError::Unknown),
                "{unknown}"
            );
        }
    }
}
