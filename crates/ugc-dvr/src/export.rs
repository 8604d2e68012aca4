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

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::PathBuf;

use bytes::Bytes;

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
    /// Distinct sample entries (bytes of the entry box) in first-use order;
    /// more than one when the export spans a track change.
    entries: Vec<Vec<u8>>,
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
    moov: (usize, usize),
    /// (track id, timescale) in trak order.
    tracks: Vec<(u32, u32)>,
}

pub(crate) fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

fn be64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(
        b.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

/// A box: (type, box start, payload start, box end).
pub(crate) type BoxRef = ([u8; 4], usize, usize, usize);

/// The boxes directly inside `b[start..end]`: (type, box start, payload
/// start, box end).
pub(crate) fn boxes(b: &[u8], start: usize, end: usize) -> Result<Vec<BoxRef>, (usize, String)> {
    let mut out = Vec::new();
    let mut at = start;
    while at < end {
        let size = be32(b, at).ok_or((at, "truncated box header".to_owned()))?;
        let kind: [u8; 4] = b
            .get(at + 4..at + 8)
            .and_then(|k| k.try_into().ok())
            .ok_or((at, "truncated box header".to_owned()))?;
        let (len, payload) = match size {
            1 => {
                let l = be64(b, at + 8).ok_or((at, "truncated largesize".to_owned()))?;
                (
                    usize::try_from(l).map_err(|_| (at, "box too large".to_owned()))?,
                    at + 16,
                )
            }
            0 => (end - at, at + 8),
            n => (n as usize, at + 8),
        };
        let box_end = at
            .checked_add(len)
            .ok_or((at, "box size overflow".to_owned()))?;
        if len < payload - at || box_end > end {
            return Err((
                at,
                format!(
                    "box {} of size {len} exceeds its parent",
                    String::from_utf8_lossy(&kind)
                ),
            ));
        }
        out.push((kind, at, payload, box_end));
        at = box_end;
    }
    Ok(out)
}

pub(crate) fn find(list: &[BoxRef], kind: &[u8; 4]) -> Option<(usize, usize, usize)> {
    list.iter().find(|b| &b.0 == kind).map(|b| (b.1, b.2, b.3))
}

fn parse_init(path: &std::path::Path, bytes: Bytes) -> Result<InitInfo, ExportError> {
    let bad = |(offset, reason): (usize, String)| ExportError::Malformed {
        path: path.to_owned(),
        offset: offset as u64,
        reason,
    };
    let top = boxes(&bytes, 0, bytes.len()).map_err(bad)?;
    let (ms, mp, me) = find(&top, b"moov").ok_or_else(|| bad((0, "no moov".into())))?;
    let mut tracks = Vec::new();
    for (kind, _s, p, e) in boxes(&bytes, mp, me).map_err(bad)? {
        if &kind != b"trak" {
            continue;
        }
        let trak = boxes(&bytes, p, e).map_err(bad)?;
        let (_, tp, _) = find(&trak, b"tkhd").ok_or_else(|| bad((p, "no tkhd".into())))?;
        let v = bytes.get(tp).copied().unwrap_or(0);
        let id = be32(&bytes, tp + if v == 1 { 20 } else { 12 })
            .ok_or_else(|| bad((tp, "short tkhd".into())))?;
        let (_, mp2, me2) = find(&trak, b"mdia").ok_or_else(|| bad((p, "no mdia".into())))?;
        let mdia = boxes(&bytes, mp2, me2).map_err(bad)?;
        let (_, hp, _) = find(&mdia, b"mdhd").ok_or_else(|| bad((mp2, "no mdhd".into())))?;
        let v = bytes.get(hp).copied().unwrap_or(0);
        let ts = be32(&bytes, hp + if v == 1 { 20 } else { 12 })
            .ok_or_else(|| bad((hp, "short mdhd".into())))?;
        tracks.push((id, ts.max(1)));
    }
    if tracks.is_empty() {
        return Err(bad((ms, "moov without tracks".into())));
    }
    Ok(InitInfo {
        bytes,
        moov: (ms, me),
        tracks,
    })
}

/// The first `stsd` sample entry (whole box) of every track of `info`, by
/// track id.
fn sample_entries(info: &InitInfo) -> Vec<(u32, Vec<u8>)> {
    let b = &info.bytes[..];
    let mut out = Vec::new();
    let Ok(children) = boxes(b, info.moov.0 + 8, info.moov.1) else {
        return out;
    };
    for (kind, _, p, e) in children {
        if &kind != b"trak" {
            continue;
        }
        let Ok(trak) = boxes(b, p, e) else { continue };
        let id = find(&trak, b"tkhd").and_then(|(_, tp, _)| {
            let v = b.get(tp).copied()?;
            be32(b, tp + if v == 1 { 20 } else { 12 })
        });
        let mut entry = None;
        let mut range = find(&trak, b"mdia").map(|(_, p, e)| (p, e));
        for kind in [b"minf", b"stbl", b"stsd"] {
            range = range.and_then(|(p, e)| {
                let list = boxes(b, p, e).ok()?;
                find(&list, kind).map(|(_, p, e)| (p, e))
            });
        }
        if let Some((sp, se)) = range
            && let Ok(list) = boxes(b, sp.saturating_add(8).min(se), se)
            && let Some(&(_, s, _, e)) = list.first()
        {
            entry = b.get(s..e).map(<[u8]>::to_vec);
        }
        if let (Some(id), Some(entry)) = (id, entry) {
            out.push((id, entry));
        }
    }
    out
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
/// where their bytes are; also the start of each track's first tfdt.
fn read_fragments(
    path: &std::path::Path,
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
        let bad = |reason: &str| ExportError::Malformed {
            path: path.to_owned(),
            offset: at,
            reason: reason.to_owned(),
        };
        let size = be32(&head, 0).ok_or_else(|| bad("truncated box header"))?;
        let kind = head.get(4..8).ok_or_else(|| bad("truncated box header"))?;
        let len = match size {
            1 => be64(&head, 8).ok_or_else(|| bad("truncated largesize"))?,
            0 => file_len - at,
            n => u64::from(n),
        };
        if len < 8 || at.checked_add(len).is_none_or(|e| e > file_len) {
            return Err(bad("box exceeds the file"));
        }
        if kind == b"moof" {
            if len > 64 << 20 {
                return Err(bad("moof larger than 64 MiB"));
            }
            let moof = read_at(&mut f, at, len as usize).map_err(io_err)?;
            parse_moof(&moof, at, &mut runs, first_dts).map_err(|(o, r)| {
                ExportError::Malformed {
                    path: path.to_owned(),
                    offset: at + o as u64,
                    reason: r,
                }
            })?;
        }
        at += len;
    }
    // Every run must lie inside the file.
    for r in &runs {
        let bytes: u64 = r.samples.iter().map(|s| u64::from(s.1)).sum();
        if r.src_offset.checked_add(bytes).is_none_or(|e| e > file_len) {
            return Err(ExportError::Malformed {
                path: path.to_owned(),
                offset: r.src_offset,
                reason: "sample data beyond the end of the file".into(),
            });
        }
    }
    Ok(runs)
}

fn parse_moof(
    moof: &[u8],
    moof_offset: u64,
    runs: &mut Vec<Run>,
    first_dts: &mut Vec<(u32, u64)>,
) -> Result<(), (usize, String)> {
    let top = boxes(moof, 8, moof.len())?;
    for (kind, _s, p, e) in top {
        if &kind != b"traf" {
            continue;
        }
        let traf = boxes(moof, p, e)?;
        let (_, hp, he) = find(&traf, b"tfhd").ok_or((p, "traf without tfhd".to_owned()))?;
        let flags = be32(moof, hp).ok_or((hp, "short tfhd".to_owned()))? & 0x00ff_ffff;
        let track = be32(moof, hp + 4).ok_or((hp, "short tfhd".to_owned()))?;
        let mut q = hp + 8;
        let mut base = moof_offset;
        if flags & 0x1 != 0 {
            base = be64(moof, q).ok_or((hp, "short tfhd".to_owned()))?;
            q += 8;
        }
        if flags & 0x2 != 0 {
            q += 4;
        }
        let mut def_dur = 0;
        let mut def_size = 0;
        let mut def_flags = 0;
        if flags & 0x8 != 0 {
            def_dur = be32(moof, q).ok_or((hp, "short tfhd".to_owned()))?;
            q += 4;
        }
        if flags & 0x10 != 0 {
            def_size = be32(moof, q).ok_or((hp, "short tfhd".to_owned()))?;
            q += 4;
        }
        if flags & 0x20 != 0 {
            def_flags = be32(moof, q).ok_or((hp, "short tfhd".to_owned()))?;
            q += 4;
        }
        if q > he {
            return Err((hp, "tfhd shorter than its flags".into()));
        }
        if let Some((_, dp, _)) = find(&traf, b"tfdt") {
            let v = moof.get(dp).copied().unwrap_or(0);
            let dts = if v == 1 {
                be64(moof, dp + 4)
            } else {
                be32(moof, dp + 4).map(u64::from)
            }
            .ok_or((dp, "short tfdt".to_owned()))?;
            if !first_dts.iter().any(|(t, _)| *t == track) {
                first_dts.push((track, dts));
            }
        }
        let mut next_data = base;
        for (kind, _rs, rp, re) in &traf {
            if kind != b"trun" {
                continue;
            }
            let vf = be32(moof, *rp).ok_or((*rp, "short trun".to_owned()))?;
            let version = vf >> 24;
            let tf = vf & 0x00ff_ffff;
            let count = be32(moof, rp + 4).ok_or((*rp, "short trun".to_owned()))?;
            let mut q = rp + 8;
            let mut src = next_data;
            if tf & 0x1 != 0 {
                let off = be32(moof, q).ok_or((*rp, "short trun".to_owned()))? as i32;
                src = base
                    .checked_add_signed(i64::from(off))
                    .ok_or((*rp, "data offset before the file".to_owned()))?;
                q += 4;
            }
            let mut first_flags = None;
            if tf & 0x4 != 0 {
                first_flags = Some(be32(moof, q).ok_or((*rp, "short trun".to_owned()))?);
                q += 4;
            }
            let per = [0x100, 0x200, 0x400, 0x800]
                .iter()
                .filter(|&&b| tf & b != 0)
                .count();
            // Fields absent from the trun take tfhd defaults, so a trun can
            // claim many samples in few bytes: bound it (a segment of a few
            // seconds has a few thousand).
            if count > MAX_TRUN_SAMPLES {
                return Err((*rp, format!("trun claims {count} samples")));
            }
            let need = (count as usize)
                .checked_mul(per * 4)
                .and_then(|n| n.checked_add(q));
            if need.is_none_or(|n| n > *re) {
                return Err((*rp, format!("trun with {count} samples exceeds its box")));
            }
            let mut samples = Vec::with_capacity((count as usize).min(4096));
            let mut total = 0u64;
            for i in 0..count {
                let mut field = || {
                    let v = be32(moof, q).unwrap_or(0);
                    q += 4;
                    v
                };
                let dur = if tf & 0x100 != 0 { field() } else { def_dur };
                let size = if tf & 0x200 != 0 { field() } else { def_size };
                let sflags = if tf & 0x400 != 0 {
                    field()
                } else if i == 0 {
                    first_flags.unwrap_or(def_flags)
                } else {
                    def_flags
                };
                let sflags = if i == 0 {
                    first_flags.unwrap_or(sflags)
                } else {
                    sflags
                };
                let cts = if tf & 0x800 != 0 {
                    let v = field();
                    if version == 0 {
                        i32::try_from(v).unwrap_or(i32::MAX)
                    } else {
                        v as i32
                    }
                } else {
                    0
                };
                let sync = sflags & 0x0001_0000 == 0;
                total += u64::from(size);
                samples.push((dur, size, cts, sync));
            }
            next_data = src.saturating_add(total);
            let so_far: usize = runs.iter().map(|r| r.samples.len()).sum();
            if so_far + samples.len() > MAX_TRUN_SAMPLES as usize * 4 {
                return Err((*rp, "too many samples in one segment".to_owned()));
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
    // Lay out: ftyp, moov, mdat header; offsets depend on moov's size,
    // which depends on stco vs co64.
    let ftyp = ftyp_box();
    let mdat_header_len = if mdat_len + 8 > u64::from(u32::MAX) {
        16
    } else {
        8
    };
    let mut large = false;
    let mut moov = build_moov(&info, &tables, 0, large);
    let total = ftyp.len() as u64 + moov.len() as u64 + mdat_header_len + mdat_len;
    if total > u64::from(u32::MAX) {
        large = true;
    }
    moov = build_moov(&info, &tables, 0, large);
    let data_start = ftyp.len() as u64 + moov.len() as u64 + mdat_header_len;
    moov = build_moov(&info, &tables, data_start, large);
    let mut header = Vec::with_capacity(ftyp.len() + moov.len() + 16);
    header.extend_from_slice(&ftyp);
    let moov_offset = header.len() as u64;
    header.extend_from_slice(&moov);
    let mdat_offset = header.len() as u64;
    if mdat_header_len == 16 {
        header.extend_from_slice(&1u32.to_be_bytes());
        header.extend_from_slice(b"mdat");
        header.extend_from_slice(&(mdat_len + 16).to_be_bytes());
    } else {
        header.extend_from_slice(&((mdat_len + 8) as u32).to_be_bytes());
        header.extend_from_slice(b"mdat");
    }
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
        if t.entries.first().and_then(|f| f.get(4..8)) != e.get(4..8) {
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

fn ftyp_box() -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&32u32.to_be_bytes());
    b.extend_from_slice(b"ftyp");
    b.extend_from_slice(b"isom");
    b.extend_from_slice(&0x200u32.to_be_bytes());
    for brand in [b"isom", b"iso2", b"avc1", b"mp41"] {
        b.extend_from_slice(brand);
    }
    b
}

fn begin(b: &mut Vec<u8>, kind: &[u8; 4]) -> usize {
    let at = b.len();
    b.extend_from_slice(&[0, 0, 0, 0]);
    b.extend_from_slice(kind);
    at
}

fn begin_full(b: &mut Vec<u8>, kind: &[u8; 4], version: u8, flags: u32) -> usize {
    let at = begin(b, kind);
    b.extend_from_slice(&((u32::from(version) << 24) | flags).to_be_bytes());
    at
}

fn end(b: &mut [u8], at: usize) {
    // Boxes here stay far below 4 GiB (sample tables of < 2^28 samples).
    let size = u32::try_from(b.len() - at).unwrap_or(u32::MAX);
    if let Some(s) = b.get_mut(at..at + 4) {
        s.copy_from_slice(&size.to_be_bytes());
    }
}

fn put32(b: &mut Vec<u8>, v: u32) {
    b.extend_from_slice(&v.to_be_bytes());
}

/// Copies `src[s..e]` with the 4-byte (v0) or 8-byte (v1) duration at
/// `v0_at`/`v1_at` (relative to the payload) replaced.
fn patch_duration(
    out: &mut Vec<u8>,
    src: &[u8],
    (s, p, e): (usize, usize, usize),
    v0_at: usize,
    v1_at: usize,
    dur: u64,
) {
    let start = out.len();
    out.extend_from_slice(src.get(s..e).unwrap_or_default());
    let v = src.get(p).copied().unwrap_or(0);
    let rel = p - s;
    if v == 1 {
        if let Some(d) = out.get_mut(start + rel + v1_at..start + rel + v1_at + 8) {
            d.copy_from_slice(&dur.to_be_bytes());
        }
    } else if let Some(d) = out.get_mut(start + rel + v0_at..start + rel + v0_at + 4) {
        d.copy_from_slice(&u32::try_from(dur).unwrap_or(u32::MAX).to_be_bytes());
    }
}

fn build_moov(info: &InitInfo, tables: &[TrackTables], data_start: u64, large: bool) -> Vec<u8> {
    let src = &info.bytes[..];
    let (ms, me) = info.moov;
    let mut b = Vec::with_capacity(1024 + tables.iter().map(|t| t.sizes.len() * 5).sum::<usize>());
    let moov = begin(&mut b, b"moov");
    let movie_ts = 1000u64;
    let track_ms = |t: &TrackTables| t.duration.saturating_mul(movie_ts) / u64::from(t.timescale);
    let movie_dur = tables.iter().map(track_ms).max().unwrap_or(0);
    // Start of each track on the common timeline, in seconds * movie_ts.
    let starts: Vec<u64> = tables
        .iter()
        .map(|t| t.first_dts.unwrap_or(0).saturating_mul(movie_ts) / u64::from(t.timescale))
        .collect();
    let min_start = starts.iter().copied().min().unwrap_or(0);
    let Ok(children) = boxes(src, ms + 8, me) else {
        return b;
    };
    for (kind, s, p, e) in children {
        match &kind {
            b"mvhd" => patch_duration(&mut b, src, (s, p, e), 16, 24, movie_dur),
            b"trak" => {
                let Ok(trak) = boxes(src, p, e) else { continue };
                let id = find(&trak, b"tkhd")
                    .and_then(|(_, tp, _)| {
                        let v = src.get(tp).copied()?;
                        be32(src, tp + if v == 1 { 20 } else { 12 })
                    })
                    .unwrap_or(0);
                let Some((ti, t)) = tables.iter().enumerate().find(|(_, t)| t.id == id) else {
                    continue; // a track without samples is left out
                };
                let delay = starts
                    .get(ti)
                    .copied()
                    .unwrap_or(0)
                    .saturating_sub(min_start);
                write_trak(&mut b, src, &trak, t, track_ms(t), delay, data_start, large);
            }
            b"mvex" => {}
            _ => b.extend_from_slice(src.get(s..e).unwrap_or_default()),
        }
    }
    end(&mut b, moov);
    b
}

#[allow(clippy::too_many_arguments)]
fn write_trak(
    b: &mut Vec<u8>,
    src: &[u8],
    trak: &[BoxRef],
    t: &TrackTables,
    dur_movie: u64,
    delay_movie: u64,
    data_start: u64,
    large: bool,
) {
    let at = begin(b, b"trak");
    for &(kind, s, p, e) in trak {
        match &kind {
            b"tkhd" => {
                patch_duration(b, src, (s, p, e), 20, 28, dur_movie);
                // Edit list: an empty edit for a later start, then the media
                // from its first presentation time.
                let edts = begin(b, b"edts");
                let elst = begin_full(b, b"elst", 0, 0);
                put32(b, if delay_movie > 0 { 2 } else { 1 });
                if delay_movie > 0 {
                    put32(b, u32::try_from(delay_movie).unwrap_or(u32::MAX));
                    put32(b, u32::MAX); // media_time -1: empty
                    put32(b, 0x0001_0000);
                }
                put32(b, u32::try_from(dur_movie).unwrap_or(u32::MAX));
                put32(
                    b,
                    u32::try_from(t.first_cts.unwrap_or(0).max(0)).unwrap_or(0),
                );
                put32(b, 0x0001_0000);
                end(b, elst);
                end(b, edts);
            }
            b"edts" => {}
            b"mdia" => {
                let m = begin(b, b"mdia");
                let Ok(mdia) = boxes(src, p, e) else { continue };
                for (k2, s2, p2, e2) in mdia {
                    match &k2 {
                        b"mdhd" => patch_duration(b, src, (s2, p2, e2), 16, 24, t.duration),
                        b"minf" => {
                            let mi = begin(b, b"minf");
                            let Ok(minf) = boxes(src, p2, e2) else {
                                continue;
                            };
                            for (k3, s3, p3, e3) in minf {
                                if &k3 == b"stbl" {
                                    write_stbl(b, src, p3, e3, t, data_start, large);
                                } else {
                                    b.extend_from_slice(src.get(s3..e3).unwrap_or_default());
                                }
                            }
                            end(b, mi);
                        }
                        _ => b.extend_from_slice(src.get(s2..e2).unwrap_or_default()),
                    }
                }
                end(b, m);
            }
            _ => b.extend_from_slice(src.get(s..e).unwrap_or_default()),
        }
    }
    end(b, at);
}

fn write_stbl(
    b: &mut Vec<u8>,
    src: &[u8],
    p: usize,
    e: usize,
    t: &TrackTables,
    data_start: u64,
    large: bool,
) {
    let at = begin(b, b"stbl");
    if t.entries.len() > 1 {
        // A track change: one sample entry per parameter set, chosen per
        // chunk by stsc's sample_description_index.
        let x = begin_full(b, b"stsd", 0, 0);
        put32(b, t.entries.len() as u32);
        for e in &t.entries {
            b.extend_from_slice(e);
        }
        end(b, x);
    } else if let Ok(children) = boxes(src, p, e)
        && let Some((s, _, e)) = find(&children, b"stsd")
    {
        b.extend_from_slice(src.get(s..e).unwrap_or_default());
    }
    let x = begin_full(b, b"stts", 0, 0);
    put32(b, t.stts.len() as u32);
    for &(n, d) in &t.stts {
        put32(b, n);
        put32(b, d);
    }
    end(b, x);
    if t.any_cts {
        let x = begin_full(b, b"ctts", 1, 0);
        put32(b, t.ctts.len() as u32);
        for &(n, c) in &t.ctts {
            put32(b, n);
            b.extend_from_slice(&c.to_be_bytes());
        }
        end(b, x);
    }
    if !t.all_sync {
        let x = begin_full(b, b"stss", 0, 0);
        put32(b, t.stss.len() as u32);
        for &n in &t.stss {
            put32(b, n);
        }
        end(b, x);
    }
    // stsc: runs of chunks with the same sample count.
    let x = begin_full(b, b"stsc", 0, 0);
    let count_at = b.len();
    put32(b, 0);
    let mut runs = 0u32;
    let mut prev = None;
    for (i, &(_, n)) in t.chunks.iter().enumerate() {
        let sdi = t.chunk_sdi.get(i).copied().unwrap_or(1);
        if prev != Some((n, sdi)) {
            put32(b, i as u32 + 1);
            put32(b, n);
            put32(b, sdi);
            runs += 1;
            prev = Some((n, sdi));
        }
    }
    if let Some(c) = b.get_mut(count_at..count_at + 4) {
        c.copy_from_slice(&runs.to_be_bytes());
    }
    end(b, x);
    let x = begin_full(b, b"stsz", 0, 0);
    put32(b, 0);
    put32(b, t.sizes.len() as u32);
    for &s in &t.sizes {
        put32(b, s);
    }
    end(b, x);
    if large {
        let x = begin_full(b, b"co64", 0, 0);
        put32(b, t.chunks.len() as u32);
        for &(off, _) in &t.chunks {
            b.extend_from_slice(&(data_start + off).to_be_bytes());
        }
        end(b, x);
    } else {
        let x = begin_full(b, b"stco", 0, 0);
        put32(b, t.chunks.len() as u32);
        for &(off, _) in &t.chunks {
            put32(b, u32::try_from(data_start + off).unwrap_or(u32::MAX));
        }
        end(b, x);
    }
    end(b, at);
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
