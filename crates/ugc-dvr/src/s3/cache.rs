//! [`S3Cache`]: byte ranges of objects as files in a size-bounded LRU + TTL
//! cache on local disk, each range fetched once however many ask; and
//! [`attach_read_side`], which sets one as an archive's remote store.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use object_store::ObjectStoreExt;
use object_store::path::Path as ObjectPath;
use sha2::Digest as _;

use super::client::{S3Settings, s3_store};
use super::{Store, hex, is_not_found};
use crate::archive::{Archive, RemoteStore, write_atomic};

/// Settings of the [`S3Cache`].
#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// The cache directory (fast local disk).
    pub dir: PathBuf,
    /// Size bound. Default 100 GB.
    pub max_bytes: u64,
    /// Files older than this are fetched again. Default 24 h.
    pub ttl: Duration,
}

impl CacheConfig {
    /// Defaults in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        CacheConfig {
            dir: dir.into(),
            max_bytes: 100_000_000_000,
            ttl: Duration::from_secs(24 * 3600),
        }
    }
}

#[derive(Debug)]
struct CacheEntry {
    size: u64,
    fetched: SystemTime,
    used: u64,
}

#[derive(Debug, Default)]
struct CacheState {
    entries: HashMap<String, CacheEntry>,
    total: u64,
    tick: u64,
}

type Inflight = Arc<tokio::sync::OnceCell<PathBuf>>;

/// Counters of the [`S3Cache`].
#[derive(Debug, Default)]
pub struct CacheStats {
    /// Ranges fetched from the object store.
    pub fetches: AtomicU64,
    /// Reads served from the cache.
    pub hits: AtomicU64,
    /// Files evicted (size bound).
    pub evictions: AtomicU64,
    /// Files dropped because their TTL passed.
    pub expired: AtomicU64,
}

/// The read-back cache; see the [module docs](super).
pub struct S3Cache {
    store: Arc<dyn Store>,
    config: CacheConfig,
    state: Mutex<CacheState>,
    inflight: Mutex<HashMap<String, Inflight>>,
    stats: CacheStats,
}

