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

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use mp4_atom::{
    Any, Atom as _, Co64, Codec, Ctts, CttsEntry, Decode as _, DecodeMaybe as _, Edts, Elst,
    ElstEntry, Encode as _, Ftyp, Header, Mdat, Moof, Moov, Stco, Stsc, StscEntry, Stss, Stsz,
    StszSamples, Stts, SttsEntry,
};

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

#[derive(Debug, Default, Clone)]
struct TrackTables {
    id: u32,
    timescale: u32,
    /// stts runs (count, delta).
    stts: Vec<(u32, u32)>,
    /// ctts runs (count, offset).
    ctts: Vec<(u32, i32)>,
    any_cts: bool,
    /// 1-based sync sample numbers.
    stss: Vec<u32>,
    all_sync: bool,
    sizes: Vec<u32>,
    /// (output-relative mdat offset, samples) per chunk.
    chunks: Vec<(u64, u32)>,
    /// 1-based `stsd` entry of each chunk (parallel to `chunks`).
    chunk_sdi: Vec<u32>,
    /// Distinct sample entries in first-use order; more than one when the
    /// export spans a track change.
    entries: Vec<Codec>,
    duration: u64,
    first_dts: Option<u64>,
    first_cts: Option<i32>,
}

impl TrackTables {
    fn push_sample(&mut self, duration: u32, size: u32, cts: i32, sync: bool) {
        match self.stts.last_mut() {
            Some((n, d)) if *d == duration => *n += 1,
            _ => self.stts.push((1, duration)),
        }
        match self.ctts.last_mut() {
            Some((n, c)) if *c == cts => *n += 1,
            _ => self.ctts.push((1, cts)),
        }
        if cts != 0 {
            self.any_cts = true;
        }
        self.sizes.push(size);
        let number = u32::try_from(self.sizes.len()).unwrap_or(u32::MAX);
        if sync {
            self.stss.push(number);
        } else {
            self.all_sync = false;
        }
        if self.first_cts.is_none() {
            self.first_cts = Some(cts);
        }
        self.duration = self.duration.saturating_add(u64::from(duration));
    }
}

/// Facts of an init segment needed for the export.
#[derive(Debug, Clone)]
struct InitInfo {
    bytes: Bytes,
    moov: Moov,
    /// (track id, timescale) in trak order.
    tracks: Vec<(u32, u32)>,
}

fn malformed(path: &Path, offset: u64, reason: impl Into<String>) -> ExportError {
    ExportError::Malformed {
        path: path.to_owned(),
        offset,
        reason: reason.into(),
    }
}

