//! Configuration: defaults < TOML file < environment < flags.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Parser;
use serde::Deserialize;

/// All-in-one ugc streaming server: RTMP in, HLS out.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    /// TOML configuration file (keys as the long flags, with `_`).
    #[arg(long, env = "UGC_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Data directory (archive, database, logs). Nothing is written outside it.
    #[arg(long, env = "UGC_DATA", global = true)]
    pub data: Option<PathBuf>,
    /// RTMP listen address.
    #[arg(long, env = "UGC_RTMP")]
    pub rtmp: Option<SocketAddr>,
    /// HTTP listen address (HLS origin, API, panels).
    #[arg(long, env = "UGC_HTTP")]
    pub http: Option<SocketAddr>,
    /// SRT listen address (UDP; publishers send MPEG-TS).
    #[arg(long, env = "UGC_SRT")]
    pub srt: Option<SocketAddr>,
    /// SRT receive latency in milliseconds (3-4x the publisher's RTT).
    #[arg(long, env = "UGC_SRT_LATENCY_MS")]
    pub srt_latency_ms: Option<u64>,
    /// Host name or address printed in publish and play URLs.
    #[arg(long, env = "UGC_PUBLIC_HOST")]
    pub public_host: Option<String>,
    /// Target HLS segment duration in milliseconds (segments cut at keyframes).
    #[arg(long, env = "UGC_SEGMENT_MS")]
    pub segment_ms: Option<u32>,
    /// `#EXT-X-TARGETDURATION` in seconds, fixed for each stream's life
    /// (default 0: the segment duration or the encoder's first GOP when
    /// longer). Raise it for encoders whose keyframe interval varies.
    #[arg(long, env = "UGC_TARGET_DURATION_S")]
    pub target_duration_s: Option<u32>,
    /// Segments in the live playlist window.
    #[arg(long, env = "UGC_WINDOW_SEGMENTS")]
    pub window_segments: Option<usize>,
    /// LL-HLS part target in milliseconds (default 200; 0 turns LL-HLS off:
    /// classic HLS, one fragment per segment).
    #[arg(long, env = "UGC_PART_MS")]
    pub part_ms: Option<u32>,
    /// HTTPS listen address (HLS origin, API; HTTP/2 + HTTP/1.1 by ALPN).
    /// Needs --tls-cert and --tls-key.
    #[arg(long, env = "UGC_HTTPS")]
    pub https: Option<SocketAddr>,
    /// PEM certificate chain for --https.
    #[arg(long, env = "UGC_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --https.
    #[arg(long, env = "UGC_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Seconds a stream survives without a publisher (a reconnect continues it).
    #[arg(long, env = "UGC_PUBLISHER_GRACE_S")]
    pub publisher_grace_s: Option<u64>,
    /// RTMP ingest and packaging run on a thread of their own that wakes at
    /// most once per tick of this many milliseconds and then takes every
    /// socket event that arrived (default 10; 0: the shared runtime, woken
    /// for every event). Fewer wakeups for at most a tick of latency.
    #[arg(long, env = "UGC_INGEST_TICK_MS")]
    pub ingest_tick_ms: Option<u64>,
    /// RTMP read batching in ms for streams no viewer plays at low latency
    /// (LL-HLS parts): a publisher is read about once per interval, in
    /// fewer, larger reads, and while no stream is played at low latency
    /// the ingest tick relaxes to it (default 40; 0: read as data arrives).
    #[arg(long, env = "UGC_INGEST_BATCH_MS")]
    pub ingest_batch_ms: Option<u64>,
    /// Log filter (tracing `EnvFilter` syntax); `UGC_LOG` overrides.
    #[arg(long)]
    pub log: Option<String>,
    /// Control-plane database: `postgres://...`; default SQLite in the data dir.
    #[arg(long, env = "UGC_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Make sure a stream of this name exists and print how to publish and watch it.
    #[arg(long, env = "UGC_DEMO_STREAM")]
    pub demo_stream: Option<String>,
    /// Directory of the web panels (`index.html`, `watch.html`, `assets/`,
    /// `dist/`); default `./web`, else the source tree's `web/`.
    #[arg(long, env = "UGC_WEB")]
    pub web: Option<PathBuf>,
    /// Transcode profile (`off`, `default` or a `[transcode.profiles]` name)
    /// of streams the control plane has no setting for.
    #[arg(long, env = "UGC_TRANSCODE_DEFAULT")]
    pub transcode_default: Option<String>,
    /// DVR archive depth (hours) of streams whose own `dvr_hours` is 0; 0 = off.
    #[arg(long, env = "UGC_DVR_HOURS")]
    pub dvr_hours: Option<u32>,
    /// A tool to run instead of the server.
    #[command(subcommand)]
    pub command: Option<crate::dvr::Command>,
}

/// `[streams.<name>]` in the config file: per-stream settings that apply
/// when the control plane has none for that field.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamOverrides {
    /// SRT passphrase (10..=79 characters).
    pub srt_passphrase: Option<String>,
    /// Restream targets (`rtmp://` / `rtmps://` URLs with the key).
    #[serde(default)]
    pub restream: Vec<String>,
}

