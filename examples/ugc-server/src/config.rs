//! Configuration: defaults < TOML file < environment < flags.
//!
//! [`Settings`] is both the flags (clap, each with its `UGC_*` env twin)
//! and the file's keys (serde, the flag's name with `_`). The file is read
//! into it, then clap overwrites the fields the command line or the
//! environment gave (`update_from_arg_matches`): no merge code to keep in
//! step. Tables that belong to a crate are its types: `[transcode]`
//! (`ugc_codec::ladder::config`), `[dvr]` (`ugc_dvr::config`),
//! `[streams.<name>]` (`ugc_auth::lookup`); the HLS timing is
//! `ugc_dvr::HlsTiming`.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::{Args, CommandFactory, FromArgMatches, Parser};
use serde::Deserialize;
use ugc_auth::lookup::Overrides;
use ugc_codec::ladder::LadderProfiles;
use ugc_codec::ladder::config::TranscodeSection;
use ugc_dvr::HlsTiming;
use ugc_dvr::config::{DvrConfig, DvrSection};
use ugc_proto::whip::server::{IceServer, IceTcp};

/// All-in-one ugc streaming server: RTMP in, HLS out.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    /// TOML configuration file (keys as the long flags, with `_`).
    #[arg(long, env = "UGC_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub settings: Settings,
    /// A tool to run instead of the server.
    #[command(subcommand)]
    pub command: Option<crate::dvr::Command>,
}

