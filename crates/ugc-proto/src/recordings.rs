//! The recordings API of a node with an archive, to mount under `/api/v1`
//! (feature `json`):
//!
//! | route | answer |
//! |---|---|
//! | `GET /streams/{name}/recordings` | `{"recordings": [...]}`, newest first |
//! | `DELETE /streams/{name}/recordings/{id}` | 204; 404 no such recording; 409 still recording |
//!
//! A recording is one event of the stream ([`Archive::recordings`]): `id`,
//! `start_ms`/`end_ms`/`duration_ms` (unix ms), `renditions`, `bytes`,
//! `stored` (`local`, `s3`, `both`), `recording` (still running), `upload`
//! (`{"state": "queued"|"uploading", "bytes_done", "bytes_total"}` while its
//! move to S3 is queued or running, else `null`), and URLs on the node's
//! media origin: `play` (the range playlist, multivariant with a ladder),
//! `download` (the progressive MP4 export of the best rendition: moov
//! first, HTTP ranges) and `downloads` (one per rendition). The URLs are
//! the DVR routes of [`crate::dvr`], authorized like live playback: for a
//! private stream append the viewer's `?token=`.
//!
//! Who may list or delete a stream's recordings is the embedder's policy:
//! an [`Authorize`] answers for each request (the control plane: the
//! stream's creator or the admin).
//!
//! **Several origins.** Each origin answers its own archive to holders of
//! the node token ([`node_router`]): `GET /dvr/v1/recordings/<app>/<s>`
//! (the same JSON, URLs relative to the origin) and `DELETE
//! /dvr/v1/recordings/<app>/<s>?from=<ms>&to=<ms>` (every ended recording
//! overlapping the span; [`Archive::delete_span`]). The control plane
//! serves the public routes with [`cluster_router`]: it asks every origin,
//! merges the events whose spans overlap (origins record the same event a
//! moment apart), gives the URLs of the origin with the longest copy and
//! lists each origin's copy under `origins`; a delete goes to every origin
//! and succeeds when one took it (the others follow through replication,
//! [`crate::dvr_sync`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use serde_json::{Value, json};
use ugc_core::StreamPath;
use ugc_dvr::archive::{Archive, DeleteRecordingError, Recording, SOURCE_RENDITION};

/// The answer of an [`Authorize`]: the media origin's base URL for the
/// recording URLs (`http://host:port`), or the status and message refusing
/// the request (401, 403, 404), answered as `{"error": message}`.
pub type AuthorizeResult = Result<String, (StatusCode, String)>;

/// Decides whether a request (its headers) may see or delete the
/// recordings of stream `name` (`live/<name>`).
pub type Authorize = Arc<
    dyn Fn(HeaderMap, String) -> Pin<Box<dyn Future<Output = AuthorizeResult> + Send>>
        + Send
        + Sync,
>;

#[derive(Clone)]
struct Api {
    archive: Archive,
    authorize: Authorize,
}

/// The routes (paths relative to `/api/v1`).
pub fn router(archive: Archive, authorize: Authorize) -> Router {
    Router::new()
        .route("/streams/{name}/recordings", get(list))
        .route("/streams/{name}/recordings/{id}", delete(remove))
        .with_state(Api { archive, authorize })
}

