//! Restream wiring: keeps one RTMP(S) push per (live stream, target),
//! targets from the control plane's `restream` setting (config
//! `[streams.<name>] restream` when the API has none), and serves the
//! status of every push, SRT session and transcoding ladder at
//! `GET /api/v1/stats/{restream,srt,transcode}` (admin bearer token).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tracing::info;
use ugc_auth::ControlPlane;
use ugc_core::{Hub, StreamPath};
use ugc_proto::rtmp::push::{PushConfig, PushHandle, PushState, spawn_push, tls_config};
use ugc_proto::srt::server::SrtStatsRegistry;

use crate::ingest::{StreamOverrides, stream_name};
use crate::transcode::TranscodeStats;

type Pushes = Arc<Mutex<HashMap<(StreamPath, String), PushHandle>>>;

/// The running pushes.
#[derive(Clone, Default)]
pub struct Restreams {
    pushes: Pushes,
}

impl Restreams {
    /// Every push's stream and status, ordered by stream and target URL
    /// (keys included, so pushes whose redacted targets are equal keep
    /// their order from one call to the next).
    pub fn statuses(&self) -> Vec<(String, ugc_proto::rtmp::push::PushStatus)> {
        let pushes = self.lock();
        let mut keys: Vec<&(StreamPath, String)> = pushes.keys().collect();
        keys.sort();
        keys.into_iter()
            .map(|k| (k.0.to_string(), pushes[k].status()))
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(StreamPath, String), PushHandle>> {
        self.pushes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The push settings: TLS roots are the web PKI plus `ca_file` (PEM).
pub fn push_config(ca_file: Option<&std::path::Path>) -> anyhow::Result<PushConfig> {
    let mut extra = Vec::new();
    if let Some(path) = ca_file {
        use rustls::pki_types::pem::PemObject;
        for cert in rustls::pki_types::CertificateDer::pem_file_iter(path)
            .with_context(|| format!("reading {}", path.display()))?
        {
            extra.push(cert.with_context(|| format!("parsing {}", path.display()))?);
        }
    }
    Ok(PushConfig {
        tls: Some(tls_config(extra)?),
        ..PushConfig::default()
    })
}

fn targets(
    control: &ControlPlane,
    overrides: &BTreeMap<String, StreamOverrides>,
    name: &str,
) -> Vec<String> {
    let api = control
        .settings(name)
        .map(|s| s.restream)
        .unwrap_or_default();
    if !api.is_empty() {
        return api;
    }
    overrides
        .get(name)
        .map(|o| o.restream.clone())
        .unwrap_or_default()
}

/// Starts and stops pushes as streams come and go and settings change.
pub async fn supervise(
    hub: Hub,
    control: ControlPlane,
    overrides: BTreeMap<String, StreamOverrides>,
    config: PushConfig,
    restreams: Restreams,
) {
    let mut watch = hub.watch();
    let mut changes = control.subscribe_changes();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = watch.next() => {}
            _ = changes.recv() => {}
            _ = tick.tick() => {}
        }
        reconcile(&hub, &control, &overrides, &config, &restreams);
    }
}

fn reconcile(
    hub: &Hub,
    control: &ControlPlane,
    overrides: &BTreeMap<String, StreamOverrides>,
    config: &PushConfig,
    restreams: &Restreams,
) {
    let mut want: Vec<(StreamPath, String)> = Vec::new();
    for stream in hub.stream_names() {
        let Some(name) = stream_name(&stream) else {
            continue;
        };
        for url in targets(control, overrides, name) {
            want.push((stream.clone(), url));
        }
    }
    let mut pushes = restreams.lock();
    pushes.retain(|k, h| {
        let keep = want.contains(k) && h.status().state != PushState::Stopped;
        if !keep {
            info!(stream = %k.0, target = %h.status().target, "restream stopped");
        }
        keep
    });
    for k in want {
        if let std::collections::hash_map::Entry::Vacant(slot) = pushes.entry(k) {
            let (stream, url) = slot.key().clone();
            info!(stream = %stream, target = %ugc_proto::rtmp::push::redact(&url), "restream started");
            slot.insert(spawn_push(hub.clone(), stream, url, config.clone()));
        }
    }
}

#[derive(Clone)]
struct StatsState {
    control: ControlPlane,
    restreams: Restreams,
    srt: SrtStatsRegistry,
    transcode: TranscodeStats,
}

/// `GET /stats/restream`, `GET /stats/srt`, `GET /stats/transcode` under
/// `/api/v1`, documented in its OpenAPI document
/// ([`ControlPlane::router_with`]).
pub fn stats_api(
    control: ControlPlane,
    restreams: Restreams,
    srt: SrtStatsRegistry,
    transcode: TranscodeStats,
) -> ugc_auth::ApiExtension {
    let router = axum::Router::new()
        .route("/stats/restream", get(restream_stats))
        .route("/stats/srt", get(srt_stats))
        .route("/stats/transcode", get(transcode_stats))
        .with_state(StatsState {
            control,
            restreams,
            srt,
            transcode,
        });
    ugc_auth::ApiExtension {
        router,
        paths: stats_paths(),
    }
}

/// The OpenAPI path items of the stats routes: each an admin-only `GET`
/// answering a JSON array, one entry per live push, SRT publisher or ladder.
fn stats_paths() -> serde_json::Map<String, serde_json::Value> {
    use serde_json::json;
    let int = || json!({ "type": "integer" });
    let string = || json!({ "type": "string" });
    let item = |summary: &str, entry: serde_json::Value| {
        json!({ "get": {
            "summary": summary,
            "description": "Admin token only.",
            "responses": {
                "200": { "description": "One entry each", "content": { "application/json": {
                    "schema": { "type": "array", "items": entry } } } },
                "401": { "description": "Missing token, or not the admin token" }
            }
        } })
    };
    let restream = json!({ "type": "object", "properties": {
        "stream": string(), "target": { "type": "string", "description": "URL, key redacted" },
        "state": { "type": "string", "enum": ["connecting", "live", "retrying", "failed"] },
        "last_error": { "type": "string", "nullable": true },
        "bytes_sent": int(), "frames_sent": int(), "skips": int(), "reconnects": int()
    } });
    let srt = json!({ "type": "object", "properties": {
        "stream": string(), "peer": string(), "rtt_us": int(), "latency_ms": int(),
        "rx_packets": int(), "rx_lost": int(), "rx_retransmitted": int(), "rx_dropped": int(),
        "rx_bytes": int(), "rx_bitrate": { "type": "integer", "description": "bits/s" },
        "ts_cc_errors": int(), "video_frames": int(), "audio_frames": int()
    } });
    let rendition = json!({ "type": "object", "properties": {
        "name": string(), "width": int(), "height": int(),
        "video_frames_out": int(), "audio_frames_out": int()
    } });
    let transcode = json!({ "type": "object", "properties": {
        "stream": string(), "profile": string(), "running_s": int(), "restarts": int(),
        "frames_in": int(), "frames_out": int(), "pictures_encoded": int(),
        "input_dropped": int(), "pictures_dropped": int(), "decode_errors": int(),
        "renditions": { "type": "array", "items": rendition }
    } });
    let mut paths = serde_json::Map::new();
    paths.insert(
        "/stats/restream".into(),
        item("Restream pushes of live streams", restream),
    );
    paths.insert("/stats/srt".into(), item("SRT publishers", srt));
    paths.insert(
        "/stats/transcode".into(),
        item("Transcoding ladders", transcode),
    );
    paths
}

async fn admin(state: &StatsState, headers: &HeaderMap) -> bool {
    state.control.is_admin_request(headers).await
}

async fn restream_stats(State(state): State<StatsState>, headers: HeaderMap) -> Response {
    if !admin(&state, &headers).await {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let list: Vec<serde_json::Value> = state
        .restreams
        .statuses()
        .into_iter()
        .map(|(stream, s)| {
            serde_json::json!({
                "stream": stream,
                "target": s.target,
                "state": format!("{:?}", s.state).to_lowercase(),
                "last_error": s.last_error,
                "bytes_sent": s.bytes_sent,
                "frames_sent": s.frames_sent,
                "skips": s.skips,
                "reconnects": s.reconnects,
            })
        })
        .collect();
    Json(list).into_response()
}

async fn srt_stats(State(state): State<StatsState>, headers: HeaderMap) -> Response {
    if !admin(&state, &headers).await {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let list: Vec<serde_json::Value> = state
        .srt
        .snapshot()
        .into_iter()
        .map(|s| {
            serde_json::json!({
                "stream": s.stream.as_str(),
                "peer": s.peer.to_string(),
                "rtt_us": s.connection.rtt_us,
                "latency_ms": s.connection.latency_ms,
                "rx_packets": s.connection.rx_packets,
                "rx_lost": s.connection.rx_lost,
                "rx_retransmitted": s.connection.rx_retransmitted,
                "rx_dropped": s.connection.rx_dropped,
                "rx_bytes": s.connection.rx_bytes,
                "rx_bitrate": s.connection.rx_bitrate,
                "ts_cc_errors": s.demux.cc_errors,
                "video_frames": s.demux.video_frames,
                "audio_frames": s.demux.audio_frames,
            })
        })
        .collect();
    Json(list).into_response()
}

async fn transcode_stats(State(state): State<StatsState>, headers: HeaderMap) -> Response {
    if !admin(&state, &headers).await {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    Json(state.transcode.json()).into_response()
}
