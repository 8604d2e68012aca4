//! Reading segment files: box headers from the file, `moof`s decoded,
//! per `trun` the samples and where their bytes are. Never the media.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use mp4_atom::{Atom as _, Decode as _, Header, Moof};

use super::{ExportError, malformed};

/// Reads `len` bytes at `offset` (fewer at the end of the file).
fn read_at(f: &mut File, offset: u64, len: usize) -> io::Result<Vec<u8>> {
    f.seek(SeekFrom::Start(offset))?;
    let mut buf = Vec::with_capacity(len);
    f.take(len as u64).read_to_end(&mut buf)?;
    Ok(buf)
}

/// Most samples one `trun` may claim.
const MAX_TRUN_SAMPLES: u32 = 1 << 20;

/// One trun's worth of samples in a segment file.
pub(super) struct Run {
    pub(super) track: u32,
    pub(super) src_offset: u64,
    pub(super) samples: Vec<(u32, u32, i32, bool)>,
}

/// Reads the fragments of one segment file: per `trun` the samples and
/// where their bytes are; also the start of each track's first tfdt. Only
/// box headers and `moof`s are read, never the media.
pub(super) fn read_fragments(
    path: &Path,
    first_dts: &mut Vec<(u32, u64)>,
) -> Result<Vec<Run>, ExportError> {
    let io_err = |source| ExportError::Io {
        path: path.to_owned(),
        source,
    };
    let mut f = File::open(path).map_err(io_err)?;
    let file_len = f.metadata().map_err(io_err)?.len();
    let mut runs = Vec::new();
    let mut at = 0u64;
    while at < file_len {
        let head = read_at(&mut f, at, 16).map_err(io_err)?;
        let mut rest = &head[..];
        let header = Header::decode(&mut rest)
            .map_err(|e| malformed(path, at, format!("box header: {e}")))?;
        let header_len = (head.len() - rest.len()) as u64;
        let len = match header.size {
            Some(body) => (body as u64).checked_add(header_len),
            None => Some(file_len - at),
        };
        let Some(len) = len.filter(|len| at.checked_add(*len).is_some_and(|e| e <= file_len))
        else {
            return Err(malformed(path, at, "box exceeds the file"));
        };
        if header.kind == Moof::KIND {
            if len > 64 << 20 {
                return Err(malformed(path, at, "moof larger than 64 MiB"));
            }
            let bytes = read_at(&mut f, at, len as usize).map_err(io_err)?;
            crate::box_guard::check(&bytes).map_err(|reason| malformed(path, at, reason))?;
            let moof = Moof::decode(&mut &bytes[..])
                .map_err(|e| malformed(path, at, format!("box layer: {e}")))?;
            parse_moof(&moof, at, &mut runs, first_dts)
                .map_err(|reason| malformed(path, at, reason))?;
        }
        at += len;
    }
    // Every run must lie inside the file.
    for r in &runs {
        let bytes: u64 = r.samples.iter().map(|s| u64::from(s.1)).sum();
        if r.src_offset.checked_add(bytes).is_none_or(|e| e > file_len) {
            return Err(malformed(
                path,
                r.src_offset,
                "sample data beyond the end of the file",
            ));
        }
    }
    Ok(runs)
}

/// The runs of one `moof` at `moof_offset`: fields a `trun` leaves out
/// take the `tfhd` defaults (0 without them).
fn parse_moof(
    moof: &Moof,
    moof_offset: u64,
    runs: &mut Vec<Run>,
    first_dts: &mut Vec<(u32, u64)>,
) -> Result<(), String> {
    for traf in &moof.traf {
        let tfhd = &traf.tfhd;
        let track = tfhd.track_id;
        let base = tfhd.base_data_offset.unwrap_or(moof_offset);
        let def_dur = tfhd.default_sample_duration.unwrap_or(0);
        let def_size = tfhd.default_sample_size.unwrap_or(0);
        let def_flags = tfhd.default_sample_flags.unwrap_or(0);
        if let Some(tfdt) = &traf.tfdt
            && !first_dts.iter().any(|(t, _)| *t == track)
        {
            first_dts.push((track, tfdt.base_media_decode_time));
        }
        let mut next_data = base;
        for trun in &traf.trun {
            // Fields absent from the trun take tfhd defaults, so a trun can
            // claim many samples in few bytes: bound it (a segment of a few
            // seconds has a few thousand).
            let count = trun.samples.len();
            if count > MAX_TRUN_SAMPLES as usize {
                return Err(format!("trun claims {count} samples"));
            }
            let src = match trun.data_offset {
                Some(off) => base
                    .checked_add_signed(i64::from(off))
                    .ok_or("data offset before the file")?,
                None => next_data,
            };
            let mut samples = Vec::with_capacity(count.min(4096));
            let mut total = 0u64;
            for e in trun.samples.iter() {
                let size = e.size.unwrap_or(def_size);
                // A version 0 offset above i32::MAX saturates.
                let cts = e.cts.map_or(0, |c| i32::try_from(c).unwrap_or(i32::MAX));
                let sync = e.flags.unwrap_or(def_flags) & 0x0001_0000 == 0;
                total += u64::from(size);
                samples.push((e.duration.unwrap_or(def_dur), size, cts, sync));
            }
            next_data = src.saturating_add(total);
            let so_far: usize = runs.iter().map(|r| r.samples.len()).sum();
            if so_far + samples.len() > MAX_TRUN_SAMPLES as usize * 4 {
                return Err("too many samples in one segment".to_owned());
            }
            runs.push(Run {
                track,
                src_offset: src,
                samples,
            });
        }
    }
    Ok(())
}