/// A JSON answer (axum's `json` feature is not needed for this).
fn json_response(status: StatusCode, v: &Value) -> Response {
    let mut r = (status, v.to_string()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn error(status: StatusCode, why: &str) -> Response {
    json_response(status, &json!({ "error": why }))
}

fn stream_path(name: &str) -> Option<StreamPath> {
    StreamPath::parse(&format!("live/{name}"))
        .ok()
        .filter(StreamPath::is_source)
}

async fn list(State(api): State<Api>, headers: HeaderMap, Path(name): Path<String>) -> Response {
    let Some(stream) = stream_path(&name) else {
        return error(StatusCode::BAD_REQUEST, "bad stream name");
    };
    let base = match (api.authorize)(headers, name.clone()).await {
        Ok(b) => b,
        Err((status, why)) => return error(status, &why),
    };
    let list: Vec<Value> = api
        .archive
        .recordings(&stream)
        .iter()
        .map(|r| recording_json(r, &base, &name))
        .collect();
    json_response(StatusCode::OK, &json!({ "recordings": list }))
}

async fn remove(
    State(api): State<Api>,
    headers: HeaderMap,
    Path((name, id)): Path<(String, String)>,
) -> Response {
    let Some(stream) = stream_path(&name) else {
        return error(StatusCode::BAD_REQUEST, "bad stream name");
    };
    if let Err((status, why)) = (api.authorize)(headers, name).await {
        return error(status, &why);
    }
    let Ok(id) = id.parse::<i64>() else {
        return error(StatusCode::NOT_FOUND, "no such recording");
    };
    let archive = api.archive.clone();
    let done = tokio::task::spawn_blocking(move || archive.delete_recording(&stream, id)).await;
    match done {
        Ok(Ok(_)) => StatusCode::NO_CONTENT.into_response(),
        Ok(Err(DeleteRecordingError::NotFound)) => {
            error(StatusCode::NOT_FOUND, "no such recording")
        }
        Ok(Err(DeleteRecordingError::Recording)) => error(
            StatusCode::CONFLICT,
            "the recording is still running; delete it after the stream ends",
        ),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "deleting a recording");
            error(StatusCode::INTERNAL_SERVER_ERROR, "deleting failed")
        }
        Err(e) => {
            tracing::error!(error = %e, "deleting a recording");
            error(StatusCode::INTERNAL_SERVER_ERROR, "deleting failed")
        }
    }
}

/// The DVR range covering `r`: unix seconds from, seconds (1..=86400; a
/// longer recording's URLs cover its first day).
pub fn range_of(r: &Recording) -> (i64, u32) {
    let from = r.start_ms.div_euclid(1000);
    let to = (r.end_ms.saturating_add(999)).div_euclid(1000);
    let seconds = to.saturating_sub(from).clamp(1, 86_400);
    (from, u32::try_from(seconds).unwrap_or(86_400))
}

/// The rendition a download defaults to: the source if archived, else the
/// rung with the greatest height in its name (`1080p` over `720p`).
fn best_rendition<'a>(renditions: &[&'a str]) -> Option<&'a str> {
    if renditions.contains(&SOURCE_RENDITION) {
        return Some(SOURCE_RENDITION);
    }
    let height = |r: &str| -> u64 {
        let digits: String = r.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().unwrap_or(0)
    };
    renditions.iter().copied().max_by_key(|r| (height(r), *r))
}

/// The JSON of one recording (see the [module docs](self)); URLs on `base`.
pub fn recording_json(r: &Recording, base: &str, name: &str) -> Value {
    let (from, seconds) = range_of(r);
    let renditions = r.renditions();
    let dir = |rendition: &str| {
        if rendition == SOURCE_RENDITION {
            format!("{base}/live/{name}")
        } else {
            format!("{base}/live/{name}/{rendition}")
        }
    };
    let downloads: serde_json::Map<String, Value> = renditions
        .iter()
        .map(|rn| {
            (
                (*rn).to_owned(),
                Value::String(format!("{}/archive-{from}-{seconds}.mp4", dir(rn))),
            )
        })
        .collect();
    let download =
        best_rendition(&renditions).map(|rn| format!("{}/archive-{from}-{seconds}.mp4", dir(rn)));
    // The stream's range playlist: multivariant when a rung is archived;
    // without the source, a ladder's playlist still lists its rungs.
    let play = format!("{base}/live/{name}/index-{from}-{seconds}.m3u8");
    json!({
        "id": r.id,
        "start_ms": r.start_ms,
        "end_ms": r.end_ms,
        "duration_ms": r.duration_ms(),
        "renditions": renditions,
        "bytes": r.bytes(),
        "stored": r.stored().as_str(),
        "recording": r.recording(),
        "upload": r.upload().map(|u| json!({
            "state": if u.uploading { "uploading" } else { "queued" },
            "bytes_done": u.bytes_done,
            "bytes_total": u.bytes_total,
        })),
        "play": play,
        "download": download,
        "downloads": downloads,
    })
}

/// The node-token routes of an origin's archive (see the [module
/// docs](self)).
pub fn node_router(archive: Archive, token: &str) -> Router {
    let node = Node {
        archive,
        token: crate::relay::server::digest(token),
    };
    Router::new()
        .route(
            "/dvr/v1/recordings/{app}/{name}",
            get(node_list).delete(node_delete),
        )
        .with_state(Arc::new(node))
}

struct Node {
    archive: Archive,
    token: [u8; 32],
}

