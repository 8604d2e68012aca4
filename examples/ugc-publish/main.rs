//! `ugc-publish`: a publishing node of a ugc platform of several machines.
//! RTMP, RTMPS (with `--rtmps` and a certificate), SRT and WHIP in, with publish decisions asked from the control plane
//! (`ugc_auth::node::RemoteAuthorizer`) and SRT passphrases and restream
//! targets from its settings feed (`RemoteSettings`); out: restreams, the
//! relay for nodes that pull (`GET /relay/v1/...`), and a push of every
//! stream to the control plane's transcoders (else its origins), or to
//! each `--push-to` node.
//!
//! A stream whose publisher drops loops its fallback (`--fallback`, the
//! stream's own setting) for the publisher grace.
//!
//! It registers with the control plane and beats every two seconds
//! (`ugc_auth::registry`), so publish URLs go to the least-loaded
//! publishing node.
//!
//! ```text
//! UGC_NODE_TOKEN=... ugc-publish --control-url http://cp:8080 \
//!     --rtmp 0.0.0.0:1935 --srt 0.0.0.0:9000 --http 0.0.0.0:8081 \
//!     --public-host pub1.example.com
//! ```
//!
//! Wiring only; `ugc-server` is every role in one process.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

#[path = "../role-common/fallback.rs"]
mod fallback;
#[path = "../role-common/logging.rs"]
mod logging;
#[path = "../role-common/node.rs"]
mod node;
#[path = "../role-common/webrtc.rs"]
mod webrtc;

/// How often the control plane's topology is asked for again.
const TOPOLOGY_EVERY: Duration = Duration::from_secs(2);

/// WHIP's UDP address unless --whip-udp says another.
const DEFAULT_WEBRTC_UDP: &str = "0.0.0.0:8189";

use anyhow::Context;
use clap::Parser;
use tracing::{info, warn};
use ugc_auth::lookup::{self, Overrides};
use ugc_auth::node::{RemoteAuthorizer, Topology};
use ugc_auth::registry::NodeRole;
use ugc_auth::{RemoteConfig, RemoteSettings};
use ugc_core::metrics::Exposition;
use ugc_core::{Hub, HubConfig};
use ugc_proto::relay::push::{PushOptions, RelayPushStats, Standby, StandbyOf, push_all_following};
use ugc_proto::relay::server::{RelayServer, RelayServerConfig};
use ugc_proto::rtmp::restream::Restreams;
use ugc_proto::srt::server::SrtStatsRegistry;

