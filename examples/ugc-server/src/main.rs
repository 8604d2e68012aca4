//! `ugc-server`: the all-in-one ugc server (RTMP ingest -> Hub -> HLS origin).
//!
//! Thin wiring only: flags/config, listeners, and the per-stream packager
//! tasks. Everything a library user would need lives in the crates.

mod config;
mod dvr;
mod ingest;
mod metrics;
mod restream;
mod transcode;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tokio::net::TcpListener;
use tracing::{info, warn};
use ugc_auth::{ControlConfig, ControlPlane, PublicUrls, TrustedProxies};
use ugc_core::{Hub, HubConfig};
use ugc_dvr::LiveRegistry;

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
    print_banner(
        &control,
        rtmp_addr,
        http_addr,
        config.demo_stream.as_deref(),
        config.web.is_some(),
    )
    .await?;

    let archive = dvr::open_archive(&config.dvr, &control)?;
    let s3_uploader = dvr::start_s3(&config.dvr, &data, &archive)?;
    let uploader = s3_uploader.clone().map(|u| tokio::spawn(u.run()));
    let mut packager = config.packager();
    packager.observer = Some(Arc::new(archive.clone()));
    let dvr_settings = tokio::spawn(dvr::follow_settings(control.clone(), archive.clone()));
    let ingest_rt = ingest::paced_runtime(
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
    let srt_stats = ugc_proto::srt::server::SrtStatsRegistry::default();
    let (srt_addr, srt_serve) = ingest::bind_srt(
        &config,
        hub.clone(),
        authorizer.clone(),
        control.clone(),
        srt_stats.clone(),
    )
    .await?;
    info!(srt = %srt_addr, "SRT listening");
    let srt_task = tokio::spawn(srt_serve);
    // Restream: one RTMP(S) push per live stream and target.
    let restreams = restream::Restreams::default();
    let restreamer = tokio::spawn(restream::supervise(
        hub.clone(),
        control.clone(),
        config.streams.clone(),
        restream::push_config(config.restream_ca_file.as_deref())?,
        restreams.clone(),
    ));
    let client_ip: ugc_proto::origin::ClientIp = {
        let control = control.clone();
        Arc::new(move |peer, headers: &axum::http::HeaderMap| {
            let xff = headers
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|v| v.to_str().ok());
            control.client_ip(peer, xff)
        })
    };
    let transcode_stats = transcode::TranscodeStats::default();
    let api = control.router_with(vec![restream::stats_api(
        control.clone(),
        restreams.clone(),
        srt_stats.clone(),
        transcode_stats.clone(),
    )]);
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
            client_ip: client_ip.clone(),
            target_duration_ms: config.segment_ms,
            rewind_s: dvr::rewind_policy(&config.dvr),
        },
    );
    let metrics = metrics::router(metrics::Sources {
        hub: hub.clone(),
        control: control.clone(),
        client_ip,
        restreams: restreams.clone(),
        srt: srt_stats.clone(),
        transcode: transcode_stats.clone(),
        archive: archive.clone(),
        uploader: s3_uploader,
    });
    let mut app = axum::Router::new()
        .nest("/api/v1", api)
        .merge(metrics)
        .merge(origin);
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
    let pruner = tokio::spawn(prune_sessions(control.clone()));
    let transcoder = transcode::spawn(
        hub.clone(),
        control.clone(),
        config.transcode.clone(),
        transcode_stats,
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

/// Drops expired play sessions now and then.
async fn prune_sessions(control: ControlPlane) {
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tick.tick().await;
        if let Err(e) = control.prune_sessions().await {
            warn!(error = %e, "pruning play sessions");
        }
    }
}

async fn print_banner(
    control: &ControlPlane,
    rtmp: SocketAddr,
    http: SocketAddr,
    demo: Option<&str>,
    panel: bool,
) -> anyhow::Result<()> {
    let urls = control.public_urls().clone();
    let host = &urls.host;
    let rtmp_port = rtmp.port();
    let server = if rtmp_port == 1935 {
        format!("rtmp://{host}/live")
    } else {
        format!("rtmp://{host}:{rtmp_port}/live")
    };
    let http_base = format!("http://{host}:{}", http.port());
    println!();
    println!("  ugc-server is running");
    println!("  Control API:  {http_base}/api/v1  (OpenAPI: {http_base}/api/v1/openapi.json)");
    if panel {
        println!("  Creator panel: {http_base}/  (sign in with the admin or a creator token)");
    }
    if let Some(token) = control.take_generated_admin_token() {
        println!("  Admin token (shown once, stored hashed; set UGC_ADMIN_TOKEN to choose it):");
        println!("    {token}");
    }
    if let Some(name) = demo {
        let (stream, key) = control
            .ensure_demo_stream(name)
            .await
            .with_context(|| format!("creating the demo stream {name:?}"))?;
        println!("  Demo stream \"{}\":", stream.name);
        println!("    OBS:        Settings > Stream > Custom");
        println!("      Server:     {server}");
        println!("      Stream key: {key}");
        println!(
            "    ffmpeg:     ffmpeg -re -i input.mp4 -c copy -f flv {}",
            urls.rtmp(&key)
        );
        println!("    Watch:      {http_base}/watch/{}", stream.name);
        println!("    HLS:        {}", urls.play(&stream.name));
    } else {
        println!("  Create a stream: POST {http_base}/api/v1/streams {{\"name\": \"...\"}}");
        println!("  then publish to {server} with the returned key.");
    }
    println!();
    Ok(())
}
