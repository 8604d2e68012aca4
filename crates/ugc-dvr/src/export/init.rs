//! Reading init segments: the `moov` and the sample entries of its tracks.

use std::path::Path;

use bytes::Bytes;
use mp4_atom::{Any, Codec, DecodeMaybe as _, Moov};

use super::{ExportError, malformed};

/// Facts of an init segment needed for the export.
#[derive(Debug, Clone)]
pub(super) struct InitInfo {
    pub(super) bytes: Bytes,
    pub(super) moov: Moov,
    /// (track id, timescale) in trak order.
    pub(super) tracks: Vec<(u32, u32)>,
}

/// Reads the `moov` of an init segment (the first one; other top-level
/// boxes are skipped).
pub(super) fn parse_init(path: &Path, bytes: Bytes) -> Result<InitInfo, ExportError> {
    crate::box_guard::check(&bytes).map_err(|reason| malformed(path, 0, reason))?;
    let mut buf = &bytes[..];
    let mut moov = None;
    loop {
        let at = (bytes.len() - buf.len()) as u64;
        match Any::decode_maybe(&mut buf) {
            Ok(Some(Any::Moov(m))) => {
                moov.get_or_insert((at, m));
            }
            Ok(Some(_)) => {}
            Ok(None) if buf.is_empty() => break,
            Ok(None) => return Err(malformed(path, at, "truncated box")),
            Err(e) => return Err(malformed(path, at, format!("box layer: {e}"))),
        }
    }
    let (at, moov) = moov.ok_or_else(|| malformed(path, 0, "no moov"))?;
    let tracks: Vec<(u32, u32)> = moov
        .trak
        .iter()
        .map(|t| (t.tkhd.track_id, t.mdia.mdhd.timescale.max(1)))
        .collect();
    if tracks.is_empty() {
        return Err(malformed(path, at, "moov without tracks"));
    }
    Ok(InitInfo {
        bytes,
        moov,
        tracks,
    })
}

/// The first `stsd` sample entry of every track of `info`, by track id.
pub(super) fn sample_entries(info: &InitInfo) -> Vec<(u32, Codec)> {
    info.moov
        .trak
        .iter()
        .filter_map(|t| {
            let entry = t.mdia.minf.stbl.stsd.codecs.first()?;
            Some((t.tkhd.track_id, entry.clone()))
        })
        .collect()
}
