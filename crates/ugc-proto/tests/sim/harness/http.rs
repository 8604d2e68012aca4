//! Requests to the origin router (no socket: `tower::ServiceExt::oneshot`)
//! and the playlist lines tests assert on.

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::http::{HeaderMap, Request, StatusCode, header};
use bytes::Bytes;
use tower::ServiceExt;
use ugc_dvr::MediaFile;

use super::SimClock;

/// An answer of the origin.
#[derive(Debug, Clone)]
pub struct Resp {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// The whole body (what came, if it failed).
    pub body: Bytes,
    /// Why the body ended early (a streamed part that stalled or was
    /// abandoned).
    pub body_error: Option<String>,
    /// Simulated time the request was made, ms.
    pub asked_ms: i64,
    /// Simulated time the headers came, ms.
    pub answered_ms: i64,
    /// Simulated time the body was complete, ms.
    pub done_ms: i64,
}

impl Resp {
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// `Cache-Control`, or "".
    pub fn cache_control(&self) -> &str {
        self.headers
            .get(header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// Panics unless the status is 200 with a whole body; returns the text.
    pub fn ok_text(&self, what: &str) -> String {
        assert_eq!(self.status, StatusCode::OK, "{what}: {}", self.text());
        assert_eq!(self.body_error, None, "{what}");
        self.text()
    }
}

/// GET `uri` from `router`, timing it on `clock`.
pub async fn get(router: &Router, clock: &SimClock, uri: &str) -> Resp {
    get_from(router, clock, uri, None).await
}

/// GET `uri` from `router` as client `from` (the peer address a server
/// gives its handlers; `None`: none, as `0.0.0.0`), timing it on `clock`.
pub async fn get_from(
    router: &Router,
    clock: &SimClock,
    uri: &str,
    from: Option<std::net::SocketAddr>,
) -> Resp {
    let asked_ms = clock.now_ms();
    let mut req = Request::builder().uri(uri).body(Body::empty()).unwrap();
    if let Some(addr) = from {
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(addr));
    }
    let res = router.clone().oneshot(req).await.unwrap();
    let answered_ms = clock.now_ms();
    let status = res.status();
    let headers = res.headers().clone();
    // A part that stalls aborts its body.
    let (body, body_error) = match to_bytes(res.into_body(), 1 << 26).await {
        Ok(b) => (b, None),
        Err(e) => (Bytes::new(), Some(e.to_string())),
    };
    Resp {
        status,
        headers,
        body,
        body_error,
        asked_ms,
        answered_ms,
        done_ms: clock.now_ms(),
    }
}

/// One line `#EXT-X-PART` of a playlist.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PartLine {
    /// Its segment.
    pub msn: u64,
    /// Its index.
    pub index: u32,
    /// `DURATION`, s.
    pub duration: f64,
    /// `INDEPENDENT=YES`.
    pub independent: bool,
    /// The session of its URI.
    pub session: u64,
}

/// One media segment of a playlist.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentLine {
    /// Media sequence number.
    pub msn: u64,
    /// The URI.
    pub uri: String,
    /// `#EXTINF`, s.
    pub duration: f64,
    /// Preceded by `#EXT-X-DISCONTINUITY`.
    pub discontinuity: bool,
}

/// Parsed lines of a media playlist.
#[derive(Debug, Clone, Default)]
pub struct Playlist {
    /// `#EXT-X-TARGETDURATION`.
    pub target_duration: Option<u64>,
    /// `#EXT-X-MEDIA-SEQUENCE`.
    pub media_sequence: u64,
    /// Segments, in order.
    pub segments: Vec<SegmentLine>,
    /// Parts (of listed and of the open segment), in order.
    pub parts: Vec<PartLine>,
    /// `#EXT-X-PRELOAD-HINT` part.
    pub preload_hint: Option<(u64, u32)>,
    /// `#EXT-X-DISCONTINUITY` lines, with the open segment's.
    pub discontinuities: usize,
    /// `#EXT-X-MAP` URIs.
    pub maps: Vec<String>,
    /// `#EXT-X-ENDLIST`.
    pub ended: bool,
}

fn attr<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let start = line.find(&format!("{name}="))? + name.len() + 1;
    let rest = &line[start..];
    if let Some(q) = rest.strip_prefix('"') {
        q.split('"').next()
    } else {
        rest.split(',').next()
    }
}