fn node_refused(node: &Node, headers: &HeaderMap) -> Option<Response> {
    if crate::relay::server::bearer_is(headers, &node.token) {
        return None;
    }
    Some(error(StatusCode::UNAUTHORIZED, "node token required"))
}

fn node_stream(app: &str, name: &str) -> Option<StreamPath> {
    StreamPath::new(app, name)
        .ok()
        .filter(StreamPath::is_source)
}

async fn node_list(
    State(node): State<Arc<Node>>,
    headers: HeaderMap,
    Path((app, name)): Path<(String, String)>,
) -> Response {
    if let Some(r) = node_refused(&node, &headers) {
        return r;
    }
    let Some(stream) = node_stream(&app, &name) else {
        return error(StatusCode::BAD_REQUEST, "bad stream name");
    };
    let list: Vec<Value> = node
        .archive
        .recordings(&stream)
        .iter()
        .map(|r| recording_json(r, "", &name))
        .collect();
    json_response(StatusCode::OK, &json!({ "recordings": list }))
}

async fn node_delete(
    State(node): State<Arc<Node>>,
    headers: HeaderMap,
    Path((app, name)): Path<(String, String)>,
    axum::extract::RawQuery(q): axum::extract::RawQuery,
) -> Response {
    if let Some(r) = node_refused(&node, &headers) {
        return r;
    }
    let Some(stream) = node_stream(&app, &name) else {
        return error(StatusCode::BAD_REQUEST, "bad stream name");
    };
    let param = |k: &str| -> Option<i64> {
        q.as_deref()?
            .split('&')
            .find_map(|kv| kv.strip_prefix(k)?.strip_prefix('='))?
            .parse()
            .ok()
    };
    let (Some(from), Some(to)) = (param("from"), param("to")) else {
        return error(StatusCode::BAD_REQUEST, "from and to (unix ms) wanted");
    };
    if from >= to {
        return error(StatusCode::BAD_REQUEST, "empty span");
    }
    let archive = node.archive.clone();
    let done = tokio::task::spawn_blocking(move || archive.delete_span(&stream, from, to)).await;
    match done {
        Ok(Ok(n)) => json_response(StatusCode::OK, &json!({ "deleted": n })),
        Ok(Err(DeleteRecordingError::Recording)) => {
            error(StatusCode::CONFLICT, "the recording is still running")
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "deleting recordings");
            error(StatusCode::INTERNAL_SERVER_ERROR, "deleting failed")
        }
        Err(e) => {
            tracing::error!(error = %e, "deleting recordings");
            error(StatusCode::INTERNAL_SERVER_ERROR, "deleting failed")
        }
    }
}

/// An origin as the control plane knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginNode {
    /// Its node id.
    pub id: String,
    /// Its HTTP base URL for nodes (the node token routes).
    pub url: String,
    /// Its base URL for viewers (`http://host:port`).
    pub public: String,
}

/// The origins to ask, now (the control plane's registry).
pub type Origins =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Vec<OriginNode>> + Send>> + Send + Sync>;

#[derive(Clone)]
struct Cluster {
    origins: Origins,
    token: Arc<str>,
    authorize: Authorize,
    client: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        http_body_util::Empty<bytes::Bytes>,
    >,
}

/// How long an origin may take to answer.
const ORIGIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// Bytes an origin's recordings answer may have.
const MAX_ANSWER: usize = 16 << 20;

/// The public routes (relative to `/api/v1`) over every origin's archive,
/// for a control plane without one (see the [module docs](self)).
pub fn cluster_router(origins: Origins, token: &str, authorize: Authorize) -> Router {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    Router::new()
        .route("/streams/{name}/recordings", get(cluster_list))
        .route("/streams/{name}/recordings/{id}", delete(cluster_delete))
        .with_state(Cluster {
            origins,
            token: token.into(),
            authorize,
            client,
        })
}

