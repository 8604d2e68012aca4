//! HTTP routes of the DVR, next to the live [`crate::origin`]:
//!
//! | path below `/<app>/<s>/` (`/live/<s>/`) | answer |
//! |---|---|
//! | `index-<from>-<seconds>.m3u8` | VOD playlist of the archived range (`#EXT-X-ENDLIST`) |
//! | `index-<from>-now.m3u8` | EVENT playlist from `from` to the live edge |
//! | `archive-<from>-<seconds>.mp4` | progressive MP4 of the range (moov first, HTTP Range) |
//! | `dvr-s<...>.m4s`, `dvr-i<...>.mp4` | archived segments and init segments |
//!
//! The same files of one rendition of a transcoding ladder are below
//! `/live/<s>/<r>/` (archive key `live/<s>/<r>`; the source rendition is
//! also reachable as `/live/<s>/src/`). When a rendition other than the
//! source is archived in a range, `/live/<s>/index-<from>-<seconds>.m3u8`
//! and `index-<from>-now.m3u8` are multivariant playlists listing every
//! archived rendition (`<r>/index-...`, `src/index-...`) with `BANDWIDTH`
//! measured over the range and `CODECS`/`RESOLUTION` from the archived init
//! segment; without a ladder they stay the source's media playlists.
//! An MP4 export spanning a codec parameter change carries one `stsd`
//! sample entry per parameter set; one spanning a change of tracks stops
//! before it with `x-ugc-export-truncated: true` and
//! `x-ugc-export-duration-ms`.
//!
//! With a rewind window ([`DvrOrigin::rewind_s`]) the live `mono.m3u8`
//! also lists the archived segments of the current recording before the
//! live window (same media sequence numbers), so players can pause and seek
//! back; requests with LL-HLS `_HLS_` parameters are left alone.
//!
//! `<from>` is unix seconds, `<seconds>` 1..=86400. A `from` in the future,
//! malformed numbers or names are `400`; a range with nothing archived is
//! `404`. File names are parsed strictly and looked up in the archive index,
//! never joined to a path as given. Every request is authorized like the
//! live origin's (`?token=`, copied into playlist URIs).
//!
//! The routes are a layer ([`layer`]) over the origin's router that answers
//! DVR file names and passes every other request on, so the two modules
//! stay independent.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use bytes::Bytes;
use ugc_core::{Authorizer, PlayDecision, PlayRequest, StreamPath};
use ugc_dvr::LiveRegistry;
use ugc_dvr::archive::{Archive, SOURCE_RENDITION, TrackKey, now_unix_ms};
use ugc_dvr::export::ExportPlan;
use ugc_dvr::playlist::render_multivariant;
use ugc_dvr::range::{DvrFile, DvrFileError, RangeKind, parse_dvr_file, render_range};
use ugc_dvr::variants::dvr_variant;

use crate::origin::{ClientIp, IMMUTABLE, NO_CACHE, PLAYLIST_TYPE, token_is_url_safe, token_param};

/// Response header of an MP4 export that stops before the end of the
/// range asked for (a track change it cannot carry, e.g. audio added).
pub const TRUNCATED_HEADER: &str = "x-ugc-export-truncated";
/// Response header with the duration (ms) an MP4 export covers, sent with
/// [`TRUNCATED_HEADER`].
pub const DURATION_HEADER: &str = "x-ugc-export-duration-ms";

/// `Cache-Control` of closed-range playlists and exports.
pub const RANGE_CACHE: &str = "public, max-age=60";
/// `Cache-Control` of from-now (EVENT) playlists.
pub const EVENT_CACHE: &str = "public, max-age=1";

/// What the DVR routes serve from.
pub struct DvrOrigin<A> {
    /// The archive.
    pub archive: Archive,
    /// Live streams (whether a from-now playlist is still growing).
    pub registry: Arc<LiveRegistry>,
    /// Who may watch.
    pub auth: Arc<A>,
    /// The viewer's address.
    pub client_ip: ClientIp,
    /// Target segment duration (floor of `#EXT-X-TARGETDURATION`).
    pub target_duration_ms: u32,
    /// Rewind window of the live playlist of a stream (`live/<s>`), in
    /// seconds; 0 = the live window only.
    pub rewind_s: RewindPolicy,
}

/// Rewind window in seconds per stream (`live/<s>`).
pub type RewindPolicy = Arc<dyn Fn(&StreamPath) -> u32 + Send + Sync>;