/// Reads the `moov` of an init segment (the first one; other top-level
/// boxes are skipped).
fn parse_init(path: &Path, bytes: Bytes) -> Result<InitInfo, ExportError> {
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
fn sample_entries(info: &InitInfo) -> Vec<(u32, Codec)> {
    info.moov
        .trak
        .iter()
        .filter_map(|t| {
            let entry = t.mdia.minf.stbl.stsd.codecs.first()?;
            Some((t.tkhd.track_id, entry.clone()))
        })
        .collect()
}

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
struct Run {
    track: u32,
    src_offset: u64,
    samples: Vec<(u32, u32, i32, bool)>,
}

/// Reads the fragments of one segment file: per `trun` the samples and
/// where their bytes are; also the start of each track's first tfdt. Only
/// box headers and `moof`s are read, never the media.
fn read_fragments(path: &Path, first_dts: &mut Vec<(u32, u64)>) -> Result<Vec<Run>, ExportError> {
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

/// The `stsd` entry numbers (1-based, per table) of segments made with
/// init `other`, adding its sample entries to `tables` where they differ
/// from those seen so far; `None` when `other` has other tracks or
/// timescales than `first` (the export cannot continue across it).
fn switch_entries(
    first: &InitInfo,
    other: &InitInfo,
    tables: &mut [TrackTables],
) -> Option<Vec<u32>> {
    if other.tracks != first.tracks {
        return None;
    }
    let entries = sample_entries(other);
    let mut sdi = Vec::with_capacity(tables.len());
    for t in tables.iter_mut() {
        let (_, e) = entries.iter().find(|(id, _)| *id == t.id)?;
        // Only the same kind of sample entry (avc1 after avc1, ...).
        let first = t.entries.first()?;
        if std::mem::discriminant(first) != std::mem::discriminant(e) {
            return None;
        }
        let at = match t.entries.iter().position(|x| x == e) {
            Some(i) => i,
            None => {
                t.entries.push(e.clone());
                t.entries.len() - 1
            }
        };
        sdi.push(u32::try_from(at + 1).ok()?);
    }
    Some(sdi)
}

fn ftyp_box() -> Ftyp {
    Ftyp {
        major_brand: b"isom".into(),
        minor_version: 0x200,
        compatible_brands: vec![
            b"isom".into(),
            b"iso2".into(),
            b"avc1".into(),
            b"mp41".into(),
        ],
    }
}

/// The export's `moov`: the first init segment's, with complete sample
/// tables (chunk offsets from `data_start`, `co64` when `large`), durations,
/// an edit list per track, and no `mvex`. Tracks without samples are left
/// out.
fn build_moov(info: &InitInfo, tables: &[TrackTables], data_start: u64, large: bool) -> Moov {
    const MOVIE_TS: u64 = 1000;
    let track_ms = |t: &TrackTables| t.duration.saturating_mul(MOVIE_TS) / u64::from(t.timescale);
    // Start of each track on the common timeline, in MOVIE_TS units.
    let start = |t: &TrackTables| {
        t.first_dts.unwrap_or(0).saturating_mul(MOVIE_TS) / u64::from(t.timescale)
    };
    let min_start = tables.iter().map(start).min().unwrap_or(0);
    let mut moov = info.moov.clone();
    moov.mvhd.timescale = MOVIE_TS as u32;
    moov.mvhd.duration = tables.iter().map(track_ms).max().unwrap_or(0);
    moov.mvex = None;
    moov.trak
        .retain(|trak| tables.iter().any(|t| t.id == trak.tkhd.track_id));
    for trak in &mut moov.trak {
        let Some(t) = tables.iter().find(|t| t.id == trak.tkhd.track_id) else {
            continue;
        };
        let duration = track_ms(t);
        trak.tkhd.duration = duration;
        // Edit list: an empty edit for a later start, then the media from
        // its first presentation time.
        let delay = start(t).saturating_sub(min_start);
        let mut edits = Vec::with_capacity(2);
        if delay > 0 {
            edits.push(ElstEntry {
                segment_duration: delay,
                media_time: None,
                media_rate: 1.into(),
            });
        }
        edits.push(ElstEntry {
            segment_duration: duration,
            media_time: Some(u64::try_from(t.first_cts.unwrap_or(0)).unwrap_or(0)),
            media_rate: 1.into(),
        });
        trak.edts = Some(Edts {
            elst: Some(Elst { entries: edits }),
        });
        trak.mdia.mdhd.duration = t.duration;
        write_stbl(&mut trak.mdia.minf.stbl, t, data_start, large);
    }
    moov
}

fn write_stbl(stbl: &mut mp4_atom::Stbl, t: &TrackTables, data_start: u64, large: bool) {
    if t.entries.len() > 1 {
        // A track change: one sample entry per parameter set, chosen per
        // chunk by stsc's sample_description_index.
        stbl.stsd.codecs = t.entries.clone();
    }
    stbl.stts = Stts {
        entries: t
            .stts
            .iter()
            .map(|&(sample_count, sample_delta)| SttsEntry {
                sample_count,
                sample_delta,
            })
            .collect(),
    };
    stbl.ctts = t.any_cts.then(|| Ctts {
        entries: t
            .ctts
            .iter()
            .map(|&(sample_count, offset)| CttsEntry {
                sample_count,
                sample_offset: i64::from(offset),
            })
            .collect(),
    });
    stbl.stss = (!t.all_sync).then(|| Stss {
        entries: t.stss.clone(),
    });
    // stsc: runs of chunks with the same sample count and sample entry.
    let mut stsc = Vec::new();
    let mut prev = None;
    for (i, &(_, n)) in t.chunks.iter().enumerate() {
        let sdi = t.chunk_sdi.get(i).copied().unwrap_or(1);
        if prev != Some((n, sdi)) {
            stsc.push(StscEntry {
                first_chunk: u32::try_from(i + 1).unwrap_or(u32::MAX),
                samples_per_chunk: n,
                sample_description_index: sdi,
            });
            prev = Some((n, sdi));
        }
    }
    stbl.stsc = Stsc { entries: stsc };
    stbl.stsz = Stsz {
        samples: StszSamples::Different {
            sizes: t.sizes.clone(),
        },
    };
    let offsets = t.chunks.iter().map(|&(off, _)| data_start + off);
    if large {
        stbl.stco = None;
        stbl.co64 = Some(Co64 {
            entries: offsets.collect(),
        });
    } else {
        // The whole output stays below 4 GiB (else `large`).
        stbl.co64 = None;
        stbl.stco = Some(Stco {
            entries: offsets
                .map(|o| u32::try_from(o).unwrap_or(u32::MAX))
                .collect(),
        });
    }
}

impl ExportPlan {
    /// A reader of output bytes `start..end` (clamped to the length).
    pub fn reader(&self, start: u64, end: u64) -> ExportReader<'_> {
        let end = end.min(self.len);
        ExportReader {
            plan: self,
            pos: start.min(end),
            end,
            open: None,
        }
    }

    /// Writes the whole output to `out`, calling `progress(bytes_done)`
    /// now and then. Blocking.
    pub fn write_to(
        &self,
        out: &mut impl io::Write,
        mut progress: impl FnMut(u64),
    ) -> io::Result<u64> {
        let mut r = self.reader(0, self.len);
        let mut buf = vec![0u8; 1 << 20];
        let mut done = 0u64;
        loop {
            let n = r.read(&mut buf)?;
            if n == 0 {
                break;
            }
            out.write_all(buf.get(..n).unwrap_or_default())?;
            done += n as u64;
            progress(done);
        }
        Ok(done)
    }
}

impl ExportPlan {
    /// Writes the whole output to the file `out` (at its current position):
    /// the header, then each piece copied file to file, which the kernel
    /// does without a trip through user space where it can
    /// (`copy_file_range`). `progress(bytes_done)` after every piece.
    /// Blocking.
    pub fn write_file(&self, out: &mut File, mut progress: impl FnMut(u64)) -> io::Result<u64> {
        use std::io::Write as _;
        out.write_all(&self.header)?;
        let mut done = self.header.len() as u64;
        progress(done);
        let mut open: Option<(usize, File)> = None;
        for p in &self.pieces {
            let f = match &mut open {
                Some((i, f)) if *i == p.file => f,
                slot => {
                    let path = self
                        .files
                        .get(p.file)
                        .ok_or_else(|| io::Error::other("bad piece"))?;
                    &mut slot.insert((p.file, File::open(path)?)).1
                }
            };
            f.seek(SeekFrom::Start(p.offset))?;
            let n = io::copy(&mut Read::by_ref(f).take(p.len), out)?;
            if n != p.len {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "archived file shorter than planned",
                ));
            }
            done += n;
            progress(done);
        }
        Ok(done)
    }
}