/// The TOML file: every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data: Option<PathBuf>,
    rtmp: Option<SocketAddr>,
    http: Option<SocketAddr>,
    public_host: Option<String>,
    segment_ms: Option<u32>,
    target_duration_s: Option<u32>,
    window_segments: Option<usize>,
    part_ms: Option<u32>,
    https: Option<SocketAddr>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    publisher_grace_s: Option<u64>,
    ingest_tick_ms: Option<u64>,
    ingest_batch_ms: Option<u64>,
    log: Option<String>,
    max_rtmp_connections: Option<usize>,
    database_url: Option<String>,
    demo_stream: Option<String>,
    web: Option<PathBuf>,
    /// Proxies (addresses or CIDR nets) whose `X-Forwarded-For` is believed.
    trusted_proxies: Option<Vec<String>>,
    /// Ladder profiles (see `transcode.rs`).
    transcode: Option<crate::transcode::TranscodeFile>,
    srt: Option<SocketAddr>,
    srt_latency_ms: Option<u64>,
    /// Per-stream settings until/besides the control plane: `[streams.<name>]`.
    #[serde(default)]
    streams: std::collections::BTreeMap<String, StreamOverrides>,
    /// Extra trusted CA certificates (PEM) for `rtmps://` restream targets.
    restream_ca_file: Option<PathBuf>,
    /// `[dvr]`: archive, retention, S3 tier.
    dvr: Option<crate::dvr::DvrFileConfig>,
    /// `[http_limits]`: what slow, idle and greedy HTTP clients may hold.
    #[serde(default)]
    http_limits: HttpLimits,
}

/// `[http_limits]` in the config file; defaults in `ugc_proto::http`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpLimits {
    header_read_timeout_s: Option<u64>,
    idle_timeout_s: Option<u64>,
    max_connections: Option<usize>,
    max_connections_per_ip: Option<usize>,
}

impl HttpLimits {
    fn serve_config(self) -> anyhow::Result<ugc_proto::http::ServeConfig> {
        let mut c = ugc_proto::http::ServeConfig::default();
        let secs = |s: u64, what: &str| {
            anyhow::ensure!(s > 0, "http_limits.{what} must be at least 1 s");
            Ok(std::time::Duration::from_secs(s))
        };
        if let Some(s) = self.header_read_timeout_s {
            c.header_read_timeout = secs(s, "header_read_timeout_s")?;
        }
        if let Some(s) = self.idle_timeout_s {
            c.idle_timeout = secs(s, "idle_timeout_s")?;
        }
        c.max_connections = self.max_connections.unwrap_or(c.max_connections);
        c.max_connections_per_ip = self
            .max_connections_per_ip
            .unwrap_or(c.max_connections_per_ip);
        Ok(c)
    }
}

/// The effective configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub data: PathBuf,
    pub rtmp: SocketAddr,
    pub http: SocketAddr,
    pub public_host: Option<String>,
    pub segment_ms: u32,
    /// Fixed `#EXT-X-TARGETDURATION`; `None`: from the segments.
    pub target_duration_s: Option<u32>,
    pub window_segments: usize,
    /// LL-HLS part target; `None` is classic HLS.
    pub part_ms: Option<u32>,
    /// HTTPS listener with its certificate and key.
    pub https: Option<(SocketAddr, PathBuf, PathBuf)>,
    pub publisher_grace_s: u64,
    /// Ingest tick; `None`: wake for every event.
    pub ingest_tick: Option<std::time::Duration>,
    /// RTMP read batching while no viewer wants low latency; `None`: off.
    pub ingest_batch: Option<std::time::Duration>,
    pub log: String,
    pub max_rtmp_connections: Option<usize>,
    pub database_url: Option<String>,
    pub demo_stream: Option<String>,
    pub trusted_proxies: Vec<String>,
    /// The web panels' directory, if one was given or found.
    pub web: Option<PathBuf>,
    pub transcode: crate::transcode::TranscodeConfig,
    pub srt: SocketAddr,
    pub srt_latency_ms: u64,
    pub streams: std::collections::BTreeMap<String, StreamOverrides>,
    pub restream_ca_file: Option<PathBuf>,
    pub dvr: crate::dvr::DvrConfig,
    /// Limits of the HTTP and HTTPS listeners.
    pub http_limits: ugc_proto::http::ServeConfig,
}

