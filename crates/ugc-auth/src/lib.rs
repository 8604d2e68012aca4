//! # ugc-auth
//!
//! The control plane of the ugc streaming toolkit:
//!
//! * a [`Store`] of creators, streams and play sessions in SQLite (embedded,
//!   in the data directory, the default) or PostgreSQL (by URL), one sqlx
//!   code path and one set of migrations;
//! * stream keys and publish authorization (`live/<key>` -> `live/<name>`),
//!   answered from memory;
//! * HMAC-SHA256 signed play tokens ([`token`]) checked on every playlist,
//!   part and segment request without a database round trip, with
//!   revocation kept in memory;
//! * optional external HTTP backends for publish and play ([`ExternalBackend`]);
//! * the REST API under `/api/v1` ([`ControlPlane::router`]) with its
//!   OpenAPI document;
//! * the web panels ([`web::router`]): creator panel and viewer page;
//! * provisioning: [`ControlPlane::settings`] and
//!   [`ControlPlane::subscribe_changes`] let a running server apply a
//!   `PATCH` without a restart, in-process; separate media nodes follow
//!   the HTTP feed (`GET /api/v1/settings`, `GET /api/v1/changes` as
//!   Server-Sent Events) with [`RemoteSettings`]. Both implement
//!   [`SettingsSource`]; [`lookup`] answers each media stage's per-stream
//!   question (SRT passphrase, restream targets, transcode profile, DVR
//!   depth) from one, with a config file's `[streams.<name>]` fallbacks;
//! * for the media server around it: admin-only JSON stats routes
//!   ([`ControlPlane::admin_json_route`]), `/metrics` behind the admin
//!   token except from loopback ([`ControlPlane::metrics_router`]), pruning
//!   of sessions and lease rows ([`ControlPlane::prune_every`]) and the control
//!   plane's name of a Hub stream ([`stream_name`]).
//!
//! It does not contain media code, sockets of its own (the caller serves the
//! router), nor a TLS stack (external backends are plain `http://`).
//!
//! ```no_run
//! # async fn run() -> ugc_auth::Result<()> {
//! use ugc_auth::{ControlConfig, ControlPlane};
//! use ugc_core::{Authorizer, Protocol, PublishRequest};
//!
//! let mut config = ControlConfig::new("/var/lib/ugc");
//! config.admin_token = std::env::var("UGC_ADMIN_TOKEN").ok();
//! let cp = ControlPlane::open(config).await?;
//! if let Some(token) = cp.take_generated_admin_token() {
//!     // print it once: it is stored hashed only
//!     let _ = token;
//! }
//! let (stream, key) = cp.ensure_demo_stream("demo").await?;
//! let app = axum::Router::<()>::new().nest("/api/v1", cp.router());
//! let auth = cp.authorizer();
//! let d = auth
//!     .authorize_publish(&PublishRequest {
//!         protocol: Protocol::Rtmp,
//!         app: "live".into(),
//!         key,
//!         client_ip: [127, 0, 0, 1].into(),
//!     })
//!     .await;
//! # let _ = (app, d, stream);
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]
// The OpenAPI document is one `json!` literal, deeper than the default 128.
#![recursion_limit = "256"]

mod api;
mod authz;
pub mod balance;
pub mod error;
mod external;
pub mod lease;
pub mod lookup;
pub mod net;
pub mod node;
mod openapi;
mod ops;
mod plane;
mod provision;
pub mod registry;
pub mod remote;
mod sse;
pub mod store;
pub mod token;
mod util;
pub mod validate;
pub mod web;
pub mod webhook;

use std::path::PathBuf;
use std::time::Duration;

pub use api::ApiExtension;
pub use authz::{BACKUP_APP, ControlAuthorizer};
pub use error::{Error, Result};
pub use external::ExternalBackend;
pub use net::{IpNet, TrustedProxies};
pub use ops::{ClientIpResolver, client_ip_from, stream_name};
pub use plane::{
    ChangeKind, ControlPlane, NewStream, PlayGrant, StreamChange, StreamPatch, StreamSettings,
};
pub use provision::SettingsSource;
pub use remote::{RemoteConfig, RemoteSettings};
pub use store::{Principal, SessionRecord, Store, StreamRecord};
pub use token::{PlayClaims, SessionId, TokenError, TokenKey};

