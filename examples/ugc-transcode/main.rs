//! `ugc-transcode`: a transcoding node of a ugc platform of several
//! machines. Streams arrive over the relay (pushed by publishing nodes);
//! each whose transcode profile (from the control plane's settings feed)
//! is not `off` gets its ABR ladder; every stream, sources and renditions,
//! is pushed to the control plane's origins (or each `--push-to` node).
//!
//! When the control plane names no transcoders it leases the jobs: each
//! heartbeat's answer lists the streams this node is to transcode; it pulls
//! each from its publishing node and pushes the renditions to the origins
//! under the lease's epoch (`--priority` makes a main and its standby).
//!
//! ```text
//! UGC_NODE_TOKEN=... ugc-transcode --control-url http://cp:8080 \
//!     --http 0.0.0.0:8083
//! ```
//!
//! Wiring only; `ugc-server` is every role in one process.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

#[path = "../role-common/config_file.rs"]
mod config_file;
#[path = "../role-common/logging.rs"]
mod logging;
#[path = "../role-common/node.rs"]
mod node;

use anyhow::Context;
use clap::Parser;
use tracing::{info, warn};
use ugc_auth::lookup;
use ugc_auth::node::Topology;
use ugc_auth::registry::NodeRole;
use ugc_auth::{RemoteConfig, RemoteSettings};
use ugc_codec::ladder::LadderProfiles;
use ugc_codec::ladder::config::TranscodeSection;
use ugc_codec::ladder::stats::LadderRegistry;
use ugc_core::StreamPath;
use ugc_core::metrics::Exposition;
use ugc_core::{Hub, HubConfig};
use ugc_proto::relay::lease::{LeaseFollower, LeasedStream};
use ugc_proto::relay::push::RelayPushStats;
use ugc_proto::relay::server::{RelayServer, RelayServerConfig};

/// A transcoding node: relay in, ABR ladder, relay out.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Flags {
    /// The control plane, `http://host:port`.
    #[arg(long, env = "UGC_CONTROL_URL")]
    control_url: String,
    /// HTTP listen address (relay in and out, `/metrics`).
    #[arg(long, env = "UGC_HTTP", default_value = "0.0.0.0:8083")]
    http: SocketAddr,
    /// Push every stream and rendition to this node; repeatable.
    /// Default: the control plane's origins.
    #[arg(long = "push-to", env = "UGC_PUSH_TO", value_delimiter = ',')]
    push_to: Vec<String>,
    /// A TOML file whose `[transcode]` table sets the ladders, as in
    /// ugc-server's configuration.
    #[arg(long, env = "UGC_CONFIG")]
    config: Option<std::path::PathBuf>,
    /// Transcode profile of streams the control plane has no setting for
    /// (default: the file's `transcode.default`, else `off`).
    #[arg(long, env = "UGC_TRANSCODE_DEFAULT")]
    transcode_default: Option<String>,
    /// Priority for transcode leases: the live transcoders of the highest
    /// priority share the jobs; a lower one (a standby) takes them only
    /// while none of those beats.
    #[arg(
        long,
        env = "UGC_PRIORITY",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    priority: i32,
    /// Relay pushes send what a source gave within this many milliseconds
    /// as one chunk: less CPU on both ends of each hop, this much more
    /// latency per hop (0: each frame at once; benches/relay-hop.sh
    /// measures both sides).
    #[arg(long, env = "UGC_RELAY_BATCH_MS", default_value_t = 0,
          value_parser = clap::value_parser!(u64).range(0..=1000))]
    relay_batch_ms: u64,
    /// Seconds a stream survives without its relay.
    #[arg(long, env = "UGC_PUBLISHER_GRACE_S", default_value_t = 20)]
    publisher_grace_s: u64,
    /// Data directory: the node's id is kept there across restarts (on
    /// another address too). Without one the id follows the address.
    #[arg(long, env = "UGC_DATA")]
    data: Option<std::path::PathBuf>,
    #[command(flatten)]
    node: node::NodeFlags,
}

