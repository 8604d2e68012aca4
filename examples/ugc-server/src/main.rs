//! `ugc-server`: the all-in-one ugc server (RTMP ingest -> Hub -> HLS origin).
//!
//! Thin wiring only: flags/config, listeners, and the per-stream packager
//! tasks. Everything a library user would need lives in the crates.

#[path = "../../role-common/audio.rs"]
mod audio;
mod config;
mod dvr;
mod plan;
#[path = "../../role-common/webrtc.rs"]
mod webrtc;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tracing::{info, warn};
use ugc_auth::{ControlConfig, ControlPlane, PublicUrls, TrustedProxies, lookup};
use ugc_codec::ladder::LadderProfiles;
use ugc_codec::ladder::stats::LadderRegistry;
use ugc_core::Hub;
use ugc_core::metrics::{Exposition, Kind};
use ugc_dvr::LiveRegistry;
use ugc_proto::rtmp::restream::Restreams;
use ugc_proto::srt::server::SrtStatsRegistry;

use crate::config::Config;

fn main() -> anyhow::Result<()> {
    let (cli, config) = Config::from_args(std::env::args_os())?;
    init_logging(&config);
    if let Some(dvr::Command::Dvr {
        command: dvr::DvrCommand::Export(args),
    }) = &cli.command
    {
        return dvr::export_command(&config.dvr, args);
    }
    if let Some(dvr::Command::Plan(args)) = &cli.command {
        return plan::plan_command(args);
    }
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = std::env::var("UGC_WORKER_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| *n > 0)
    {
        builder.worker_threads(n);
    }
    let runtime = builder.enable_all().thread_name("ugc").build()?;
    runtime.block_on(run(config))
}

fn init_logging(config: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_env("UGC_LOG").unwrap_or_else(|_| EnvFilter::new(config.log.clone()));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

async fn run(config: Config) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data)
        .with_context(|| format!("creating data dir {}", config.data.display()))?;
    let data = config.data.canonicalize()?;
    // A publisher that leaves keeps its stream for the grace time (a
    // reconnect continues it); then the stream ends.
    let hub = Hub::new(config.hub.clone());
    let registry = Arc::new(LiveRegistry::new());

    let rtmp = ugc_proto::http::bind(config.rtmp)
        .await
        .with_context(|| format!("binding RTMP on {}", config.rtmp))?;
    let http = ugc_proto::http::bind(config.http)
        .await
        .with_context(|| format!("binding HTTP on {}", config.http))?;
    let rtmps = match config.rtmps {
        Some(addr) => Some(
            ugc_proto::http::bind(addr)
                .await
                .with_context(|| format!("binding RTMPS on {addr}"))?,
        ),
        None => None,
    };
    let rtmp_addr = rtmp.local_addr()?;
    let http_addr = http.local_addr()?;
    let host = config
        .public_host
        .clone()
        .unwrap_or_else(PublicUrls::guess_host);

    let mut cc = ControlConfig::new(&data);
    cc.database_url = config.database_url.clone();
    cc.admin_token = std::env::var("UGC_ADMIN_TOKEN")
        .ok()
        .filter(|t| !t.is_empty());
    // Media nodes (ugc-publish, ugc-transcode, ugc-origin) present it to
    // the control API, which tells them where streams go.
    cc.node_token = std::env::var("UGC_NODE_TOKEN")
        .ok()
        .filter(|t| !t.is_empty());
    cc.topology = config.cluster.clone();
    cc.public_urls = PublicUrls {
        host: host.clone(),
        rtmp_port: rtmp_addr.port(),
        rtmps_port: rtmps
            .as_ref()
            .and_then(|l| l.local_addr().ok())
            .map(|a| a.port()),
        srt_port: config.srt.port(),
        http_port: http_addr.port(),
        ..PublicUrls::default()
    };
    cc.trusted_proxies = TrustedProxies::parse(&config.trusted_proxies)
        .map_err(|e| anyhow::anyhow!("trusted_proxies: {e}"))?;
    // The edge in front carries many viewers on one address.
    let mut http_limits = config.http_limits.clone();
    http_limits.ip_cap_exempt = Some({
        let proxies = cc.trusted_proxies.clone();
        Arc::new(move |ip| proxies.is_trusted(ip))
    });
    cc.hub = Some(hub.clone());
    let qoe_config = ugc_core::qoe::QoeConfig {
        player_interval: config.qoe_interval,
        ..ugc_core::qoe::QoeConfig::default()
    };
    let (viewers, count_playlists) = config
        .viewer_count
        .counter(ugc_core::viewers::ViewerConfig {
            max_sessions_per_address: config.viewer_sessions_per_address,
            window: qoe_config.viewer_window(),
            ..ugc_core::viewers::ViewerConfig::default()
        });
    // Players' QoE beacons, which count viewers too.
    let qoe = Arc::new(ugc_core::qoe::QoeCollector::new(
        qoe_config,
        viewers.clone(),
    ));
    cc.viewers = viewers.clone();
    cc.transcode_profiles = config.ladders.profile_names();
    let control = ControlPlane::open(cc)
        .await
        .context("opening the control plane store")?;
    info!(data = %data.display(), rtmp = %rtmp_addr, http = %http_addr, "ugc-server started");
    let demo = config.demo_stream.as_deref();
    let welcome = control.welcome("ugc-server", demo, config.web.is_some());
    let demo_error = || format!("creating the demo stream {:?}", demo.unwrap_or_default());
    print!("{}", welcome.await.with_context(demo_error)?);

    // Each stream's own source timeout, where it has one.
    hub.set_source_timeouts(Arc::new(lookup::source_timeout(
        control.clone(),
        config.streams.clone(),
    )));
    let dvr = config.dvr.open(lookup::dvr_hours(control.clone()))?;
    let (archive, s3_uploader) = (dvr.archive, dvr.uploader);
    // Tasks that run until the server stops.
    let mut background = Vec::new();
    if let Some(u) = &s3_uploader {
        background.push(tokio::spawn(u.clone().run()).abort_handle());
    }
    // Failovers (and later other events) to the operator's receivers.
    let webhooks = match config.webhooks.clone() {
        Some(w) => Some(ugc_auth::webhook::Webhooks::start(w)?),
        None => None,
    };
    if let Some(w) = &webhooks {
        let forward = ugc_auth::webhook::forward_source_switches(&hub, w.clone());
        background.push(tokio::spawn(forward).abort_handle());
    }
    let mut packager = config.packager.clone();
    packager.observer = Some(Arc::new(archive.clone()));
    packager.transform = audio::opus_to_aac(config.opus_to_aac);
    let dvr_settings =
        ugc_dvr::policy::sweep_on_changes(archive.clone(), control.subscribe_changes());
    background.push(tokio::spawn(dvr_settings).abort_handle());
    let ingest_rt = ugc_proto::pacing::paced_runtime(
        config.ingest_tick,
        config.rtmp_server.batch_reads.map(|b| (b, hub.clone())),
    )?;
    let packaging = ugc_dvr::package_hub(hub.clone(), registry.clone(), packager);
    background.push(ingest_rt.spawn(packaging).abort_handle());
    let announcer = announce_streams(hub.clone(), host.clone(), http_addr.port());
    background.push(tokio::spawn(announcer).abort_handle());
    let authorizer = Arc::new(control.authorizer());
    let rtmp_stats = Arc::new(ugc_proto::rtmp::server::RtmpServerStats::default());
    let rtmp_task = ingest_rt.spawn(ugc_proto::rtmp::server::serve_with_stats(
        rtmp,
        hub.clone(),
        authorizer.clone(),
        config.rtmp_server.clone(),
        rtmp_stats.clone(),
    ));
    // RTMPS: the same server behind TLS with the HTTPS certificate.
    if let (Some(listener), Some((_, cert, key))) = (rtmps, &config.https) {
        let tls = ugc_proto::tls::rtmp_server_config(cert, key)
            .context("loading the TLS certificate for RTMPS")?;
        info!(rtmps = %listener.local_addr()?, "RTMPS listening");
        let rtmps_task = ingest_rt.spawn(ugc_proto::rtmp::server::serve_with_stats(
            listener,
            hub.clone(),
            authorizer.clone(),
            ugc_proto::rtmp::server::RtmpServerConfig {
                tls: Some(tls),
                ..config.rtmp_server.clone()
            },
            rtmp_stats.clone(),
        ));
        background.push(rtmps_task.abort_handle());
    }
    // SRT ingest (same Authorizer as RTMP; passphrases from the control plane).
    let srt_stats = SrtStatsRegistry::default();
    let srt = tokio::net::UdpSocket::bind(config.srt)
        .await
        .with_context(|| format!("binding SRT on {}", config.srt))?;
    info!(srt = %srt.local_addr()?, "SRT listening");
    let srt_task = tokio::spawn(ugc_proto::srt::server::serve(
        srt,
        hub.clone(),
        authorizer.clone(),
        Arc::new(lookup::srt_passphrase(
            control.clone(),
            config.streams.clone(),
        )),
        config.srt_server.clone(),
        srt_stats.clone(),
    ));
    // Restream: one RTMP(S) push per live stream and target.
    let restreams = Restreams::default();
    let restreamer = ugc_proto::rtmp::restream::supervise(
        hub.clone(),
        Arc::new(lookup::restream_targets(
            control.clone(),
            config.streams.clone(),
        )),
        control.subscribe_changes(),
        ugc_proto::rtmp::push::PushConfig::with_ca_file(config.restream_ca_file.as_deref())?,
        restreams.clone(),
    );
    background.push(tokio::spawn(restreamer).abort_handle());
    let client_ip = control.client_ip_resolver();
    let ladders = LadderRegistry::default();
    let api = control.router_with(vec![
        control.admin_json_route(
            "/stats/restream",
            "Restream pushes of live streams",
            Restreams::json_schema(),
            clone_fn(&restreams, Restreams::json),
        ),
        control.admin_json_route(
            "/stats/srt",
            "SRT publishers",
            SrtStatsRegistry::json_schema(),
            clone_fn(&srt_stats, SrtStatsRegistry::json),
        ),
        control.admin_json_route(
            "/stats/transcode",
            "Transcoding ladders",
            LadderRegistry::json_schema(),
            clone_fn(&ladders, |l| l.json(Instant::now())),
        ),
        // Recorded events: their creator (or the admin) lists, plays,
        // downloads and deletes them; URLs on this node.
        ugc_auth::ApiExtension {
            router: ugc_proto::recordings::router(archive.clone(), {
                let (cp, base) = (control.clone(), control.public_urls().http());
                Arc::new(move |headers, name| {
                    let (cp, base) = (cp.clone(), base.clone());
                    Box::pin(
                        async move { cp.authorize_owner(&headers, &name).await.map(|()| base) },
                    )
                })
            }),
            paths: ugc_proto::recordings::openapi_paths(),
        },
    ]);
    // WHIP and WHEP: signalling on the HTTP port, media on UDP sockets.
    let whip = match &config.whip {
        Some(listen) => {
            let wiring = webrtc::Wiring {
                hub: hub.clone(),
                auth: authorizer.clone(),
                client_ip: client_ip.clone(),
                config: ugc_proto::whip::server::WhipConfig {
                    // A keyframe per segment (browsers send them only when
                    // asked).
                    keyframe_interval: Some(Duration::from_millis(u64::from(
                        config.packager.segmenter.target_duration_ms,
                    ))),
                    public_ip: listen.public_ip,
                    ice_servers: listen.ice_servers.clone(),
                    play_transform: audio::aac_to_opus(config.aac_to_opus),
                    av1: listen.av1,
                    ..Default::default()
                },
                tcp: listen.tcp,
            };
            webrtc::start_at(
                "whip-udp",
                listen.addr,
                listen.explicit,
                &listen.ips,
                wiring,
            )
            .await?
        }
        None => None,
    };
    let origin = ugc_proto::origin::router_with_config(
        registry.clone(),
        authorizer.clone(),
        client_ip.clone(),
        ugc_proto::origin::OriginConfig {
            low_latency_hub: Some(hub.clone()),
            max_held_requests: config.held_limits.total,
            max_held_per_client: config.held_limits.per_client,
            viewers: viewers.clone().filter(|_| count_playlists),
            qoe: Some(qoe.clone()),
            ..Default::default()
        },
    );
    let origin = ugc_proto::dvr::layer(
        origin,
        ugc_proto::dvr::DvrOrigin {
            archive: archive.clone(),
            registry: registry.clone(),
            auth: authorizer,
            client_ip,
            target_duration_ms: config.packager.segmenter.target_duration_ms,
            rewind_s: config.dvr.policy.rewind(),
        },
    );
    // The relay for other nodes (`GET /relay/v1/...`), only with a node token.
    let relay = std::env::var("UGC_NODE_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
        .map(|token| {
            let config = ugc_proto::relay::server::RelayServerConfig::new(token);
            ugc_proto::relay::server::RelayServer::new(hub.clone(), config)
        });
    // `/metrics`: the pipeline's own counters, read when scraped.
    let (http_stats, https_stats) = (
        Arc::new(ugc_proto::http::ServeStats::default()),
        Arc::new(ugc_proto::http::ServeStats::default()),
    );
    let metrics = control.metrics_router({
        let (hub, restreams, srt, ladders) = (hub.clone(), restreams, srt_stats, ladders.clone());
        let whip = whip.clone();
        let (http_stats, https_stats) = (http_stats.clone(), https_stats.clone());
        let (archive, uploader, relay) = (archive.clone(), s3_uploader, relay.clone());
        move || {
            let now = Instant::now();
            let mut m = Exposition::new();
            m.family("ugc_info", Kind::Gauge, "Always 1; the version as a label.")
                .sample(&[("version", env!("CARGO_PKG_VERSION"))], 1.0);
            ugc_core::metrics::write_hub(&mut m, &hub, now);
            ugc_core::metrics::write_process(&mut m);
            restreams.write_metrics(&mut m);
            rtmp_stats.write_metrics(&mut m);
            srt.write_metrics(&mut m);
            if let Some(w) = &whip {
                w.write_metrics(&mut m);
            }
            ladders.write_metrics(&mut m, now);
            archive.write_metrics(&mut m);
            ugc_dvr::live::PART_STATS.write_metrics(&mut m);
            ugc_proto::http::ServeStats::write_metrics(
                &mut m,
                &[("http", &http_stats), ("https", &https_stats)],
            );
            if let Some(u) = &uploader {
                u.write_metrics(&mut m);
            }
            if let Some(r) = &relay {
                r.write_metrics(&mut m);
            }
            if let Some(w) = &webhooks {
                w.stats().write_metrics(&mut m);
            }
            if let Some(v) = &viewers {
                v.write_metrics(&mut m, now);
            }
            qoe.write_metrics(&mut m, now);
            m.finish()
        }
    });
    let mut app = axum::Router::new()
        .nest("/api/v1", api)
        .merge(metrics)
        .merge(origin);
    if let Some(relay) = &relay {
        app = app.merge(relay.router());
    }
    if let Some(whip) = &whip {
        app = app.merge(whip.router());
    }
    // Web panels: `/` creator panel, `/watch/<stream>` viewer page.
    match &config.web {
        Some(dir) => {
            info!(dir = %dir.display(), "web panels");
            app = app.merge(ugc_auth::web::router_with(
                dir.clone(),
                Some(control.media_origins()),
            ));
        }
        None => warn!("web panel files not found: pass --web <repo>/web to serve / and /watch"),
    }
    let app_tls = app.clone();
    let http_task = tokio::spawn(ugc_proto::http::serve_until(
        http,
        app,
        http_limits.clone(),
        http_stats,
        shutdown_signal(),
    ));
    let pruner = control.clone().prune_every(Duration::from_secs(3600));
    background.push(tokio::spawn(pruner).abort_handle());
    // The panel's charts: each stream's last 15 minutes.
    background.push(tokio::spawn(control.clone().sample_history_every()).abort_handle());
    let transcoder = spawn_ladders(&hub, &control, config.ladders.clone(), ladders);
    spawn_fallback(
        &hub,
        config.hub.publisher_grace,
        config.fallback.clone(),
        config.fallback_dir.clone(),
        Arc::new(lookup::fallback(control.clone(), config.streams.clone())),
    );
    background.push(transcoder.abort_handle());
    if let Some(https) = &config.https {
        background.push(
            spawn_https(https, app_tls, http_limits.clone(), https_stats)
                .await?
                .abort_handle(),
        );
    }

    tokio::select! {
        r = http_task => {
            match r {
                Ok(Ok(())) => info!("shutting down"),
                Ok(Err(e)) => warn!(error = %e, "HTTP server failed"),
                Err(e) => warn!(error = %e, "HTTP task failed"),
            }
        }
        r = rtmp_task => {
            warn!(result = ?r.map(|r| r.map_err(|e| e.to_string())), "RTMP server stopped");
        }
        r = srt_task => {
            warn!(result = ?r.map(|r| r.map_err(|e| e.to_string())), "SRT server stopped");
        }
    }
    background.iter().for_each(tokio::task::AbortHandle::abort);
    for name in hub.stream_names() {
        hub.end(&name);
    }
    // Let the archive writer finish what is queued.
    let _ =
        tokio::task::spawn_blocking(move || archive.flush_blocking(Duration::from_secs(5))).await;
    Ok(())
}

/// One ladder per live stream whose transcode profile is not `off`;
/// settings changes reach running streams.
#[cfg(feature = "ffmpeg")]
fn spawn_ladders(
    hub: &Hub,
    control: &ControlPlane,
    ladders: LadderProfiles,
    registry: LadderRegistry,
) -> tokio::task::JoinHandle<()> {
    let profile_of = lookup::transcode_profile(control.clone(), ladders.default);
    tokio::spawn(ugc_codec::transcode::supervise(
        hub.clone(),
        ladders.profiles,
        Arc::new(profile_of),
        control.subscribe_changes(),
        registry,
    ))
}

/// A stream's own fallback setting (`None`: the server's).
type FallbackOf = Arc<dyn Fn(&ugc_core::StreamPath) -> Option<String> + Send + Sync>;

/// Loops each stream's fallback (its own setting, `own`, else the
/// server's `default`: a slate, a file, a URL) into every stream left
/// without a publisher, for the publisher grace (see
/// `ugc_codec::transcode::fallback`).
#[cfg(feature = "ffmpeg")]
fn spawn_fallback(
    hub: &Hub,
    hold: std::time::Duration,
    default: config::Fallback,
    dir: Option<std::path::PathBuf>,
    own: FallbackOf,
) {
    ugc_codec::transcode::fallback::spawn(
        hub,
        ugc_codec::transcode::fallback::FallbackSettings {
            default,
            dir,
            own,
            config: ugc_core::fallback::FallbackConfig {
                hold,
                ..Default::default()
            },
        },
    );
}

/// Without the `ffmpeg` feature there is nothing to encode a slate with.
#[cfg(not(feature = "ffmpeg"))]
fn spawn_fallback(
    _: &Hub,
    _: std::time::Duration,
    _: config::Fallback,
    _: Option<std::path::PathBuf>,
    _: FallbackOf,
) {
    tracing::info!("built without ffmpeg: no fallback slate");
}

/// Without the `ffmpeg` feature: say once that transcoding is off.
#[cfg(not(feature = "ffmpeg"))]
fn spawn_ladders(
    _: &Hub,
    _: &ControlPlane,
    ladders: LadderProfiles,
    _: LadderRegistry,
) -> tokio::task::JoinHandle<()> {
    if ladders.default != "off" || ladders.profiles.len() > 1 {
        warn!("built without the `ffmpeg` feature: transcoding is unavailable");
    }
    tokio::spawn(async {})
}

/// `f(&value)` on a clone of `value`, for a route that reads it.
fn clone_fn<T: Clone, R, F: Fn(&T) -> R + Clone>(
    value: &T,
    f: F,
) -> impl Fn() -> R + Clone + use<T, R, F> {
    let value = value.clone();
    move || f(&value)
}

/// Binds the HTTPS listener (HTTP/2 + HTTP/1.1 over TLS) and serves `app`.
async fn spawn_https(
    (addr, cert, key): &(SocketAddr, std::path::PathBuf, std::path::PathBuf),
    app: axum::Router,
    limits: ugc_proto::http::ServeConfig,
    stats: Arc<ugc_proto::http::ServeStats>,
) -> anyhow::Result<tokio::task::JoinHandle<std::io::Result<()>>> {
    let tls = ugc_proto::tls::server_config(cert, key).context("loading the TLS certificate")?;
    let listener = ugc_proto::http::bind(*addr)
        .await
        .with_context(|| format!("binding HTTPS on {addr}"))?;
    info!(https = %listener.local_addr()?, "HTTPS (HTTP/2, HTTP/1.1) listening");
    Ok(tokio::spawn(ugc_proto::tls::serve_tls_with(
        listener, tls, app, limits, stats,
    )))
}

/// Logs the play URL of every new stream.
async fn announce_streams(hub: Hub, host: String, http_port: u16) {
    let mut watch = hub.watch();
    while let Some(name) = watch.next().await {
        let play = format!("http://{host}:{http_port}/{name}/index.m3u8");
        info!(stream = %name, %play, "new stream");
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
