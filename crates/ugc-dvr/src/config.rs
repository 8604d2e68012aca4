//! The DVR as a config file writes it (feature `serde`): the `[dvr]` table
//! with its `[dvr.streams.<name>]` overrides and the `[dvr.s3]` tier;
//! [`DvrSection::resolve`] fills the defaults below a data directory and
//! [`DvrConfig::open`] opens the archive and its S3 tier.
//!
//! ```toml
//! [dvr]
//! hours = 10            # default depth (0: streams are not recorded)
//! rewind_s = 3600       # rewind window of live playlists (default 0)
//! max_gb = 500          # total local archive; oldest segments go first
//! dir = "/ssd/dvr"      # default <data>/dvr
//!
//! [dvr.streams.news]    # per stream (a `policy::StreamPolicy`)
//! hours = 48
//! rewind_s = 7200
//! s3 = false            # keep this stream's events local
//!
//! [dvr.s3]              # finished recordings move to S3 (feature `s3`)
//! endpoint = "http://127.0.0.1:9000"
//! bucket = "dvr"
//! access_key_id = "..."                # or env AWS_ACCESS_KEY_ID
//! secret_access_key = "..."            # or env AWS_SECRET_ACCESS_KEY
//! prefix = "ugc/"
//! peers = "ugc/"                       # read other nodes' uploads below it
//! peer_scan_s = 60
//! part_mb = 8
//! cache_dir = "/ssd/dvr-cache"         # default <data>/dvr-cache
//! cache_gb = 100
//! cache_ttl_s = 86400
//! ```

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tracing::info;
use ugc_core::StreamPath;

use crate::archive::{Archive, ArchiveConfig};
use crate::policy::{DvrPolicy, StreamPolicy};

/// The `[dvr]` table; every key optional.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DvrSection {
    /// Archive depth in hours of streams without a setting or an override
    /// (0 = not recorded). Default 0.
    pub hours: Option<u32>,
    /// Archive directory. Default `<data>/dvr`.
    pub dir: Option<PathBuf>,
    /// Total size of the local archive in GB (oldest data goes first).
    pub max_gb: Option<f64>,
    /// Rewind window of live playlists in seconds (0 = live window only).
    pub rewind_s: Option<u32>,
    /// Per-stream settings: `[dvr.streams.<name>]`.
    #[serde(default)]
    pub streams: HashMap<String, StreamPolicy>,
    /// The S3 tier.
    pub s3: Option<S3Section>,
}

/// The `[dvr.s3]` table.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Section {
    /// `http://host:port` or `https://host[:port]` of an S3-compatible
    /// server; unset = AWS.
    pub endpoint: Option<String>,
    /// Bucket.
    pub bucket: String,
    /// Region (default `us-east-1`).
    pub region: Option<String>,
    /// Access key id (or env `AWS_ACCESS_KEY_ID`).
    pub access_key_id: Option<String>,
    /// Secret (or env `AWS_SECRET_ACCESS_KEY`).
    pub secret_access_key: Option<String>,
    /// Key prefix of every object (default `ugc/`).
    pub prefix: Option<String>,
    /// Read the recordings other nodes uploaded below this prefix (their
    /// own prefixes inside it: `ugc/` above each origin's `ugc/<node id>/`),
    /// so a recording outlives the node that made it. Default: none.
    pub peers: Option<String>,
    /// Seconds between listings of the peers' uploads (default 60, 5-3600).
    pub peer_scan_s: Option<u64>,
    /// Delete local files once an upload is verified (default true).
    pub delete_local: Option<bool>,
    /// Cache directory for ranges read back from S3 (default
    /// `<data>/dvr-cache`).
    pub cache_dir: Option<PathBuf>,
    /// Cache size in GB (default 100).
    pub cache_gb: Option<f64>,
    /// Cache TTL in seconds (default 86400).
    pub cache_ttl_s: Option<u64>,
    /// Multipart part size in MiB (default 8, at least 5).
    pub part_mb: Option<u64>,
    /// PEM file of CA certificates trusted for an `https://` endpoint
    /// besides the web PKI's (a private CA).
    pub ca_file: Option<PathBuf>,
}

/// Effective DVR settings: a [`DvrSection`] with its defaults filled.
#[derive(Debug, Clone, PartialEq)]
pub struct DvrConfig {
    /// The archive root.
    pub dir: PathBuf,
    /// Size bound of the local archive.
    pub max_bytes: Option<u64>,
    /// Depth and rewind defaults with the per-stream overrides.
    pub policy: DvrPolicy,
    /// The S3 tier (its `cache_dir` filled in).
    pub s3: Option<S3Section>,
}