/// The public addresses publishers and viewers are told to use.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PublicUrls {
    /// Host name or address (`[::1]` for IPv6).
    pub host: String,
    /// RTMP port (1935).
    pub rtmp_port: u16,
    /// RTMPS port (1936 by convention), when the server takes RTMPS.
    pub rtmps_port: Option<u16>,
    /// SRT port (9000).
    pub srt_port: u16,
    /// HTTP port of WHIP and HLS (8080).
    pub http_port: u16,
    /// Overrides `http://host:http_port` for play and WHIP URLs (e.g.
    /// `https://cdn.example.com` behind a TLS proxy); no trailing slash.
    pub http_base: Option<String>,
}

impl Default for PublicUrls {
    fn default() -> Self {
        PublicUrls {
            host: "localhost".into(),
            rtmp_port: 1935,
            rtmps_port: None,
            srt_port: 9000,
            http_port: 8080,
            http_base: None,
        }
    }
}

impl PublicUrls {
    /// The address other machines most likely reach this one at, for
    /// [`host`](Self::host) when none is configured: the source address of
    /// a route to a public address (a UDP socket is connected, nothing is
    /// sent), else `127.0.0.1`.
    pub fn guess_host() -> String {
        std::net::UdpSocket::bind("0.0.0.0:0")
            .and_then(|s| {
                s.connect("192.0.2.1:9")?;
                s.local_addr()
            })
            .map(|a| a.ip().to_string())
            .unwrap_or_else(|_| "127.0.0.1".into())
    }

    /// `http://host:port` or [`http_base`](Self::http_base).
    pub fn http(&self) -> String {
        match &self.http_base {
            Some(b) => b.trim_end_matches('/').to_owned(),
            None => format!("http://{}:{}", self.host, self.http_port),
        }
    }

    /// `rtmp://host:port/live/<key>`.
    pub fn rtmp(&self, key: &str) -> String {
        format!("rtmp://{}:{}/live/{key}", self.host, self.rtmp_port)
    }

    /// `rtmps://host:port/live/<key>`, when RTMPS is served.
    pub fn rtmps(&self, key: &str) -> Option<String> {
        self.rtmps_port
            .map(|port| format!("rtmps://{}:{port}/live/{key}", self.host))
    }

    /// `srt://host:port?streamid=#!::r=live/<key>,m=publish`.
    pub fn srt(&self, key: &str) -> String {
        format!(
            "srt://{}:{}?streamid=#!::r=live/{key},m=publish",
            self.host, self.srt_port
        )
    }

    /// `rtmp://host:port/backup/<key>`: the stream's backup publisher.
    pub fn rtmp_backup(&self, key: &str) -> String {
        format!(
            "rtmp://{}:{}/{}/{key}",
            self.host,
            self.rtmp_port,
            authz::BACKUP_APP
        )
    }

    /// `srt://host:port?streamid=#!::r=backup/<key>,m=publish`: the
    /// stream's backup publisher.
    pub fn srt_backup(&self, key: &str) -> String {
        format!(
            "srt://{}:{}?streamid=#!::r={}/{key},m=publish",
            self.host,
            self.srt_port,
            authz::BACKUP_APP
        )
    }

    /// `http://host:port/whip/<name>` (the key goes in `Authorization: Bearer`).
    pub fn whip(&self, name: &str) -> String {
        format!("{}/whip/{name}", self.http())
    }

    /// `http://host:port/live/<name>/index.m3u8`.
    pub fn play(&self, name: &str) -> String {
        format!("{}/live/{name}/index.m3u8", self.http())
    }

    /// `http://host:port/whep/<name>`: WebRTC play of the same node (a
    /// play token goes as `Authorization: Bearer`).
    pub fn whep(&self, name: &str) -> String {
        format!("{}/whep/{name}", self.http())
    }
}