/// Wraps `router` (the origin's) so DVR file names below `/live/<s>/` are
/// answered here and everything else reaches `router`.
pub fn layer<A: Authorizer>(router: Router, dvr: DvrOrigin<A>) -> Router {
    router.layer(middleware::from_fn_with_state(
        Arc::new(dvr),
        intercept::<A>,
    ))
}

fn error(status: StatusCode, why: &str) -> Response {
    let mut res = Response::new(Body::from(format!(
        "{}: {why}\n",
        status.canonical_reason().unwrap_or("error")
    )));
    *res.status_mut() = status;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(NO_CACHE));
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    res
}

fn respond(content_type: &'static str, cache: &'static str, body: Body) -> Response {
    let mut res = Response::new(body);
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    res
}

/// `/<app>/<s>/<file>` -> (`app`, `s`, `None`, `file`);
/// `/<app>/<s>/<r>/<file>` -> (`app`, `s`, `Some(r)`, `file`).
fn split_path(path: &str) -> Option<(&str, &str, Option<&str>, &str)> {
    let rest = path.strip_prefix('/')?;
    let (app, rest) = rest.split_once('/')?;
    let (stream, file) = rest.split_once('/')?;
    match file.split_once('/') {
        None => Some((app, stream, None, file)),
        Some((r, f)) => (!f.contains('/')).then_some((app, stream, Some(r), f)),
    }
}

async fn intercept<A: Authorizer>(
    State(dvr): State<Arc<DvrOrigin<A>>>,
    req: Request,
    next: Next,
) -> Response {
    let Some((app, stream, rendition, file)) = split_path(req.uri().path()) else {
        return next.run(req).await;
    };
    if rendition.is_none()
        && file == "mono.m3u8"
        && req.method() == Method::GET
        && !req.uri().query().is_some_and(|q| q.contains("_HLS_"))
    {
        let rewind = StreamPath::new(app, stream)
            .ok()
            .map(|n| ((dvr.rewind_s)(&n), n));
        if let Some((secs, name)) = rewind.filter(|(s, _)| *s > 0) {
            let token = token_param(req.uri().query()).filter(|t| token_is_url_safe(t));
            let res = next.run(req).await;
            return with_rewind(&dvr, res, &name, secs, token.as_deref()).await;
        }
    }
    let file = match parse_dvr_file(file) {
        Ok(f) => f,
        Err(DvrFileError::NotDvr) => return next.run(req).await,
        Err(DvrFileError::Bad(why)) => return error(StatusCode::BAD_REQUEST, why),
    };
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return next.run(req).await;
    }
    let Ok(name) = StreamPath::new(app, stream) else {
        return error(StatusCode::BAD_REQUEST, "bad stream name");
    };
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
    let token = token_param(req.uri().query());
    let play = PlayRequest {
        stream: name.clone(),
        token: token.clone(),
        client_ip: (dvr.client_ip)(peer, req.headers()),
    };
    match dvr.auth.authorize_play(&play).await {
        PlayDecision::Allow => {}
        PlayDecision::Deny { reason } => {
            tracing::debug!(stream = %play.stream, client = %play.client_ip, %reason, "dvr play denied");
            return error(StatusCode::FORBIDDEN, "play denied");
        }
        PlayDecision::NotFound { .. } => return error(StatusCode::NOT_FOUND, "no such stream"),
    }
    let token = token.filter(|t| token_is_url_safe(t));
    let key = match rendition {
        None => Some(TrackKey::source(&name)),
        Some(r) => TrackKey::rendition(&name, r),
    };
    let Some(key) = key else {
        return error(StatusCode::BAD_REQUEST, "bad stream or rendition name");
    };
    if rendition.is_none()
        && let Some(res) = multivariant(&dvr, &name, file, token.as_deref()).await
    {
        return res;
    }
    let head = req.method() == Method::HEAD;
    let range = req
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    serve(&dvr, &key, file, token.as_deref(), head, range.as_deref()).await
}

