//! DVR wiring: the `[dvr]` config, the archive with its S3 tier, and the
//! `ugc-server dvr export` command's flags.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde::Deserialize;
use tracing::info;
use ugc_auth::ControlPlane;
use ugc_core::StreamPath;
use ugc_dvr::archive::{Archive, ArchiveConfig, TrackKey};
use ugc_dvr::policy::{DvrPolicy, StreamPolicy};
use ugc_dvr::s3::{CacheConfig, S3Settings, Store, UploadConfig, Uploader};

/// `[dvr]` in the TOML file.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DvrFileConfig {
    /// Archive depth in hours of streams whose control-plane `dvr_hours` is
    /// 0 (0 = those streams are not recorded). Default 0.
    pub hours: Option<u32>,
    /// Archive directory. Default `<data>/dvr`.
    pub dir: Option<PathBuf>,
    /// Total size of the local archive in GB (oldest data goes first).
    pub max_gb: Option<f64>,
    /// Rewind window of live playlists in seconds (0 = live window only).
    pub rewind_s: Option<u32>,
    /// Per-stream settings: `[dvr.streams.<name>]` (the control plane's
    /// `dvr_hours`, when above 0, wins over `hours`).
    pub streams: Option<HashMap<String, StreamPolicy>>,
    /// The S3 tier.
    pub s3: Option<S3FileConfig>,
}

/// `[dvr.s3]` in the TOML file.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3FileConfig {
    /// `http://host:port` of an S3-compatible server; unset = AWS.
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
    /// Delete local files once an upload is verified (default true).
    pub delete_local: Option<bool>,
    /// Cache directory for ranges read back from S3 (default `<data>/dvr-cache`).
    pub cache_dir: Option<PathBuf>,
    /// Cache size in GB (default 100).
    pub cache_gb: Option<f64>,
    /// Cache TTL in seconds (default 86400).
    pub cache_ttl_s: Option<u64>,
    /// Multipart part size in MiB (default 8, at least 5).
    pub part_mb: Option<u64>,
}

/// Effective DVR settings.
#[derive(Debug, Clone)]
pub struct DvrConfig {
    pub dir: PathBuf,
    pub max_bytes: Option<u64>,
    pub policy: DvrPolicy,
    pub s3: Option<S3FileConfig>,
}

impl DvrConfig {
    pub fn new(file: Option<DvrFileConfig>, flag_hours: Option<u32>, data: &Path) -> Self {
        let file = file.unwrap_or_default();
        DvrConfig {
            dir: file.dir.unwrap_or_else(|| data.join("dvr")),
            max_bytes: file.max_gb.map(|g| (g * 1e9) as u64),
            policy: DvrPolicy {
                hours: flag_hours.or(file.hours).unwrap_or(0),
                rewind_s: file.rewind_s.unwrap_or(0),
                streams: file.streams.unwrap_or_default(),
            },
            s3: file.s3,
        }
    }
}

/// `ugc-server <command>`; without one the server runs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// DVR archive tools.
    Dvr {
        #[command(subcommand)]
        command: DvrCommand,
    },
}

/// `ugc-server dvr <command>`.
#[derive(Debug, Subcommand)]
pub enum DvrCommand {
    /// Export a range of the archive as a progressive MP4 (no re-encoding).
    Export(ExportArgs),
}

/// `ugc-server dvr export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Stream name (`foo` or `live/foo`).
    #[arg(long)]
    pub stream: String,
    /// Start: unix seconds, or negative seconds relative to now (`-600`).
    #[arg(long, allow_hyphen_values = true)]
    pub from: i64,
    /// Length in seconds.
    #[arg(long)]
    pub duration: u32,
    /// Output file.
    #[arg(short, long)]
    pub output: PathBuf,
}

/// Opens the archive (a directory walk: call before serving), its depth
/// from the control plane's `dvr_hours`, then `[dvr]`.
pub fn open_archive(config: &DvrConfig, control: &ControlPlane) -> anyhow::Result<Archive> {
    let mut ac = ArchiveConfig::new(&config.dir, config.policy.hours);
    ac.depth = config
        .policy
        .depth(crate::settings::dvr_hours(control.clone()));
    ac.max_bytes = config.max_bytes;
    let archive = Archive::open(ac)
        .with_context(|| format!("opening the DVR archive {}", config.dir.display()))?;
    info!(dir = %config.dir.display(), default_hours = config.policy.hours,
        local_bytes = archive.local_bytes(), streams = archive.keys().len(), "DVR archive");
    Ok(archive)
}

