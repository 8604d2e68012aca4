//! [`ControlPlane`]: the store plus the in-memory views the hot paths read
//! (stream keys, stream settings, revoked sessions, API principals).
//!
//! This process is the single writer of its caches: every change made
//! through it updates them at once. Several nodes sharing one PostgreSQL
//! see each other's new keys and tokens (cache misses fall back to the
//! database) but not each other's rotations or revocations until restart.
//! Stream settings reach separate media nodes over HTTP instead: the
//! change feed (`GET /api/v1/changes`, see [`crate::remote`]).

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use tokio::sync::broadcast;
use ugc_core::StreamPath;

use crate::error::{Error, Result};
use crate::external::BackendClient;
use crate::store::{ADMIN_ID, Principal, SessionRecord, Store, StreamRecord};
use crate::token::{PlayClaims, SessionId, TokenKey};
use crate::util::{hex, random_bytes, random_token, sha256, unix_now};
use crate::{ControlConfig, PublicUrls, TrustedProxies, validate};

/// What a running server needs of a stream's configuration.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StreamSettings {
    /// Private streams need a play token.
    pub private: bool,
    /// `off`, `default` or a named profile.
    pub transcode: String,
    /// Archive depth in hours (0 = off).
    pub dvr_hours: u32,
    /// Restream targets.
    pub restream: Vec<String>,
    /// SRT passphrase.
    pub srt_passphrase: Option<String>,
    /// The stream's fallback (`None`: the media node's own): `slate`,
    /// `off`, an `http(s)://` URL or a file name in the node's fallback
    /// directory.
    #[serde(default)]
    pub fallback: Option<String>,
    /// Source timeout in ms (0: the media node's default).
    #[serde(default)]
    pub source_timeout_ms: u32,
}

impl From<&StreamRecord> for StreamSettings {
    fn from(s: &StreamRecord) -> Self {
        StreamSettings {
            private: s.private,
            transcode: s.transcode.clone(),
            dvr_hours: s.dvr_hours,
            restream: s.restream.clone(),
            srt_passphrase: s.srt_passphrase.clone(),
            fallback: s.fallback.clone(),
            source_timeout_ms: s.source_timeout_ms,
        }
    }
}

/// What happened to a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ChangeKind {
    /// Created.
    Created,
    /// Settings changed (read them with [`ControlPlane::settings`]).
    Updated,
    /// Key rotated (the publisher on the old key was dropped).
    KeyRotated,
    /// Deleted.
    Deleted,
}

/// One change notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamChange {
    /// The stream name (without `live/`).
    pub name: String,
    /// What changed.
    pub kind: ChangeKind,
}

/// A new stream (`POST /streams`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewStream {
    /// `[a-z0-9_-]{1,64}`.
    pub name: String,
    /// Title (default: empty).
    #[serde(default)]
    pub title: Option<String>,
    /// Default false.
    #[serde(default)]
    pub private: Option<bool>,
    /// Default none.
    #[serde(default)]
    pub srt_passphrase: Option<String>,
    /// Default `off`.
    #[serde(default)]
    pub transcode: Option<String>,
    /// Default 0.
    #[serde(default)]
    pub dvr_hours: Option<u32>,
    /// Default empty.
    #[serde(default)]
    pub restream: Option<Vec<String>>,
    /// Default none (the media node's fallback).
    #[serde(default)]
    pub fallback: Option<String>,
    /// Default 0 (the media node's source timeout).
    #[serde(default)]
    pub source_timeout_ms: Option<u32>,
}

/// A change to a stream (`PATCH /streams/{name}`); absent fields stay.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamPatch {
    /// New title.
    #[serde(default)]
    pub title: Option<String>,
    /// New private flag.
    #[serde(default)]
    pub private: Option<bool>,
    /// `Some(None)` (JSON `null`) removes the passphrase.
    #[serde(default, deserialize_with = "double_option")]
    pub srt_passphrase: Option<Option<String>>,
    /// New transcode profile.
    #[serde(default)]
    pub transcode: Option<String>,
    /// New archive depth.
    #[serde(default)]
    pub dvr_hours: Option<u32>,
    /// New restream list.
    #[serde(default)]
    pub restream: Option<Vec<String>>,
    /// `Some(None)` (JSON `null`) goes back to the media node's fallback.
    #[serde(default, deserialize_with = "double_option")]
    pub fallback: Option<Option<String>>,
    /// New source timeout (0: the media node's).
    #[serde(default)]
    pub source_timeout_ms: Option<u32>,
}