/// Reads a byte range of an [`ExportPlan`]'s output; holds at most one open
/// file.
#[derive(Debug)]
pub struct ExportReader<'a> {
    plan: &'a ExportPlan,
    pos: u64,
    end: u64,
    open: Option<(usize, File)>,
}

impl ExportReader<'_> {
    /// Bytes left.
    pub fn remaining(&self) -> u64 {
        self.end - self.pos
    }
}

impl Read for ExportReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.end || buf.is_empty() {
            return Ok(0);
        }
        let want = usize::try_from(self.end - self.pos)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let hlen = self.plan.header.len() as u64;
        if self.pos < hlen {
            let from = self.pos as usize;
            let n = want.min(self.plan.header.len() - from);
            if let (Some(dst), Some(src)) = (buf.get_mut(..n), self.plan.header.get(from..from + n))
            {
                dst.copy_from_slice(src);
            }
            self.pos += n as u64;
            return Ok(n);
        }
        // The piece holding pos.
        let i = self
            .plan
            .pieces
            .partition_point(|p| p.out_offset + p.len <= self.pos);
        let Some(p) = self.plan.pieces.get(i) else {
            return Ok(0);
        };
        let within = self.pos - p.out_offset;
        let n = want.min(usize::try_from(p.len - within).unwrap_or(usize::MAX));
        let file = match &mut self.open {
            Some((idx, f)) if *idx == p.file => f,
            slot => {
                let path = self
                    .plan
                    .files
                    .get(p.file)
                    .ok_or_else(|| io::Error::other("bad piece"))?;
                let f = File::open(path)?;
                &mut slot.insert((p.file, f)).1
            }
        };
        file.seek(SeekFrom::Start(p.offset + within))?;
        let dst = buf.get_mut(..n).unwrap_or_default();
        file.read_exact(dst)?;
        self.pos += n as u64;
        Ok(n)
    }
}
