//! Viewers balanced over origins by redirect: the guide's "origin 1 serves
//! as a load balancer" for an event without a CDN, and the way to a stream
//! for a viewer who asks an origin that does not carry it.
//!
//! An origin with balancing on asks, for each new viewer (a request for a
//! stream's multivariant playlist), `GET /api/v1/node/play/<stream>` (node
//! or admin token). The control plane answers the origin the viewer goes
//! to, [`ControlPlane::play_node`] (of the live origins carrying the
//! stream, the one with the fewest viewers: those its beats count plus
//! those sent there lately), and counts the viewer there:
//!
//! ```json
//! {"node": "origin-10.0.0.12-8082", "url": "http://10.0.0.12:8082"}
//! ```
//!
//! When that is another origin, the asking one answers `302` to the same
//! path there (query kept, plus `balanced=1` so that origin serves it);
//! when it is itself, or the control plane does not answer within
//! [`PlayBalancer::TIMEOUT`], it serves the viewer (a viewer is never
//! refused for the balancer's sake). The players follow the redirect and
//! resolve the playlist's relative URIs against where they were sent, so
//! the whole session plays there. [`PlayBalancer`] is the origin's side.
//!
//! An origin can also carry streams on demand only (`--balance pull`): no
//! node pushes to it ([`NodeBeat::pulls`](crate::registry::NodeBeat::pulls)),
//! and a viewer's first request for a stream it lacks makes it ask
//! `GET /api/v1/node/pull/<stream>?from=<own id>` where to pull it from:
//! of the live origins carrying it by push, the least loaded
//! ([`PullFrom`]; [`PullLocator`] is the asking side), whose relay it then
//! pulls the stream and its renditions from
//! (`ugc_proto::relay::on_demand`).
//!
//! Every request of a balancing origin's new viewers costs one round trip
//! to the control plane, which reads the registry at most once a second
//! for them. An origin asks [`PlayBalancer::MAX_ASKING`] questions at
//! once at most: past them a new viewer is served here at once, so a
//! flood of new viewers at one origin is not passed on to the control
//! plane.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};
use ugc_core::StreamPath;
use ugc_core::metrics::{Exposition, Kind};

use crate::ControlPlane;
use crate::api::ApiError;
use crate::registry::NodeView;

/// The answer of `GET /api/v1/node/play/<stream>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlayNode {
    /// The origin's node id.
    pub node: String,
    /// Its public HTTP base, `http://host:port`, as viewers reach it.
    pub url: String,
}

/// How long the registry read for viewer redirects is reused.
const NODES_FRESH: Duration = Duration::from_secs(1);

impl ControlPlane {
    /// The registry, read at most once a second ([`NODES_FRESH`]); readers
    /// that arrive during a read wait for it rather than read again.
    async fn nodes_for_play(&self) -> crate::error::Result<Arc<Vec<NodeView>>> {
        let mut cached = self.inner.nodes_for_play.lock().await;
        if let Some((at, nodes)) = cached.as_ref()
            && at.elapsed() < NODES_FRESH
        {
            return Ok(nodes.clone());
        }
        let nodes = Arc::new(self.nodes().await?);
        *cached = Some((Instant::now(), nodes.clone()));
        Ok(nodes)
    }
}

/// The answer of `GET /api/v1/node/pull/<stream>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullFrom {
    /// The origin's node id.
    pub node: String,
    /// Its HTTP base as nodes reach it (its relay), `http://host:port`.
    pub url: String,
    /// The Hub streams it carries of the stream: the source and its
    /// renditions (`live/news`, `live/news/720p`).
    pub streams: Vec<String>,
}

