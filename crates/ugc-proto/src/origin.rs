//! The HTTP origin: HLS playlists and segments of the live streams in a
//! [`LiveRegistry`].
//!
//! Routes (`<s>` is the stream, the registry name is `live/<s>`):
//!
//! | path | answer |
//! |---|---|
//! | `/live/<s>/index.m3u8` | multivariant playlist (every rendition of a transcoding ladder, else `mono.m3u8`) |
//! | `/live/<s>/<r>/mono.m3u8`, `.../init-<n>.mp4`, `.../seg-<msn>.m4s` ... | rendition `<r>` (registry name `live/<s>/<r>`): the same files as below |
//! | `/live/<s>/mono.m3u8` | fMP4 media playlist |
//! | `/live/<s>/mono-ts.m3u8` | MPEG-TS media playlist |
//! | `/live/<s>/init-<n>.mp4` | init segment |
//! | `/live/<s>/seg-<msn>.m4s` | fMP4 media segment |
//! | `/live/<s>/seg-<msn>.ts` | MPEG-TS media segment (muxed on first request) |
//!
//! Names are validated with [`StreamName`]; nothing here touches the file
//! system. Every answer carries `Access-Control-Allow-Origin: *`, `OPTIONS`
//! preflights are answered, `HEAD` works like `GET` without a body. Segments
//! are immutable (cached for a year), live playlists for a second, errors not
//! at all.
//!
//! Every request is put to an [`Authorizer`]'s `authorize_play` with the
//! `token` query parameter and the client address (see [`ClientIp`]); a
//! denial is `403`. A playlist served to a request that carried a token lists
//! its URIs with the same `?token=`, so players that resolve relative URIs
//! (and drop the query) keep sending it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

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
use ugc_core::{AllowAll, Authorizer, PlayDecision, PlayRequest, StreamName};
use ugc_dvr::{LiveRegistry, LiveStream, Variant};

/// `Content-Type` of playlists.
pub const PLAYLIST_TYPE: &str = "application/vnd.apple.mpegurl";
/// `Cache-Control` of segments and init segments.
pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// `Cache-Control` of live playlists.
pub const LIVE_PLAYLIST_CACHE: &str = "public, max-age=1";
/// `Cache-Control` of playlists of ended streams.
pub const ENDED_PLAYLIST_CACHE: &str = "public, max-age=30";
/// `Cache-Control` of errors.
pub const NO_CACHE: &str = "no-cache";

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
    Router::new()
        .route("/live/{stream}/{file}", get(live_file::<A>))
        .route(
            "/live/{stream}/{rendition}/{file}",
            get(rendition_file::<A>),
        )
        .fallback(|| async { error(StatusCode::NOT_FOUND) })
        .layer(middleware::from_fn(cors))
        .with_state(Arc::new(Origin {
            registry,
            auth,
            client_ip,
        }))
}

/// The value of `token` in a raw query string.
fn token_param(query: Option<&str>) -> Option<String> {
    query?
        .split('&')
        .find_map(|kv| kv.strip_prefix("token="))
        .map(str::to_owned)
}

/// Whether `token` may be copied into playlist URIs as is (tokens are
/// base64url plus separators; anything else is not echoed).
fn token_is_url_safe(token: &str) -> bool {
    token.len() <= 1024
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~'))
}

/// Appends `?token=<token>` to every URI of a playlist: URI lines and
/// `URI="..."` attributes.
pub fn with_token(playlist: &str, token: &str) -> String {
    let mut out = String::with_capacity(playlist.len() + 64 * token.len() / 8);
    for line in playlist.lines() {
        if line.is_empty() {
        } else if !line.starts_with('#') {
            out.push_str(line);
            out.push_str(if line.contains('?') {
                "&token="
            } else {
                "?token="
            });
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
                    out.push_str("token=");
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
            HeaderValue::from_static("GET, HEAD, OPTIONS"),
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
    let mut res = Response::new(Body::from(body));
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    res
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

/// A file below `/live/<s>/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LiveFile {
    Multivariant,
    MediaPlaylist(Variant),
    Init(u32),
    Segment(Variant, u64),
}

/// Why a file name was not served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileNameError {
    /// Not a file name we know.
    Unknown,
    /// A known pattern with a malformed number.
    BadNumber,
}

/// Parses a decimal number of at most 20 digits; overflow means "no such
/// file" (the number cannot exist), other garbage is a bad request.
fn parse_number<T: std::str::FromStr>(digits: &str) -> Result<T, FileNameError> {
    if digits.is_empty() || digits.len() > 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(FileNameError::BadNumber);
    }
    digits.parse().map_err(|_| FileNameError::Unknown)
}

fn parse_file(file: &str) -> Result<LiveFile, FileNameError> {
    match file {
        "index.m3u8" => return Ok(LiveFile::Multivariant),
        "mono.m3u8" => return Ok(LiveFile::MediaPlaylist(Variant::Fmp4)),
        "mono-ts.m3u8" => return Ok(LiveFile::MediaPlaylist(Variant::Ts)),
        _ => {}
    }
    if let Some(n) = file
        .strip_prefix("init-")
        .and_then(|r| r.strip_suffix(".mp4"))
    {
        return parse_number(n).map(LiveFile::Init);
    }
    if let Some(rest) = file.strip_prefix("seg-") {
        if let Some(n) = rest.strip_suffix(".m4s") {
            return parse_number(n).map(|n| LiveFile::Segment(Variant::Fmp4, n));
        }
        if let Some(n) = rest.strip_suffix(".ts") {
            return parse_number(n).map(|n| LiveFile::Segment(Variant::Ts, n));
        }
    }
    Err(FileNameError::Unknown)
}