/// A publishing node: RTMP/SRT in, relay and restreams out.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Flags {
    /// The control plane, `http://host:port`.
    #[arg(long, env = "UGC_CONTROL_URL")]
    control_url: String,
    /// RTMP listen address.
    #[arg(long, env = "UGC_RTMP", default_value = "0.0.0.0:1935")]
    rtmp: SocketAddr,
    /// RTMPS listen address (RTMP over TLS, OBS `rtmps://host:1936/live`);
    /// needs --tls-cert and --tls-key. Off without it.
    #[arg(long, env = "UGC_RTMPS", requires_all = ["tls_cert", "tls_key"])]
    rtmps: Option<SocketAddr>,
    /// Certificate chain (PEM) for RTMPS.
    #[arg(long, env = "UGC_TLS_CERT", requires = "rtmps")]
    tls_cert: Option<std::path::PathBuf>,
    /// Private key (PEM) for RTMPS.
    #[arg(long, env = "UGC_TLS_KEY", requires = "rtmps")]
    tls_key: Option<std::path::PathBuf>,
    /// SRT listen address.
    #[arg(long, env = "UGC_SRT", default_value = "0.0.0.0:9000")]
    srt: SocketAddr,
    /// HTTP listen address (relay, `/metrics`, WHIP signalling).
    #[arg(long, env = "UGC_HTTP", default_value = "0.0.0.0:8081")]
    http: SocketAddr,
    /// WHIP media: the UDP address every session shares, or `off` (see
    /// ugc-server's flag of the same name).
    #[arg(
        long,
        env = "UGC_WHIP_UDP",
        default_value = DEFAULT_WEBRTC_UDP,
        value_name = "ADDR|off"
    )]
    whip_udp: String,
    /// The local addresses WHIP offers as ICE candidates when --whip-udp
    /// has an unspecified IP (comma-separated).
    #[arg(long, env = "UGC_WHIP_IP", value_delimiter = ',')]
    whip_ip: Vec<std::net::IpAddr>,
    /// The address publishers reach WHIP at behind a 1:1 NAT (see
    /// ugc-server's flag of the same name).
    #[arg(long, env = "UGC_WHIP_PUBLIC_IP")]
    whip_public_ip: Option<std::net::IpAddr>,
    /// STUN/TURN servers for WHIP publishers, sent as `Link` headers (see
    /// ugc-server's flag of the same name).
    #[arg(long, env = "UGC_WHIP_ICE_SERVER", value_delimiter = ',')]
    whip_ice_server: Vec<ugc_proto::whip::server::IceServer>,
    /// WHIP's ICE-TCP listener (see ugc-server's flag of the same name):
    /// an address, or `off`; default beside each --whip-udp socket.
    #[arg(long, env = "UGC_WHIP_TCP", value_name = "ADDR|off")]
    whip_tcp: Option<ugc_proto::whip::server::IceTcp>,
    /// Whether WHIP publishers may send AV1 (see ugc-server's flag of the
    /// same name).
    #[arg(long, env = "UGC_WHIP_AV1", default_value = "off", value_parser = ["on", "off"])]
    whip_av1: String,
    /// Push every stream to this node (`http://host:port`); repeatable.
    /// Default: the control plane's topology (its transcoders, else its
    /// origins).
    #[arg(long = "push-to", env = "UGC_PUSH_TO", value_delimiter = ',')]
    push_to: Vec<String>,
    /// Relay pushes send what a source gave within this many milliseconds
    /// as one chunk: less CPU on both ends of each hop, this much more
    /// latency per hop (0: each frame at once; benches/relay-hop.sh
    /// measures both sides).
    #[arg(long, env = "UGC_RELAY_BATCH_MS", default_value_t = 0,
          value_parser = clap::value_parser!(u64).range(0..=1000))]
    relay_batch_ms: u64,
    /// Seconds a stream survives without a publisher.
    #[arg(long, env = "UGC_PUBLISHER_GRACE_S", default_value_t = 20)]
    publisher_grace_s: u64,
    /// The origins' segment duration in milliseconds (the same variable
    /// as theirs), or a multiple of it: a source with other tracks taking
    /// over (the slate, a backup or a publisher back with other settings)
    /// lands on a multiple of it on the stream's timeline, so that the
    /// origins' aligned segments of the source stay within their target
    /// duration (a hole of less than this at the discontinuity, where a
    /// transcoder holds its last picture). 0: it lands where the old media
    /// ends. Otherwise within 200..=30000, the origins' range: the hole and
    /// the silence filled before it are at most this long.
    #[arg(long, env = "UGC_SEGMENT_MS", default_value_t = 2000,
          value_parser = parse_segment_ms)]
    segment_ms: u64,
    /// Data directory: the node's id is kept there across restarts (on
    /// another address too). Without one the id follows the address.
    #[arg(long, env = "UGC_DATA")]
    data: Option<std::path::PathBuf>,
    #[command(flatten)]
    fallback: fallback::FallbackFlags,
    #[command(flatten)]
    node: node::NodeFlags,
}