/// Everything [`ControlPlane::open`] needs.
#[derive(Clone)]
pub struct ControlConfig {
    /// The data directory: holds `ugc.db` (SQLite) and `play-token.key`.
    pub data_dir: PathBuf,
    /// `postgres://...` (or `sqlite://...`); default `sqlite://<data_dir>/ugc.db`.
    pub database_url: Option<String>,
    /// The admin token (the server passes `UGC_ADMIN_TOKEN`). When `None`
    /// and no admin exists yet, one is generated; see
    /// [`ControlPlane::take_generated_admin_token`].
    pub admin_token: Option<String>,
    /// The play-token secret; default: 32 random bytes generated on first
    /// start into `<data_dir>/play-token.key`. Nodes that verify each
    /// other's tokens need the same secret.
    pub token_secret: Option<Vec<u8>>,
    /// Addresses shown to publishers and viewers.
    pub public_urls: PublicUrls,
    /// Asked on every publish after the key check, if set.
    pub publish_backend: Option<ExternalBackend>,
    /// Asked on every play request after the token check, if set.
    pub play_backend: Option<ExternalBackend>,
    /// A token (at least 16 characters) that media nodes present to read
    /// the settings feed (`GET /api/v1/settings`, `/api/v1/changes`); the
    /// admin token works too. Grants nothing else.
    pub node_token: Option<String>,
    /// Where media nodes send streams (`GET /api/v1/node/topology`).
    pub topology: node::Topology,
    /// A registered node without a heartbeat for this long is `down` and
    /// gets no new work (6 s: three missed beats).
    pub node_down_after: Duration,
    /// A transcode lease ends this long after its holder's last renewal
    /// (3 s; transcoders beat every third of it).
    pub lease_ttl: Duration,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: TrustedProxies,
    /// Named transcode profiles accepted besides `off` and `default`.
    pub transcode_profiles: Vec<String>,
    /// Live streams: key rotation and deletion drop the publisher, and
    /// stream answers carry `live`.
    pub hub: Option<ugc_core::Hub>,
    /// HLS viewer counts of the origin in this process: stream answers
    /// carry `viewers`.
    pub viewers: Option<std::sync::Arc<ugc_core::viewers::ViewerCounter>>,
    /// Play token lifetime when the request names none (1 h).
    pub default_play_ttl: Duration,
    /// Longest play token lifetime (7 days).
    pub max_play_ttl: Duration,
}

impl std::fmt::Debug for ControlConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlConfig")
            .field("data_dir", &self.data_dir)
            .field("database_url", &self.database_url.as_ref().map(|_| ".."))
            .field("admin_token", &self.admin_token.as_ref().map(|_| ".."))
            .field("public_urls", &self.public_urls)
            .field("publish_backend", &self.publish_backend)
            .field("play_backend", &self.play_backend)
            .field("node_token", &self.node_token.as_ref().map(|_| ".."))
            .field("topology", &self.topology)
            .field("node_down_after", &self.node_down_after)
            .field("lease_ttl", &self.lease_ttl)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("transcode_profiles", &self.transcode_profiles)
            .field("hub", &self.hub.is_some())
            .finish_non_exhaustive()
    }
}

impl ControlConfig {
    /// Defaults with the given data directory.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        ControlConfig {
            data_dir: data_dir.into(),
            database_url: None,
            admin_token: None,
            token_secret: None,
            public_urls: PublicUrls::default(),
            publish_backend: None,
            play_backend: None,
            node_token: None,
            topology: node::Topology::default(),
            node_down_after: Duration::from_secs(6),
            lease_ttl: Duration::from_secs(3),
            trusted_proxies: TrustedProxies::default(),
            transcode_profiles: Vec::new(),
            hub: None,
            viewers: None,
            default_play_ttl: Duration::from_secs(3600),
            max_play_ttl: Duration::from_secs(7 * 24 * 3600),
        }
    }
}
