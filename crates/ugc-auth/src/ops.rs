//! What a media server built on the control plane mounts and runs besides
//! the control API: admin-only JSON routes for its pipeline's statistics
//! (documented in the OpenAPI document), `/metrics` (Prometheus text
//! format) behind the admin token except from loopback, and the pruning of
//! expired play sessions. The renderers are the pipeline crates' own
//! (`write_metrics`, `json` of each stats registry); this module decides
//! who may read them.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::{Value, json};
use ugc_core::StreamPath;

use crate::api::ApiExtension;
use crate::plane::ControlPlane;

/// The control plane's name of a Hub stream: `<name>` of a `live/<name>`
/// source stream; `None` for renditions and other apps, which have no
/// settings of their own.
pub fn stream_name(path: &StreamPath) -> Option<&str> {
    (path.app() == crate::authz::APP && path.is_source()).then(|| path.name())
}

impl ControlPlane {
    /// An admin-only `GET <path>` (relative to `/api/v1`) answering
    /// `rows()` as a JSON array (401 without the admin token), and its
    /// OpenAPI path item (`summary`, `item`: the JSON Schema of one
    /// entry), to mount with [`router_with`](Self::router_with).
    pub fn admin_json_route<T, F>(
        &self,
        path: &str,
        summary: &str,
        item: Value,
        rows: F,
    ) -> ApiExtension
    where
        T: serde::Serialize,
        F: Fn() -> Vec<T> + Clone + Send + Sync + 'static,
    {
        let handler = move |State(cp): State<ControlPlane>, headers: HeaderMap| {
            let rows = rows.clone();
            async move {
                if !cp.is_admin_request(&headers).await {
                    return StatusCode::UNAUTHORIZED.into_response();
                }
                Json(rows()).into_response()
            }
        };
        let router = axum::Router::new()
            .route(path, get(handler))
            .with_state(self.clone());
        let doc = json!({ "get": {
            "summary": summary,
            "description": "Admin token only.",
            "responses": {
                "200": { "description": "One entry each", "content": { "application/json": {
                    "schema": { "type": "array", "items": item } } } },
                "401": { "description": "Missing token, or not the admin token" }
            }
        } });
        let mut paths = serde_json::Map::new();
        paths.insert(path.to_owned(), doc);
        ApiExtension { router, paths }
    }

    /// `GET /metrics`: `render()`, an exposition in the Prometheus text
    /// format (`ugc_core::metrics`), uncached. It names streams, restream
    /// targets and publisher addresses, so, like the stats routes, it
    /// wants the admin bearer token, except from a loopback client (a
    /// Prometheus or an agent on the same host; behind a trusted proxy the
    /// forwarded client address counts); others get 401 with
    /// `WWW-Authenticate: Bearer`. Serve the app with connect info
    /// (`into_make_service_with_connect_info::<SocketAddr>`).
    pub fn metrics_router<F>(&self, render: F) -> axum::Router
    where
        F: Fn() -> String + Clone + Send + Sync + 'static,
    {
        let handler = move |State(cp): State<ControlPlane>,
                            ConnectInfo(peer): ConnectInfo<SocketAddr>,
                            headers: HeaderMap| {
            let render = render.clone();
            async move {
                let local = request_ip(&cp, peer.ip(), &headers).is_loopback();
                if !local && !cp.is_admin_request(&headers).await {
                    return (
                        StatusCode::UNAUTHORIZED,
                        [(header::WWW_AUTHENTICATE, "Bearer")],
                    )
                        .into_response();
                }
                (
                    [
                        (header::CONTENT_TYPE, ugc_core::metrics::CONTENT_TYPE),
                        (header::CACHE_CONTROL, "no-store"),
                    ],
                    render(),
                )
                    .into_response()
            }
        };
        axum::Router::new()
            .route("/metrics", get(handler))
            .with_state(self.clone())
    }

    /// Forgets expired play sessions and the transcode lease rows of
    /// streams long gone every `every`, the first time at once
    /// ([`prune_sessions`](Self::prune_sessions),
    /// [`prune_leases`](Self::prune_leases)); a failure is logged and
    /// tried again next time. Runs until dropped.
    pub async fn prune_every(self, every: Duration) {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            if let Err(e) = self.prune_sessions().await {
                tracing::warn!(error = %e, "pruning play sessions");
            }
            match self.prune_leases().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(rows = n, "pruned transcode lease rows"),
                Err(e) => tracing::warn!(error = %e, "pruning transcode lease rows"),
            }
        }
    }
}

