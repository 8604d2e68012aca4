//! `ugc-origin`: an origin node of a ugc platform of several machines.
//! Streams arrive over the relay (pushed by publishing or transcoding
//! nodes to `POST /relay/v1/...`), are packaged and recorded (DVR) as on
//! one node, and served as HLS/LL-HLS with the DVR routes, and over WebRTC
//! (WHEP, `POST /whep/<stream>`; media on `--whep-udp`). Stream settings
//! (DVR depth, private) come from the control plane's settings feed; public
//! streams play, private ones with a play token the control plane issued,
//! checked here with its key (`ugc_auth::node::PlayKeys`, refreshed every
//! 2 s with the revoked sessions). With `--web DIR` (default `./web` when
//! it holds the panels) it serves their viewer page, `/watch/<stream>`.
//!
//! A rendition nobody feeds for `--fallback-after-ms` while its source
//! still arrives (every transcoder down) loops its fallback until a
//! transcoder is back. (A publisher that drops is covered upstream: its
//! publishing node loops the fallback into the source.)
//!
//! ```text
//! UGC_NODE_TOKEN=... ugc-origin --control-url http://cp:8080 \
//!     --http 0.0.0.0:8082 --data /var/lib/ugc-origin
//! ```
//!
//! Wiring only; `ugc-server` is every role in one process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "../role-common/audio.rs"]
mod audio;
#[path = "../role-common/config_file.rs"]
mod config_file;
#[path = "../role-common/fallback.rs"]
mod fallback;
#[path = "../role-common/logging.rs"]
mod logging;
#[path = "../role-common/node.rs"]
mod node;
#[path = "../role-common/webrtc.rs"]
mod webrtc;

/// WHEP's UDP address unless --whep-udp says another.
const DEFAULT_WEBRTC_UDP: &str = "0.0.0.0:8189";

use anyhow::Context;
use clap::Parser;
use tracing::{info, warn};
use ugc_auth::TrustedProxies;
use ugc_auth::lookup;
use ugc_auth::node::{PlayKeys, RemoteAuthorizer};
use ugc_auth::registry::NodeRole;
use ugc_auth::{RemoteConfig, RemoteSettings};
use ugc_core::metrics::Exposition;
use ugc_core::{Hub, HubConfig, StreamPath};
use ugc_dvr::config::DvrSection;
use ugc_dvr::{HlsTiming, LiveRegistry};
use ugc_proto::relay::server::{RelayServer, RelayServerConfig};

/// The configuration file: the `[dvr]` table only.
#[derive(Debug, Default, serde::Deserialize)]
struct File {
    #[serde(default)]
    dvr: DvrSection,
}