/// Every setting, as flags and as the file's keys (all optional). One flat
/// struct, so that a bad key or value in the file is reported at its line.
#[derive(Debug, Default, Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
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
    /// RTMPS (RTMP over TLS, with the --https certificate) listen address,
    /// or `off`. Default `0.0.0.0:1936` when --https is configured.
    #[arg(long, env = "UGC_RTMPS", value_name = "ADDR|off")]
    pub rtmps: Option<String>,
    /// WHIP (WebRTC publish) media: the UDP address every session shares,
    /// or `off`. Default `0.0.0.0:8189`; with an unspecified IP a socket is
    /// bound on each --whip-ip (default: 127.0.0.1 and the address of the
    /// default route), since each is an ICE candidate. Port 0 picks one.
    #[arg(long, env = "UGC_WHIP_UDP", value_name = "ADDR|off")]
    pub whip_udp: Option<String>,
    /// The local addresses WHIP offers as ICE candidates when --whip-udp
    /// has an unspecified IP (comma-separated).
    #[arg(long, env = "UGC_WHIP_IP", value_delimiter = ',')]
    pub whip_ip: Option<Vec<std::net::IpAddr>>,
    /// The address publishers reach WHIP at when a 1:1 NAT or a port
    /// forward stands in front of the server (a cloud VM's public IP): the
    /// ICE candidate of every non-loopback WHIP socket, at its port.
    #[arg(long, env = "UGC_WHIP_PUBLIC_IP")]
    pub whip_public_ip: Option<std::net::IpAddr>,
    /// STUN/TURN servers WHIP publishers may use, sent with every answer
    /// as `Link` headers: `stun:HOST:PORT`,
    /// `turn:USER:PASSWORD@HOST:PORT?transport=udp` (comma-separated).
    #[arg(long, env = "UGC_WHIP_ICE_SERVER", value_delimiter = ',')]
    pub whip_ice_server: Option<Vec<String>>,
    /// WHIP's (and WHEP's) ICE-TCP listener, the way in for publishers and
    /// viewers whose network lets no UDP through (a passive candidate of
    /// lower priority than UDP's, RFC 6544): an address, or `off`. Default
    /// beside each WHIP UDP socket: its address and port, over TCP.
    #[arg(long, env = "UGC_WHIP_TCP", value_name = "ADDR|off")]
    pub whip_tcp: Option<String>,
    /// Whether WHIP publishers may send AV1: `off` (default: H.264, which
    /// every HLS player decodes) or `on` (a browser offering AV1 then sends
    /// it: it comes first in browsers' offers; HLS plays it where AV1
    /// decodes, over WHEP to browsers that decode AV1).
    #[arg(long, env = "UGC_WHIP_AV1", value_name = "on|off")]
    pub whip_av1: Option<String>,
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
    /// What viewers get while a stream waits for its publisher (the
    /// publisher grace): `slate` (default: "stream will be back shortly" on
    /// black with silence, in the stream's picture size and audio layout,
    /// looped and recorded like live), `off` (the picture freezes), or the
    /// path of a video file of your own (its first 30 s, encoded in each
    /// stream's shape and looped).
    #[arg(long, env = "UGC_FALLBACK")]
    pub fallback: Option<String>,
    /// A directory of fallback videos that streams may name as their own
    /// `fallback` (API, panel, `[streams.<name>]`): a stream set to
    /// `back-soon.mp4` loops `DIR/back-soon.mp4`. Creators name files
    /// here, never paths elsewhere on the server.
    #[arg(long, env = "UGC_FALLBACK_DIR")]
    pub fallback_dir: Option<PathBuf>,
    /// Count each stream's HLS viewers (`ugc_stream_viewers`): `on`
    /// (default) from playlist requests (a viewer session id in the
    /// variant URIs of each multivariant playlist) and the players' QoE
    /// beacons; `beacons` only from beacons, behind a CDN edge whose cache
    /// the per-viewer playlist URLs would split; `off`.
    #[arg(long, env = "UGC_VIEWER_COUNT")]
    pub viewer_count: Option<String>,
    /// Seconds between a playing viewer's QoE beacons (5-300, default
    /// 20), told to players in each multivariant playlist: fresher figures
    /// and viewer counts against the origin's CPU (about 0.75 % of a core
    /// per 1,000 viewers at 20 s on a 2-core VM, twice that at 10 s).
    #[arg(long, env = "UGC_QOE_INTERVAL_S")]
    pub qoe_interval_s: Option<u64>,
    /// Opus audio (WHIP publishers, Enhanced RTMP) re-encoded to AAC for
    /// HLS and the DVR: `on` (default: every HLS player plays it) or `off`
    /// (Opus in CMAF, which hls.js and Safari play; saves the transcode).
    /// WebRTC viewers get the Opus either way.
    #[arg(long, env = "UGC_OPUS_TO_AAC")]
    pub opus_to_aac: Option<String>,
    /// AAC audio (RTMP, SRT publishers) re-encoded to Opus for WebRTC
    /// (WHEP) viewers, once per stream watched: `on` (default: it plays
    /// with sound) or `off` (video only; saves the transcode).
    #[arg(long, env = "UGC_AAC_TO_OPUS")]
    pub aac_to_opus: Option<String>,
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
    #[serde(skip)]
    pub transcode_default: Option<String>,
    /// DVR archive depth (hours) of streams whose own `dvr_hours` is 0; 0 = off.
    #[arg(long, env = "UGC_DVR_HOURS")]
    #[serde(skip)]
    pub dvr_hours: Option<u32>,
    // File only.
    #[arg(skip)]
    pub max_rtmp_connections: Option<usize>,
    /// RTMP connections one address may hold (default 64; 0 = no cap).
    #[arg(skip)]
    pub max_rtmp_connections_per_ip: Option<usize>,
    /// SRT connections one address may hold (default 64; 0 = no cap).
    #[arg(skip)]
    pub max_srt_connections_per_ip: Option<usize>,
    /// Viewer sessions counted per stream and client address (an IPv6
    /// /64), default 200: one client inventing session ids cannot make a
    /// stream look popular; viewers behind one NAT address past it are
    /// not counted.
    #[arg(skip)]
    pub viewer_sessions_per_address: Option<usize>,
    /// SRT handshakes in progress from one address (default 32; 0 = no cap).
    #[arg(skip)]
    pub max_srt_handshakes_per_ip: Option<usize>,
    /// Publishers' addresses (or CIDR nets) the per-address RTMP and SRT
    /// caps do not apply to: a studio or encoder farm behind one NAT address.
    #[arg(skip)]
    pub ingest_cap_exempt: Option<Vec<String>>,
    /// Proxies (addresses or CIDR nets) whose `X-Forwarded-For` is believed.
    #[arg(skip)]
    pub trusted_proxies: Option<Vec<String>>,
    /// Extra trusted CA certificates (PEM) for `rtmps://` restream targets.
    #[arg(skip)]
    pub restream_ca_file: Option<PathBuf>,
    #[arg(skip)]
    #[serde(default)]
    pub transcode: TranscodeSection,
    #[arg(skip)]
    #[serde(default)]
    pub dvr: DvrSection,
    #[arg(skip)]
    #[serde(default)]
    pub streams: Overrides,
    /// `[http_limits]`: what slow, idle and greedy HTTP clients may hold.
    #[arg(skip)]
    #[serde(default)]
    pub http_limits: HttpLimits,
    /// `[cluster]`: where media nodes send streams (`transcoders`,
    /// `origins`: `http://host:port` lists), answered to them by
    /// `GET /api/v1/node/topology`.
    #[arg(skip)]
    #[serde(default)]
    pub cluster: ugc_auth::node::Topology,
    /// `[webhooks]`: where events (failovers) are POSTed.
    #[arg(skip)]
    #[serde(default)]
    pub webhooks: WebhookSection,
}

