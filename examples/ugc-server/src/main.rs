//! `ugc-server`: the all-in-one ugc server (RTMP ingest -> Hub -> HLS origin).
//!
//! Thin wiring only: flags/config, listeners, and the per-stream packager
//! tasks. Everything a library user would need lives in the crates.

mod config;
mod dvr;
mod settings;
mod transcode;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use tokio::net::TcpListener;
use tracing::{info, warn};
use ugc_auth::{ControlConfig, ControlPlane, PublicUrls, TrustedProxies};
use ugc_codec::ladder::stats::LadderRegistry;
use ugc_core::metrics::{Exposition, Kind};
use ugc_core::{Hub, HubConfig};
use ugc_dvr::LiveRegistry;
use ugc_proto::rtmp::restream::Restreams;
use ugc_proto::srt::server::SrtStatsRegistry;

use crate::config::{Cli, Config};

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = Config::load(&cli)?;
    init_logging(&config);
    if let Some(dvr::Command::Dvr {
        command: dvr::DvrCommand::Export(args),
    }) = &cli.command
    {
        return dvr::export_command(&config.dvr, &config.data, args);
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
    let hub = Hub::new(HubConfig {
        publisher_grace: Duration::from_secs(config.publisher_grace_s),
        ..HubConfig::default()
    });
    let registry = Arc::new(LiveRegistry::new());

    let rtmp = TcpListener::bind(config.rtmp)
        .await
        .with_context(|| format!("binding RTMP on {}", config.rtmp))?;
    let http = TcpListener::bind(config.http)
        .await
        .with_context(|| format!("binding HTTP on {}", config.http))?;
    let rtmp_addr = rtmp.local_addr()?;
    let http_addr = http.local_addr()?;
    let host = config.public_host.clone().unwrap_or_else(guess_public_host);

    let mut cc = ControlConfig::new(&data);
    cc.database_url = config.database_url.clone();
    cc.admin_token = std::env::var("UGC_ADMIN_TOKEN")
        .ok()
        .filter(|t| !t.is_empty());
    cc.public_urls = PublicUrls {
        host: host.clone(),
        rtmp_port: rtmp_addr.port(),
        srt_port: config.srt.port(),
        http_port: http_addr.port(),
        ..PublicUrls::default()
    };
    cc.trusted_proxies = TrustedProxies::parse(&config.trusted_proxies)
        .map_err(|e| anyhow::anyhow!("trusted_proxies: {e}"))?;
    cc.hub = Some(hub.clone());
    cc.transcode_profiles = config.transcode.profile_names();
    let control = ControlPlane::open(cc)
        .await
        .context("opening the control plane store")?;
    info!(data = %data.display(), rtmp = %rtmp_addr, http = %http_addr, "ugc-server started");
    let demo = config.demo_stream.as_deref();
    let welcome = control.welcome("ugc-server", demo, config.web.is_some());
    let demo_error = || format!("creating the demo stream {:?}", demo.unwrap_or_default());
    print!("{}", welcome.await.with_context(demo_error)?);

    let archive = dvr::open_archive(&config.dvr, &control)?;
    let s3_uploader = dvr::start_s3(&config.dvr, &data, &archive)?;
    let uploader = s3_uploader.clone().map(|u| tokio::spawn(u.run()));
    let mut packager = config.packager();
    packager.observer = Some(Arc::new(archive.clone()));
    let dvr_settings = tokio::spawn(ugc_dvr::policy::sweep_on_changes(
        archive.clone(),
        control.subscribe_changes(),
    ));
    let ingest_rt = ugc_proto::pacing::paced_runtime(
        config.ingest_tick,
        config.ingest_batch.map(|b| (b, hub.clone())),
    )?;
    let packaging = ingest_rt.spawn(ugc_dvr::package_hub(
        hub.clone(),
        registry.clone(),
        packager,
    ));
    let announcer = tokio::spawn(announce_streams(
        hub.clone(),
        host.clone(),
        http_addr.port(),
    ));
    let authorizer = Arc::new(control.authorizer());
    let rtmp_task = ingest_rt.spawn(ugc_proto::rtmp::server::serve(
        rtmp,
        hub.clone(),
        authorizer.clone(),
        config.rtmp_server(),
    ));
    // SRT ingest (same Authorizer as RTMP; passphrases from the control plane).
    let srt_stats = SrtStatsRegistry::default();
    let srt = tokio::net::UdpSocket::bind(config.srt)
        .await
        .with_context(|| format!("binding SRT on {}", config.srt))?;
    info!(srt = %srt.local_addr()?, "SRT listening");
    let mut srt_config = ugc_proto::srt::server::SrtServerConfig::default();
    srt_config.listener.latency = Duration::from_millis(config.srt_latency_ms);
    let srt_task = tokio::spawn(ugc_proto::srt::server::serve(
        srt,
        hub.clone(),
        authorizer.clone(),
        settings::srt_passphrase(control.clone(), config.streams.clone()),
        srt_config,
        srt_stats.clone(),
    ));
    // Restream: one RTMP(S) push per live stream and target.
    let restreams = Restreams::default();
    let restreamer = tokio::spawn(ugc_proto::rtmp::restream::supervise(
        hub.clone(),
        settings::restream_targets(control.clone(), config.streams.clone()),
        control.subscribe_changes(),
        ugc_proto::rtmp::push::PushConfig::with_ca_file(config.restream_ca_file.as_deref())?,
        restreams.clone(),
    ));
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
    ]);
    let origin = ugc_proto::origin::router_with_config(
        registry.clone(),
        authorizer.clone(),
        client_ip.clone(),
        ugc_proto::origin::OriginConfig {
            low_latency_hub: Some(hub.clone()),
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
            target_duration_ms: config.segment_ms,
            rewind_s: config.dvr.policy.rewind(),
        },
    );
    // `/metrics`: the pipeline's own counters, read when scraped.
    let metrics = control.metrics_router({
        let (hub, restreams, srt, ladders) = (hub.clone(), restreams, srt_stats, ladders.clone());
        let (archive, uploader) = (archive.clone(), s3_uploader);
        move || {
            let now = Instant::now();
            let mut m = Exposition::new();
            m.family("ugc_info", Kind::Gauge, "Always 1; the version as a label.")
                .sample(&[("version", env!("CARGO_PKG_VERSION"))], 1.0);
            ugc_core::metrics::write_hub(&mut m, &hub, now);
            restreams.write_metrics(&mut m);
            srt.write_metrics(&mut m);
            ladders.write_metrics(&mut m, now);
            archive.write_metrics(&mut m);
            if let Some(u) = &uploader {
                u.write_metrics(&mut m);
            }
            m.finish()
        }
    });
    let mut app = axum::Router::new()
        .nest("/api/v1", api)
        .merge(metrics)
        .merge(origin);
    // The relay for other nodes (`GET /relay/v1/...`), only with a node token.
    if let Some(token) = std::env::var("UGC_NODE_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
    {
        let relay = ugc_proto::relay::server::RelayServerConfig::new(token);
        app = app.merge(ugc_proto::relay::server::RelayServer::new(hub.clone(), relay).router());
    }
    // Web panels: `/` creator panel, `/watch/<stream>` viewer page.
    match &config.web {
        Some(dir) => {
            info!(dir = %dir.display(), "web panels");
            app = app.merge(ugc_auth::web::router(dir.clone()));
        }
        None => warn!("web panel files not found: pass --web <repo>/web to serve / and /watch"),
    }
    let app_tls = app.clone();
    let http_task = tokio::spawn(async move {
        axum::serve(
            http,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown_signal())
        .await
    });
    let pruner = tokio::spawn(
        control
            .clone()
            .prune_sessions_every(Duration::from_secs(3600)),
    );
    let transcoder = transcode::spawn(
        hub.clone(),
        control.clone(),
        config.transcode.clone(),
        ladders,
    );
    let https_task = match &config.https {
        Some(https) => Some(spawn_https(https, app_tls).await?),
        None => None,
    };

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
    packaging.abort();
    restreamer.abort();
    dvr_settings.abort();
    if let Some(u) = uploader {
        u.abort();
    }
    pruner.abort();
    transcoder.abort();
    if let Some(t) = https_task {
        t.abort();
    }
    announcer.abort();
    for name in hub.stream_names() {
        hub.end(&name);
    }
    // Let the archive writer finish what is queued.
    let _ =
        tokio::task::spawn_blocking(move || archive.flush_blocking(Duration::from_secs(5))).await;
    Ok(())
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
) -> anyhow::Result<tokio::task::JoinHandle<std::io::Result<()>>> {
    let tls = ugc_proto::tls::server_config(cert, key).context("loading the TLS certificate")?;
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding HTTPS on {addr}"))?;
    info!(https = %listener.local_addr()?, "HTTPS (HTTP/2, HTTP/1.1) listening");
    Ok(tokio::spawn(ugc_proto::tls::serve_tls(listener, tls, app)))
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

/// The address other machines most likely reach us at: the source address
/// of a route to a public address (no packet is sent), else loopback.
fn guess_public_host() -> String {
    std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| {
            s.connect("192.0.2.1:9")?;
            s.local_addr()
        })
        .map(|a| a.ip().to_string())
        .unwrap_or_else(|_| "127.0.0.1".into())
}
