//! MP4 export: a progressive MP4 (`ftyp`, `moov` with complete sample
//! tables, then one `mdat`) built from archived fMP4 segments without
//! re-encoding.
//!
//! [`plan_export`] reads only the `moof` boxes of the segments and builds
//! the sample tables; the media bytes are never loaded: the output is a
//! header ([`ExportPlan::header`]) followed by byte ranges of the segment
//! files ([`ExportPlan::pieces`]), so any byte range of the output can be
//! produced ([`ExportPlan::reader`]) with memory independent of the length
//! (the `moov` itself is a few bytes per sample, as in any MP4). The same
//! segments always give the same bytes, so HTTP Range requests are
//! consistent.
//!
//! Sample data of each fragment stays one chunk per track (`stco` entry),
//! so the `mdat` is the concatenation of the segments' `mdat` payloads. An
//! edit list aligns tracks that start at different times and hides the
//! composition delay of B-frames.
//!
//! Boxes are read and written with mp4-atom: the init segments' `moov`s and
//! the segments' `moof`s are decoded (its errors become
//! [`ExportError::Malformed`] with the file and offset), the output's `moov`
//! is the first init's box tree with the sample tables filled in. mp4-atom
//! does not move chunk offsets when the `moov` grows, so its size is taken
//! with placeholder offsets first; the `mdat` is only a header, its payload
//! is streamed from the segment files.
//!
//! One module per job: `init` reads init segments, `fragments` reads the
//! segments' `moof`s, `tables` collects the sample tables, `moov` writes
//! the output's header and `reader` produces its bytes.

mod fragments;
mod init;
mod moov;
mod reader;
mod tables;

use std::io;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use mp4_atom::{Atom as _, Encode as _, Header, Mdat};

pub use reader::ExportReader;

use fragments::read_fragments;
use init::{parse_init, sample_entries};
use moov::{build_moov, ftyp_box};
use tables::{TrackTables, switch_entries};

/// Why an export could not be planned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// Reading a segment or the init segment failed.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// A stored file is not what the archive wrote (corrupt or truncated).
    #[error("{path}: malformed at byte {offset}: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// Byte offset of the offending box.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// Nothing to export.
    #[error("no segments to export")]
    Empty,
}

/// One input segment of an export.
#[derive(Debug, Clone)]
pub struct ExportSegment {
    /// The fMP4 segment file (`styp`? + (`moof` + `mdat`)+).
    pub path: PathBuf,
    /// Index into the init segments passed to [`plan_export`].
    pub init: usize,
}

/// A byte range of an input file in the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    /// Index into [`ExportPlan::files`].
    pub file: usize,
    /// Offset in that file.
    pub offset: u64,
    /// Length.
    pub len: u64,
    /// Offset in the output.
    pub out_offset: u64,
}

/// A planned export; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct ExportPlan {
    /// `ftyp` + `moov` + the `mdat` header.
    pub header: Bytes,
    /// The input files.
    pub files: Vec<PathBuf>,
    /// The `mdat` payload, in output order.
    pub pieces: Vec<Piece>,
    /// Total output size.
    pub len: u64,
    /// Duration of the longest track in milliseconds.
    pub duration_ms: u64,
    /// Segments left out because their init segment is incompatible with
    /// the first one's (other tracks or timescales): the export stops
    /// before the first of them. A change of codec parameters alone
    /// (resolution, profile, a new publisher with the same tracks) is not a
    /// truncation: it becomes a second `stsd` sample entry.
    pub truncated: bool,
    /// Byte offset of the `moov` box.
    pub moov_offset: u64,
    /// Byte offset of the `mdat` box.
    pub mdat_offset: u64,
}

pub(super) fn malformed(path: &Path, offset: u64, reason: impl Into<String>) -> ExportError {
    ExportError::Malformed {
        path: path.to_owned(),
        offset,
        reason: reason.into(),
    }
}