/// `[webhooks]` in the config file; defaults in `ugc_auth::webhook`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSection {
    urls: Vec<String>,
    secret: Option<String>,
    timeout_s: Option<u64>,
    retries: Option<u32>,
}

impl WebhookSection {
    fn config(self) -> anyhow::Result<Option<ugc_auth::webhook::WebhookConfig>> {
        if self.urls.is_empty() {
            anyhow::ensure!(
                self.secret.is_none(),
                "webhooks.secret without webhooks.urls"
            );
            return Ok(None);
        }
        let mut c = ugc_auth::webhook::WebhookConfig::new(self.urls);
        c.secret = self.secret;
        if let Some(s) = self.timeout_s {
            anyhow::ensure!(s > 0, "webhooks.timeout_s must be at least 1 s");
            c.timeout = Duration::from_secs(s);
        }
        c.retries = self.retries.unwrap_or(c.retries);
        Ok(Some(c))
    }
}

/// `[http_limits]` in the config file; defaults in `ugc_proto::http`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpLimits {
    header_read_timeout_s: Option<u64>,
    idle_timeout_s: Option<u64>,
    max_connections: Option<usize>,
    max_connections_per_ip: Option<usize>,
    max_held_requests: Option<usize>,
    max_held_per_client: Option<usize>,
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

    /// The origin's budgets of held LL-HLS blocking requests (all clients,
    /// one client); defaults in `ugc_proto::origin::OriginConfig`.
    fn held_limits(&self) -> HeldLimits {
        let d = ugc_proto::origin::OriginConfig::default();
        HeldLimits {
            total: self.max_held_requests.unwrap_or(d.max_held_requests),
            per_client: self.max_held_per_client.unwrap_or(d.max_held_per_client),
        }
    }
}

/// LL-HLS blocking requests the origin holds at once: all clients, one
/// client (more get 503 at once).
#[derive(Debug, Clone, Copy)]
pub struct HeldLimits {
    pub total: usize,
    pub per_client: usize,
}

/// The effective configuration: defaults filled, ranges checked, in the
/// crates' own config types.
#[derive(Debug, Clone)]
pub struct Config {
    pub data: PathBuf,
    pub log: String,
    pub rtmp: SocketAddr,
    pub http: SocketAddr,
    pub srt: SocketAddr,
    /// HTTPS listener with its certificate and key.
    pub https: Option<(SocketAddr, PathBuf, PathBuf)>,
    /// RTMPS listener (it takes the HTTPS certificate).
    pub rtmps: Option<SocketAddr>,
    /// WHIP's UDP sockets, or `None` (off).
    pub whip: Option<WhipListen>,
    pub public_host: Option<String>,
    pub database_url: Option<String>,
    pub demo_stream: Option<String>,
    /// The web panels' directory, if one was given or found.
    pub web: Option<PathBuf>,
    pub trusted_proxies: Vec<String>,
    pub hub: ugc_core::HubConfig,
    pub packager: ugc_dvr::PackagerConfig,
    pub rtmp_server: ugc_proto::rtmp::server::RtmpServerConfig,
    pub srt_server: ugc_proto::srt::server::SrtServerConfig,
    /// Ingest tick; `None`: wake for every event.
    pub ingest_tick: Option<Duration>,
    /// What to loop into streams waiting for their publisher.
    pub fallback: Fallback,
    /// Where the fallback files that streams name are.
    pub fallback_dir: Option<PathBuf>,
    /// Where HLS viewers are counted from (`--viewer-count`).
    pub viewer_count: ugc_core::viewers::CountFrom,
    /// Seconds between a playing viewer's QoE beacons (`--qoe-interval-s`).
    pub qoe_interval: Duration,
    /// Opus -> AAC before packaging (`--opus-to-aac`).
    pub opus_to_aac: bool,
    /// AAC -> Opus for WHEP viewers (`--aac-to-opus`).
    pub aac_to_opus: bool,
    /// Viewer sessions counted per stream and client address.
    pub viewer_sessions_per_address: usize,
    pub ladders: LadderProfiles,
    pub dvr: DvrConfig,
    pub streams: Overrides,
    pub restream_ca_file: Option<PathBuf>,
    /// Limits of the HTTP and HTTPS listeners.
    pub http_limits: ugc_proto::http::ServeConfig,
    /// Held LL-HLS blocking requests (`[http_limits]` too).
    pub held_limits: HeldLimits,
    /// Where media nodes send streams.
    pub cluster: ugc_auth::node::Topology,
    /// Where events are POSTed, if anywhere.
    pub webhooks: Option<ugc_auth::webhook::WebhookConfig>,
}