fn double_option<'de, D, T>(d: D) -> std::result::Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    serde::Deserialize::deserialize(d).map(Some)
}

/// A play URL for a viewer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlayGrant {
    /// The playlist URL with `?token=`.
    pub url: String,
    /// WebRTC play (WHEP) on the same origin; the token as bearer.
    pub whep: String,
    /// The token.
    pub token: String,
    /// Expiry, unix seconds.
    pub expires_at: u64,
    /// The session (revoke with `DELETE /sessions/{id}`).
    pub session: SessionId,
}

/// Stream key -> stream name, plus the keys this process retired (rotated
/// or deleted). Retired keys are never allowed again, even if a concurrent
/// cache-miss lookup read them from the database just before the change.
#[derive(Debug, Default)]
pub(crate) struct KeyCache {
    pub(crate) by_key: HashMap<String, String>,
    pub(crate) retired: HashSet<String>,
}

impl KeyCache {
    fn retire(&mut self, key: &str) {
        self.by_key.remove(key);
        self.retired.insert(key.to_owned());
    }
}

fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The registry as last read for viewer redirects, and when.
pub(crate) type NodesForPlay = Option<(std::time::Instant, Arc<Vec<crate::registry::NodeView>>)>;

pub(crate) struct Inner {
    pub(crate) store: Store,
    pub(crate) key: TokenKey,
    /// The play-token secret, for origins that check tokens themselves
    /// (`GET /node/play-auth`, node token only).
    pub(crate) play_secret: Vec<u8>,
    pub(crate) public: PublicUrls,
    pub(crate) trusted: TrustedProxies,
    pub(crate) profiles: Vec<String>,
    pub(crate) publish_backend: Option<BackendClient>,
    pub(crate) play_backend: Option<BackendClient>,
    pub(crate) hub: Option<ugc_core::Hub>,
    pub(crate) viewers: Option<Arc<ugc_core::viewers::ViewerCounter>>,
    /// The last 15 minutes of each stream on this node's Hub, for the
    /// panel's charts (`GET /streams/{name}/history`).
    pub(crate) history: Mutex<ugc_core::history::StreamHistory>,
    pub(crate) default_ttl: u64,
    pub(crate) max_ttl: u64,
    /// Stream keys, current and retired.
    pub(crate) keys: RwLock<KeyCache>,
    /// stream name -> settings
    pub(crate) settings: RwLock<HashMap<String, StreamSettings>>,
    pub(crate) revoked: RwLock<HashSet<SessionId>>,
    /// sha256(bearer token) -> principal
    principals: RwLock<HashMap<[u8; 32], Principal>>,
    changes: broadcast::Sender<StreamChange>,
    /// The sequenced change feed of `GET /changes`; its lock also orders
    /// settings writes, so events carry settings in commit order.
    pub(crate) feed: Mutex<crate::provision::Feed>,
    /// sha256 of the node token, if configured.
    pub(crate) node_token: Option<[u8; 32]>,
    /// Where media nodes send streams (`GET /node/topology`).
    pub(crate) topology: crate::node::Topology,
    /// The registry's origins as the topology answers them, and when they
    /// were read: every node asks every 2 s, the registry is read once a
    /// second at most.
    pub(crate) registry_origins: Mutex<Option<(std::time::Instant, Vec<String>)>>,
    /// The registry as origins' viewer redirects read it (once a second at
    /// most: every new viewer of a balancing origin asks).
    pub(crate) nodes_for_play: tokio::sync::Mutex<NodesForPlay>,
    /// Viewers sent to each origin lately ([`ControlPlane::play_node`]).
    pub(crate) viewer_picks: crate::registry::ViewerPicks,
    pub(crate) node_down_after: std::time::Duration,
    pub(crate) lease_ttl: std::time::Duration,
    /// When this process opened the control plane (Unix ms): the registry
    /// and the leases do not judge nodes by beats they could not hear
    /// before it (see [`ControlPlane::nodes`], [`crate::lease::Round`]).
    pub(crate) started_ms: i64,
    /// One transcode lease round at a time on SQLite.
    pub(crate) lease_lock: tokio::sync::Mutex<()>,
    /// What lease rounds read of the registry.
    pub(crate) lease_view: tokio::sync::Mutex<crate::lease::LeaseCache>,
    /// Streams placed on publishing nodes.
    pub(crate) placements: crate::registry::Placements,
    generated_admin: Mutex<Option<String>>,
}