/// The S3 tier of `[dvr.s3]`: the read-back cache becomes the archive's
/// remote store, and the uploader is returned to run.
pub fn start_s3(
    config: &DvrConfig,
    data: &Path,
    archive: &Archive,
) -> anyhow::Result<Option<Arc<Uploader>>> {
    let (Some(s3), Some(store)) = (&config.s3, s3_read_side(config, data, archive)?) else {
        return Ok(None);
    };
    let upload = UploadConfig {
        prefix: s3.prefix.clone().unwrap_or_else(|| "ugc/".into()),
        part_size: (s3.part_mb.unwrap_or(8).max(5) << 20) as usize,
        delete_local: s3.delete_local.unwrap_or(true),
        streams: Some(config.policy.s3_streams()),
        ..UploadConfig::default()
    };
    let uploader = Uploader::new(archive.clone(), store, upload).context("dvr.s3: upload queue")?;
    // Sessions that ended while the server was down.
    let queued = uploader.enqueue_finished()?;
    info!(bucket = %s3.bucket, endpoint = ?s3.endpoint, queued, "DVR S3 tier");
    Ok(Some(uploader))
}

/// The S3 client and the read-back cache (set as the archive's remote
/// store); the CLI export needs only this.
fn s3_read_side(
    config: &DvrConfig,
    data: &Path,
    archive: &Archive,
) -> anyhow::Result<Option<Arc<dyn Store>>> {
    let Some(s3) = &config.s3 else {
        return Ok(None);
    };
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let settings = S3Settings {
        endpoint: s3.endpoint.clone(),
        bucket: s3.bucket.clone(),
        region: s3.region.clone().unwrap_or_else(|| "us-east-1".into()),
        access_key_id: s3
            .access_key_id
            .clone()
            .or_else(|| env("AWS_ACCESS_KEY_ID"))
            .context("dvr.s3: access_key_id (or AWS_ACCESS_KEY_ID) is required")?,
        secret_access_key: s3
            .secret_access_key
            .clone()
            .or_else(|| env("AWS_SECRET_ACCESS_KEY"))
            .context("dvr.s3: secret_access_key (or AWS_SECRET_ACCESS_KEY) is required")?,
    };
    let mut cache = CacheConfig::new(
        s3.cache_dir
            .clone()
            .unwrap_or_else(|| data.join("dvr-cache")),
    );
    if let Some(gb) = s3.cache_gb {
        cache.max_bytes = (gb * 1e9) as u64;
    }
    if let Some(ttl) = s3.cache_ttl_s {
        cache.ttl = std::time::Duration::from_secs(ttl);
    }
    let store = ugc_dvr::s3::attach_read_side(archive, &settings, cache).context("dvr.s3")?;
    Ok(Some(store))
}

/// `ugc-server dvr export`: the flags, then the library's export.
pub fn export_command(config: &DvrConfig, data: &Path, args: &ExportArgs) -> anyhow::Result<()> {
    use std::io::IsTerminal as _;
    let stream = if args.stream.contains('/') {
        StreamPath::parse(&args.stream)
    } else {
        StreamPath::live(&args.stream)
    }
    .with_context(|| format!("bad stream name {:?}", args.stream))?;
    anyhow::ensure!(
        (1..=ugc_dvr::range::MAX_RANGE_SECONDS).contains(&args.duration),
        "--duration must be within 1..=86400 seconds"
    );
    let now_s = ugc_dvr::archive::now_unix_ms() / 1000;
    let from = if args.from < 0 {
        now_s + args.from
    } else {
        args.from
    };
    anyhow::ensure!(from <= now_s, "--from is in the future");
    let archive = Archive::open_read_only(&config.dir)
        .with_context(|| format!("reading the archive {}", config.dir.display()))?;
    // Ranges moved to S3 are read back through the same cache as the server's.
    s3_read_side(config, data, &archive)?;
    if let Some(s3) = &config.s3 {
        ugc_dvr::s3::load_remote_index(&archive, &config.dir)
            .with_context(|| format!("reading the S3 index of bucket {}", s3.bucket))?;
    }
    let bar = if std::io::stderr().is_terminal() {
        indicatif::ProgressBar::new(0).with_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        )
    } else {
        indicatif::ProgressBar::hidden()
    };
    let from_ms = from * 1000;
    let to_ms = from_ms + i64::from(args.duration) * 1000;
    let progress = {
        let bar = bar.clone();
        move |done, total| {
            bar.set_length(total);
            bar.set_position(done);
        }
    };
    let started = std::time::Instant::now();
    let export = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(ugc_dvr::export_file::export_to_file(
            &archive,
            &TrackKey::source(&stream),
            from_ms,
            to_ms,
            &args.output,
            progress,
        ))?;
    bar.finish();
    let secs = started.elapsed().as_secs_f64().max(1e-6);
    eprintln!(
        "wrote {} ({} bytes, {:.1} s of media, {} segments) in {:.2} s ({:.0} MB/s)",
        args.output.display(),
        export.bytes,
        export.duration_ms as f64 / 1000.0,
        export.segments,
        secs,
        export.bytes as f64 / secs / 1e6
    );
    Ok(())
}
