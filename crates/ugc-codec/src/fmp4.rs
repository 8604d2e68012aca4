//! Fragmented MP4 (CMAF) writer.
//!
//! placeholder until wt-b lands: the bodies produce box-shaped but
//! unplayable bytes; only the signatures are the contract.

use bytes::{BufMut, Bytes, BytesMut};
use ugc_core::{MediaKind, Timescale, TrackId, TrackInfo};

use crate::error::Error;

/// One sample of a track fragment.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Duration in the fMP4 track timescale.
    pub duration: u32,
    /// Composition offset (pts - dts) in the fMP4 track timescale.
    pub cts_offset: i32,
    /// A sync sample.
    pub keyframe: bool,
    /// The sample bytes.
    pub data: Bytes,
}

/// The samples of one track in one fragment.
#[derive(Debug, Clone)]
pub struct TrackFragment<'a> {
    /// The track.
    pub track: TrackId,
    /// Decode time of the first sample, in the fMP4 track timescale.
    pub base_decode_time: u64,
    /// The samples, in decode order.
    pub samples: &'a [Sample],
}

/// The timescale of `track` in fMP4 output: 90 kHz for video, the sample rate
/// for audio.
pub fn track_timescale(track: &TrackInfo) -> Timescale {
    // placeholder until wt-b lands
    match (track.kind(), track.audio()) {
        (MediaKind::Audio, Some(a)) => Timescale::new(a.sample_rate).unwrap_or(Timescale::MPEG),
        _ => Timescale::MPEG,
    }
}

fn put_box(out: &mut BytesMut, fourcc: &[u8; 4], body: &[u8]) {
    // placeholder until wt-b lands
    let len = u32::try_from(body.len() + 8).unwrap_or(u32::MAX);
    out.put_u32(len);
    out.put_slice(fourcc);
    out.put_slice(body);
}

/// The initialization segment (`ftyp` + `moov`) for `tracks`.
pub fn init_segment(tracks: &[TrackInfo]) -> Result<Bytes, Error> {
    // placeholder until wt-b lands
    let mut out = BytesMut::new();
    put_box(&mut out, b"ftyp", b"iso6\0\0\0\0iso6cmfc");
    let mut moov = Vec::new();
    for t in tracks {
        moov.extend_from_slice(&t.id.0.to_be_bytes());
        moov.extend_from_slice(&t.config);
    }
    put_box(&mut out, b"moov", &moov);
    Ok(out.freeze())
}

/// One fragment (`moof` + `mdat`) holding `fragments`.
pub fn fragment(sequence_number: u32, fragments: &[TrackFragment<'_>]) -> Result<Bytes, Error> {
    // placeholder until wt-b lands
    let mut out = BytesMut::new();
    let mut moof = Vec::new();
    moof.extend_from_slice(&sequence_number.to_be_bytes());
    let mut mdat_len = 0usize;
    for f in fragments {
        moof.extend_from_slice(&f.track.0.to_be_bytes());
        moof.extend_from_slice(&f.base_decode_time.to_be_bytes());
        for s in f.samples {
            moof.extend_from_slice(&s.duration.to_be_bytes());
            moof.extend_from_slice(&s.cts_offset.to_be_bytes());
            mdat_len += s.data.len();
        }
    }
    put_box(&mut out, b"moof", &moof);
    out.put_u32(u32::try_from(mdat_len + 8).unwrap_or(u32::MAX));
    out.put_slice(b"mdat");
    for f in fragments {
        for s in f.samples {
            out.put_slice(&s.data);
        }
    }
    Ok(out.freeze())
}

/// The `styp` box that starts a media segment.
pub fn styp() -> Bytes {
    // placeholder until wt-b lands
    Bytes::from_static(b"\0\0\0\x18stypmsdh\0\0\0\0msdhmsix")
}