impl Cluster {
    async fn call(
        &self,
        method: axum::http::Method,
        url: &str,
    ) -> Result<(StatusCode, Value), String> {
        use http_body_util::BodyExt as _;
        let req = hyper::Request::builder()
            .method(method)
            .uri(url)
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token))
            .body(http_body_util::Empty::new())
            .map_err(|e| e.to_string())?;
        let resp = tokio::time::timeout(ORIGIN_TIMEOUT, self.client.request(req))
            .await
            .map_err(|_| "timed out".to_owned())?
            .map_err(|e| e.to_string())?;
        let status = resp.status();
        let body = tokio::time::timeout(
            ORIGIN_TIMEOUT,
            http_body_util::Limited::new(resp.into_body(), MAX_ANSWER).collect(),
        )
        .await
        .map_err(|_| "body timed out".to_owned())?
        .map_err(|e| e.to_string())?
        .to_bytes();
        Ok((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
    }

    /// Every origin's recordings of `name`, merged, newest first.
    async fn merged(&self, name: &str) -> Result<Vec<Value>, Response> {
        let origins = (self.origins)().await;
        let asks = origins.iter().map(|o| async move {
            let url = format!(
                "{}/dvr/v1/recordings/live/{name}",
                o.url.trim_end_matches('/')
            );
            (o, self.call(axum::http::Method::GET, &url).await)
        });
        let mut copies: Vec<(&OriginNode, Value)> = Vec::new();
        let mut answered = 0;
        for (o, got) in futures_util::future::join_all(asks).await {
            match got {
                Ok((StatusCode::OK, v)) => {
                    answered += 1;
                    if let Some(list) = v["recordings"].as_array() {
                        copies.extend(list.iter().map(|r| (o, r.clone())));
                    }
                }
                Ok((status, _)) => {
                    tracing::warn!(origin = %o.id, %status, "recordings: origin refused");
                }
                Err(why) => {
                    tracing::warn!(origin = %o.id, error = %why, "recordings: origin unreachable")
                }
            }
        }
        if answered == 0 && !origins.is_empty() {
            return Err(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "no origin answered; try again",
            ));
        }
        Ok(merge(copies))
    }
}

/// Merges origins' copies of events (pure): copies whose spans overlap are
/// one event, shown with the URLs of its longest copy (made absolute on
/// that origin's public base), `id` the earliest start, and `origins`.
/// Copies of one event: its span and each origin's entry.
type Group<'a> = (i64, i64, Vec<(&'a OriginNode, Value)>);

fn merge(mut copies: Vec<(&OriginNode, Value)>) -> Vec<Value> {
    let span = |v: &Value| {
        (
            v["start_ms"].as_i64().unwrap_or(0),
            v["end_ms"].as_i64().unwrap_or(0),
        )
    };
    copies.sort_by_key(|(o, v)| (span(v), o.id.clone()));
    let mut groups: Vec<Group> = Vec::new();
    for (o, v) in copies {
        let (start, end) = span(&v);
        match groups.last_mut() {
            Some(g) if start < g.1 => {
                g.1 = g.1.max(end);
                g.2.push((o, v));
            }
            _ => groups.push((start, end, vec![(o, v)])),
        }
    }
    let absolute = |v: &Value, base: &str| -> Value {
        match v {
            Value::String(p) if p.starts_with('/') => Value::String(format!("{base}{p}")),
            Value::Object(m) => Value::Object(
                m.iter()
                    .map(|(k, x)| (k.clone(), absolute_str(x, base)))
                    .collect(),
            ),
            other => other.clone(),
        }
    };
    let mut out: Vec<Value> = groups
        .into_iter()
        .map(|(start, end, copies)| {
            let best = copies
                .iter()
                .max_by_key(|(o, v)| {
                    let (s, e) = span(v);
                    (e.saturating_sub(s), std::cmp::Reverse(o.id.clone()))
                })
                .map(|(o, v)| ((*o).clone(), v.clone()));
            let Some((origin, mut v)) = best else {
                return Value::Null;
            };
            for k in ["play", "download", "downloads"] {
                v[k] = absolute(&v[k], &origin.public);
            }
            v["id"] = json!(start);
            v["start_ms"] = json!(start);
            v["end_ms"] = json!(end);
            v["duration_ms"] = json!(end.saturating_sub(start));
            v["recording"] = json!(copies.iter().any(|(_, c)| c["recording"] == true));
            v["origins"] = copies
                .iter()
                .map(|(o, c)| {
                    json!({
                        "node": o.id,
                        "stored": c["stored"],
                        "bytes": c["bytes"],
                        "duration_ms": c["duration_ms"],
                        "recording": c["recording"],
                        "upload": c["upload"],
                    })
                })
                .collect();
            v
        })
        .collect();
    out.reverse();
    out
}

fn absolute_str(v: &Value, base: &str) -> Value {
    match v {
        Value::String(p) if p.starts_with('/') => Value::String(format!("{base}{p}")),
        other => other.clone(),
    }
}

