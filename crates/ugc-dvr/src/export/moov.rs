//! Writing the output's header: `ftyp` and the `moov` (the first init's
//! box tree with the sample tables filled in).

use mp4_atom::{
    Co64, Ctts, CttsEntry, Edts, Elst, ElstEntry, Ftyp, Moov, Stco, Stsc, StscEntry, Stss, Stsz,
    StszSamples, Stts, SttsEntry,
};

use super::init::InitInfo;
use super::tables::TrackTables;

pub(super) fn ftyp_box() -> Ftyp {
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
pub(super) fn build_moov(
    info: &InitInfo,
    tables: &[TrackTables],
    data_start: u64,
    large: bool,
) -> Moov {
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