impl Config {
    pub fn load(cli: &Cli) -> anyhow::Result<Config> {
        let file = match &cli.config {
            Some(p) => read_file(p)?,
            None => FileConfig::default(),
        };
        let segment_ms = cli.segment_ms.or(file.segment_ms).unwrap_or(2000);
        anyhow::ensure!(
            (200..=30_000).contains(&segment_ms),
            "segment_ms must be within 200..=30000, got {segment_ms}"
        );
        let target_duration_s = cli
            .target_duration_s
            .or(file.target_duration_s)
            .unwrap_or(0);
        anyhow::ensure!(
            target_duration_s == 0 || u64::from(target_duration_s) * 1000 >= u64::from(segment_ms),
            "target_duration_s must be 0 (automatic) or at least segment_ms, got {target_duration_s}"
        );
        anyhow::ensure!(
            target_duration_s <= 60,
            "target_duration_s must be at most 60"
        );
        let window_segments = cli.window_segments.or(file.window_segments).unwrap_or(6);
        anyhow::ensure!(
            (2..=100).contains(&window_segments),
            "window_segments must be within 2..=100"
        );
        let part_ms = cli.part_ms.or(file.part_ms).unwrap_or(200);
        anyhow::ensure!(
            part_ms == 0 || (50..=segment_ms).contains(&part_ms),
            "part_ms must be 0 (off) or within 50..=segment_ms, got {part_ms}"
        );
        let https = match (
            cli.https.or(file.https),
            cli.tls_cert.clone().or(file.tls_cert),
            cli.tls_key.clone().or(file.tls_key),
        ) {
            (Some(addr), Some(cert), Some(key)) => Some((addr, cert, key)),
            (None, None, None) => None,
            _ => anyhow::bail!("https, tls_cert and tls_key go together"),
        };
        let data = cli
            .data
            .clone()
            .or(file.data)
            .unwrap_or_else(|| PathBuf::from("data"));
        let dvr = crate::dvr::DvrConfig::new(file.dvr, cli.dvr_hours, &data);
        let http_limits = file.http_limits.serve_config()?;
        Ok(Config {
            http_limits,
            part_ms: (part_ms > 0).then_some(part_ms),
            https,
            data,
            dvr,
            rtmp: cli
                .rtmp
                .or(file.rtmp)
                .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 1935))),
            http: cli
                .http
                .or(file.http)
                .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 8080))),
            public_host: cli.public_host.clone().or(file.public_host),
            segment_ms,
            target_duration_s: (target_duration_s > 0).then_some(target_duration_s),
            window_segments,
            publisher_grace_s: cli
                .publisher_grace_s
                .or(file.publisher_grace_s)
                .unwrap_or(20),
            ingest_tick: Some(cli.ingest_tick_ms.or(file.ingest_tick_ms).unwrap_or(10))
                .filter(|ms| *ms > 0)
                .map(|ms| std::time::Duration::from_millis(ms.min(100))),
            ingest_batch: Some(cli.ingest_batch_ms.or(file.ingest_batch_ms).unwrap_or(40))
                .filter(|ms| *ms > 0)
                .map(|ms| std::time::Duration::from_millis(ms.min(200))),
            log: cli
                .log
                .clone()
                .or(file.log)
                .unwrap_or_else(|| "info".into()),
            max_rtmp_connections: file.max_rtmp_connections,
            database_url: cli.database_url.clone().or(file.database_url),
            demo_stream: cli.demo_stream.clone().or(file.demo_stream),
            trusted_proxies: file.trusted_proxies.unwrap_or_default(),
            web: cli.web.clone().or(file.web).or_else(default_web_dir),
            transcode: crate::transcode::TranscodeConfig::load(
                file.transcode,
                cli.transcode_default.clone(),
            )?,
            srt: cli
                .srt
                .or(file.srt)
                .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 9000))),
            srt_latency_ms: cli.srt_latency_ms.or(file.srt_latency_ms).unwrap_or(120),
            streams: file.streams,
            restream_ca_file: file.restream_ca_file,
        })
    }

    pub fn packager(&self) -> ugc_dvr::PackagerConfig {
        let mut c = ugc_dvr::PackagerConfig::default();
        c.segmenter.target_duration_ms = self.segment_ms;
        c.segmenter.target_duration_s = self.target_duration_s;
        c.live.target_duration_ms = self.segment_ms;
        c.live.window_segments = self.window_segments;
        c.with_part_target(self.part_ms)
    }

    pub fn rtmp_server(&self) -> ugc_proto::rtmp::server::RtmpServerConfig {
        let mut c = ugc_proto::rtmp::server::RtmpServerConfig::default();
        if let Some(m) = self.max_rtmp_connections {
            c.max_connections = m;
        }
        c.batch_reads = self.ingest_batch;
        c
    }
}

/// `./web` when it holds the panels, else the source tree's `web/` (for
/// `make demo` and `cargo run` from anywhere in a checkout).
fn default_web_dir() -> Option<PathBuf> {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../web");
    [PathBuf::from("web"), source]
        .into_iter()
        .find(|d| ugc_auth::web::is_web_dir(d))
}

fn read_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing config {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_file_and_defaults_fill_the_rest() {
        let dir = std::env::temp_dir().join(format!("ugc-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("ugc.toml");
        std::fs::write(&file, "rtmp = \"127.0.0.1:19350\"\nsegment_ms = 4000\n").unwrap();
        let cli = Cli::parse_from([
            "ugc-server",
            "--config",
            file.to_str().unwrap(),
            "--segment-ms",
            "1000",
        ]);
        let c = Config::load(&cli).unwrap();
        assert_eq!(c.rtmp, "127.0.0.1:19350".parse().unwrap());
        assert_eq!(c.segment_ms, 1000);
        assert_eq!(c.http.port(), 8080);
        std::fs::write(&file, "nonsense = 1\n").unwrap();
        let refused = Config::load(&cli).is_err();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(refused);
    }
}