/// `--segment-ms`: 0 (off) or an origin's segment duration (200..=30000,
/// what `HlsTiming` accepts), never hours of silence to fill by a typo.
fn parse_segment_ms(s: &str) -> Result<u64, String> {
    let ms: u64 = s.parse().map_err(|e| format!("{e}"))?;
    match ms {
        0 | 200..=30_000 => Ok(ms),
        _ => Err(format!("0 (off) or within 200..=30000, got {ms}")),
    }
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
        discontinuity_grid: Some(Duration::from_millis(flags.segment_ms)).filter(|g| !g.is_zero()),
        ..HubConfig::default()
    });
    let settings = RemoteSettings::connect(RemoteConfig::new(&flags.control_url, &token))
        .await
        .context("following the control plane's settings")?;
    // A stream's own source timeout (main to backup on this node).
    hub.set_source_timeouts(Arc::new(lookup::source_timeout(
        settings.clone(),
        Overrides::default(),
    )));
    // A publisher that drops: its fallback, pushed on like live (through
    // the ladder on the transcoders, so every rendition switches at once).
    fallback::spawn(
        &hub,
        &flags.fallback,
        &settings,
        ugc_core::fallback::FallbackConfig {
            hold: Duration::from_secs(flags.publisher_grace_s),
            // (Sources land by the Hub's grid; this gives the slate a
            // keyframe per segment, for streams the origins take as is.)
            align: Some(Duration::from_millis(flags.segment_ms)).filter(|d| !d.is_zero()),
            ..Default::default()
        },
    )?;
    let rtmp = ugc_proto::http::bind(flags.rtmp).await?;
    let srt = tokio::net::UdpSocket::bind(flags.srt).await?;
    let http = ugc_proto::http::bind(flags.http).await?;
    // A publisher that moved here from a failed node goes on with its
    // stream's timeline (dates and numbering unbroken at the origins).
    let mut auth = RemoteAuthorizer::new(&flags.control_url, &token, Duration::from_secs(5))?
        .with_timelines(hub.clone());
    if flags.node.capacity > 0 {
        let id = node::own_id(
            &flags.node,
            flags.data.as_deref(),
            NodeRole::Publish,
            http.local_addr()?.port(),
        )?;
        auth = auth.with_room(room_check(hub.clone(), flags.node.capacity, id));
    }
    tokio::spawn(
        auth.clone()
            .follow(hub.clone(), settings.subscribe_changes()),
    );
    let auth = Arc::new(auth);

    let (rtmp_addr, srt_addr) = (rtmp.local_addr()?, srt.local_addr()?);
    info!(rtmp = %rtmp_addr, srt = %srt_addr, http = %http.local_addr()?, "ugc-publish started");
    let rtmp_stats = Arc::new(ugc_proto::rtmp::server::RtmpServerStats::default());
    let rtmp_task = tokio::spawn(ugc_proto::rtmp::server::serve_with_stats(
        rtmp,
        hub.clone(),
        auth.clone(),
        Default::default(),
        rtmp_stats.clone(),
    ));
    // RTMPS: the same server behind TLS, sharing its counters.
    let rtmps_addr = match (&flags.rtmps, &flags.tls_cert, &flags.tls_key) {
        (Some(addr), Some(cert), Some(key)) => {
            let tls = ugc_proto::tls::rtmp_server_config(cert, key)
                .context("loading the TLS certificate for RTMPS")?;
            let listener = ugc_proto::http::bind(addr).await?;
            let at = listener.local_addr()?;
            info!(rtmps = %at, "RTMPS listening");
            let served = ugc_proto::rtmp::server::serve_with_stats(
                listener,
                hub.clone(),
                auth.clone(),
                ugc_proto::rtmp::server::RtmpServerConfig {
                    tls: Some(tls),
                    ..Default::default()
                },
                rtmp_stats.clone(),
            );
            tokio::spawn(async move {
                let result = served.await;
                warn!(?result, "RTMPS server stopped");
            });
            Some(at)
        }
        _ => None,
    };
    // WHIP: signalling on the HTTP port, media on its UDP sockets.
    let whip = webrtc::start(
        "whip-udp",
        &flags.whip_udp,
        DEFAULT_WEBRTC_UDP,
        &flags.whip_ip,
        webrtc::Wiring {
            hub: hub.clone(),
            auth: auth.clone(),
            client_ip: ugc_proto::origin::peer_is_client(),
            config: ugc_proto::whip::server::WhipConfig {
                public_ip: flags.whip_public_ip,
                ice_servers: flags.whip_ice_server.clone(),
                av1: flags.whip_av1 == "on",
                ..Default::default()
            },
            tcp: flags.whip_tcp.unwrap_or_default(),
        },
    )
    .await?;
    let srt_stats = SrtStatsRegistry::default();
    let passphrase = lookup::srt_passphrase(settings.clone(), Overrides::default());
    let srt_task = tokio::spawn(ugc_proto::srt::server::serve(
        srt,
        hub.clone(),
        auth.clone(),
        Arc::new(passphrase),
        Default::default(),
        srt_stats.clone(),
    ));
    let restreams = Restreams::default();
    tokio::spawn(ugc_proto::rtmp::restream::supervise(
        hub.clone(),
        Arc::new(lookup::restream_targets(
            settings.clone(),
            Overrides::default(),
        )),
        settings.subscribe_changes(),
        Default::default(),
        restreams.clone(),
    ));
    // Where streams go: --push-to, else the control plane's topology,
    // followed while the node runs (origins come and go).
    let targets = match flags.push_to {
        t if t.is_empty() => {
            Topology::follow(&flags.control_url, &token, TOPOLOGY_EVERY, |t| {
                t.publish_targets().to_vec()
            })
            .await
        }
        t => tokio::sync::watch::channel(t).1,
    };
    info!(targets = ?*targets.borrow(), "pushing every stream");
    let pushed = Arc::new(RelayPushStats::default());
    // This node's relay URL, as the registry knows it, once registered.
    let own_url = Arc::new(std::sync::OnceLock::<String>::new());
    tokio::spawn(push_all_following(
        hub.clone(),
        targets,
        PushOptions {
            token: token.clone(),
            stats: pushed.clone(),
            batch: Duration::from_millis(flags.relay_batch_ms),
            standby: Some(standby_of(auth.clone(), own_url.clone())),
        },
    ));

    let relay = RelayServer::new(hub.clone(), RelayServerConfig::new(token.clone()));
    let listening = node::Listening {
        http: http.local_addr()?,
        rtmp: Some(rtmp_addr),
        rtmps: rtmps_addr,
        srt: Some(srt_addr),
    };
    let served = relay.clone();
    let url = node::spawn_heartbeat(
        &flags.node,
        flags.data.as_deref(),
        NodeRole::Publish,
        &flags.control_url,
        &token,
        listening,
        hub.clone(),
        {
            let pushed = pushed.clone();
            move || {
                served.stats().bytes_out.load(Ordering::Relaxed)
                    + pushed.bytes_out.load(Ordering::Relaxed)
            }
        },
        0,
        false,
        None,
        |_| {},
    )?;
    let _ = own_url.set(url);
    let http_stats = Arc::new(ugc_proto::http::ServeStats::default());
    let metrics = {
        let (hub, relay, whip) = (hub.clone(), relay.clone(), whip.clone());
        let http_stats = http_stats.clone();
        move || async move {
            let mut m = Exposition::new();
            ugc_core::metrics::write_hub(&mut m, &hub, Instant::now());
            ugc_core::metrics::write_process(&mut m);
            rtmp_stats.write_metrics(&mut m);
            restreams.write_metrics(&mut m);
            srt_stats.write_metrics(&mut m);
            if let Some(w) = &whip {
                w.write_metrics(&mut m);
            }
            relay.write_metrics(&mut m);
            pushed.write_metrics(&mut m);
            ugc_proto::http::ServeStats::write_metrics(&mut m, &[("http", &http_stats)]);
            m.finish()
        }
    };
    let mut app = relay
        .router()
        .route("/metrics", axum::routing::get(metrics));
    if let Some(whip) = &whip {
        app = app.merge(whip.router());
    }
    let http_task = tokio::spawn(ugc_proto::http::serve_until(
        http,
        app,
        Default::default(),
        http_stats,
        std::future::pending(),
    ));
    tokio::select! {
        r = rtmp_task => warn!(result = ?r, "RTMP server stopped"),
        r = srt_task => warn!(result = ?r, "SRT server stopped"),
        r = http_task => warn!(result = ?r, "HTTP server stopped"),
    }
    Ok(())
}