impl Playlist {
    /// Parses `text`; panics on lines this origin does not write.
    pub fn parse(text: &str) -> Playlist {
        let mut p = Playlist::default();
        let mut extinf = None;
        let mut disc = false;
        for line in text.lines() {
            if let Some(v) = line.strip_prefix("#EXT-X-TARGETDURATION:") {
                p.target_duration = Some(v.parse().unwrap());
            } else if let Some(v) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
                p.media_sequence = v.parse().unwrap();
            } else if line == "#EXT-X-DISCONTINUITY" {
                disc = true;
                p.discontinuities += 1;
            } else if let Some(v) = line.strip_prefix("#EXTINF:") {
                extinf = Some(v.trim_end_matches(',').parse::<f64>().unwrap());
            } else if line.starts_with("#EXT-X-PART:") {
                let uri = attr(line, "URI").unwrap();
                let Ok(MediaFile::Part(session, msn, index)) = MediaFile::parse(uri) else {
                    panic!("part URI {uri}");
                };
                p.parts.push(PartLine {
                    msn,
                    index,
                    duration: attr(line, "DURATION").unwrap().parse().unwrap(),
                    independent: attr(line, "INDEPENDENT") == Some("YES"),
                    session,
                });
            } else if line.starts_with("#EXT-X-PRELOAD-HINT:") {
                let uri = attr(line, "URI").unwrap();
                let Ok(MediaFile::Part(_, msn, index)) = MediaFile::parse(uri) else {
                    panic!("hint URI {uri}");
                };
                p.preload_hint = Some((msn, index));
            } else if line.starts_with("#EXT-X-MAP:") {
                p.maps.push(attr(line, "URI").unwrap().to_owned());
            } else if line == "#EXT-X-ENDLIST" {
                p.ended = true;
            } else if !line.starts_with('#') && !line.is_empty() {
                let uri = line.split('?').next().unwrap_or(line);
                let msn = match MediaFile::parse(uri) {
                    Ok(MediaFile::Segment(_, _, msn)) => msn,
                    other => panic!("segment URI {uri}: {other:?}"),
                };
                p.segments.push(SegmentLine {
                    msn,
                    uri: uri.to_owned(),
                    duration: extinf.take().unwrap(),
                    discontinuity: std::mem::take(&mut disc),
                });
            }
        }
        p
    }

    /// The session every media URI names (panics if they differ).
    pub fn session(&self) -> u64 {
        let mut sessions = self
            .segments
            .iter()
            .map(|s| MediaFile::parse(&s.uri).unwrap().session())
            .chain(self.parts.iter().map(|p| p.session))
            .chain(
                self.maps
                    .iter()
                    .map(|m| MediaFile::parse(m).unwrap().session()),
            );
        let first = sessions.next().expect("a media URI");
        assert!(sessions.all(|s| s == first), "mixed sessions");
        first
    }
}

/// The `(track_id, baseMediaDecodeTime)` of every `traf` of a fragment
/// (`moof` boxes at top level; other boxes skipped).
pub fn tfdts(data: &[u8]) -> Vec<(u32, u64)> {
    fn boxes(mut d: &[u8]) -> Vec<([u8; 4], &[u8])> {
        let mut v = Vec::new();
        while d.len() >= 8 {
            let size = u32::from_be_bytes(d[..4].try_into().unwrap()) as usize;
            let kind: [u8; 4] = d[4..8].try_into().unwrap();
            if size < 8 || size > d.len() {
                break;
            }
            v.push((kind, &d[8..size]));
            d = &d[size..];
        }
        v
    }
    let mut out = Vec::new();
    for (kind, moof) in boxes(data) {
        if &kind != b"moof" {
            continue;
        }
        for (k, traf) in boxes(moof) {
            if &k != b"traf" {
                continue;
            }
            let mut id = 0;
            let mut t = None;
            for (k, b) in boxes(traf) {
                if &k == b"tfhd" {
                    id = u32::from_be_bytes(b[4..8].try_into().unwrap());
                } else if &k == b"tfdt" {
                    t = Some(if b[0] == 1 {
                        u64::from_be_bytes(b[4..12].try_into().unwrap())
                    } else {
                        u64::from(u32::from_be_bytes(b[4..8].try_into().unwrap()))
                    });
                }
            }
            out.push((id, t.expect("tfdt")));
        }
    }
    out
}