/// The control plane. Cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct ControlPlane {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane")
            .field("public", &self.inner.public)
            .finish_non_exhaustive()
    }
}

fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Reads the play-token secret from `path`, creating it (32 random bytes,
/// hex, mode 0600 on Unix) on first start.
fn load_or_create_secret(path: &std::path::Path) -> Result<Vec<u8>> {
    match std::fs::read_to_string(path) {
        Ok(s) => crate::util::unhex::<32>(s.trim())
            .map(|b| b.to_vec())
            .ok_or_else(|| Error::Config(format!("{}: not 64 hex digits", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let secret = random_bytes::<32>()?;
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
            let mut f = opts.open(path).map_err(io(path))?;
            std::io::Write::write_all(&mut f, hex(&secret).as_bytes()).map_err(io(path))?;
            f.sync_all().map_err(io(path))?;
            Ok(secret.to_vec())
        }
        Err(e) => Err(io(path)(e)),
    }
}

impl ControlPlane {
    /// Opens (creating on first start) the database and the token secret,
    /// applies migrations, sets or generates the admin token and loads the
    /// in-memory views.
    pub async fn open(config: ControlConfig) -> Result<ControlPlane> {
        std::fs::create_dir_all(&config.data_dir).map_err(io(&config.data_dir))?;
        let url = match &config.database_url {
            Some(u) => u.clone(),
            None => format!(
                "sqlite://{}?mode=rwc",
                config.data_dir.join("ugc.db").display()
            ),
        };
        let store = Store::open(&url).await?;
        let secret = match &config.token_secret {
            Some(s) if s.len() >= 16 => s.clone(),
            Some(_) => return Err(Error::Config("token secret shorter than 16 bytes".into())),
            None => load_or_create_secret(&config.data_dir.join("play-token.key"))?,
        };
        let now = unix_now();
        let now_i = i64::try_from(now).unwrap_or(i64::MAX);
        let mut generated = None;
        match &config.admin_token {
            Some(t) => {
                if t.len() < 16 {
                    return Err(Error::Config(
                        "admin token shorter than 16 characters".into(),
                    ));
                }
                store.set_admin_token(&hex(&sha256(t)), now_i).await?;
            }
            None => {
                if !store.admin_exists().await? {
                    let t = random_token::<32>()?;
                    store.set_admin_token(&hex(&sha256(&t)), now_i).await?;
                    generated = Some(t);
                }
            }
        }
        let streams = store.streams(None).await?;
        let keys = streams
            .iter()
            .map(|s| (s.key.clone(), s.name.clone()))
            .collect();
        let settings = streams
            .iter()
            .map(|s| (s.name.clone(), StreamSettings::from(s)))
            .collect();
        let revoked = store
            .revoked_sessions(now_i)
            .await?
            .iter()
            .filter_map(|s| SessionId::parse(s))
            .collect();
        let publish_backend = config
            .publish_backend
            .as_ref()
            .map(BackendClient::new)
            .transpose()?;
        let play_backend = config
            .play_backend
            .as_ref()
            .map(BackendClient::new)
            .transpose()?;
        let (changes, _) = broadcast::channel(256);
        let feed = crate::provision::Feed::new()?;
        let node_token = match &config.node_token {
            Some(t) if t.len() < 16 => {
                return Err(Error::Config(
                    "node token shorter than 16 characters".into(),
                ));
            }
            Some(t) => Some(sha256(t)),
            None => None,
        };
        config.topology.check().map_err(Error::Config)?;
        Ok(ControlPlane {
            inner: Arc::new(Inner {
                store,
                key: TokenKey::new(&secret),
                play_secret: secret.to_vec(),
                public: config.public_urls,
                trusted: config.trusted_proxies,
                profiles: config.transcode_profiles,
                publish_backend,
                play_backend,
                hub: config.hub,
                viewers: config.viewers,
                history: Mutex::default(),
                default_ttl: config.default_play_ttl.as_secs().max(1),
                max_ttl: config.max_play_ttl.as_secs().max(1),
                keys: RwLock::new(KeyCache {
                    by_key: keys,
                    retired: HashSet::new(),
                }),
                settings: RwLock::new(settings),
                revoked: RwLock::new(revoked),
                principals: RwLock::new(HashMap::new()),
                changes,
                feed: Mutex::new(feed),
                node_token,
                topology: config.topology,
                registry_origins: Mutex::new(None),
                nodes_for_play: tokio::sync::Mutex::new(None),
                viewer_picks: Default::default(),
                node_down_after: config.node_down_after,
                lease_ttl: config.lease_ttl.max(std::time::Duration::from_millis(300)),
                started_ms: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
                lease_lock: tokio::sync::Mutex::new(()),
                lease_view: tokio::sync::Mutex::new(Default::default()),
                placements: Default::default(),
                generated_admin: Mutex::new(generated),
            }),
        })
    }

    /// The admin token generated by this [`open`](Self::open) (first start
    /// without a configured token), once; `None` afterwards. The server
    /// prints it: the database holds only its hash.
    pub fn take_generated_admin_token(&self) -> Option<String> {
        self.inner
            .generated_admin
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }

    /// The database.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The public URLs configuration.
    pub fn public_urls(&self) -> &PublicUrls {
        &self.inner.public
    }

    /// The play-token key (for nodes that verify tokens themselves).
    pub fn token_key(&self) -> &TokenKey {
        &self.inner.key
    }

    /// The client address of a request from `peer` with these
    /// `X-Forwarded-For` header values, trusting the header only from the
    /// configured proxies.
    pub fn client_ip<'a>(&self, peer: IpAddr, xff: impl IntoIterator<Item = &'a str>) -> IpAddr {
        self.inner.trusted.client_ip(peer, xff)
    }

    /// The settings of stream `name` (without `live/`), from memory.
    pub fn settings(&self, name: &str) -> Option<StreamSettings> {
        read(&self.inner.settings).get(name).cloned()
    }

    /// Change notifications (created, updated, key rotated, deleted). A
    /// receiver that lags gets `RecvError::Lagged` and should re-read every
    /// stream's [`settings`](Self::settings).
    pub fn subscribe_changes(&self) -> broadcast::Receiver<StreamChange> {
        self.inner.changes.subscribe()
    }

    /// Applies a settings change to memory and announces it, in-process
    /// and on the HTTP feed. `new`: the settings of a created or updated
    /// stream; a deletion removes them; a key rotation leaves them.
    fn commit(&self, name: &str, kind: ChangeKind, new: Option<StreamSettings>) {
        let mut feed = self
            .inner
            .feed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let current = {
            let mut map = write(&self.inner.settings);
            match (kind, new) {
                (ChangeKind::Deleted, _) => {
                    map.remove(name);
                }
                (_, Some(s)) => {
                    map.insert(name.to_owned(), s);
                }
                (_, None) => {}
            }
            map.get(name).cloned()
        };
        let change = StreamChange {
            name: name.to_owned(),
            kind,
        };
        feed.push(change.clone(), current);
        // No receivers is fine.
        let _ = self.inner.changes.send(change);
    }

    fn drop_publisher(&self, name: &str) {
        if let (Some(hub), Ok(path)) = (&self.inner.hub, StreamPath::live(name)) {
            hub.disconnect_publisher(&path);
        }
    }

    /// The sources of stream `name` on this node's Hub, if it is here:
    /// the one viewers get and those attached (see [`ugc_core::SourceRole`]).
    pub fn sources(&self, name: &str) -> Option<(ugc_core::SourceRole, Vec<ugc_core::SourceRole>)> {
        let path = StreamPath::live(name).ok()?;
        let snap = self.inner.hub.as_ref()?.stats(&path)?;
        Some((snap.active_source, snap.sources))
    }

    /// HLS viewers of `live/<name>` now (`None` where nobody counts them).
    pub fn viewers(&self, name: &str) -> Option<usize> {
        let path = StreamPath::live(name).ok()?;
        let counter = self.inner.viewers.as_ref()?;
        Some(counter.count(&path, std::time::Instant::now()))
    }

    /// Samples every stream of this node's Hub into the history of the
    /// panel's charts, at unix time `now_ms` (see
    /// [`ugc_core::history`]); nothing without a Hub.
    pub fn sample_history(&self, now_ms: u64) {
        let Some(hub) = &self.inner.hub else {
            return;
        };
        let now = std::time::Instant::now();
        let readings: Vec<ugc_core::history::Reading> = hub
            .stream_names()
            .into_iter()
            .filter(|p| p.rendition().is_none())
            .filter_map(|p| {
                let name = p.as_str().strip_prefix("live/")?.to_owned();
                let s = hub.stats(&p)?;
                let fallback = s.fallback_since.is_some();
                Some(ugc_core::history::Reading {
                    viewers: self
                        .inner
                        .viewers
                        .as_ref()
                        .map(|v| u32::try_from(v.count(&p, now)).unwrap_or(u32::MAX)),
                    name,
                    bytes_in: s.bytes_in,
                    frames_in: s.frames_in,
                    skips: s.reader_skips,
                    source: (s.publishing || fallback).then_some(s.active_source as u8),
                })
            })
            .collect();
        crate::util::lock(&self.inner.history).record(now_ms, &readings);
    }

    /// Samples the history of a cluster's streams at unix time `now_ms`
    /// from its nodes' beats ([`crate::registry::NodeBeat::stats`]): a
    /// stream's ingest counters from the publishing node whose source
    /// ranks first (main, backup, fallback; another role's only when no
    /// publishing node carries it), its viewers summed over the nodes that
    /// count them (origins). Down nodes are left out.
    pub fn sample_history_from(&self, nodes: &[crate::registry::NodeView], now_ms: u64) {
        use crate::registry::{NodeRole, NodeState};
        let mut by: HashMap<String, ((u8, u8), ugc_core::history::Reading)> = HashMap::new();
        for n in nodes.iter().filter(|n| n.state != NodeState::Down) {
            let role_rank = u8::from(!matches!(n.role, NodeRole::Publish | NodeRole::All));
            for st in &n.stats {
                let Some(name) = st.stream.strip_prefix("live/") else {
                    continue;
                };
                let rank = (role_rank, st.source);
                let (best, r) = by.entry(name.to_owned()).or_insert_with(|| {
                    (
                        (u8::MAX, u8::MAX),
                        ugc_core::history::Reading {
                            name: name.to_owned(),
                            ..Default::default()
                        },
                    )
                });
                if rank < *best {
                    *best = rank;
                    r.bytes_in = st.bytes_in;
                    r.frames_in = st.frames_in;
                    r.skips = st.skips;
                    r.source = Some(st.source);
                }
                if let Some(v) = st.viewers {
                    r.viewers = Some(r.viewers.unwrap_or(0).saturating_add(v));
                }
            }
        }
        let readings: Vec<_> = by.into_values().map(|(_, r)| r).collect();
        crate::util::lock(&self.inner.history).record(now_ms, &readings);
    }

    /// Samples the history every 5 s, forever: from this node's Hub
    /// ([`sample_history`](Self::sample_history)) where it has one, else
    /// from the registry's beats
    /// ([`sample_history_from`](Self::sample_history_from)).
    pub async fn sample_history_every(self) {
        let every = crate::util::lock(&self.inner.history).config().every;
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if self.inner.hub.is_some() {
                self.sample_history(crate::util::now_ms());
            } else {
                match self.nodes().await {
                    Ok(nodes) => self.sample_history_from(&nodes, crate::util::now_ms()),
                    Err(e) => tracing::debug!(error = %e, "history: the registry"),
                }
            }
        }
    }

    /// Stream `name`'s recent samples (oldest first) and their interval.
    pub fn history(&self, name: &str) -> (std::time::Duration, Vec<ugc_core::history::Sample>) {
        let h = crate::util::lock(&self.inner.history);
        (h.config().every, h.samples(name, crate::util::now_ms()))
    }

    /// Whether `live/<name>` has a publisher (false without a Hub).
    pub fn is_live(&self, name: &str) -> bool {
        let Ok(path) = StreamPath::live(name) else {
            return false;
        };
        self.inner
            .hub
            .as_ref()
            .is_some_and(|h| h.is_publishing(&path))
    }

    // ---- principals -----------------------------------------------------

    /// Whether a request carries an admin's bearer token, read as the
    /// control API reads it (for routes mounted outside it: stats,
    /// `/metrics`). A store error counts as no.
    pub async fn is_admin_request(&self, headers: &axum::http::HeaderMap) -> bool {
        let Some(token) = crate::api::bearer(headers) else {
            return false;
        };
        matches!(self.authenticate(token).await, Ok(Some(p)) if p.admin)
    }

    /// The principal of a bearer token, from memory or the database.
    pub async fn authenticate(&self, bearer: &str) -> Result<Option<Principal>> {
        if bearer.is_empty() || bearer.len() > 256 {
            return Ok(None);
        }
        let h = sha256(bearer);
        if let Some(p) = read(&self.inner.principals).get(&h) {
            return Ok(Some(p.clone()));
        }
        let p = self.inner.store.principal_by_token_hash(&hex(&h)).await?;
        if let Some(p) = &p {
            write(&self.inner.principals).insert(h, p.clone());
        }
        Ok(p)
    }

    /// Creates a creator (admin only); returns `(id, token)`. The token is
    /// shown once and stored hashed.
    pub async fn create_creator(
        &self,
        by: &Principal,
        name: Option<&str>,
    ) -> Result<(String, String)> {
        if !by.admin {
            return Err(Error::Forbidden("only the admin creates creators".into()));
        }
        let id = format!("c_{}", hex(&random_bytes::<8>()?));
        let name = name.unwrap_or(&id).to_owned();
        if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
            return Err(Error::Invalid {
                field: "name",
                reason: "1 to 64 characters, no control characters".into(),
            });
        }
        let token = random_token::<32>()?;
        let now = i64::try_from(unix_now()).unwrap_or(i64::MAX);
        self.inner
            .store
            .insert_creator(&id, &name, &hex(&sha256(&token)), false, now)
            .await?;
        Ok((id, token))
    }

    // ---- streams --------------------------------------------------------

    /// The stream `name` if `by` may see it: 404 if missing, 403 if another
    /// creator's.
    pub async fn stream_for(&self, by: &Principal, name: &str) -> Result<StreamRecord> {
        validate::stream_name(name)?;
        let s = self
            .inner
            .store
            .stream(name)
            .await?
            .ok_or_else(|| Error::NotFound {
                what: "stream",
                id: name.to_owned(),
            })?;
        if !by.admin && s.owner != by.id {
            return Err(Error::Forbidden(format!(
                "stream {name:?} belongs to another creator"
            )));
        }
        Ok(s)
    }

    /// The streams `by` may see.
    pub async fn list_streams(&self, by: &Principal) -> Result<Vec<StreamRecord>> {
        self.inner
            .store
            .streams(if by.admin { None } else { Some(&by.id) })
            .await
    }

    /// Creates a stream owned by `by` with a fresh key.
    pub async fn create_stream(&self, by: &Principal, new: NewStream) -> Result<StreamRecord> {
        validate::stream_name(&new.name)?;
        let title = new.title.unwrap_or_default();
        validate::title(&title)?;
        let transcode = new.transcode.unwrap_or_else(|| "off".into());
        validate::transcode(&transcode, &self.inner.profiles)?;
        let dvr_hours = new.dvr_hours.unwrap_or(0);
        validate::dvr_hours(dvr_hours)?;
        let restream = new.restream.unwrap_or_default();
        validate::restream(&restream)?;
        if let Some(p) = &new.srt_passphrase {
            validate::srt_passphrase(p)?;
        }
        if let Some(f) = &new.fallback {
            validate::fallback(f)?;
        }
        let source_timeout_ms = new.source_timeout_ms.unwrap_or(0);
        validate::source_timeout_ms(source_timeout_ms)?;
        let rec = StreamRecord {
            name: new.name,
            owner: by.id.clone(),
            title,
            private: new.private.unwrap_or(false),
            key: random_token::<16>()?,
            transcode,
            dvr_hours,
            restream,
            srt_passphrase: new.srt_passphrase,
            fallback: new.fallback,
            source_timeout_ms,
            created_at: i64::try_from(unix_now()).unwrap_or(i64::MAX),
        };
        self.inner.store.insert_stream(&rec).await?;
        write(&self.inner.keys)
            .by_key
            .insert(rec.key.clone(), rec.name.clone());
        self.commit(
            &rec.name,
            ChangeKind::Created,
            Some(StreamSettings::from(&rec)),
        );
        Ok(rec)
    }

    /// Applies `patch` to a stream `by` owns; running servers are notified.
    pub async fn update_stream(
        &self,
        by: &Principal,
        name: &str,
        patch: StreamPatch,
    ) -> Result<StreamRecord> {
        let mut s = self.stream_for(by, name).await?;
        if let Some(t) = patch.title {
            validate::title(&t)?;
            s.title = t;
        }
        if let Some(p) = patch.private {
            s.private = p;
        }
        if let Some(p) = patch.srt_passphrase {
            if let Some(p) = &p {
                validate::srt_passphrase(p)?;
            }
            s.srt_passphrase = p;
        }
        if let Some(t) = patch.transcode {
            validate::transcode(&t, &self.inner.profiles)?;
            s.transcode = t;
        }
        if let Some(h) = patch.dvr_hours {
            validate::dvr_hours(h)?;
            s.dvr_hours = h;
        }
        if let Some(r) = patch.restream {
            validate::restream(&r)?;
            s.restream = r;
        }
        if let Some(f) = patch.fallback {
            if let Some(f) = &f {
                validate::fallback(f)?;
            }
            s.fallback = f;
        }
        if let Some(t) = patch.source_timeout_ms {
            validate::source_timeout_ms(t)?;
            s.source_timeout_ms = t;
        }
        self.inner.store.update_stream(&s).await?;
        self.commit(&s.name, ChangeKind::Updated, Some(StreamSettings::from(&s)));
        Ok(s)
    }

    /// Deletes a stream `by` owns, drops its publisher and its sessions.
    pub async fn delete_stream(&self, by: &Principal, name: &str) -> Result<()> {
        let s = self.stream_for(by, name).await?;
        write(&self.inner.keys).retire(&s.key);
        self.inner.store.delete_stream(name).await?;
        self.drop_publisher(name);
        self.commit(name, ChangeKind::Deleted, None);
        Ok(())
    }

    /// Gives a stream `by` owns a new key: the old one stops at once and a
    /// publisher on it is dropped. Returns the new key.
    pub async fn rotate_key(&self, by: &Principal, name: &str) -> Result<String> {
        let mut s = self.stream_for(by, name).await?;
        let old = std::mem::replace(&mut s.key, random_token::<16>()?);
        // Refuse the old key before the database write, so no publish can
        // slip in between.
        write(&self.inner.keys).retire(&old);
        self.inner.store.update_stream(&s).await?;
        write(&self.inner.keys)
            .by_key
            .insert(s.key.clone(), s.name.clone());
        self.drop_publisher(name);
        self.commit(name, ChangeKind::KeyRotated, None);
        Ok(s.key)
    }

    /// Creates the admin-owned stream `name` unless it exists; returns it
    /// and its key (for `make demo`).
    pub async fn ensure_demo_stream(&self, name: &str) -> Result<(StreamRecord, String)> {
        let admin = Principal {
            id: ADMIN_ID.into(),
            admin: true,
        };
        let s = match self.inner.store.stream(name).await? {
            Some(s) => s,
            None => {
                let new = NewStream {
                    name: name.to_owned(),
                    title: Some("Demo".into()),
                    ..NewStream::default()
                };
                match self.create_stream(&admin, new).await {
                    Ok(s) => s,
                    Err(Error::Conflict { .. }) => self.stream_for(&admin, name).await?,
                    Err(e) => return Err(e),
                }
            }
        };
        let key = s.key.clone();
        Ok((s, key))
    }

    // ---- play sessions --------------------------------------------------

    /// Opens a play session on a stream `by` owns and signs its token. The
    /// URL is on the least-loaded live origin of the node registry (one
    /// carrying the stream if any does), else on this server.
    /// `ttl_s` defaults to the configured default and must not exceed the
    /// maximum.
    pub async fn issue_play(
        &self,
        by: &Principal,
        name: &str,
        ttl_s: Option<u64>,
        bind_ip: Option<IpAddr>,
    ) -> Result<PlayGrant> {
        let s = self.stream_for(by, name).await?;
        let bind_ip = bind_ip.map(|ip| match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        });
        let ttl = ttl_s.unwrap_or(self.inner.default_ttl);
        if ttl == 0 || ttl > self.inner.max_ttl {
            return Err(Error::Invalid {
                field: "ttl_s",
                reason: format!("{ttl} not in 1..={}", self.inner.max_ttl),
            });
        }
        let now = unix_now();
        let expires_at = now.checked_add(ttl).ok_or(Error::Invalid {
            field: "ttl_s",
            reason: "overflow".into(),
        })?;
        let session = SessionId::random()?;
        let token = self.inner.key.sign(&PlayClaims {
            stream: s.name.clone(),
            expires_at,
            session,
            bind_ip,
        })?;
        self.inner
            .store
            .insert_session(
                &SessionRecord {
                    id: session.to_string(),
                    stream: s.name.clone(),
                    expires_at: i64::try_from(expires_at).unwrap_or(i64::MAX),
                    bind_ip: bind_ip.map(|i| i.to_string()),
                    revoked: false,
                },
                i64::try_from(now).unwrap_or(i64::MAX),
            )
            .await?;
        let nodes = self.nodes().await?;
        let urls = self.play_urls(&s.name, &nodes, true);
        let base = urls.play(&s.name);
        Ok(PlayGrant {
            url: format!("{base}?token={token}"),
            whep: urls.whep(&s.name),
            token,
            expires_at,
            session,
        })
    }

    /// Revokes a play session on a stream `by` owns: its token is refused
    /// from now on.
    pub async fn revoke_session(&self, by: &Principal, id: &str) -> Result<()> {
        let not_found = || Error::NotFound {
            what: "session",
            id: id.chars().take(64).collect(),
        };
        let sid = SessionId::parse(id).ok_or_else(not_found)?;
        let rec = self
            .inner
            .store
            .session(&sid.to_string())
            .await?
            .ok_or_else(not_found)?;
        if !by.admin {
            match self.inner.store.stream(&rec.stream).await? {
                Some(s) if s.owner == by.id => {}
                Some(_) => {
                    return Err(Error::Forbidden(
                        "session of another creator's stream".into(),
                    ));
                }
                None => return Err(not_found()),
            }
        }
        write(&self.inner.revoked).insert(sid);
        self.inner.store.revoke_session(&rec.id).await?;
        Ok(())
    }

    /// Forgets expired sessions (database and revocation set). Call now
    /// and then (e.g. hourly).
    pub async fn prune_sessions(&self) -> Result<u64> {
        let now = i64::try_from(unix_now()).unwrap_or(i64::MAX);
        let n = self.inner.store.prune_sessions(now).await?;
        let still: HashSet<SessionId> = self
            .inner
            .store
            .revoked_sessions(now)
            .await?
            .iter()
            .filter_map(|s| SessionId::parse(s))
            .collect();
        write(&self.inner.revoked).retain(|s| still.contains(s));
        Ok(n)
    }
}