async fn cluster_list(
    State(c): State<Cluster>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    if stream_path(&name).is_none() {
        return error(StatusCode::BAD_REQUEST, "bad stream name");
    }
    if let Err((status, why)) = (c.authorize)(headers, name.clone()).await {
        return error(status, &why);
    }
    match c.merged(&name).await {
        Ok(list) => json_response(StatusCode::OK, &json!({ "recordings": list })),
        Err(r) => r,
    }
}

async fn cluster_delete(
    State(c): State<Cluster>,
    headers: HeaderMap,
    Path((name, id)): Path<(String, String)>,
) -> Response {
    if stream_path(&name).is_none() {
        return error(StatusCode::BAD_REQUEST, "bad stream name");
    }
    if let Err((status, why)) = (c.authorize)(headers, name.clone()).await {
        return error(status, &why);
    }
    let Ok(id) = id.parse::<i64>() else {
        return error(StatusCode::NOT_FOUND, "no such recording");
    };
    let list = match c.merged(&name).await {
        Ok(l) => l,
        Err(r) => return r,
    };
    // The id is the earliest copy's start: an origin that did not answer
    // this time may have had it, so else the event starting within a
    // minute after it.
    let exact = list.iter().find(|r| r["id"].as_i64() == Some(id));
    let near = || {
        list.iter()
            .filter(|r| {
                let s = r["start_ms"].as_i64().unwrap_or(i64::MIN);
                id <= s && s <= id.saturating_add(60_000)
            })
            .min_by_key(|r| r["start_ms"].as_i64().unwrap_or(i64::MAX))
    };
    let Some(rec) = exact.or_else(near) else {
        return error(StatusCode::NOT_FOUND, "no such recording");
    };
    if rec["recording"] == true {
        return error(
            StatusCode::CONFLICT,
            "the recording is still running; delete it after the stream ends",
        );
    }
    let (from, to) = (
        rec["start_ms"].as_i64().unwrap_or(0).min(id),
        rec["end_ms"].as_i64().unwrap_or(0),
    );
    let origins = (c.origins)().await;
    let asks = origins.iter().map(|o| {
        let url = format!(
            "{}/dvr/v1/recordings/live/{name}?from={from}&to={to}",
            o.url.trim_end_matches('/')
        );
        let c = &c;
        async move { (o, c.call(axum::http::Method::DELETE, &url).await) }
    });
    let (mut ok, mut conflict) = (0, 0);
    for (o, got) in futures_util::future::join_all(asks).await {
        match got {
            Ok((StatusCode::OK, _)) => ok += 1,
            Ok((StatusCode::CONFLICT, _)) => conflict += 1,
            Ok((status, _)) => {
                tracing::warn!(origin = %o.id, %status, "recordings: delete refused")
            }
            Err(why) => {
                tracing::warn!(origin = %o.id, error = %why, "recordings: delete not delivered")
            }
        }
    }
    if conflict > 0 {
        return error(StatusCode::CONFLICT, "the recording is still running");
    }
    if ok == 0 {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no origin took the deletion; try again",
        );
    }
    StatusCode::NO_CONTENT.into_response()
}

