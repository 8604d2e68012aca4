//! The REST API (`/api/v1`, JSON, bearer auth).

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, patch, post};
use serde_json::{Value, json};

use crate::error::Error;
use crate::plane::{ControlPlane, NewStream, StreamPatch};
use crate::registry::NodeView;
use crate::store::{Principal, StreamRecord};

/// An error answer: status and `{"error": "..."}`.
#[derive(Debug)]
pub(crate) struct ApiError(StatusCode, String);

impl ApiError {
    pub(crate) fn new(status: StatusCode, msg: String) -> Self {
        ApiError(status, msg)
    }
}

/// The bearer token of a request.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    Some(
        value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))?
            .trim(),
    )
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let status = match &e {
            Error::Invalid { .. } => StatusCode::BAD_REQUEST,
            Error::NotFound { .. } => StatusCode::NOT_FOUND,
            Error::Conflict { .. } => StatusCode::CONFLICT,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %e, "control API");
            return ApiError(status, "internal error".into());
        }
        ApiError(status, e.to_string())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        ApiError(StatusCode::BAD_REQUEST, r.body_text())
    }
}

type ApiResult<T = Response> = Result<T, ApiError>;

pub(crate) async fn auth(cp: &ControlPlane, headers: &HeaderMap) -> ApiResult<Principal> {
    let unauthorized = || {
        ApiError(
            StatusCode::UNAUTHORIZED,
            "missing or bad bearer token".into(),
        )
    };
    let token = bearer(headers).ok_or_else(unauthorized)?;
    cp.authenticate(token).await?.ok_or_else(unauthorized)
}

/// The JSON of a stream, as the owner sees it, with publish and play URLs
/// on the nodes of the registry `nodes` (`place`: record the publishing
/// node chosen, see [`ControlPlane::publish_urls`]).
pub(crate) fn stream_json(
    cp: &ControlPlane,
    s: &StreamRecord,
    nodes: &[NodeView],
    place: bool,
) -> Value {
    let urls = cp.publish_points(&s.name, nodes, place);
    let play = cp.play_urls(&s.name, nodes, false);
    json!({
        "name": s.name,
        "title": s.title,
        "owner": s.owner,
        "private": s.private,
        "srt_passphrase": s.srt_passphrase,
        "transcode": s.transcode,
        "dvr_hours": s.dvr_hours,
        "restream": s.restream,
        "fallback": s.fallback,
        "source_timeout_ms": s.source_timeout_ms,
        "created_at": s.created_at,
        "key": s.key,
        "publish": publish_json(&urls, &s.key, &s.name),
        "play": play.play(&s.name),
        "whep": play.whep(&s.name),
        "live": cp.is_live(&s.name) || cp.published_on_nodes(&s.name, nodes),
        "viewers": cp.viewers(&s.name),
        "source": cp.sources(&s.name).map(|(active, attached)| json!({
            "active": active.as_str(),
            "attached": attached.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
        })),
    })
}

/// The publish URLs: the main publisher's, and the backup's (on a second
/// publishing node when the cluster has one).
fn publish_json(points: &crate::registry::PublishPoints, key: &str, name: &str) -> Value {
    let (urls, backup) = (&points.main, &points.backup);
    json!({
        "rtmp": urls.rtmp(key),
        "rtmps": urls.rtmps(key),
        "srt": urls.srt(key),
        "whip": urls.whip(name),
        "backup": { "rtmp": backup.rtmp_backup(key), "srt": backup.srt_backup(key) },
    })
}

/// `GET /streams/{name}/history`: the stream's recent samples here.
async fn get_history(
    State(cp): State<ControlPlane>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult {
    let p = auth(&cp, &headers).await?;
    let s = cp.stream_for(&p, &name).await?;
    let (every, samples) = cp.history(&s.name);
    let source = |s: Option<u8>| match s {
        Some(0) => Some("main"),
        Some(1) => Some("backup"),
        Some(_) => Some("fallback"),
        None => None,
    };
    let samples: Vec<Value> = samples
        .iter()
        .map(|x| {
            json!({
                "t": x.at_ms,
                "bitrate_bps": x.bitrate_bps,
                "fps": (f64::from(x.frames_per_s) * 10.0).round() / 10.0,
                "skips": x.skips,
                "source": source(x.source),
                "viewers": x.viewers,
            })
        })
        .collect();
    let every_ms = u64::try_from(every.as_millis()).unwrap_or(u64::MAX);
    Ok(Json(json!({ "every_ms": every_ms, "samples": samples })).into_response())
}

/// One rung of `POST /plan`'s ladder.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PlanRung {
    name: String,
    video_kbps: f64,
    audio_kbps: f64,
}