/// The DVR multivariant playlist of a range or from-now request on the
/// stream itself (`/live/<s>/index-...`), when a rendition other than the
/// source is archived in it: every rendition archived in the range (the
/// source as `src/`), highest bandwidth first, each pointing at its own
/// `<r>/index-...` media playlist. `None` (serve the source's media
/// playlist as before) when only the source was recorded there.
async fn multivariant<A: Authorizer>(
    dvr: &DvrOrigin<A>,
    stream: &StreamPath,
    file: DvrFile,
    token: Option<&str>,
) -> Option<Response> {
    let (from_ms, to_ms, playlist, cache) = match file {
        DvrFile::Range { from, seconds } => (
            from.saturating_mul(1000),
            from.saturating_mul(1000)
                .saturating_add(i64::from(seconds) * 1000),
            format!("index-{from}-{seconds}.m3u8"),
            RANGE_CACHE,
        ),
        DvrFile::FromNow { from } => (
            from.saturating_mul(1000),
            i64::MAX,
            format!("index-{from}-now.m3u8"),
            EVENT_CACHE,
        ),
        _ => return None,
    };
    if from_ms > now_unix_ms() {
        return None;
    }
    let keys: Vec<TrackKey> = dvr
        .archive
        .keys()
        .into_iter()
        .filter(|k| k.stream == *stream)
        .collect();
    if keys.iter().all(|k| k.rendition == SOURCE_RENDITION) {
        return None;
    }
    let mut variants = Vec::new();
    for k in keys {
        let segs = dvr.archive.range(&k, from_ms, to_ms);
        let Some(first) = segs.first() else { continue };
        let init = match dvr
            .archive
            .init_file(&k, first.name.session, first.name.init)
            .await
        {
            Ok(path) => match tokio::task::spawn_blocking(move || std::fs::read(path)).await {
                Ok(Ok(b)) => b,
                _ => {
                    return Some(error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "archive unavailable",
                    ));
                }
            },
            Err(e) => return Some(io_error(&e)),
        };
        let mut uri = format!("{}/{playlist}", k.rendition);
        if let Some(t) = token {
            uri.push_str("?token=");
            uri.push_str(t);
        }
        variants.push(dvr_variant(&uri, &segs, &init));
    }
    if variants
        .iter()
        .all(|v| v.uri.starts_with(&format!("{SOURCE_RENDITION}/")))
    {
        return None;
    }
    variants.sort_by(|a, b| b.bandwidth.cmp(&a.bandwidth).then(a.uri.cmp(&b.uri)));
    Some(respond(
        PLAYLIST_TYPE,
        cache,
        Body::from(render_multivariant(&variants)),
    ))
}

/// Splices the archived part of the rewind window into a live playlist
/// response of the origin (only a `200`; anything else passes unchanged).
async fn with_rewind<A: Authorizer>(
    dvr: &DvrOrigin<A>,
    res: Response,
    stream: &StreamPath,
    secs: u32,
    token: Option<&str>,
) -> Response {
    let key = TrackKey::source(stream);
    let Some(session) = dvr.archive.current_session(&key) else {
        return res;
    };
    if res.status() != StatusCode::OK {
        return res;
    }
    let (mut parts, body) = res.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    let Ok(bytes) = axum::body::to_bytes(body, 4 << 20).await else {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "live playlist unreadable",
        );
    };
    let from = now_unix_ms().saturating_sub(i64::from(secs) * 1000);
    let archived: Vec<_> = dvr
        .archive
        .range(&key, from, i64::MAX)
        .into_iter()
        .filter(|s| s.name.session == session)
        .collect();
    let text = std::str::from_utf8(&bytes).ok();
    match text.and_then(|t| ugc_dvr::range::splice_rewind(t, &archived, token)) {
        Some(spliced) => Response::from_parts(parts, Body::from(spliced)),
        None => Response::from_parts(parts, Body::from(bytes)),
    }
}