/// The configuration file: the `[transcode]` table only.
#[derive(Debug, Default, serde::Deserialize)]
struct File {
    #[serde(default)]
    transcode: TranscodeSection,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    logging::init();
    let flags = Flags::parse();
    let token = std::env::var("UGC_NODE_TOKEN").context("UGC_NODE_TOKEN is required")?;
    let hub = Hub::new(HubConfig {
        publisher_grace: Duration::from_secs(flags.publisher_grace_s),
        // The timelines this node makes are dated by their ids (origins'
        // aligned segments): a cluster's nodes all do so.
        timeline_on_clock: true,
        ..HubConfig::default()
    });
    let settings = RemoteSettings::connect(RemoteConfig::new(&flags.control_url, &token))
        .await
        .context("following the control plane's settings")?;
    let mut section = config_file::load::<File>(flags.config.as_deref())?.transcode;
    section.default = flags.transcode_default.or(section.default);
    let ladders: LadderProfiles = section.load().context("transcode config")?;
    let profile_of = lookup::transcode_profile(settings.clone(), ladders.default.clone());
    let registry = LadderRegistry::default();
    tokio::spawn(ugc_codec::transcode::supervise(
        hub.clone(),
        ladders.profiles,
        Arc::new(profile_of),
        settings.subscribe_changes(),
        registry.clone(),
    ));
    // Where renditions go: --push-to, else the control plane's origins,
    // followed while the node runs.
    let targets = match flags.push_to {
        t if t.is_empty() => {
            Topology::follow(&flags.control_url, &token, Duration::from_secs(2), |t| {
                t.origins.clone()
            })
            .await
        }
        t => tokio::sync::watch::channel(t).1,
    };
    info!(targets = ?*targets.borrow(), "pushing every stream");
    let pushed = Arc::new(RelayPushStats::default());
    let follower = LeaseFollower::following(
        hub.clone(),
        targets,
        ugc_proto::relay::push::PushOptions {
            token: token.clone(),
            stats: pushed.clone(),
            batch: Duration::from_millis(flags.relay_batch_ms),
            standby: None,
        },
    );
    tokio::spawn(follower.clone().push_all());

    let relay = RelayServer::new(hub.clone(), RelayServerConfig::new(token.clone()));
    let http_stats = Arc::new(ugc_proto::http::ServeStats::default());
    let metrics = {
        let (hub, relay, pushed) = (hub.clone(), relay.clone(), pushed.clone());
        let follower = follower.clone();
        let http_stats = http_stats.clone();
        move || async move {
            let now = Instant::now();
            let mut m = Exposition::new();
            ugc_core::metrics::write_hub(&mut m, &hub, now);
            ugc_core::metrics::write_process(&mut m);
            registry.write_metrics(&mut m, now);
            relay.write_metrics(&mut m);
            pushed.write_metrics(&mut m);
            follower.write_metrics(&mut m);
            ugc_proto::http::ServeStats::write_metrics(&mut m, &[("http", &http_stats)]);
            m.finish()
        }
    };
    let app = relay
        .router()
        .route("/metrics", axum::routing::get(metrics));
    let http = ugc_proto::http::bind(flags.http).await?;
    let served = relay.clone();
    node::spawn_heartbeat(
        &flags.node,
        flags.data.as_deref(),
        NodeRole::Transcode,
        &flags.control_url,
        &token,
        node::Listening {
            http: http.local_addr()?,
            rtmp: None,
            rtmps: None,
            srt: None,
        },
        hub.clone(),
        move || {
            served.stats().bytes_out.load(Ordering::Relaxed)
                + pushed.bytes_out.load(Ordering::Relaxed)
        },
        flags.priority,
        false,
        None,
        move |answer| {
            let Some(leases) = &answer.leases else {
                return;
            };
            let leases: Vec<LeasedStream> = leases
                .iter()
                .filter_map(|l| match StreamPath::parse(&l.stream) {
                    Ok(stream) => Some(LeasedStream {
                        stream,
                        epoch: l.epoch,
                        source: l.source.clone(),
                    }),
                    Err(e) => {
                        warn!(stream = %l.stream, error = %e, "lease of a malformed stream");
                        None
                    }
                })
                .collect();
            follower.apply(&leases);
        },
    )?;
    info!(http = %http.local_addr()?, "ugc-transcode started");
    let serving = ugc_proto::http::serve_until(
        http,
        app,
        Default::default(),
        http_stats,
        std::future::pending(),
    );
    if let Err(e) = serving.await {
        warn!(error = %e, "HTTP server stopped");
    }
    Ok(())
}