/// Resolves a request's client address from its peer and headers (the
/// shape of `ugc_proto::origin::ClientIp`).
pub type ClientIpResolver =
    std::sync::Arc<dyn Fn(std::net::IpAddr, &HeaderMap) -> std::net::IpAddr + Send + Sync>;

/// A [`ClientIpResolver`] that believes `X-Forwarded-For` from `trusted`
/// peers only (a node without a control plane of its own: an origin
/// behind a CDN edge).
pub fn client_ip_from(trusted: crate::TrustedProxies) -> ClientIpResolver {
    std::sync::Arc::new(move |peer, headers: &HeaderMap| {
        let xff = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok());
        trusted.client_ip(peer, xff)
    })
}

impl ControlPlane {
    /// What a server prints to its operator when it starts (`server`: its
    /// name): the control API and, with `panel`, the creator panel URLs,
    /// the generated admin token (once: it is stored hashed), and how to
    /// publish and watch the stream `demo` (created if missing) or, without
    /// one, how to create a stream. Blank lines before and after.
    pub async fn welcome(
        &self,
        server: &str,
        demo: Option<&str>,
        panel: bool,
    ) -> crate::Result<String> {
        use std::fmt::Write as _;
        let urls = self.public_urls().clone();
        let host = &urls.host;
        let ingest = match urls.rtmp_port {
            1935 => format!("rtmp://{host}/{}", crate::authz::APP),
            port => format!("rtmp://{host}:{port}/{}", crate::authz::APP),
        };
        let http = urls.http();
        let mut t = String::new();
        let _ = writeln!(t);
        let _ = writeln!(t, "  {server} is running");
        let _ = writeln!(
            t,
            "  Control API:  {http}/api/v1  (OpenAPI: {http}/api/v1/openapi.json)"
        );
        if panel {
            let _ = writeln!(
                t,
                "  Creator panel: {http}/  (sign in with the admin or a creator token)"
            );
        }
        if let Some(token) = self.take_generated_admin_token() {
            let _ = writeln!(
                t,
                "  Admin token (shown once, stored hashed; set UGC_ADMIN_TOKEN to choose it):"
            );
            let _ = writeln!(t, "    {token}");
        }
        if let Some(name) = demo {
            let (stream, key) = self.ensure_demo_stream(name).await?;
            let _ = writeln!(t, "  Demo stream \"{}\":", stream.name);
            let _ = writeln!(t, "    OBS:        Settings > Stream > Custom");
            let _ = writeln!(t, "      Server:     {ingest}");
            let _ = writeln!(t, "      Stream key: {key}");
            let _ = writeln!(
                t,
                "    ffmpeg:     ffmpeg -re -i input.mp4 -c copy -f flv {}",
                urls.rtmp(&key)
            );
            let _ = writeln!(
                t,
                "    WHIP:       {}  (OBS 30+: Bearer Token = the stream key)",
                urls.whip(&stream.name)
            );
            if panel {
                let _ = writeln!(
                    t,
                    "    Browser:    {http}/ > {} > Go live here (camera or screen)",
                    stream.name
                );
            }
            let _ = writeln!(t, "    Watch:      {http}/watch/{}", stream.name);
            let _ = writeln!(t, "    HLS:        {}", urls.play(&stream.name));
        } else {
            let _ = writeln!(
                t,
                "  Create a stream: POST {http}/api/v1/streams {{\"name\": \"...\"}}"
            );
            let _ = writeln!(t, "  then publish to {ingest} with the returned key.");
        }
        let _ = writeln!(t);
        Ok(t)
    }

    /// The client address of an HTTP request as the origin wants it
    /// (`ugc_proto::origin::ClientIp`): the peer, or the `X-Forwarded-For`
    /// address when the peer is a trusted proxy ([`client_ip`](Self::client_ip)).
    pub fn client_ip_resolver(&self) -> ClientIpResolver {
        let cp = self.clone();
        std::sync::Arc::new(move |peer, headers: &HeaderMap| request_ip(&cp, peer, headers))
    }
}

fn request_ip(cp: &ControlPlane, peer: std::net::IpAddr, headers: &HeaderMap) -> std::net::IpAddr {
    let xff = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok());
    cp.client_ip(peer, xff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_live_sources_have_a_control_plane_name() {
        let p = |s: &str| StreamPath::parse(s).unwrap();
        assert_eq!(stream_name(&p("live/a")), Some("a"));
        assert_eq!(stream_name(&p("live/a/720p")), None);
        assert_eq!(stream_name(&p("other/a")), None);
    }
}