async fn serve<A: Authorizer>(
    dvr: &DvrOrigin<A>,
    key: &TrackKey,
    file: DvrFile,
    token: Option<&str>,
    head: bool,
    range: Option<&str>,
) -> Response {
    let now = now_unix_ms();
    match file {
        DvrFile::Range { from, seconds } | DvrFile::Mp4 { from, seconds } => {
            let from_ms = from.saturating_mul(1000);
            if from_ms > now {
                return error(StatusCode::BAD_REQUEST, "from is in the future");
            }
            let to_ms = from_ms.saturating_add(i64::from(seconds) * 1000);
            if matches!(file, DvrFile::Range { .. }) {
                let gap = dvr.archive.config().gap_tolerance_ms;
                let body = dvr.archive.with_index(key, |i| {
                    let i = i?;
                    let mut segs = i.range(from_ms, to_ms).peekable();
                    segs.peek()?;
                    Some(render_range(
                        i.range(from_ms, to_ms),
                        RangeKind::Vod,
                        dvr.target_duration_ms,
                        gap,
                        token,
                    ))
                });
                match body {
                    Some(b) => respond(PLAYLIST_TYPE, RANGE_CACHE, Body::from(b)),
                    None => error(StatusCode::NOT_FOUND, "nothing archived in this range"),
                }
            } else {
                export(dvr, key, from_ms, to_ms, head, range, (from, seconds)).await
            }
        }
        DvrFile::FromNow { from } => {
            let from_ms = from.saturating_mul(1000);
            if from_ms > now {
                return error(StatusCode::BAD_REQUEST, "from is in the future");
            }
            let ended = dvr.registry.get(&key.stream).is_none_or(|l| l.is_ended());
            let gap = dvr.archive.config().gap_tolerance_ms;
            let body = dvr.archive.with_index(key, |i| {
                let i = i?;
                i.range(from_ms, i64::MAX).next()?;
                Some(render_range(
                    i.range(from_ms, i64::MAX),
                    RangeKind::Event { ended },
                    dvr.target_duration_ms,
                    gap,
                    token,
                ))
            });
            match body {
                Some(b) => respond(PLAYLIST_TYPE, EVENT_CACHE, Body::from(b)),
                None => error(StatusCode::NOT_FOUND, "nothing archived since this time"),
            }
        }
        DvrFile::Segment(name) => match dvr.archive.segment_file(key, &name).await {
            Ok(path) => file_response(path, "video/iso.segment").await,
            Err(e) => io_error(&e),
        },
        DvrFile::Init { session, n } => match dvr.archive.init_file(key, session, n).await {
            Ok(path) => file_response(path, "video/mp4").await,
            Err(e) => io_error(&e),
        },
    }
}

fn io_error(e: &std::io::Error) -> Response {
    if e.kind() == std::io::ErrorKind::NotFound {
        error(StatusCode::NOT_FOUND, "not archived")
    } else {
        tracing::warn!(error = %e, "dvr read failed");
        error(StatusCode::SERVICE_UNAVAILABLE, "archive unavailable")
    }
}

async fn file_response(path: std::path::PathBuf, content_type: &'static str) -> Response {
    match tokio::task::spawn_blocking(move || std::fs::read(path)).await {
        Ok(Ok(data)) => respond(content_type, IMMUTABLE, Body::from(Bytes::from(data))),
        Ok(Err(e)) => io_error(&e),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "read task failed"),
    }
}

/// What a `Range` header asks of a `len`-byte entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// The whole entity (no header, or one we do not honour: several
    /// ranges, other units, bad syntax; RFC 9110 lets us ignore it).
    Whole,
    /// Bytes `start..end`.
    Part(u64, u64),
    /// Nothing of the entity is in the range (416).
    Unsatisfiable,
}

/// Parses a `Range` header for a `len`-byte entity.
pub fn parse_range(header: Option<&str>, len: u64) -> ByteRange {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return ByteRange::Whole;
    };
    if spec.contains(',') {
        return ByteRange::Whole;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return ByteRange::Whole;
    };
    let num = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.len() <= 20 && s.bytes().all(|c| c.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let (start, end) = match (a, b) {
        ("", suffix) => {
            let Some(n) = num(suffix) else {
                return ByteRange::Whole;
            };
            if n == 0 {
                return ByteRange::Unsatisfiable;
            }
            (len.saturating_sub(n), len)
        }
        (s, "") => {
            let Some(s) = num(s) else {
                return ByteRange::Whole;
            };
            (s, len)
        }
        (s, e) => {
            let (Some(s), Some(e)) = (num(s), num(e)) else {
                return ByteRange::Whole;
            };
            if e < s {
                return ByteRange::Whole;
            }
            (s, e.saturating_add(1).min(len))
        }
    };
    if start >= len {
        return ByteRange::Unsatisfiable;
    }
    ByteRange::Part(start, end)
}