/// `POST /plan`: the capacity planner's inputs; each absent one is the
/// guide's example's (`ugc_core::plan::guide_example`), servers of 16
/// cores with a quarter kept free, capacities measured by the benchmarks.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PlanRequest {
    streams: Option<u32>,
    input_video_kbps: Option<f64>,
    input_audio_kbps: Option<f64>,
    ladder: Option<Vec<PlanRung>>,
    viewers: Option<u64>,
    viewer_rung: Option<String>,
    cdn_share: Option<f64>,
    origins: Option<u32>,
    dvr_hours: Option<f64>,
    dvr_streams: Option<u32>,
    cores: Option<f64>,
    headroom: Option<f64>,
    streams_per_publish_server: Option<f64>,
    ladders_per_transcode_server: Option<f64>,
    gbps_per_origin: Option<f64>,
}

/// Servers of this many cores unless asked otherwise.
pub const PLAN_DEFAULT_CORES: f64 = 16.0;
/// Share of each server kept free unless asked otherwise.
pub const PLAN_DEFAULT_HEADROOM: f64 = 0.25;

/// `POST /plan` (any signed-in user): bandwidth, storage and servers.
async fn post_plan(
    State(cp): State<ControlPlane>,
    headers: HeaderMap,
    body: Result<Json<PlanRequest>, JsonRejection>,
) -> ApiResult {
    auth(&cp, &headers).await?;
    let Json(r) = body?;
    let bad = |m: &str| ApiError(StatusCode::BAD_REQUEST, m.to_owned());
    let num = |v: Option<f64>, default: f64, max: f64, what: &str| match v {
        None => Ok(default),
        Some(x) if x.is_finite() && (0.0..=max).contains(&x) => Ok(x),
        Some(_) => Err(bad(&format!("{what} must be a number from 0 to {max}"))),
    };
    /// A count of the request: the default when absent, 400 out of range
    /// (never silently clamped: the plan would answer another question).
    fn count<T: PartialOrd + Copy + std::fmt::Display>(
        v: Option<T>,
        default: T,
        (min, max): (T, T),
        what: &str,
    ) -> Result<T, ApiError> {
        match v {
            None => Ok(default),
            Some(x) if x >= min && x <= max => Ok(x),
            Some(_) => Err(ApiError(
                StatusCode::BAD_REQUEST,
                format!("{what} must be a whole number from {min} to {max}"),
            )),
        }
    }
    let g = ugc_core::plan::guide_example();
    let ladder = match r.ladder {
        None => g.ladder.clone(),
        Some(l) if l.len() > 16 => return Err(bad("ladder: at most 16 rungs")),
        Some(l) => l
            .into_iter()
            .map(|x| {
                let ok = |v: f64| v.is_finite() && (0.0..=200_000.0).contains(&v);
                if x.name.is_empty() || x.name.len() > 32 || !ok(x.video_kbps) || !ok(x.audio_kbps)
                {
                    return Err(bad("ladder: each rung a name of 1 to 32 characters and kbit/s from 0 to 200000"));
                }
                Ok(ugc_core::plan::Rung {
                    name: x.name,
                    video_kbps: x.video_kbps,
                    audio_kbps: x.audio_kbps,
                })
            })
            .collect::<Result<Vec<_>, _>>()?,
    };
    let viewer_rung = match r.viewer_rung {
        None => 0,
        Some(n) => ladder
            .iter()
            .position(|x| x.name == n)
            .ok_or_else(|| bad("viewer_rung: not a rung of the ladder"))?,
    };
    let cores = num(r.cores, PLAN_DEFAULT_CORES, 1024.0, "cores")?;
    let headroom = num(r.headroom, PLAN_DEFAULT_HEADROOM, 0.95, "headroom")?;
    let measured = ugc_core::plan::Capacity::measured(cores, headroom);
    let capacity = ugc_core::plan::Capacity {
        streams_per_publish_server: num(
            r.streams_per_publish_server,
            measured.streams_per_publish_server,
            1e9,
            "streams_per_publish_server",
        )?,
        ladders_per_transcode_server: num(
            r.ladders_per_transcode_server,
            measured.ladders_per_transcode_server,
            1e9,
            "ladders_per_transcode_server",
        )?,
        gbps_per_origin: num(
            r.gbps_per_origin,
            measured.gbps_per_origin,
            1e9,
            "gbps_per_origin",
        )?,
    };
    let input = ugc_core::plan::PlanInput {
        streams: count(r.streams, g.streams, (0, 1_000_000), "streams")?,
        input_video_kbps: num(
            r.input_video_kbps,
            g.input_video_kbps,
            200_000.0,
            "input_video_kbps",
        )?,
        input_audio_kbps: num(
            r.input_audio_kbps,
            g.input_audio_kbps,
            10_000.0,
            "input_audio_kbps",
        )?,
        ladder,
        viewers: count(r.viewers, g.viewers, (0, 10_000_000_000), "viewers")?,
        viewer_rung,
        cdn_share: num(r.cdn_share, g.cdn_share, 1.0, "cdn_share")?,
        origins: count(r.origins, g.origins, (1, 1000), "origins")?,
        dvr_hours: num(r.dvr_hours, g.dvr_hours, 100_000.0, "dvr_hours")?,
        dvr_streams: count(r.dvr_streams, g.dvr_streams, (0, 1_000_000), "dvr_streams")?,
        capacity: Some(capacity),
    };
    let p = ugc_core::plan::plan(&input);
    let (publish, transcode, origin) = p.servers.unwrap_or_default();
    let guide = ugc_core::plan::PlanInput {
        capacity: None,
        ..input.clone()
    } == g;
    let rungs = input.ladder.len().max(1);
    let measured_caps = ugc_core::plan::MEASURED_PER_CORE;
    Ok(Json(json!({
        "input_mbps": p.input_mbps,
        "ladder_kbps_per_stream": p.ladder_kbps_per_stream,
        "ladder_output_mbps": p.ladder_output_mbps,
        "ladder_output_note": format!(
            "{} streams x {:.0} kbit/s, every rung once{}",
            input.streams,
            p.ladder_kbps_per_stream,
            if guide {
                format!("; the guide prints 223 Mbit/s because it multiplies the per-stream sum by all {} output renditions, counting each ladder {rungs} times", input.streams as usize * rungs)
            } else {
                String::new()
            }
        ),
        "inter_node_mbps": p.inter_node_mbps,
        "viewers_mbps": p.viewers_mbps,
        "origin_egress_mbps": p.origin_egress_mbps,
        "dvr_ladder_gb": p.dvr_ladder_gb,
        "dvr_top_gb": p.dvr_top_gb,
        "servers": { "publish": publish, "transcode": transcode, "origin": origin, "cores": cores, "headroom": headroom },
        "capacity": {
            "streams_per_publish_server": capacity.streams_per_publish_server,
            "ladders_per_transcode_server": capacity.ladders_per_transcode_server,
            "gbps_per_origin": capacity.gbps_per_origin,
            "per_core": {
                "streams": measured_caps.streams,
                "ladders": measured_caps.ladders,
                "origin_gbps": measured_caps.origin_gbps,
            },
            "sources": measured_caps.sources,
        },
        "guide_example": guide,
    }))
    .into_response())
}