/// `GET /api/v1/node/pull/{name}?from=<id>` (node or admin token): where
/// an origin that pulls on demand (node `from`, never answered) gets
/// stream `name`: of the live origins that carry it by push, the one with
/// the fewest streams, then the least egress.
pub(crate) async fn get_pull_node(
    State(cp): State<ControlPlane>,
    Path(name): Path<String>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
    headers: HeaderMap,
) -> Response {
    if let Err(e) = crate::provision::node_auth(&cp, &headers).await {
        return e.into_response();
    }
    let Ok(source) = StreamPath::live(&name) else {
        return ApiError::new(StatusCode::BAD_REQUEST, "not a stream name".into()).into_response();
    };
    let from = query
        .as_deref()
        .unwrap_or("")
        .split('&')
        .find_map(|kv| kv.strip_prefix("from="))
        .unwrap_or("")
        .to_owned();
    let nodes = match cp.nodes_for_play().await {
        Ok(n) => n,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let source = source.to_string();
    let Some(n) = nodes
        .iter()
        .filter(|n| n.role.serves_viewers() && n.usable() && !n.pulls && n.id != from)
        .filter(|n| n.carries(&source))
        .min_by_key(|n| (n.load.streams, n.load.egress_bps))
    else {
        return ApiError::new(StatusCode::NOT_FOUND, "no live origin carries it".into())
            .into_response();
    };
    let rendition_prefix = format!("{source}/");
    let streams = n
        .streams
        .iter()
        .filter(|s| **s == source || s.starts_with(&rendition_prefix))
        .cloned()
        .collect();
    crate::node::no_store(
        axum::Json(PullFrom {
            node: n.id.clone(),
            url: n.url.clone(),
            streams,
        })
        .into_response(),
    )
}

/// An origin's side of pulling on demand: asks the control plane where a
/// stream is ([`PullFrom`]). Cheap to clone.
#[derive(Clone)]
pub struct PullLocator {
    client: Client<HttpConnector, Full<Bytes>>,
    control_url: String,
    auth: String,
    own_id: String,
}

impl PullLocator {
    /// Longest wait for the control plane's answer.
    pub const TIMEOUT: Duration = Duration::from_secs(2);

    /// The locator of the origin `own_id`, asking the control plane at
    /// `control_url` with the node token `token`.
    pub fn new(control_url: &str, token: &str, own_id: &str) -> Self {
        PullLocator {
            client: Client::builder(TokioExecutor::new()).build(HttpConnector::new()),
            control_url: control_url.trim_end_matches('/').to_owned(),
            auth: format!("Bearer {token}"),
            own_id: own_id.to_owned(),
        }
    }

    /// Where `stream` (a source: `live/news`) is pulled from; `None` when
    /// no origin carries it or the control plane does not answer.
    pub async fn locate(&self, stream: &StreamPath) -> Option<PullFrom> {
        let uri = format!(
            "{}/api/v1/node/pull/{}?from={}",
            self.control_url,
            stream.name(),
            self.own_id
        );
        let asked = crate::node::get_bounded(&self.client, uri.as_str(), &self.auth, 64 << 10);
        match tokio::time::timeout(Self::TIMEOUT, asked).await {
            Ok(Ok(body)) => serde_json::from_slice(&body).ok(),
            Ok(Err(e)) => {
                tracing::debug!(%stream, error = %e, "no origin to pull from");
                None
            }
            Err(_) => None,
        }
    }
}

/// `GET /api/v1/node/play/{name}` (node or admin token): the origin a new
/// viewer of stream `name` goes to; the viewer counts there.
pub(crate) async fn get_play_node(
    State(cp): State<ControlPlane>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(e) = crate::provision::node_auth(&cp, &headers).await {
        return e.into_response();
    }
    if StreamPath::live(&name).is_err() {
        return ApiError::new(StatusCode::BAD_REQUEST, "not a stream name".into()).into_response();
    }
    let nodes = match cp.nodes_for_play().await {
        Ok(n) => n,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let Some((node, Some(public))) = cp
        .play_node(&name, &nodes, true)
        .map(|n| (n.id.clone(), n.public.as_ref()))
    else {
        return ApiError::new(StatusCode::NOT_FOUND, "no live origin".into()).into_response();
    };
    crate::node::no_store(
        axum::Json(PlayNode {
            node,
            url: public.http(),
        })
        .into_response(),
    )
}

/// An origin's side of viewer balancing: asks the control plane where each
/// new viewer goes (see the module doc). Cheap to clone.
#[derive(Clone)]
pub struct PlayBalancer {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client<HttpConnector, Full<Bytes>>,
    control_url: String,
    auth: String,
    own_id: String,
    /// Viewers sent to another origin.
    redirected: AtomicU64,
    /// Viewers the control plane sent here.
    kept: AtomicU64,
    /// Viewers served here because the control plane did not answer.
    unanswered: AtomicU64,
    /// Viewers served here because [`PlayBalancer::MAX_ASKING`]
    /// questions were out.
    busy: AtomicU64,
    asking: tokio::sync::Semaphore,
}

impl PlayBalancer {
    /// Longest wait for the control plane's answer; past it the viewer is
    /// served here.
    pub const TIMEOUT: Duration = Duration::from_millis(500);

    /// Questions to the control plane out at once, at most.
    pub const MAX_ASKING: usize = 64;

    /// The balancer of the origin whose node id is `own_id`, asking the
    /// control plane at `control_url` with the node token `token`.
    pub fn new(control_url: &str, token: &str, own_id: &str) -> Self {
        PlayBalancer {
            inner: Arc::new(Inner {
                client: Client::builder(TokioExecutor::new()).build(HttpConnector::new()),
                control_url: control_url.trim_end_matches('/').to_owned(),
                auth: format!("Bearer {token}"),
                own_id: own_id.to_owned(),
                redirected: AtomicU64::new(0),
                kept: AtomicU64::new(0),
                unanswered: AtomicU64::new(0),
                busy: AtomicU64::new(0),
                asking: tokio::sync::Semaphore::new(Self::MAX_ASKING),
            }),
        }
    }

    /// Where a new viewer of `stream` (its source: `live/news`) goes: the
    /// `http://host:port` of another origin, or `None` to serve it here
    /// (this origin's turn, no answer in time, or too many questions out).
    pub async fn elsewhere(&self, stream: &StreamPath) -> Option<String> {
        let inner = &self.inner;
        let Ok(_asking) = inner.asking.try_acquire() else {
            inner.busy.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        let uri = format!("{}/api/v1/node/play/{}", inner.control_url, stream.name());
        let asked = crate::node::get_bounded(&inner.client, uri.as_str(), &inner.auth, 4096);
        let answer = match tokio::time::timeout(Self::TIMEOUT, asked).await {
            Ok(Ok(body)) => serde_json::from_slice::<PlayNode>(&body).map_err(|e| e.to_string()),
            Ok(Err(e)) => Err(e),
            Err(_) => Err("timed out".into()),
        };
        match answer {
            Ok(p) if p.node != inner.own_id => {
                inner.redirected.fetch_add(1, Ordering::Relaxed);
                Some(p.url)
            }
            Ok(_) => {
                inner.kept.fetch_add(1, Ordering::Relaxed);
                None
            }
            Err(why) => {
                inner.unanswered.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%stream, error = %why, "viewer balancing: no answer; serving here");
                None
            }
        }
    }

    /// `ugc_balance_viewers_total{decision}`: `redirected`, `kept`,
    /// `unanswered`, `busy`.
    pub fn write_metrics(&self, m: &mut Exposition) {
        let i = &self.inner;
        m.family(
            "ugc_balance_viewers_total",
            Kind::Counter,
            "New viewers by the balancer's decision: redirected to another origin, kept here, served here because the control plane did not answer, or because too many questions were out.",
        );
        for (decision, n) in [
            ("redirected", &i.redirected),
            ("kept", &i.kept),
            ("unanswered", &i.unanswered),
            ("busy", &i.busy),
        ] {
            m.sample(&[("decision", decision)], n.load(Ordering::Relaxed) as f64);
        }
    }
}
