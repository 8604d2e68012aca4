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
    fn downloads_default_to_the_source_then_the_tallest_rung() {
        assert_eq!(best_rendition(&["720p", "src"]), Some("src"));
        assert_eq!(best_rendition(&["360p", "1080p", "720p"]), Some("1080p"));
        assert_eq!(best_rendition(&["audio", "240p"]), Some("240p"));
        assert_eq!(best_rendition(&[]), None);
    }
}