/// The streams this node stands by for: those whose backup publisher is
/// here (the latest publisher the control plane allowed for them). They
/// are pushed as backups, so they never fight a main push at the
/// receivers, and to the main's node too when the control plane sends
/// the main publisher to another node (a second publishing point): that
/// node then switches to this one when its publisher drops, and the
/// receivers when that whole node dies. Until this node knows its own URL,
/// a main's node it cannot tell from itself gets no forward.
/// `Some(id)` while `hub` has `capacity` streams with a publisher
/// attached (main or backup; a stream on its fallback alone has room for
/// its publisher's return, which the control plane lets in anyway).
fn room_check(hub: Hub, capacity: u32, id: String) -> ugc_auth::node::RoomCheck {
    Arc::new(move || {
        let publishing = hub
            .stream_names()
            .iter()
            .filter(|s| s.rendition().is_none())
            .filter_map(|s| hub.stats(s))
            .filter(|st| {
                st.sources
                    .iter()
                    .any(|r| matches!(r, ugc_core::SourceRole::Main | ugc_core::SourceRole::Backup))
            })
            .count();
        (publishing >= usize::try_from(capacity).unwrap_or(usize::MAX)).then(|| id.clone())
    })
}

fn standby_of(auth: Arc<RemoteAuthorizer>, own_url: Arc<std::sync::OnceLock<String>>) -> StandbyOf {
    StandbyOf(Arc::new(move |stream| {
        let main_node = auth.backup_main_node(stream)?;
        let elsewhere = match (&main_node, own_url.get()) {
            (Some(main), Some(own)) => main != own,
            _ => false,
        };
        Some(Standby {
            main_node: main_node.filter(|_| elsewhere),
        })
    }))
}

#[cfg(test)]
mod tests {
    use super::parse_segment_ms;

    #[test]
    fn segment_ms_is_off_or_an_origins_segment_duration() {
        for ok in ["0", "200", "2000", "30000"] {
            assert!(parse_segment_ms(ok).is_ok(), "{ok}");
        }
        for bad in ["1", "199", "30001", "36000000", "-1", "2s"] {
            assert!(parse_segment_ms(bad).is_err(), "{bad}");
        }
    }
}