impl DvrSection {
    /// The settings with their defaults: the archive in `<data>/dvr`, the
    /// S3 read-back cache in `<data>/dvr-cache`.
    pub fn resolve(self, data: &Path) -> DvrConfig {
        DvrConfig {
            dir: self.dir.unwrap_or_else(|| data.join("dvr")),
            max_bytes: self.max_gb.map(|g| (g * 1e9) as u64),
            policy: DvrPolicy {
                hours: self.hours.unwrap_or(0),
                rewind_s: self.rewind_s.unwrap_or(0),
                streams: self.streams,
            },
            s3: self.s3.map(|mut s3| {
                s3.cache_dir.get_or_insert_with(|| data.join("dvr-cache"));
                s3
            }),
        }
    }
}

/// An opened DVR: the archive, and the uploader of its S3 tier.
#[derive(Debug)]
pub struct Dvr {
    /// The archive (the packager's observer, the DVR routes' source).
    pub archive: Archive,
    /// The S3 tier's uploader, to run ([`Uploader::run`](crate::s3::Uploader::run))
    /// and to list in `/metrics`.
    #[cfg(feature = "s3")]
    pub uploader: Option<std::sync::Arc<crate::s3::Uploader>>,
}

impl DvrConfig {
    /// Opens the archive (a directory walk: call before serving); a
    /// stream's depth is `setting(stream)` when above 0 (a control plane's
    /// `dvr_hours`), else its override, else [`DvrPolicy::hours`]. With
    /// `[dvr.s3]`, the read-back cache becomes the archive's remote store
    /// and the uploader has queued the recordings that ended while nothing
    /// ran. Errors say what failed (`opening the DVR archive ...`,
    /// `dvr.s3: ...`).
    pub fn open(
        &self,
        setting: impl Fn(&StreamPath) -> Option<u32> + Send + Sync + 'static,
    ) -> io::Result<Dvr> {
        let mut ac = ArchiveConfig::new(&self.dir, self.policy.hours);
        ac.depth = self.policy.depth(setting);
        ac.max_bytes = self.max_bytes;
        let archive = Archive::open(ac)
            .map_err(|e| context(e, format!("opening the DVR archive {}", self.dir.display())))?;
        info!(dir = %self.dir.display(), default_hours = self.policy.hours,
            local_bytes = archive.local_bytes(), streams = archive.keys().len(), "DVR archive");
        #[cfg(feature = "s3")]
        let uploader = self.start_s3(&archive)?;
        #[cfg(not(feature = "s3"))]
        self.no_s3()?;
        Ok(Dvr {
            archive,
            #[cfg(feature = "s3")]
            uploader,
        })
    }

    /// Opens the archive for reading only (the export command): ranges
    /// that moved to S3 are read back through the same cache as the
    /// server's.
    pub fn open_read_only(&self) -> io::Result<Archive> {
        let archive = Archive::open_read_only(&self.dir)
            .map_err(|e| context(e, format!("reading the archive {}", self.dir.display())))?;
        #[cfg(feature = "s3")]
        if let Some(s3) = &self.s3 {
            s3_read_side(s3, &archive)?;
            crate::s3::load_remote_index(&archive, &self.dir)
                .map_err(|e| context(e, format!("reading the S3 index of bucket {}", s3.bucket)))?;
        }
        #[cfg(not(feature = "s3"))]
        self.no_s3()?;
        Ok(archive)
    }

    #[cfg(not(feature = "s3"))]
    fn no_s3(&self) -> io::Result<()> {
        match self.s3 {
            Some(_) => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "dvr.s3: built without the ugc-dvr feature `s3`",
            )),
            None => Ok(()),
        }
    }

    /// The uploader of `[dvr.s3]`, the read side attached to `archive`.
    #[cfg(feature = "s3")]
    fn start_s3(
        &self,
        archive: &Archive,
    ) -> io::Result<Option<std::sync::Arc<crate::s3::Uploader>>> {
        let Some(s3) = &self.s3 else {
            return Ok(None);
        };
        let store = s3_read_side(s3, archive)?;
        let upload = crate::s3::UploadConfig {
            prefix: s3.prefix.clone().unwrap_or_else(|| "ugc/".into()),
            part_size: (s3.part_mb.unwrap_or(8).max(5) << 20) as usize,
            delete_local: s3.delete_local.unwrap_or(true),
            streams: Some(self.policy.s3_streams()),
            peers: s3.peers.clone().filter(|p| !p.is_empty()),
            peer_scan: std::time::Duration::from_secs(s3.peer_scan_s.unwrap_or(60).clamp(5, 3600)),
            ..crate::s3::UploadConfig::default()
        };
        let uploader = crate::s3::Uploader::new(archive.clone(), store, upload)
            .map_err(|e| context(e, "dvr.s3: upload queue".into()))?;
        // Sessions that ended while the server was down.
        let queued = uploader.enqueue_finished()?;
        info!(bucket = %s3.bucket, endpoint = ?s3.endpoint, queued, "DVR S3 tier");
        Ok(Some(uploader))
    }
}

