//! `ugc-control`: the control plane of a ugc platform of several machines,
//! and nothing else: the REST API, the web panels, the settings feed and
//! node routes media nodes follow (`ugc-publish`, `ugc-transcode`,
//! `ugc-origin`), the node registry, play tokens. No media passes through
//! it. SQLite in `--data` by default; PostgreSQL with `--database-url`, so
//! several control nodes can share one database behind a load balancer.
//!
//! ```text
//! UGC_ADMIN_TOKEN=... UGC_NODE_TOKEN=... ugc-control --http 0.0.0.0:8080 \
//!     --database-url postgres://ugc@db/ugc --data /var/lib/ugc-control \
//!     --public-host control.example.com --origins http://origin1:8082,http://origin2:8082
//! ```
//!
//! Wiring only; `ugc-server` is every role in one process.

#[path = "../role-common/logging.rs"]
mod logging;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tracing::info;
use ugc_auth::node::Topology;
use ugc_auth::{ControlConfig, ControlPlane, PublicUrls, TrustedProxies};
use ugc_core::metrics::{Exposition, Kind};

/// The control plane: API, panels, settings feed, node registry.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Flags {
    /// HTTP listen address (API under `/api/v1`, panels at `/`, `/metrics`).
    #[arg(long, env = "UGC_HTTP", default_value = "0.0.0.0:8080")]
    http: SocketAddr,
    /// Data directory (the SQLite database unless `--database-url`, the
    /// play-token key unless `UGC_TOKEN_SECRET`).
    #[arg(long, env = "UGC_DATA", default_value = "data-control")]
    data: PathBuf,
    /// `postgres://...` (or `sqlite://...`); default SQLite in `--data`.
    #[arg(long, env = "UGC_DATABASE_URL")]
    database_url: Option<String>,
    /// The host name in the URLs the API answers (publish URLs go to
    /// registered publishing nodes; this is used when none is registered).
    #[arg(long, env = "UGC_PUBLIC_HOST")]
    public_host: Option<String>,
    /// Transcoding nodes publishing nodes push to (`http://host:port`,
    /// comma-separated). None: the registered transcoders lease the jobs
    /// (each stream with a ladder made by one, pulled from its publishing
    /// node; another takes over when it dies).
    #[arg(long, env = "UGC_TRANSCODERS", value_delimiter = ',')]
    transcoders: Vec<String>,
    /// Origin nodes transcoders (or publishing nodes, without transcoders)
    /// push to.
    #[arg(long, env = "UGC_ORIGINS", value_delimiter = ',')]
    origins: Vec<String>,
    /// Transcode profiles streams may name besides `off` and `default`
    /// (the transcoders' `[transcode.profiles]`), comma-separated.
    #[arg(long, env = "UGC_TRANSCODE_PROFILES", value_delimiter = ',')]
    transcode_profiles: Vec<String>,
    /// A transcode lease ends this long after its holder's last beat:
    /// shorter moves a dead transcoder's streams sooner, longer survives
    /// longer stalls of a live one (transcoders beat every third of it).
    #[arg(long, env = "UGC_LEASE_TTL_MS", default_value_t = 3000,
          value_parser = clap::value_parser!(u64).range(300..=60_000))]
    lease_ttl_ms: u64,
    /// Proxies (addresses or CIDR nets, comma-separated) whose
    /// `X-Forwarded-For` names the client.
    #[arg(long, env = "UGC_TRUSTED_PROXIES", value_delimiter = ',')]
    trusted_proxies: Vec<String>,
    /// The web panels' directory (default `./web` when it holds them).
    #[arg(long, env = "UGC_WEB")]
    web: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    logging::init();
    let flags = Flags::parse();
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    std::fs::create_dir_all(&flags.data)
        .with_context(|| format!("creating data dir {}", flags.data.display()))?;
    let http = ugc_proto::http::bind(flags.http)
        .await
        .with_context(|| format!("binding HTTP on {}", flags.http))?;
    let http_addr = http.local_addr()?;

    let mut cc = ControlConfig::new(flags.data.canonicalize()?);
    cc.database_url = flags.database_url.clone();
    cc.admin_token = env("UGC_ADMIN_TOKEN");
    cc.token_secret = env("UGC_TOKEN_SECRET").map(String::into_bytes);
    cc.node_token = env("UGC_NODE_TOKEN");
    cc.topology = Topology {
        transcoders: flags.transcoders.clone(),
        origins: flags.origins.clone(),
    };
    cc.transcode_profiles = flags.transcode_profiles.clone();
    cc.lease_ttl = std::time::Duration::from_millis(flags.lease_ttl_ms);
    cc.trusted_proxies = TrustedProxies::parse(&flags.trusted_proxies)
        .map_err(|e| anyhow::anyhow!("--trusted-proxies: {e}"))?;
    cc.public_urls = PublicUrls {
        host: flags
            .public_host
            .clone()
            .unwrap_or_else(PublicUrls::guess_host),
        http_port: http_addr.port(),
        ..PublicUrls::default()
    };
    if cc.node_token.is_none() {
        tracing::warn!("UGC_NODE_TOKEN is not set: no media node can follow this control plane");
    }
    let trusted = cc.trusted_proxies.clone();
    let control = ControlPlane::open(cc)
        .await
        .context("opening the control plane store")?;
    let web = flags
        .web
        .clone()
        .or_else(|| Some(PathBuf::from("web")).filter(|d| ugc_auth::web::is_web_dir(d)));
    print!(
        "{}",
        control
            .welcome("ugc-control", None, web.is_some())
            .await
            .context("starting")?
    );

    let metrics = control.metrics_router(|| {
        let mut m = Exposition::new();
        m.family("ugc_info", Kind::Gauge, "Always 1; the version as a label.")
            .sample(&[("version", env!("CARGO_PKG_VERSION"))], 1.0);
        ugc_core::metrics::write_process(&mut m);
        m.finish()
    });
    // Recorded events live on the origins: the recordings API asks them
    // (node token) and merges their copies.
    let mut extensions = Vec::new();
    if let Some(token) = env("UGC_NODE_TOKEN") {
        let origins: ugc_proto::recordings::Origins = {
            let cp = control.clone();
            Arc::new(move || {
                let cp = cp.clone();
                Box::pin(async move {
                    use ugc_auth::registry::{NodeRole, NodeState};
                    let nodes = cp.nodes().await.unwrap_or_default();
                    nodes
                        .into_iter()
                        .filter(|n| n.role == NodeRole::Origin && n.state != NodeState::Down)
                        .map(|n| ugc_proto::recordings::OriginNode {
                            public: n
                                .public
                                .as_ref()
                                .map_or_else(|| n.url.clone(), |p| p.http()),
                            id: n.id,
                            url: n.url,
                        })
                        .collect()
                })
            })
        };
        let authorize: ugc_proto::recordings::Authorize = {
            let cp = control.clone();
            Arc::new(move |headers, name| {
                let cp = cp.clone();
                Box::pin(async move {
                    cp.authorize_owner(&headers, &name)
                        .await
                        .map(|()| String::new())
                })
            })
        };
        extensions.push(ugc_auth::ApiExtension {
            router: ugc_proto::recordings::cluster_router(origins, &token, authorize),
            paths: ugc_proto::recordings::openapi_paths(),
        });
    }
    let mut app = axum::Router::new()
        .nest("/api/v1", control.router_with(extensions))
        .merge(metrics);
    if let Some(dir) = web {
        info!(dir = %dir.display(), "web panels");
        app = app.merge(ugc_auth::web::router_with(
            dir,
            Some(control.media_origins()),
        ));
    }
    tokio::spawn(control.clone().prune_every(Duration::from_secs(3600)));
    // The panel's charts: each stream's last 15 minutes, from the nodes'
    // beats.
    tokio::spawn(control.clone().sample_history_every());
    info!(http = %http_addr, "ugc-control started");
    let limits = ugc_proto::http::ServeConfig {
        ip_cap_exempt: Some(Arc::new(move |ip| trusted.is_trusted(ip))),
        ..Default::default()
    };
    ugc_proto::http::serve(http, app, limits)
        .await
        .context("HTTP server")?;
    Ok(())
}