/// WHIP's UDP sockets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WhipListen {
    /// The address; with an unspecified IP one socket per `ips`.
    pub addr: SocketAddr,
    /// The IPs to bind when `addr`'s is unspecified (empty: 127.0.0.1 and
    /// the default route's).
    pub ips: Vec<std::net::IpAddr>,
    /// Asked for (a default that cannot bind is a warning, not a failure).
    pub explicit: bool,
    /// The candidate of the non-loopback sockets behind a 1:1 NAT.
    pub public_ip: Option<std::net::IpAddr>,
    /// STUN/TURN servers for publishers.
    pub ice_servers: Vec<IceServer>,
    /// Where ICE-TCP listens.
    pub tcp: IceTcp,
    /// Publishers may send AV1.
    pub av1: bool,
}

/// What viewers get while a stream waits for its publisher.
pub use ugc_core::fallback::FallbackMedia as Fallback;

impl Config {
    /// Parses `args` (exits on `--help` or a bad flag), reads the file it
    /// names and lays flags and env over it.
    pub fn from_args<I, T>(args: I) -> anyhow::Result<(Cli, Config)>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let matches = Cli::command().get_matches_from(args);
        let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
        let mut settings = match &cli.config {
            Some(path) => read_file(path)?,
            None => Settings::default(),
        };
        settings.update_from_arg_matches(&matches)?;
        Ok((cli, Config::new(settings)?))
    }

    fn new(s: Settings) -> anyhow::Result<Config> {
        let any = |port| SocketAddr::from(([0, 0, 0, 0], port));
        let https = match (s.https, s.tls_cert, s.tls_key) {
            (Some(addr), Some(cert), Some(key)) => Some((addr, cert, key)),
            (None, None, None) => None,
            _ => anyhow::bail!("https, tls_cert and tls_key go together"),
        };
        let rtmps = match (s.rtmps.as_deref(), &https) {
            (Some("off"), _) | (None, None) => None,
            (None, Some(_)) => Some(any(1936)),
            (Some(addr), Some(_)) => Some(
                addr.parse()
                    .map_err(|e| anyhow::anyhow!("rtmps {addr:?}: {e} (an address or off)"))?,
            ),
            (Some(_), None) => anyhow::bail!("rtmps needs https, tls_cert and tls_key"),
        };
        let whip = match s.whip_udp.as_deref() {
            Some("off") => None,
            udp => Some(WhipListen {
                addr: match udp {
                    None => any(8189),
                    Some(addr) => addr.parse().map_err(|e| {
                        anyhow::anyhow!("whip_udp {addr:?}: {e} (an address or off)")
                    })?,
                },
                ips: s.whip_ip.clone().unwrap_or_default(),
                explicit: udp.is_some(),
                public_ip: s.whip_public_ip,
                ice_servers: s
                    .whip_ice_server
                    .iter()
                    .flatten()
                    .map(|u| {
                        IceServer::parse(u).map_err(|e| anyhow::anyhow!("whip_ice_server: {e}"))
                    })
                    .collect::<anyhow::Result<_>>()?,
                tcp: match s.whip_tcp.as_deref() {
                    None => IceTcp::BesideUdp,
                    Some(t) => t.parse().map_err(|e| anyhow::anyhow!("whip_tcp {e}"))?,
                },
                av1: s.whip_av1.is_some() && on_off("whip_av1", s.whip_av1.as_deref())?,
            }),
        };
        let d = HlsTiming::default();
        let packager = HlsTiming {
            segment_ms: s.segment_ms.unwrap_or(d.segment_ms),
            target_duration_s: s.target_duration_s.unwrap_or(d.target_duration_s),
            window_segments: s.window_segments.unwrap_or(d.window_segments),
            part_ms: s.part_ms.unwrap_or(d.part_ms),
            aligned: d.aligned,
        }
        .packager()?;
        let data = s.data.unwrap_or_else(|| PathBuf::from("data"));
        let (mut transcode, mut dvr) = (s.transcode, s.dvr);
        transcode.default = s.transcode_default.or(transcode.default);
        dvr.hours = s.dvr_hours.or(dvr.hours);
        // A tick or batch of 0 turns it off.
        let ms = |v: Option<u64>, default, max: u64| {
            Some(v.unwrap_or(default))
                .filter(|ms| *ms > 0)
                .map(|ms| Duration::from_millis(ms.min(max)))
        };
        let mut rtmp_server = ugc_proto::rtmp::server::RtmpServerConfig::default();
        if let Some(m) = s.max_rtmp_connections {
            rtmp_server.max_connections = m;
        }
        if let Some(m) = s.max_rtmp_connections_per_ip {
            rtmp_server.max_connections_per_ip = m;
        }
        rtmp_server.batch_reads = ms(s.ingest_batch_ms, 40, 200);
        let mut srt_server = ugc_proto::srt::server::SrtServerConfig::default();
        srt_server.listener.latency = Duration::from_millis(s.srt_latency_ms.unwrap_or(120));
        if let Some(m) = s.max_srt_connections_per_ip {
            srt_server.listener.max_connections_per_ip = m;
        }
        if let Some(m) = s.max_srt_handshakes_per_ip {
            srt_server.listener.max_pending_per_ip = m;
        }
        if let Some(list) = &s.ingest_cap_exempt {
            let nets = ugc_auth::TrustedProxies::parse(list)
                .map_err(|e| anyhow::anyhow!("ingest_cap_exempt: {e}"))?;
            let exempt = ugc_proto::limits::ExemptIps::new(move |ip| nets.is_trusted(ip));
            rtmp_server.ip_cap_exempt = Some(exempt.clone());
            srt_server.listener.per_ip_exempt = Some(exempt);
        }
        Ok(Config {
            log: s.log.unwrap_or_else(|| "info".into()),
            rtmp: s.rtmp.unwrap_or_else(|| any(1935)),
            http: s.http.unwrap_or_else(|| any(8080)),
            srt: s.srt.unwrap_or_else(|| any(9000)),
            https,
            rtmps,
            whip,
            public_host: s.public_host,
            database_url: s.database_url,
            demo_stream: s.demo_stream,
            web: s.web.or_else(default_web_dir),
            trusted_proxies: s.trusted_proxies.unwrap_or_default(),
            hub: ugc_core::HubConfig {
                publisher_grace: Duration::from_secs(s.publisher_grace_s.unwrap_or(20)),
                ..ugc_core::HubConfig::default()
            },
            packager,
            rtmp_server,
            srt_server,
            ingest_tick: ms(s.ingest_tick_ms, 10, 100),
            fallback: match s.fallback.as_deref() {
                None => Fallback::Slate,
                Some(setting) => Fallback::node_setting(setting).map_err(anyhow::Error::msg)?,
            },
            fallback_dir: match s.fallback_dir {
                Some(dir) if !dir.is_dir() => {
                    anyhow::bail!("fallback_dir {} is no directory", dir.display())
                }
                dir => dir,
            },
            viewer_sessions_per_address: match s.viewer_sessions_per_address {
                Some(0) => anyhow::bail!("viewer_sessions_per_address must be at least 1"),
                n => {
                    n.unwrap_or(ugc_core::viewers::ViewerConfig::default().max_sessions_per_address)
                }
            },
            viewer_count: s
                .viewer_count
                .as_deref()
                .unwrap_or("on")
                .parse()
                .map_err(|e: String| anyhow::anyhow!(e))?,
            qoe_interval: match s.qoe_interval_s {
                None => ugc_core::qoe::QoeConfig::default().player_interval,
                Some(n) if (5..=300).contains(&n) => Duration::from_secs(n),
                Some(n) => anyhow::bail!("qoe_interval_s {n}: from 5 to 300 seconds"),
            },
            opus_to_aac: on_off("opus_to_aac", s.opus_to_aac.as_deref())?,
            aac_to_opus: on_off("aac_to_opus", s.aac_to_opus.as_deref())?,
            ladders: transcode.load().context("transcode config")?,
            dvr: dvr.resolve(&data),
            data,
            streams: {
                for (name, o) in &s.streams {
                    if let Some(f) = &o.fallback {
                        ugc_auth::validate::fallback(f)
                            .with_context(|| format!("[streams.{name}] fallback"))?;
                    }
                    if let Some(ms) = o.source_timeout_ms {
                        ugc_auth::validate::source_timeout_ms(ms)
                            .with_context(|| format!("[streams.{name}] source_timeout_ms"))?;
                    }
                }
                s.streams
            },
            restream_ca_file: s.restream_ca_file,
            held_limits: s.http_limits.held_limits(),
            http_limits: s.http_limits.serve_config()?,
            cluster: s.cluster,
            webhooks: s.webhooks.config()?,
        })
    }
}