/// An origin node: relay in, DVR, HLS/LL-HLS out.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Flags {
    /// The control plane, `http://host:port`.
    #[arg(long, env = "UGC_CONTROL_URL")]
    control_url: String,
    /// HTTP listen address (HLS, DVR, relay, `/metrics`).
    #[arg(long, env = "UGC_HTTP", default_value = "0.0.0.0:8082")]
    http: SocketAddr,
    /// Data directory (the DVR archive, the node's id).
    #[arg(long, env = "UGC_DATA", default_value = "data-origin")]
    data: PathBuf,
    /// Target HLS segment duration in milliseconds.
    #[arg(long, env = "UGC_SEGMENT_MS")]
    segment_ms: Option<u32>,
    /// LL-HLS part target in milliseconds (0: classic HLS).
    #[arg(long, env = "UGC_PART_MS")]
    part_ms: Option<u32>,
    /// Cut and name segments by the stream's timeline, so that every
    /// origin carrying a stream serves the same segments and parts under
    /// the same URIs (an edge may balance or fail over between them); a
    /// stream's first two segments are then not published (`false`: cut
    /// from where this origin joined, published from the first).
    #[arg(long, env = "UGC_ALIGNED_SEGMENTS", default_value_t = true,
          action = clap::ArgAction::Set, value_name = "BOOL")]
    aligned_segments: bool,
    /// DVR depth (hours) of streams whose own `dvr_hours` is 0 (over the
    /// file's `dvr.hours`).
    #[arg(long, env = "UGC_DVR_HOURS")]
    dvr_hours: Option<u32>,
    /// A TOML file whose `[dvr]` table sets the archive as in ugc-server's
    /// configuration: size bound, rewind, per-stream overrides and the S3
    /// tier (`[dvr.s3]`: ended events move to the bucket, read back through
    /// a local cache). Other tables are ignored. Without a `prefix` the
    /// origin's objects go below `ugc/<node id>/`, so that origins sharing
    /// a bucket never write each other's keys, and (unless `peers` says
    /// otherwise) it reads what the other origins uploaded below `ugc/`,
    /// so an event outlives the origin that recorded it.
    #[arg(long, env = "UGC_CONFIG")]
    config: Option<PathBuf>,
    /// Proxies (addresses or CIDR nets, comma-separated: the CDN edge)
    /// whose `X-Forwarded-For` names the viewer (for IP-bound play tokens),
    /// and which the per-address connection cap does not apply to.
    #[arg(long, env = "UGC_TRUSTED_PROXIES", value_delimiter = ',')]
    trusted_proxies: Vec<String>,
    /// Seconds a stream survives without its relay.
    #[arg(long, env = "UGC_PUBLISHER_GRACE_S", default_value_t = 20)]
    publisher_grace_s: u64,
    /// Count each stream's HLS viewers (`ugc_stream_viewers`): `beacons`
    /// (default) from the players' QoE beacons, which pass a CDN edge
    /// uncached: an origin of a cluster is behind one, whose cache the
    /// per-viewer playlist URLs of `on` (playlists and beacons, as
    /// ugc-server's default) would split; `off`.
    #[arg(long, env = "UGC_VIEWER_COUNT", default_value = "beacons")]
    viewer_count: ugc_core::viewers::CountFrom,
    /// Seconds between a playing viewer's QoE beacons, told to players in
    /// each multivariant playlist (as ugc-server's flag).
    #[arg(long, env = "UGC_QOE_INTERVAL_S", default_value_t = 20,
          value_parser = clap::value_parser!(u64).range(5..=300))]
    qoe_interval_s: u64,
    /// Viewer sessions counted per stream and client address (an IPv6
    /// /64): one client inventing session ids adds at most this many.
    #[arg(long, env = "UGC_VIEWER_SESSIONS_PER_ADDRESS", default_value_t = 200,
          value_parser = clap::value_parser!(u32).range(1..))]
    viewer_sessions_per_address: u32,
    /// WHEP media (WebRTC play): the UDP address every viewer's session
    /// shares, or `off`. With an unspecified IP one socket per --whep-ip.
    #[arg(
        long,
        env = "UGC_WHEP_UDP",
        default_value = DEFAULT_WEBRTC_UDP,
        value_name = "ADDR|off"
    )]
    whep_udp: String,
    /// The local addresses WHEP offers as ICE candidates when --whep-udp
    /// has an unspecified IP (comma-separated; default 127.0.0.1 and the
    /// default route's).
    #[arg(long, env = "UGC_WHEP_IP", value_delimiter = ',')]
    whep_ip: Vec<std::net::IpAddr>,
    /// The address viewers reach WHEP at behind a 1:1 NAT or port forward
    /// (the ICE candidate of every non-loopback socket, at its port).
    #[arg(long, env = "UGC_WHEP_PUBLIC_IP")]
    whep_public_ip: Option<std::net::IpAddr>,
    /// STUN/TURN servers for viewers, sent as `Link` headers
    /// (comma-separated `stun:HOST:PORT`, `turn[s]:USER:PASS@HOST:PORT`).
    #[arg(long, env = "UGC_WHEP_ICE_SERVER", value_delimiter = ',')]
    whep_ice_server: Vec<ugc_proto::whip::server::IceServer>,
    /// WHEP's ICE-TCP listener, for viewers whose network lets no UDP
    /// through: an address, or `off`; default beside each --whep-udp
    /// socket (same address and port, over TCP).
    #[arg(long, env = "UGC_WHEP_TCP", value_name = "ADDR|off")]
    whep_tcp: Option<ugc_proto::whip::server::IceTcp>,
    /// Opus audio re-encoded to AAC for HLS and the DVR (`on`, `off`; see
    /// ugc-server's flag of the same name).
    #[arg(long, env = "UGC_OPUS_TO_AAC", default_value = "on", value_parser = ["on", "off"])]
    opus_to_aac: String,
    /// AAC audio re-encoded to Opus for WHEP viewers (`on`, `off`; see
    /// ugc-server's flag of the same name).
    #[arg(long, env = "UGC_AAC_TO_OPUS", default_value = "on", value_parser = ["on", "off"])]
    aac_to_opus: String,
    /// The web panels' directory: the origin serves their viewer page,
    /// `/watch/<stream>` (default `./web` when it holds them; `off`: none).
    #[arg(long, env = "UGC_WEB")]
    web: Option<PathBuf>,
    /// DVR replication: fill holes in this origin's archive (it was down,
    /// or lost a stream's relay) from the other origins' (`on`, `off`).
    #[arg(long, env = "UGC_DVR_SYNC", default_value = "on", value_parser = ["on", "off"])]
    dvr_sync: String,
    /// Milliseconds between replication rounds over the other origins.
    #[arg(long, env = "UGC_DVR_SYNC_EVERY_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(100..))]
    dvr_sync_every_ms: u64,
    /// Replication fetch rate in Mbit/s (0: unpaced), so a restore leaves
    /// live delivery its bandwidth.
    #[arg(long, env = "UGC_DVR_SYNC_MBPS", default_value_t = 64)]
    dvr_sync_mbps: u64,
    /// Peer segments that ended less than this many milliseconds ago are
    /// not copied: this origin records the live edge itself.
    #[arg(long, env = "UGC_DVR_SYNC_SETTLE_MS", default_value_t = 10_000)]
    dvr_sync_settle_ms: u64,
    #[command(flatten)]
    fallback: fallback::FallbackFlags,
    /// Milliseconds a rendition goes without its relay, while its source
    /// arrives, before the origin loops the fallback into it (every
    /// transcoder down). Keep it above the time a standby transcoder
    /// takes over (the control plane's --lease-ttl-ms plus about 2 s, with
    /// room for a loaded machine) so that an ordinary failover is not
    /// covered by a flash of the slate.
    #[arg(long, env = "UGC_FALLBACK_AFTER_MS", default_value_t = 8000)]
    fallback_after_ms: u64,
    /// New viewers (a stream's multivariant playlist): `off` (default)
    /// every viewer plays here; `redirect` asks the control plane which
    /// live origin carrying the stream has the fewest viewers and answers
    /// `302` there when it is another (the guide's "origin 1 serves as a
    /// load balancer", for events without a CDN; a stream this origin
    /// does not carry is redirected too). Keep it `off` behind a CDN edge,
    /// which would hand the redirect to players and send them around it.
    /// `pull`: no node pushes streams here; a stream a viewer asks for is
    /// pulled over the relay from an origin that carries it (the control
    /// plane says which) and dropped `--pull-idle-s` after its last
    /// request: a tier of origins that carry only what their viewers watch.
    #[arg(long, env = "UGC_BALANCE", default_value = "off", value_parser = ["off", "redirect", "pull"])]
    balance: String,
    /// With `--balance pull`: seconds a pulled stream stays without a
    /// request before it is dropped.
    #[arg(long, env = "UGC_PULL_IDLE_S", default_value_t = 30)]
    pull_idle_s: u64,
    #[command(flatten)]
    node: node::NodeFlags,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    logging::init();
    let flags = Flags::parse();
    let token = std::env::var("UGC_NODE_TOKEN").context("UGC_NODE_TOKEN is required")?;
    std::fs::create_dir_all(&flags.data)?;
    let segment_ms = flags.segment_ms.unwrap_or(HlsTiming::default().segment_ms);
    let hub = Hub::new(HubConfig {
        publisher_grace: Duration::from_secs(flags.publisher_grace_s),
        // The timelines this node makes are dated by their ids (origins'
        // aligned segments): a cluster's nodes all do so.
        timeline_on_clock: true,
        // The slate's and the transcoders' takeovers start whole segments.
        discontinuity_grid: flags
            .aligned_segments
            .then(|| Duration::from_millis(u64::from(segment_ms))),
        ..HubConfig::default()
    });
    let settings = RemoteSettings::connect(RemoteConfig::new(&flags.control_url, &token))
        .await
        .context("following the control plane's settings")?;
    // Renditions nobody feeds any more while their source arrives: their
    // fallback, after the wait (a standby transcoder takes over first).
    fallback::spawn(
        &hub,
        &flags.fallback,
        &settings,
        ugc_core::fallback::FallbackConfig {
            hold: Duration::from_secs(flags.publisher_grace_s),
            after: Duration::from_millis(flags.fallback_after_ms),
            sources: false,
            renditions: true,
            // Every rendition's slate starts the same aligned segment.
            align: flags
                .aligned_segments
                .then(|| Duration::from_millis(u64::from(segment_ms))),
            ..Default::default()
        },
    )?;
    let play_keys = PlayKeys::follow(
        &flags.control_url,
        &token,
        Duration::from_secs(2),
        Duration::from_secs(5),
    )?;
    let auth = RemoteAuthorizer::new(&flags.control_url, &token, Duration::from_secs(5))?
        .with_public_play(settings.clone())
        .with_play_tokens(play_keys);
    let trusted = TrustedProxies::parse(&flags.trusted_proxies)
        .map_err(|e| anyhow::anyhow!("--trusted-proxies: {e}"))?;
    let auth = Arc::new(auth);

    let d = HlsTiming::default();
    let timing = HlsTiming {
        segment_ms: flags.segment_ms.unwrap_or(d.segment_ms),
        part_ms: flags.part_ms.unwrap_or(d.part_ms),
        aligned: flags.aligned_segments,
        ..d
    };
    // Bound first: the node's id (the S3 prefix, the balancer) needs the
    // HTTP port.
    let http = ugc_proto::http::bind(flags.http).await?;
    let own_id = node::own_id(
        &flags.node,
        Some(&flags.data),
        NodeRole::Origin,
        http.local_addr()?.port(),
    )?;
    let mut section = config_file::load::<File>(flags.config.as_deref())?.dvr;
    section.hours = flags.dvr_hours.or(section.hours);
    if let Some(s3) = section.s3.as_mut()
        && s3.prefix.is_none()
    {
        s3.prefix = Some(format!("ugc/{own_id}/"));
        s3.peers.get_or_insert_with(|| "ugc/".into());
    }
    let dvr = section.resolve(&flags.data.canonicalize()?);
    let rewind = dvr.policy.rewind();
    let opened = dvr
        .open(lookup::dvr_hours(settings.clone()))
        .context("opening the DVR archive")?;
    let (archive, uploader) = (opened.archive, opened.uploader);
    if let Some(u) = &uploader {
        tokio::spawn(u.clone().run());
    }
    tokio::spawn(ugc_dvr::policy::sweep_on_changes(
        archive.clone(),
        settings.subscribe_changes(),
    ));
    let mut packager = timing.packager()?;
    packager.observer = Some(Arc::new(archive.clone()));
    packager.transform = audio::opus_to_aac(flags.opus_to_aac == "on");
    let target_duration_ms = packager.segmenter.target_duration_ms;
    let registry = Arc::new(LiveRegistry::new());
    tokio::spawn(ugc_dvr::package_hub(
        hub.clone(),
        registry.clone(),
        packager,
    ));

    let client_ip = ugc_auth::client_ip_from(trusted.clone());
    let qoe_config = ugc_core::qoe::QoeConfig {
        player_interval: Duration::from_secs(flags.qoe_interval_s),
        ..ugc_core::qoe::QoeConfig::default()
    };
    let (viewers, count_playlists) = flags.viewer_count.counter(ugc_core::viewers::ViewerConfig {
        max_sessions_per_address: flags.viewer_sessions_per_address as usize,
        window: qoe_config.viewer_window(),
        ..ugc_core::viewers::ViewerConfig::default()
    });
    // Players' QoE beacons, which count viewers too.
    let qoe = Arc::new(ugc_core::qoe::QoeCollector::new(
        qoe_config,
        viewers.clone(),
    ));
    // WebRTC play (WHEP) of what this node has; nothing is published here.
    let whep = webrtc::start(
        "whep-udp",
        &flags.whep_udp,
        DEFAULT_WEBRTC_UDP,
        &flags.whep_ip,
        webrtc::Wiring {
            hub: hub.clone(),
            auth: auth.clone(),
            client_ip: client_ip.clone(),
            config: ugc_proto::whip::server::WhipConfig {
                accept_publish: false,
                play_transform: audio::aac_to_opus(flags.aac_to_opus == "on"),
                public_ip: flags.whep_public_ip,
                ice_servers: flags.whep_ice_server.clone(),
                ..Default::default()
            },
            tcp: flags.whep_tcp.unwrap_or_default(),
        },
    )
    .await?;
    let balancer = (flags.balance == "redirect").then(|| {
        info!("new viewers balanced over the origins by redirect");
        ugc_auth::balance::PlayBalancer::new(&flags.control_url, &token, &own_id)
    });
    let on_demand = (flags.balance == "pull").then(|| {
        info!("streams pulled on demand from the origins that carry them");
        let locator = ugc_auth::balance::PullLocator::new(&flags.control_url, &token, &own_id);
        let pulls = ugc_proto::relay::on_demand::OnDemandPulls::new(
            hub.clone(),
            &token,
            Duration::from_secs(flags.pull_idle_s),
            move |source| {
                let locator = locator.clone();
                Box::pin(async move {
                    let from = locator.locate(&source).await?;
                    Some(ugc_proto::relay::on_demand::Carrier {
                        base_url: from.url,
                        streams: from
                            .streams
                            .iter()
                            .filter_map(|s| StreamPath::parse(s).ok())
                            .collect(),
                    })
                })
            },
        );
        tokio::spawn(pulls.clone().reap_every(Duration::from_secs(1)));
        pulls
    });
    let balance = balancer.clone().map(|b| {
        ugc_proto::origin::Balance(Arc::new(move |stream| {
            let b = b.clone();
            Box::pin(async move { b.elsewhere(&stream).await })
        }))
    });
    let origin = ugc_proto::origin::router_with_config(
        registry.clone(),
        auth.clone(),
        client_ip.clone(),
        ugc_proto::origin::OriginConfig {
            low_latency_hub: Some(hub.clone()),
            viewers: viewers.clone().filter(|_| count_playlists),
            qoe: Some(qoe.clone()),
            balance,
            on_demand: on_demand.clone(),
            ..Default::default()
        },
    );
    let origin = ugc_proto::dvr::layer(
        origin,
        ugc_proto::dvr::DvrOrigin {
            archive: archive.clone(),
            registry,
            auth,
            client_ip,
            target_duration_ms,
            rewind_s: rewind,
        },
    );
    let sync = (flags.dvr_sync == "on").then(|| {
        ugc_proto::dvr_sync::DvrSync::new(
            archive.clone(),
            ugc_proto::dvr_sync::SyncConfig {
                every: Duration::from_millis(flags.dvr_sync_every_ms),
                settle: Duration::from_millis(flags.dvr_sync_settle_ms),
                bytes_per_s: flags.dvr_sync_mbps.saturating_mul(125_000),
                ..ugc_proto::dvr_sync::SyncConfig::new(token.clone())
            },
        )
    });
    let relay = RelayServer::new(hub.clone(), RelayServerConfig::new(token.clone()));
    let beat_viewers = viewers.clone();
    let http_stats = Arc::new(ugc_proto::http::ServeStats::default());
    let metrics = {
        let (hub, relay, archive) = (hub.clone(), relay.clone(), archive.clone());
        let http_stats = http_stats.clone();
        let (whep, sync, qoe) = (whep.clone(), sync.clone(), qoe.clone());
        let (uploader, balancer) = (uploader.clone(), balancer.clone());
        let on_demand = on_demand.clone();
        move || async move {
            let mut m = Exposition::new();
            ugc_core::metrics::write_hub(&mut m, &hub, Instant::now());
            ugc_core::metrics::write_process(&mut m);
            archive.write_metrics(&mut m);
            if let Some(u) = &uploader {
                u.write_metrics(&mut m);
            }
            ugc_dvr::live::PART_STATS.write_metrics(&mut m);
            ugc_proto::http::ServeStats::write_metrics(&mut m, &[("http", &http_stats)]);
            relay.write_metrics(&mut m);
            if let Some(w) = &whep {
                w.write_metrics(&mut m);
            }
            if let Some(v) = &viewers {
                v.write_metrics(&mut m, Instant::now());
            }
            qoe.write_metrics(&mut m, Instant::now());
            if let Some(s) = &sync {
                s.write_metrics(&mut m);
            }
            if let Some(b) = &balancer {
                b.write_metrics(&mut m);
            }
            if let Some(p) = &on_demand {
                p.write_metrics(&mut m);
            }
            m.finish()
        }
    };
    let mut app = origin
        .merge(relay.router())
        .merge(ugc_proto::dvr_sync::router(archive.clone(), &token))
        // Its recordings, for the control plane's recordings API.
        .merge(ugc_proto::recordings::node_router(archive.clone(), &token))
        .route("/metrics", axum::routing::get(metrics));
    if let Some(w) = &whep {
        app = app.merge(w.router());
    }
    let web = match flags.web {
        Some(dir) if dir.as_os_str() == "off" => None,
        Some(dir) => Some(dir),
        None => Some(PathBuf::from("web")).filter(|d| ugc_auth::web::is_web_dir(d)),
    };
    if let Some(dir) = web {
        info!(dir = %dir.display(), "viewer page at /watch/<stream>");
        app = app.merge(ugc_auth::web::viewer_router(dir));
    }
    // Its egress: every HTTP answer (HLS, DVR, relay, replication).
    let served = http_stats.clone();
    let own_url = node::spawn_heartbeat(
        &flags.node,
        Some(&flags.data),
        NodeRole::Origin,
        &flags.control_url,
        &token,
        node::Listening {
            http: http.local_addr()?,
            rtmp: None,
            rtmps: None,
            srt: None,
        },
        hub.clone(),
        move || served.bytes_sent(),
        0,
        flags.balance == "pull",
        beat_viewers,
        |_| {},
    )?;
    if let Some(sync) = sync {
        let (control, token) = (flags.control_url.clone(), token.clone());
        let uploader = uploader.clone();
        tokio::spawn(async move {
            // What the peers' objects in a shared bucket hold is read in,
            // not copied (bounded: a store that does not answer).
            if let Some(u) = &uploader {
                let first = u.peers_read_once();
                let _ = tokio::time::timeout(Duration::from_secs(15), first).await;
            }
            let peers =
                ugc_auth::node::Topology::follow(&control, &token, Duration::from_secs(2), |t| {
                    t.origins.clone()
                })
                .await;
            sync.with_own_url(own_url).run(peers).await;
        });
    }
    info!(http = %http.local_addr()?, "ugc-origin started");
    let limits = ugc_proto::http::ServeConfig {
        ip_cap_exempt: Some(Arc::new(move |ip| trusted.is_trusted(ip))),
        ..Default::default()
    };
    let serving =
        ugc_proto::http::serve_until(http, app, limits, http_stats, std::future::pending());
    if let Err(e) = serving.await {
        warn!(error = %e, "HTTP server stopped");
    }
    for name in hub.stream_names() {
        hub.end(&name);
    }
    let _ =
        tokio::task::spawn_blocking(move || archive.flush_blocking(Duration::from_secs(5))).await;
    Ok(())
}