async fn live_file<A: Authorizer>(
    State(origin): State<Arc<Origin<A>>>,
    path: Result<Path<(String, String)>, axum::extract::rejection::PathRejection>,
    req: Request,
) -> Response {
    let Ok(Path((stream, file))) = path else {
        return error(StatusCode::BAD_REQUEST);
    };
    live_request(origin, stream, None, file, req).await
}

/// A file of one rendition of a transcoding ladder.
async fn rendition_file<A: Authorizer>(
    State(origin): State<Arc<Origin<A>>>,
    path: Result<Path<(String, String, String)>, axum::extract::rejection::PathRejection>,
    req: Request,
) -> Response {
    let Ok(Path((stream, rendition, file))) = path else {
        return error(StatusCode::BAD_REQUEST);
    };
    live_request(origin, stream, Some(rendition), file, req).await
}

async fn live_request<A: Authorizer>(
    origin: Arc<Origin<A>>,
    stream: String,
    rendition: Option<String>,
    file: String,
    req: Request,
) -> Response {
    let Ok(name) = StreamName::from_parts("live", &stream) else {
        return error(StatusCode::BAD_REQUEST);
    };
    if rendition
        .as_deref()
        .is_some_and(|r| ugc_core::name::validate_segment(r).is_err())
    {
        return error(StatusCode::BAD_REQUEST);
    }
    let file = match parse_file(&file) {
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
        stream: name.as_str().to_owned(),
        token: token.clone(),
        client_ip: (origin.client_ip)(peer, req.headers()),
    };
    if let PlayDecision::Deny { reason } = origin.auth.authorize_play(&play).await {
        tracing::debug!(stream = %play.stream, client = %play.client_ip, %reason, "play denied");
        return error(StatusCode::FORBIDDEN);
    }
    let token = token.filter(|t| token_is_url_safe(t));
    // Play is authorized on the stream; its renditions follow it.
    let registry_name = match &rendition {
        Some(r) => format!("{}/{r}", name.as_str()),
        None => name.as_str().to_owned(),
    };
    let Some(live) = origin.registry.get(&registry_name) else {
        return error(StatusCode::NOT_FOUND);
    };
    match (file, &rendition) {
        (LiveFile::Multivariant, Some(_)) => error(StatusCode::NOT_FOUND),
        (LiveFile::Multivariant, None) => match origin.registry.render_multivariant(&registry_name)
        {
            Some(text) => respond(
                PLAYLIST_TYPE,
                playlist_cache(&live),
                playlist_body(text, token.as_deref()),
            ),
            None => error(StatusCode::NOT_FOUND),
        },
        (file, _) => serve(&live, file, token.as_deref()),
    }
}

fn playlist_cache(live: &LiveStream) -> &'static str {
    if live.is_ended() {
        ENDED_PLAYLIST_CACHE
    } else {
        LIVE_PLAYLIST_CACHE
    }
}

fn playlist_body(text: String, token: Option<&str>) -> Bytes {
    match token {
        Some(t) => Bytes::from(with_token(&text, t)),
        None => Bytes::from(text),
    }
}

fn serve(live: &LiveStream, file: LiveFile, token: Option<&str>) -> Response {
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
            playlist_body(live.render_media_playlist(v), token),
        ),
        LiveFile::Init(n) => match live.init(n) {
            Some(init) => respond("video/mp4", IMMUTABLE, init.data.clone()),
            None => error(StatusCode::NOT_FOUND),
        },
        LiveFile::Segment(v, msn) => {
            let Some(seg) = live.segment(msn) else {
                return error(StatusCode::NOT_FOUND);
            };
            match v {
                Variant::Fmp4 => respond("video/iso.segment", IMMUTABLE, seg.data.clone()),
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
    fn file_names() {
        assert_eq!(parse_file("index.m3u8"), Ok(LiveFile::Multivariant));
        assert_eq!(
            parse_file("seg-17.m4s"),
            Ok(LiveFile::Segment(Variant::Fmp4, 17))
        );
        assert_eq!(
            parse_file("seg-0.ts"),
            Ok(LiveFile::Segment(Variant::Ts, 0))
        );
        assert_eq!(parse_file("init-3.mp4"), Ok(LiveFile::Init(3)));
        assert_eq!(parse_file("seg-x.m4s"), Err(FileNameError::BadNumber));
        assert_eq!(parse_file("seg-.m4s"), Err(FileNameError::BadNumber));
        assert_eq!(parse_file("seg--1.m4s"), Err(FileNameError::BadNumber));
        assert_eq!(parse_file("seg-+1.m4s"), Err(FileNameError::BadNumber));
        assert_eq!(
            parse_file("seg-99999999999999999999.m4s"),
            Err(FileNameError::Unknown)
        );
        assert_eq!(
            parse_file(&format!("seg-{}.m4s", "9".repeat(5000))),
            Err(FileNameError::BadNumber)
        );
        assert_eq!(
            parse_file("init-4294967296.mp4"),
            Err(FileNameError::Unknown)
        );
        assert_eq!(parse_file("passwd"), Err(FileNameError::Unknown));
        assert_eq!(parse_file("seg-1.mp4"), Err(FileNameError::Unknown));
    }
}