/// `./web` when it holds the panels, else the source tree's `web/` (for
/// `make demo` and `cargo run` from anywhere in a checkout).
/// An `on`/`off` setting (default `on`) named `name` in errors.
fn on_off(name: &str, v: Option<&str>) -> anyhow::Result<bool> {
    match v {
        None | Some("on") => Ok(true),
        Some("off") => Ok(false),
        Some(other) => anyhow::bail!("{name} must be \"on\" or \"off\", not {other:?}"),
    }
}

fn default_web_dir() -> Option<PathBuf> {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../web");
    [PathBuf::from("web"), source]
        .into_iter()
        .find(|d| ugc_auth::web::is_web_dir(d))
}

fn read_file(path: &Path) -> anyhow::Result<Settings> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing config {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ugc.toml` with `text` in a directory of its own; removed on drop.
    struct File(PathBuf);

    impl File {
        fn new(name: &str, text: &str) -> File {
            let dir =
                std::env::temp_dir().join(format!("ugc-config-{name}-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("ugc.toml"), text).unwrap();
            File(dir)
        }
        fn load(&self, flags: &[&str]) -> anyhow::Result<Config> {
            let path = self.0.join("ugc.toml");
            let args = ["ugc-server", "--config", path.to_str().unwrap()];
            Config::from_args(args.iter().chain(flags)).map(|(_, c)| c)
        }
    }

    impl Drop for File {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn flags_override_file_and_defaults_fill_the_rest() {
        let file = File::new(
            "override",
            "rtmp = \"127.0.0.1:19350\"\nsegment_ms = 4000\n",
        );
        let c = file.load(&["--segment-ms", "1000"]).unwrap();
        assert_eq!(c.rtmp, "127.0.0.1:19350".parse().unwrap());
        assert_eq!(c.packager.segmenter.target_duration_ms, 1000);
        assert_eq!(c.http.port(), 8080);
        std::fs::write(file.0.join("ugc.toml"), "nonsense = 1\n").unwrap();
        assert!(file.load(&[]).is_err());
    }

    /// Every key of the README, in the file, reaches the effective config;
    /// the flags that set a key inside a table beat it.
    #[test]
    fn every_documented_key_is_read() {
        let file = File::new(
            "keys",
            "data = \"/d\"\nrtmp = \"127.0.0.1:1\"\nhttp = \"127.0.0.1:2\"\n\
             srt = \"127.0.0.1:3\"\nsrt_latency_ms = 300\npublic_host = \"h\"\n\
             https = \"127.0.0.1:4\"\ntls_cert = \"c.pem\"\ntls_key = \"k.pem\"\nrtmps = \"127.0.0.1:5\"\n\
             whip_udp = \"0.0.0.0:6\"\nwhip_ip = [\"127.0.0.1\"]\nwhip_public_ip = \"203.0.113.9\"\n\
             whip_ice_server = [\"stun:stun.example.net:3478\"]\nwhip_tcp = \"127.0.0.1:7\"\nwhip_av1 = \"on\"\n\
             segment_ms = 4000\ntarget_duration_s = 8\nwindow_segments = 3\npart_ms = 0\n\
             publisher_grace_s = 5\ningest_tick_ms = 0\ningest_batch_ms = 500\n\
             max_rtmp_connections = 7\nmax_rtmp_connections_per_ip = 3\n\
             max_srt_connections_per_ip = 4\nmax_srt_handshakes_per_ip = 5\nlog = \"debug\"\ndatabase_url = \"postgres://x\"\n\
             demo_stream = \"demo\"\nweb = \"/w\"\ntrusted_proxies = [\"10.0.0.0/8\"]\n\
             ingest_cap_exempt = [\"192.0.2.0/24\"]\n\
             restream_ca_file = \"ca.pem\"\nviewer_count = \"off\"\nviewer_sessions_per_address = 12\n\
             [streams.demo]\nrestream = [\"rtmp://a/b\"]\nsrt_passphrase = \"0123456789\"\n\
             [transcode]\ndefault = \"default\"\n[transcode.profiles.mobile]\npreset = \"fast\"\n\
             [dvr]\nhours = 3\nrewind_s = 60\n[http_limits]\nmax_connections_per_ip = 9\nmax_held_per_client = 7\n\
             [webhooks]\nurls = [\"http://127.0.0.1:9/hook\"]\nsecret = \"s\"\ntimeout_s = 2\nretries = 1\n",
        );
        let c = file.load(&[]).unwrap();
        assert_eq!((c.rtmp.port(), c.http.port(), c.srt.port()), (1, 2, 3));
        assert_eq!(c.srt_server.listener.latency, Duration::from_millis(300));
        assert_eq!(c.public_host.as_deref(), Some("h"));
        assert_eq!(c.rtmps.map(|a| a.port()), Some(5));
        let whip = c.whip.clone().unwrap();
        assert_eq!(
            (whip.addr.port(), whip.ips.len(), whip.explicit),
            (6, 1, true)
        );
        assert_eq!(whip.public_ip, "203.0.113.9".parse().ok());
        assert_eq!(whip.ice_servers[0].uri, "stun:stun.example.net:3478");
        assert_eq!(whip.tcp, IceTcp::At("127.0.0.1:7".parse().unwrap()));
        assert!(whip.av1);
        let (addr, cert, key) = c.https.clone().unwrap();
        assert_eq!(
            (addr.port(), cert.to_str(), key.to_str()),
            (4, Some("c.pem"), Some("k.pem"))
        );
        let p = &c.packager;
        assert_eq!(
            (
                p.segmenter.target_duration_ms,
                p.segmenter.target_duration_s
            ),
            (4000, Some(8))
        );
        assert_eq!(
            (p.live.window_segments, p.segmenter.part_target_ms),
            (3, None)
        );
        assert_eq!(c.hub.publisher_grace, Duration::from_secs(5));
        assert_eq!(c.ingest_tick, None);
        assert_eq!(c.rtmp_server.batch_reads, Some(Duration::from_millis(200)));
        assert_eq!(c.rtmp_server.max_connections, 7);
        assert_eq!(
            (c.log.as_str(), c.database_url.as_deref()),
            ("debug", Some("postgres://x"))
        );
        assert_eq!(
            (c.demo_stream.as_deref(), c.web.as_deref()),
            (Some("demo"), Some(Path::new("/w")))
        );
        assert_eq!(c.trusted_proxies, ["10.0.0.0/8"]);
        assert_eq!(c.viewer_count, ugc_core::viewers::CountFrom::Off);
        assert_eq!(c.viewer_sessions_per_address, 12);
        assert_eq!(c.http_limits.max_connections_per_ip, 9);
        assert_eq!(c.held_limits.per_client, 7);
        assert_eq!(c.held_limits.total, 20_000, "the origin's default");
        assert_eq!(c.rtmp_server.max_connections_per_ip, 3);
        assert_eq!(c.srt_server.listener.max_connections_per_ip, 4);
        assert_eq!(c.srt_server.listener.max_pending_per_ip, 5);
        let studio: std::net::IpAddr = "192.0.2.7".parse().unwrap();
        let other: std::net::IpAddr = "198.51.100.7".parse().unwrap();
        for exempt in [
            c.rtmp_server.ip_cap_exempt.as_ref().unwrap(),
            c.srt_server.listener.per_ip_exempt.as_ref().unwrap(),
        ] {
            assert!(exempt.contains(studio) && !exempt.contains(other));
        }
        assert_eq!(c.restream_ca_file.as_deref(), Some(Path::new("ca.pem")));
        let w = c.webhooks.as_ref().unwrap();
        assert_eq!(
            (w.urls.as_slice(), w.secret.as_deref(), w.timeout, w.retries),
            (
                &["http://127.0.0.1:9/hook".to_owned()][..],
                Some("s"),
                Duration::from_secs(2),
                1
            )
        );
        assert_eq!(c.streams["demo"].restream, ["rtmp://a/b"]);
        assert_eq!(
            (c.ladders.default.as_str(), c.ladders.profile_names()),
            ("default", vec!["mobile".into()])
        );
        assert_eq!(
            (
                c.dvr.dir.as_path(),
                c.dvr.policy.hours,
                c.dvr.policy.rewind_s
            ),
            (Path::new("/d/dvr"), 3, 60)
        );

        let c = file
            .load(&[
                "--transcode-default",
                "mobile",
                "--dvr-hours",
                "0",
                "--data",
                "/e",
            ])
            .unwrap();
        assert_eq!(
            (c.ladders.default.as_str(), c.dvr.policy.hours),
            ("mobile", 0)
        );
        assert_eq!(c.dvr.dir, Path::new("/e/dvr"));
    }

    #[test]
    fn defaults() {
        let c = File::new("defaults", "").load(&[]).unwrap();
        assert_eq!(
            (
                c.rtmp.port(),
                c.http.port(),
                c.srt.port(),
                c.https.is_none()
            ),
            (1935, 8080, 9000, true)
        );
        assert_eq!(
            (c.data.as_path(), c.log.as_str()),
            (Path::new("data"), "info")
        );
        assert_eq!(
            c.fallback,
            Fallback::Slate,
            "the slate is on unless --fallback off"
        );
        let p = &c.packager;
        assert_eq!(
            (
                p.segmenter.target_duration_ms,
                p.segmenter.target_duration_s
            ),
            (2000, None)
        );
        assert_eq!(
            (p.live.window_segments, p.live.part_target_ms),
            (6, Some(200))
        );
        assert_eq!(c.hub.publisher_grace, Duration::from_secs(20));
        assert_eq!(c.ingest_tick, Some(Duration::from_millis(10)));
        assert_eq!(c.rtmp_server.batch_reads, Some(Duration::from_millis(40)));
        assert_eq!(c.srt_server.listener.latency, Duration::from_millis(120));
        assert_eq!((c.ladders.default.as_str(), c.dvr.policy.hours), ("off", 0));
        assert!(c.webhooks.is_none());
    }

    #[test]
    fn bad_values_are_refused() {
        let file = File::new("bad", "");
        for flags in [
            &["--segment-ms", "100"][..],
            &["--target-duration-s", "1"],
            &["--window-segments", "1"],
            &["--part-ms", "20"],
            &["--https", "127.0.0.1:1"],
            &["--transcode-default", "nope"],
        ] {
            assert!(file.load(flags).is_err(), "{flags:?}");
        }
        // File errors point at the key's line (and list the known keys).
        for (text, says, line) in [
            // (`[transcode]` lists none: its keys are a flattened profile.)
            ("[transcode]\nbogus = 1\n", "unknown field `bogus`", 2),
            (
                "[dvr]\nbogus = 1\n",
                "unknown field `bogus`, expected one of",
                3,
            ),
            (
                "[streams.a]\nbogus = 1\n",
                "unknown field `bogus`, expected",
                3,
            ),
            ("segment_ms = \"x\"\n", "expected u32", 2),
            (
                "nonsense = 1\n",
                "unknown field `nonsense`, expected one of",
                2,
            ),
        ] {
            let text = format!("log = \"info\"\n{text}");
            std::fs::write(file.0.join("ugc.toml"), &text).unwrap();
            let e = format!("{:#}", file.load(&[]).unwrap_err());
            let at = format!("at line {line}, ");
            assert!(e.contains(says) && e.contains(&at), "{text}: {e}");
        }
        std::fs::write(
            file.0.join("ugc.toml"),
            "ingest_cap_exempt = [\"10.0.0.0/99\"]\n",
        )
        .unwrap();
        let e = format!("{:#}", file.load(&[]).unwrap_err());
        assert!(e.contains("ingest_cap_exempt"), "{e}");
    }

    /// The env twins of the README's flags (precedence: clap reads env as
    /// a flag, see `env_beats_the_file_and_flags_beat_env`).
    #[test]
    fn every_flag_has_its_env_twin() {
        let cmd = Cli::command();
        let flags: Vec<_> = cmd
            .get_arguments()
            .filter_map(|a| Some((a.get_long()?, a.get_env()?.to_str()?)))
            .collect();
        for (flag, var) in &flags {
            assert_eq!(
                *var,
                format!("UGC_{}", flag.replace('-', "_").to_uppercase())
            );
        }
        // All but --log (whose env twin is `UGC_LOG`, read by the logger).
        assert_eq!(flags.len(), 35, "{flags:?}");
    }

    /// Runs this test binary again with env set (set_var would race the
    /// other tests): `child_prints_config` prints what it loaded.
    #[test]
    fn env_beats_the_file_and_flags_beat_env() {
        let file = File::new(
            "env",
            "rtmp = \"127.0.0.1:1\"\nhttp = \"127.0.0.1:2\"\nsrt = \"127.0.0.1:3\"\n",
        );
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "config::tests::child_prints_config",
                "--nocapture",
            ])
            .env("UGC_CONFIG", file.0.join("ugc.toml"))
            .env("UGC_TEST_CHILD_FLAGS", "--srt 127.0.0.1:30")
            .env("UGC_HTTP", "127.0.0.1:20")
            .env("UGC_SRT", "127.0.0.1:31")
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&out.stdout);
        assert!(out.contains("ports 1 20 30\n"), "{out}");
    }

    #[test]
    fn the_fallback_is_the_slate_off_or_an_existing_file() {
        let file = File::new("fallback", "");
        let path = file.0.join("ugc.toml");
        let path = path.to_str().unwrap();
        assert_eq!(
            file.load(&["--fallback", "off"]).unwrap().fallback,
            Fallback::Off
        );
        assert_eq!(
            file.load(&["--fallback", path]).unwrap().fallback,
            Fallback::File(PathBuf::from(path))
        );
        let e = file
            .load(&["--fallback", "/no/such/loop.mp4"])
            .err()
            .unwrap();
        assert!(e.to_string().contains("is none"), "{e}");
        let e = file
            .load(&["--fallback-dir", "/no/such/dir"])
            .err()
            .unwrap();
        assert!(e.to_string().contains("no directory"), "{e}");
    }

    #[test]
    fn child_prints_config() {
        let Ok(flags) = std::env::var("UGC_TEST_CHILD_FLAGS") else {
            return;
        };
        let c = Config::from_args(std::iter::once("ugc-server").chain(flags.split(' ')))
            .unwrap()
            .1;
        println!("ports {} {} {}", c.rtmp.port(), c.http.port(), c.srt.port());
    }
}