async fn export<A: Authorizer>(
    dvr: &DvrOrigin<A>,
    key: &TrackKey,
    from_ms: i64,
    to_ms: i64,
    head: bool,
    range: Option<&str>,
    (from, seconds): (i64, u32),
) -> Response {
    if dvr.archive.range(key, from_ms, to_ms).is_empty() {
        return error(StatusCode::NOT_FOUND, "nothing archived in this range");
    }
    let plan = match dvr.archive.plan_export(key, from_ms, to_ms).await {
        Ok(p) => Arc::new(p),
        Err(e) => {
            tracing::warn!(stream = %key.stream, error = %e, "mp4 export failed");
            return error(StatusCode::SERVICE_UNAVAILABLE, "archive unavailable");
        }
    };
    let len = plan.len;
    let (status, start, end) = match parse_range(range, len) {
        ByteRange::Whole => (StatusCode::OK, 0, len),
        ByteRange::Part(s, e) => (StatusCode::PARTIAL_CONTENT, s, e),
        ByteRange::Unsatisfiable => {
            let mut r = error(StatusCode::RANGE_NOT_SATISFIABLE, "range not satisfiable");
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return r;
        }
    };
    let body = if head {
        Body::empty()
    } else {
        stream_body(plan.clone(), start, end)
    };
    let mut res = respond("video/mp4", RANGE_CACHE, body);
    *res.status_mut() = status;
    let h = res.headers_mut();
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if plan.truncated {
        // The range crosses a change of tracks the MP4 cannot carry (see
        // ExportPlan::truncated): the file ends before it; say so and how
        // much it covers.
        h.insert(TRUNCATED_HEADER, HeaderValue::from_static("true"));
        if let Ok(v) = HeaderValue::from_str(&plan.duration_ms.to_string()) {
            h.insert(DURATION_HEADER, v);
        }
    }
    if let Ok(v) = HeaderValue::from_str(&(end - start).to_string()) {
        h.insert(header::CONTENT_LENGTH, v);
    }
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{}/{len}", end - 1))
    {
        h.insert(header::CONTENT_RANGE, v);
    }
    let mut stream = key.stream.name().to_owned();
    if key.rendition != SOURCE_RENDITION {
        stream = format!("{stream}-{}", key.rendition);
    }
    if let Ok(v) = HeaderValue::from_str(&format!(
        "inline; filename=\"{stream}-{from}-{seconds}.mp4\""
    )) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    res
}

/// Streams output bytes `start..end` of `plan`, read on a blocking thread
/// in 256 KiB chunks through a queue of four (memory stays flat).
fn stream_body(plan: Arc<ExportPlan>, start: u64, end: u64) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
    tokio::task::spawn_blocking(move || {
        use std::io::Read as _;
        let mut reader = plan.reader(start, end);
        loop {
            let want = usize::try_from(reader.remaining().min(256 * 1024)).unwrap_or(0);
            if want == 0 {
                return;
            }
            let mut buf = vec![0u8; want];
            let r = reader.read_exact(&mut buf).map(|()| Bytes::from(buf));
            let failed = r.is_err();
            if tx.blocking_send(r).is_err() || failed {
                return;
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Body::from_stream(stream)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range(None, 100), ByteRange::Whole);
        assert_eq!(parse_range(Some("bytes=0-9"), 100), ByteRange::Part(0, 10));
        assert_eq!(
            parse_range(Some("bytes=90-"), 100),
            ByteRange::Part(90, 100)
        );
        assert_eq!(
            parse_range(Some("bytes=-10"), 100),
            ByteRange::Part(90, 100)
        );
        assert_eq!(
            parse_range(Some("bytes=-1000"), 100),
            ByteRange::Part(0, 100)
        );
        assert_eq!(
            parse_range(Some("bytes=50-5000"), 100),
            ByteRange::Part(50, 100)
        );
        assert_eq!(
            parse_range(Some("bytes=100-"), 100),
            ByteRange::Unsatisfiable
        );
        assert_eq!(parse_range(Some("bytes=-0"), 100), ByteRange::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=0-1,5-6"), 100), ByteRange::Whole);
        assert_eq!(parse_range(Some("bytes=x-"), 100), ByteRange::Whole);
        assert_eq!(parse_range(Some("bytes=9-1"), 100), ByteRange::Whole);
        assert_eq!(parse_range(Some("items=0-1"), 100), ByteRange::Whole);
        assert_eq!(
            parse_range(Some("bytes=99999999999999999999999-"), 100),
            ByteRange::Whole
        );
    }

    #[test]
    fn paths() {
        assert_eq!(
            split_path("/live/foo/index-1-2.m3u8"),
            Some(("live", "foo", None, "index-1-2.m3u8"))
        );
        assert_eq!(
            split_path("/tv/foo/720p/index-1-2.m3u8"),
            Some(("tv", "foo", Some("720p"), "index-1-2.m3u8"))
        );
        assert_eq!(split_path("/live/foo/bar/x/y"), None);
        assert_eq!(split_path("/live/foo"), None);
        // Other routes split too, and are no DVR files: they pass on.
        let (_, _, _, file) = split_path("/api/v1/streams").unwrap();
        assert_eq!(parse_dvr_file(file), Err(DvrFileError::NotDvr));
    }
}