impl std::fmt::Debug for S3Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Cache")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl S3Cache {
    /// A cache over `store`; files already in `config.dir` are reused
    /// (their modification time is their fetch time). Blocking.
    pub fn new(store: Arc<dyn Store>, config: CacheConfig) -> io::Result<S3Cache> {
        std::fs::create_dir_all(&config.dir)?;
        let mut st = CacheState::default();
        let mut found = Vec::new();
        for e in std::fs::read_dir(&config.dir)? {
            let e = e?;
            let Ok(name) = e.file_name().into_string() else {
                continue;
            };
            if name.ends_with(".tmp") {
                let _ = std::fs::remove_file(e.path());
                continue;
            }
            if !name.ends_with(".bin") {
                continue;
            }
            let m = e.metadata()?;
            found.push((
                m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                name,
                m.len(),
            ));
        }
        found.sort();
        for (fetched, name, size) in found {
            st.tick += 1;
            st.total += size;
            st.entries.insert(
                name,
                CacheEntry {
                    size,
                    fetched,
                    used: st.tick,
                },
            );
        }
        Ok(S3Cache {
            store,
            config,
            state: Mutex::new(st),
            inflight: Mutex::new(HashMap::new()),
            stats: CacheStats::default(),
        })
    }

    /// Counters.
    pub fn stats(&self) -> &CacheStats {
        &self.stats
    }

    /// Bytes in the cache.
    pub fn bytes(&self) -> u64 {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).total
    }

    pub(super) fn file_name(object: &str, offset: u64, len: u64) -> String {
        let h = sha2::Sha256::digest(format!("{object}\n{offset}\n{len}").as_bytes());
        format!("{}.bin", hex(h.get(..16).unwrap_or_default()))
    }

    /// A cached file with `len` bytes of `object` from `offset`.
    pub async fn get(&self, object: &str, offset: u64, len: u64) -> io::Result<PathBuf> {
        let name = Self::file_name(object, offset, len);
        let path = self.config.dir.join(&name);
        {
            let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            st.tick += 1;
            let tick = st.tick;
            let fresh = st.entries.get(&name).map(|e| {
                e.fetched
                    .elapsed()
                    .map_or(true, |age| age < self.config.ttl)
            });
            match fresh {
                Some(true) => {
                    if let Some(e) = st.entries.get_mut(&name) {
                        e.used = tick;
                    }
                    self.stats.hits.fetch_add(1, Ordering::Relaxed);
                    return Ok(path);
                }
                Some(false) => {
                    if let Some(e) = st.entries.remove(&name) {
                        st.total = st.total.saturating_sub(e.size);
                    }
                    self.stats.expired.fetch_add(1, Ordering::Relaxed);
                }
                None => {}
            }
        }
        let cell = {
            let mut inflight = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
            inflight.entry(name.clone()).or_default().clone()
        };
        let result = cell
            .get_or_try_init(|| self.fetch(object, offset, len, &name))
            .await
            .cloned();
        self.inflight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&name);
        result
    }

    async fn fetch(&self, object: &str, offset: u64, len: u64, name: &str) -> io::Result<PathBuf> {
        self.stats.fetches.fetch_add(1, Ordering::Relaxed);
        let path = ObjectPath::from(object);
        let end = offset.checked_add(len).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("object {object}: range past u64"),
            )
        })?;
        let data = self
            .store
            .get_range(&path, offset..end)
            .await
            .map_err(|e| {
                if is_not_found(&e) {
                    io::Error::new(io::ErrorKind::NotFound, e)
                } else {
                    io::Error::other(e)
                }
            })?;
        if data.len() as u64 != len {
            return Err(io::Error::other(format!(
                "object {object}: asked {len} bytes at {offset}, got {}",
                data.len()
            )));
        }
        let dir = self.config.dir.clone();
        let file = name.to_owned();
        tokio::task::spawn_blocking(move || write_atomic(&dir, &file, &[&data]))
            .await
            .map_err(io::Error::other)??;
        let evict = {
            let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            st.tick += 1;
            let tick = st.tick;
            st.total += len;
            st.entries.insert(
                name.to_owned(),
                CacheEntry {
                    size: len,
                    fetched: SystemTime::now(),
                    used: tick,
                },
            );
            let mut evict = Vec::new();
            while st.total > self.config.max_bytes {
                let Some(victim) = st
                    .entries
                    .iter()
                    .filter(|(k, _)| k.as_str() != name)
                    .min_by_key(|(_, e)| e.used)
                    .map(|(k, _)| k.clone())
                else {
                    break;
                };
                if let Some(e) = st.entries.remove(&victim) {
                    st.total = st.total.saturating_sub(e.size);
                }
                evict.push(victim);
            }
            evict
        };
        for v in evict {
            self.stats.evictions.fetch_add(1, Ordering::Relaxed);
            let _ = std::fs::remove_file(self.config.dir.join(v));
        }
        Ok(self.config.dir.join(name))
    }
}

impl RemoteStore for S3Cache {
    fn fetch<'a>(
        &'a self,
        object: &'a str,
        offset: u64,
        len: u64,
    ) -> Pin<Box<dyn Future<Output = io::Result<PathBuf>> + Send + 'a>> {
        Box::pin(self.get(object, offset, len))
    }
}

/// The read side of an archive's S3 tier: the client of `settings` and a
/// read-back [`S3Cache`] (`cache`) set as `archive`'s remote store, so that
/// ranges moved to the bucket play and export. Returns the client, for an
/// [`Uploader`]. Blocking (opens the cache directory): call at start.
pub fn attach_read_side(
    archive: &Archive,
    settings: &S3Settings,
    cache: CacheConfig,
) -> io::Result<Arc<dyn Store>> {
    let store: Arc<dyn Store> = Arc::new(
        s3_store(settings).map_err(|e| io::Error::other(format!("building the S3 client: {e}")))?,
    );
    let dir = cache.dir.clone();
    let cache = S3Cache::new(store.clone(), cache).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("opening the cache {}: {e}", dir.display()),
        )
    })?;
    archive.set_remote(Arc::new(cache));
    Ok(store)
}