/// Plans the export of `segments` (in order) whose init segments are
/// `inits` (`(path, bytes)`). Blocking (reads the `moof`s): run it off the
/// async reactor.
pub fn plan_export(
    inits: &[(PathBuf, Bytes)],
    segments: &[ExportSegment],
) -> Result<ExportPlan, ExportError> {
    let first = segments.first().ok_or(ExportError::Empty)?;
    let (ipath, ibytes) = inits.get(first.init).ok_or(ExportError::Empty)?;
    let info = parse_init(ipath, ibytes.clone())?;
    let first_entries = sample_entries(&info);
    let mut tables: Vec<TrackTables> = info
        .tracks
        .iter()
        .map(|&(id, timescale)| TrackTables {
            id,
            timescale,
            all_sync: true,
            entries: first_entries
                .iter()
                .filter(|(t, _)| *t == id)
                .map(|(_, e)| e.clone())
                .collect(),
            ..TrackTables::default()
        })
        .collect();
    // Per init index: the stsd entry (1-based) of each table, or None when
    // the init is incompatible (other tracks or timescales).
    let mut sdi_by_init: Vec<(usize, Option<Vec<u32>>)> = Vec::new();
    let mut files = Vec::new();
    let mut pieces: Vec<Piece> = Vec::new();
    let mut mdat_len = 0u64;
    let mut truncated = false;
    let mut first_dts: Vec<(u32, u64)> = Vec::new();
    for seg in segments {
        let same_init =
            seg.init == first.init || inits.get(seg.init).is_some_and(|(_, b)| *b == info.bytes);
        let sdi: Vec<u32> = if same_init {
            vec![1; tables.len()]
        } else {
            let known = sdi_by_init
                .iter()
                .find(|(i, _)| *i == seg.init)
                .map(|x| x.1.clone());
            let sdi = match known {
                Some(s) => s,
                None => {
                    let s = match inits.get(seg.init) {
                        Some((p, b)) => {
                            let other = parse_init(p, b.clone())?;
                            switch_entries(&info, &other, &mut tables)
                        }
                        None => None,
                    };
                    sdi_by_init.push((seg.init, s.clone()));
                    s
                }
            };
            match sdi {
                Some(s) => s,
                None => {
                    truncated = true;
                    break;
                }
            }
        };
        let runs = read_fragments(&seg.path, &mut first_dts)?;
        let file = files.len();
        files.push(seg.path.clone());
        for run in runs {
            let Some(ti) = tables.iter().position(|t| t.id == run.track) else {
                continue;
            };
            let Some(t) = tables.get_mut(ti) else {
                continue;
            };
            let bytes: u64 = run.samples.iter().map(|s| u64::from(s.1)).sum();
            if run.samples.is_empty() {
                continue;
            }
            t.chunks.push((
                mdat_len,
                u32::try_from(run.samples.len()).unwrap_or(u32::MAX),
            ));
            t.chunk_sdi.push(sdi.get(ti).copied().unwrap_or(1));
            for (d, s, c, sync) in run.samples {
                t.push_sample(d, s, c, sync);
            }
            match pieces.last_mut() {
                Some(p) if p.file == file && p.offset + p.len == run.src_offset => p.len += bytes,
                _ => pieces.push(Piece {
                    file,
                    offset: run.src_offset,
                    len: bytes,
                    out_offset: mdat_len,
                }),
            }
            mdat_len += bytes;
        }
    }
    for t in &mut tables {
        t.first_dts = first_dts.iter().find(|(id, _)| *id == t.id).map(|x| x.1);
    }
    tables.retain(|t| !t.sizes.is_empty());
    if tables.is_empty() {
        return Err(ExportError::Empty);
    }
    // Lay out: ftyp, moov, mdat header. The chunk offsets depend on the
    // moov's size, which depends on stco vs co64 (not on the offsets): size
    // it with offsets from 0, then write it with the real ones.
    let encode_err = |e: mp4_atom::Error| malformed(ipath, 0, format!("writing the moov: {e}"));
    let mut ftyp = Vec::new();
    ftyp_box().encode(&mut ftyp).map_err(encode_err)?;
    let mdat_header_len = if mdat_len + 8 > u64::from(u32::MAX) {
        16
    } else {
        8
    };
    let moov_len = |large| -> Result<u64, ExportError> {
        let mut b = Vec::new();
        build_moov(&info, &tables, 0, large)
            .encode(&mut b)
            .map_err(encode_err)?;
        Ok(b.len() as u64)
    };
    let fixed = ftyp.len() as u64 + mdat_header_len + mdat_len;
    let large = fixed + moov_len(false)? > u64::from(u32::MAX);
    let data_start = ftyp.len() as u64 + moov_len(large)? + mdat_header_len;
    let mut header = ftyp;
    let moov_offset = header.len() as u64;
    build_moov(&info, &tables, data_start, large)
        .encode(&mut header)
        .map_err(encode_err)?;
    let mdat_offset = header.len() as u64;
    // The mdat's payload is streamed from the segment files: its header only.
    Header {
        kind: Mdat::KIND,
        size: Some(mdat_len as usize),
    }
    .encode(&mut header)
    .map_err(encode_err)?;
    debug_assert_eq!(header.len() as u64, data_start);
    let hlen = header.len() as u64;
    for p in &mut pieces {
        p.out_offset += hlen;
    }
    let duration_ms = tables
        .iter()
        .map(|t| t.duration.saturating_mul(1000) / u64::from(t.timescale))
        .max()
        .unwrap_or(0);
    Ok(ExportPlan {
        header: Bytes::from(header),
        files,
        pieces,
        len: hlen + mdat_len,
        duration_ms,
        truncated,
        moov_offset,
        mdat_offset,
    })
}