/// The OpenAPI path items of [`router`], by path.
pub fn openapi_paths() -> serde_json::Map<String, Value> {
    let name = json!({ "name": "name", "in": "path", "required": true,
        "schema": { "type": "string" } });
    let recording = json!({
        "type": "object",
        "required": ["id", "start_ms", "end_ms", "duration_ms", "renditions", "bytes",
            "stored", "recording", "upload", "play", "download", "downloads"],
        "properties": {
            "id": { "type": "integer", "description": "The event's id: its first session's start, unix ms" },
            "start_ms": { "type": "integer" },
            "end_ms": { "type": "integer" },
            "duration_ms": { "type": "integer" },
            "renditions": { "type": "array", "items": { "type": "string" } },
            "bytes": { "type": "integer" },
            "stored": { "type": "string", "enum": ["local", "s3", "both"] },
            "recording": { "type": "boolean", "description": "Still being recorded" },
            "upload": { "type": ["object", "null"], "properties": {
                "state": { "type": "string", "enum": ["queued", "uploading"] },
                "bytes_done": { "type": "integer" },
                "bytes_total": { "type": "integer" } } },
            "play": { "type": "string", "description": "Range playlist (HLS VOD); append ?token= for a private stream" },
            "download": { "type": ["string", "null"], "description": "Progressive MP4 (moov first) of the best rendition" },
            "downloads": { "type": "object", "additionalProperties": { "type": "string" } }
        }
    });
    let mut paths = serde_json::Map::new();
    paths.insert(
        "/streams/{name}/recordings".into(),
        json!({ "get": {
            "summary": "The stream's recorded events on this node, newest first",
            "description": "The stream's creator or the admin.",
            "parameters": [name],
            "responses": {
                "200": { "description": "Recordings", "content": { "application/json": {
                    "schema": { "type": "object", "properties": {
                        "recordings": { "type": "array", "items": recording } } } } } },
                "401": { "description": "Missing or bad bearer token" },
                "403": { "description": "Not the stream's creator" },
                "404": { "description": "No such stream" }
            }
        } }),
    );
    paths.insert(
        "/streams/{name}/recordings/{id}".into(),
        json!({ "delete": {
            "summary": "Deletes a recorded event from the archive and the object store",
            "description": "The stream's creator or the admin.",
            "parameters": [name, { "name": "id", "in": "path", "required": true,
                "schema": { "type": "integer" } }],
            "responses": {
                "204": { "description": "Deleted (its S3 objects are deleted in the background)" },
                "401": { "description": "Missing or bad bearer token" },
                "403": { "description": "Not the stream's creator" },
                "404": { "description": "No such stream or recording" },
                "409": { "description": "Still being recorded" }
            }
        } }),
    );
    paths
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_the_recording_in_whole_seconds() {
        let r = Recording {
            id: 1,
            start_ms: 1_700_000_000_400,
            end_ms: 1_700_000_060_100,
            sessions: Vec::new(),
        };
        assert_eq!(range_of(&r), (1_700_000_000, 61));
        let long = Recording {
            end_ms: r.start_ms + 3 * 86_400_000,
            ..r.clone()
        };
        assert_eq!(range_of(&long).1, 86_400);
        let empty = Recording {
            end_ms: r.start_ms,
            ..r
        };
        assert_eq!(range_of(&empty).1, 1);
    }

    #[test]
    fn copies_of_one_event_on_two_origins_merge_into_one() {
        let node = |id: &str| OriginNode {
            id: id.into(),
            url: format!("http://{id}:1"),
            public: format!("https://{id}.example"),
        };
        let (a, b) = (node("a"), node("b"));
        let entry = |start: i64, end: i64, recording: bool| {
            json!({
                "id": start, "start_ms": start, "end_ms": end, "duration_ms": end.saturating_sub(start),
                "recording": recording, "stored": "local", "bytes": 1, "upload": null,
                "play": format!("/live/s/index-{}-9.m3u8", start / 1000),
                "download": "/live/s/archive-1-9.mp4",
                "downloads": { "src": "/live/s/archive-1-9.mp4" },
            })
        };
        let got = merge(vec![
            (&a, entry(10_000, 60_000, false)),
            (&b, entry(9_500, 61_000, false)),
            (&a, entry(90_000, 99_000, true)),
        ]);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0]["id"], 90_000, "newest first");
        assert_eq!(got[0]["recording"], true);
        let one = &got[1];
        assert_eq!(
            (one["id"].clone(), one["end_ms"].clone()),
            (json!(9_500), json!(61_000))
        );
        assert_eq!(one["origins"].as_array().map(Vec::len), Some(2));
        // URLs of the longest copy (B's), on its public base.
        assert_eq!(one["play"], "https://b.example/live/s/index-9-9.m3u8");
        assert_eq!(
            one["downloads"]["src"],
            "https://b.example/live/s/archive-1-9.mp4"
        );
        assert!(merge(Vec::new()).is_empty());
        // An origin's extreme span cannot overflow the merge.
        let odd = merge(vec![(&a, entry(i64::MIN, i64::MAX, false))]);
        assert_eq!(odd[0]["duration_ms"], i64::MAX);
    }

    #[test]
    fn downloads_default_to_the_source_then_the_tallest_rung() {
        assert_eq!(best_rendition(&["720p", "src"]), Some("src"));
        assert_eq!(best_rendition(&["360p", "1080p", "720p"]), Some("1080p"));
        assert_eq!(best_rendition(&["audio", "240p"]), Some("240p"));
        assert_eq!(best_rendition(&[]), None);
    }
}
