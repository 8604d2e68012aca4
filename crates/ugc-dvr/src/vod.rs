//! Writes a packaged stream to a directory as HLS VOD: its media playlist
//! (`index.m3u8`, ending with `#EXT-X-ENDLIST`), init segments and fMP4
//! segments under the names the playlist gives them ([`crate::MediaFile`]).
//! For a file turned into HLS: package it into a [`LiveStream`] whose window
//! holds every segment (see [`vod_live_config`]), end it, then write it.

use std::io;
use std::path::{Path, PathBuf};

use crate::live::{LiveConfig, LiveStream};
use crate::playlist::{MediaFile, Variant};

/// A [`LiveConfig`] that keeps every segment in the playlist (a VOD has no
/// window), with classic segments of `target_duration_ms`.
pub fn vod_live_config(target_duration_ms: u32) -> LiveConfig {
    LiveConfig {
        window_segments: usize::MAX,
        grace_segments: 0,
        target_duration_ms,
        part_target_ms: None,
    }
}

/// Writes `live` (ended, or it is written as far as it got) into `dir`,
/// creating it: `index.m3u8`, `init-<id>-<n>.mp4`, `seg-<id>-<msn>.m4s`.
/// Each file is written to a temporary name and renamed, so a reader never
/// sees half a file. Returns the playlist's path.
pub fn write_vod(live: &LiveStream, dir: &Path) -> io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let session = live.session();
    let segments = live.window();
    let mut inits: Vec<u32> = segments.iter().map(|s| s.init).collect();
    inits.dedup();
    for n in inits {
        let init = live
            .init(n)
            .ok_or_else(|| io::Error::other(format!("init segment {n} is gone")))?;
        write_atomic(
            &dir.join(MediaFile::Init(session, n).to_string()),
            &init.data,
        )?;
    }
    for seg in &segments {
        let name = MediaFile::Segment(Variant::Fmp4, session, seg.msn).to_string();
        write_atomic(&dir.join(name), &seg.data.to_bytes())?;
    }
    let playlist = dir.join("index.m3u8");
    write_atomic(
        &playlist,
        live.render_media_playlist(Variant::Fmp4).as_bytes(),
    )?;
    Ok(playlist)
}

fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, data)?;
    std::fs::rename(&tmp, path)
}