/// The S3 client and the read-back cache, set as `archive`'s remote store.
#[cfg(feature = "s3")]
fn s3_read_side(
    s3: &S3Section,
    archive: &Archive,
) -> io::Result<std::sync::Arc<dyn crate::s3::Store>> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let required = |v: &Option<String>, key: &str, var: &str| {
        v.clone().or_else(|| env(var)).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("dvr.s3: {key} (or {var}) is required"),
            )
        })
    };
    let settings = crate::s3::S3Settings {
        endpoint: s3.endpoint.clone(),
        bucket: s3.bucket.clone(),
        region: s3.region.clone().unwrap_or_else(|| "us-east-1".into()),
        access_key_id: required(&s3.access_key_id, "access_key_id", "AWS_ACCESS_KEY_ID")?,
        secret_access_key: required(
            &s3.secret_access_key,
            "secret_access_key",
            "AWS_SECRET_ACCESS_KEY",
        )?,
        ca_file: s3.ca_file.clone(),
    };
    let mut cache = crate::s3::CacheConfig::new(s3.cache_dir.clone().unwrap_or_default());
    if let Some(gb) = s3.cache_gb {
        cache.max_bytes = (gb * 1e9) as u64;
    }
    if let Some(ttl) = s3.cache_ttl_s {
        cache.ttl = std::time::Duration::from_secs(ttl);
    }
    crate::s3::attach_read_side(archive, &settings, cache).map_err(|e| context(e, "dvr.s3".into()))
}

/// `e` with `what` in front, same kind.
fn context(e: io::Error, what: String) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<DvrSection, toml::de::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct File {
            dvr: DvrSection,
        }
        toml::from_str::<File>(text).map(|f| f.dvr)
    }

    const README: &str = "[dvr]\nhours = 10\nrewind_s = 3600\nmax_gb = 500\ndir = \"/ssd/dvr\"\n\
        [dvr.streams.news]\nhours = 48\nrewind_s = 7200\ns3 = false\n\
        [dvr.s3]\nendpoint = \"http://127.0.0.1:9000\"\nbucket = \"dvr\"\n\
        access_key_id = \"a\"\nsecret_access_key = \"s\"\nprefix = \"ugc/\"\npart_mb = 8\n\
        cache_gb = 100\ncache_ttl_s = 86400\n";

    #[test]
    fn readme_section_resolves_below_the_data_dir() {
        let c = parse(README).unwrap().resolve(Path::new("/data"));
        assert_eq!(c.dir, Path::new("/ssd/dvr"));
        assert_eq!(c.max_bytes, Some(500_000_000_000));
        assert_eq!((c.policy.hours, c.policy.rewind_s), (10, 3600));
        assert_eq!(
            c.policy.streams["news"],
            StreamPolicy {
                hours: Some(48),
                rewind_s: Some(7200),
                s3: Some(false)
            }
        );
        let s3 = c.s3.unwrap();
        assert_eq!(s3.bucket, "dvr");
        assert_eq!(s3.cache_dir.as_deref(), Some(Path::new("/data/dvr-cache")));

        let c = DvrSection::default().resolve(Path::new("/data"));
        assert_eq!(c.dir, Path::new("/data/dvr"));
        assert_eq!(
            (c.max_bytes, c.policy.clone(), c.s3),
            (None, DvrPolicy::default(), None)
        );
    }

    #[test]
    fn unknown_keys_and_a_missing_bucket_are_refused() {
        assert!(parse("[dvr]\nbogus = 1\n").is_err());
        assert!(parse("[dvr.streams.a]\nbogus = 1\n").is_err());
        assert!(parse("[dvr.s3]\nendpoint = \"http://x\"\n").is_err());
        assert!(parse("[dvr.s3]\nbucket = \"b\"\nbogus = 1\n").is_err());
    }

    #[test]
    fn opens_the_archive_with_the_setting_first() {
        let data = std::env::temp_dir().join(format!("ugc-dvr-config-{}", std::process::id()));
        let section = parse("[dvr]\nhours = 2\n[dvr.streams.news]\nhours = 24\n").unwrap();
        let config = section.resolve(&data);
        let dvr = config.open(|s: &StreamPath| Some(if s.name() == "show" { 48 } else { 0 }));
        let read_only = config.open_read_only();
        let _ = std::fs::remove_dir_all(&data);
        let dvr = dvr.unwrap();
        assert!(read_only.is_ok());
        let depth = |n: &str| dvr.archive.depth_hours(&StreamPath::live(n).unwrap());
        assert_eq!((depth("show"), depth("news"), depth("other")), (48, 24, 2));
    }
}