/// `GET /streams/{name}/publish`: where the stream's publisher goes now.
async fn get_publish(
    State(cp): State<ControlPlane>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult {
    let p = auth(&cp, &headers).await?;
    let s = cp.stream_for(&p, &name).await?;
    let nodes = cp.nodes().await?;
    let urls = cp.publish_points(&s.name, &nodes, true);
    Ok(Json(publish_json(&urls, &s.key, &s.name)).into_response())
}

async fn create_stream(
    State(cp): State<ControlPlane>,
    headers: HeaderMap,
    body: Result<Json<NewStream>, JsonRejection>,
) -> ApiResult {
    let p = auth(&cp, &headers).await?;
    let Json(new) = body?;
    let s = cp.create_stream(&p, new).await?;
    let nodes = cp.nodes().await?;
    Ok((
        StatusCode::CREATED,
        Json(stream_json(&cp, &s, &nodes, true)),
    )
        .into_response())
}

async fn list_streams(State(cp): State<ControlPlane>, headers: HeaderMap) -> ApiResult {
    let p = auth(&cp, &headers).await?;
    let nodes = cp.nodes().await?;
    let list: Vec<Value> = cp
        .list_streams(&p)
        .await?
        .iter()
        .map(|s| stream_json(&cp, s, &nodes, false))
        .collect();
    Ok(Json(json!({ "streams": list })).into_response())
}

async fn get_stream(
    State(cp): State<ControlPlane>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult {
    let p = auth(&cp, &headers).await?;
    let s = cp.stream_for(&p, &name).await?;
    let nodes = cp.nodes().await?;
    Ok(Json(stream_json(&cp, &s, &nodes, true)).into_response())
}

async fn patch_stream(
    State(cp): State<ControlPlane>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Result<Json<StreamPatch>, JsonRejection>,
) -> ApiResult {
    let p = auth(&cp, &headers).await?;
    let Json(patch) = body?;
    let s = cp.update_stream(&p, &name, patch).await?;
    let nodes = cp.nodes().await?;
    Ok(Json(stream_json(&cp, &s, &nodes, true)).into_response())
}

async fn delete_stream(
    State(cp): State<ControlPlane>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult {
    let p = auth(&cp, &headers).await?;
    cp.delete_stream(&p, &name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn rotate_key(
    State(cp): State<ControlPlane>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult {
    let p = auth(&cp, &headers).await?;
    let key = cp.rotate_key(&p, &name).await?;
    let nodes = cp.nodes().await?;
    let urls = cp.publish_points(&name, &nodes, true);
    Ok(Json(json!({
        "key": key,
        "publish": publish_json(&urls, &key, &name),
    }))
    .into_response())
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PlayBody {
    #[serde(default)]
    ttl_s: Option<u64>,
    #[serde(default)]
    bind_ip: Option<String>,
}

async fn play(
    State(cp): State<ControlPlane>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult {
    let p = auth(&cp, &headers).await?;
    // An empty body means all defaults.
    let b: PlayBody = if body.iter().all(u8::is_ascii_whitespace) {
        PlayBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("bad JSON: {e}")))?
    };
    let bind_ip = b
        .bind_ip
        .map(|s| {
            s.parse::<std::net::IpAddr>().map_err(|_| Error::Invalid {
                field: "bind_ip",
                reason: "not an IP address".into(),
            })
        })
        .transpose()?;
    let g = cp.issue_play(&p, &name, b.ttl_s, bind_ip).await?;
    Ok(Json(json!({
        "url": g.url,
        "whep": g.whep,
        "token": g.token,
        "expires_at": g.expires_at,
        "session": g.session.to_string(),
    }))
    .into_response())
}

async fn revoke_session(
    State(cp): State<ControlPlane>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    let p = auth(&cp, &headers).await?;
    cp.revoke_session(&p, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CreatorBody {
    #[serde(default)]
    name: Option<String>,
}

async fn create_creator(
    State(cp): State<ControlPlane>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult {
    let p = auth(&cp, &headers).await?;
    let b: CreatorBody = if body.iter().all(u8::is_ascii_whitespace) {
        CreatorBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("bad JSON: {e}")))?
    };
    let (id, token) = cp.create_creator(&p, b.name.as_deref()).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "id": id, "token": token })),
    )
        .into_response())
}

/// Routes an embedder serves under `/api/v1` next to the control API
/// (e.g. statistics of its pipeline), with their OpenAPI path items, so
/// that `/api/v1/openapi.json` describes every route the server answers.
/// Mount with [`ControlPlane::router_with`].
#[derive(Debug, Default)]
pub struct ApiExtension {
    /// The routes, paths relative to `/api/v1`.
    pub router: axum::Router,
    /// OpenAPI path items by path, e.g. `{"/stats/srt": {"get": {...}}}`.
    /// A path the control API has already is refused.
    pub paths: serde_json::Map<String, Value>,
}

/// Every route: (method, path relative to `/api/v1`, handler). The router
/// and the OpenAPI test both read this table.
pub(crate) fn routes() -> Vec<(&'static str, &'static str, MethodRouter<ControlPlane>)> {
    vec![
        ("post", "/streams", post(create_stream)),
        ("get", "/streams", get(list_streams)),
        ("get", "/streams/{name}", get(get_stream)),
        ("patch", "/streams/{name}", patch(patch_stream)),
        ("delete", "/streams/{name}", delete(delete_stream)),
        ("post", "/streams/{name}/key", post(rotate_key)),
        ("post", "/streams/{name}/play", post(play)),
        ("delete", "/sessions/{id}", delete(revoke_session)),
        ("post", "/creators", post(create_creator)),
        ("get", "/settings", get(crate::provision::get_settings)),
        ("get", "/changes", get(crate::provision::get_changes)),
        ("post", "/node/publish", post(crate::node::publish_check)),
        ("get", "/node/topology", get(crate::node::get_topology)),
        ("get", "/node/play-auth", get(crate::node::get_play_auth)),
        (
            "get",
            "/node/play/{name}",
            get(crate::balance::get_play_node),
        ),
        (
            "get",
            "/node/pull/{name}",
            get(crate::balance::get_pull_node),
        ),
        ("post", "/node/heartbeat", post(crate::registry::heartbeat)),
        ("get", "/nodes", get(crate::registry::list_nodes)),
        (
            "get",
            "/prometheus/targets",
            get(crate::registry::prometheus_sd),
        ),
        (
            "delete",
            "/nodes/{id}",
            delete(crate::registry::delete_node),
        ),
        ("get", "/streams/{name}/publish", get(get_publish)),
        ("get", "/streams/{name}/history", get(get_history)),
        ("post", "/plan", post(post_plan)),
        // Served by `router_with`, with the extensions' paths.
        (
            "get",
            "/openapi.json",
            get(|| async { StatusCode::NOT_FOUND }),
        ),
    ]
}

impl ControlPlane {
    /// For an embedder's routes about one stream (e.g. its recordings on a
    /// media node): `Ok` when the request's bearer token is the creator's
    /// of stream `name` or the admin's, else the control API's status and
    /// message (401 missing or bad token, 403 another creator's stream,
    /// 404 no such stream, 400 a bad name; answer them as
    /// `{"error": message}`).
    pub async fn authorize_owner(
        &self,
        headers: &HeaderMap,
        name: &str,
    ) -> Result<(), (StatusCode, String)> {
        let p = auth(self, headers).await.map_err(|ApiError(s, m)| (s, m))?;
        match self.stream_for(&p, name).await {
            Ok(_) => Ok(()),
            Err(e) => {
                let ApiError(s, m) = ApiError::from(e);
                Err((s, m))
            }
        }
    }

    /// The REST API, to be mounted at `/api/v1`
    /// (`Router::new().nest("/api/v1", cp.router())`).
    pub fn router(&self) -> axum::Router {
        self.router_with(Vec::new())
    }

    /// [`router`](Self::router) with more routes under `/api/v1`; the
    /// OpenAPI document lists theirs too.
    ///
    /// # Panics
    /// If an extension documents a path the control API has (a programming
    /// error of the embedder, found when its server starts).
    pub fn router_with(&self, extensions: Vec<ApiExtension>) -> axum::Router {
        let mut doc = crate::openapi::document();
        let mut extra = axum::Router::new();
        for ext in extensions {
            if let Some(paths) = doc["paths"].as_object_mut() {
                for (path, item) in ext.paths {
                    assert!(
                        !paths.contains_key(&path),
                        "API extension documents {path}, a control API path"
                    );
                    paths.insert(path, item);
                }
            }
            extra = extra.merge(ext.router);
        }
        let doc = std::sync::Arc::new(doc);
        let mut r = axum::Router::new();
        for (_, path, mr) in routes() {
            r = if path == "/openapi.json" {
                let doc = doc.clone();
                r.route(path, get(move || async move { Json(Value::clone(&doc)) }))
            } else {
                r.route(path, mr)
            };
        }
        r.fallback(|| async { ApiError(StatusCode::NOT_FOUND, "no such route".into()) })
            .with_state(self.clone())
            .merge(extra)
    }

    /// The `(method, path)` pairs of [`router`](Self::router), paths
    /// relative to `/api/v1`.
    pub fn api_routes() -> Vec<(&'static str, &'static str)> {
        routes().into_iter().map(|(m, p, _)| (m, p)).collect()
    }
}
