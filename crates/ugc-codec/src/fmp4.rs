//! Fragmented MP4 / CMAF writer (ISO/IEC 14496-12, ISO/IEC 23000-19): the init
//! segment (`ftyp` + `moov`), `styp`, and fragments (`moof` + `mdat`).
//!
//! The boxes are written directly (a few hundred bytes of fixed layout) rather
//! than through a box-tree library: a fragment is sized up front, allocated
//! once, and each sample payload is copied exactly once into it.

use bytes::{BufMut, Bytes, BytesMut};
use ugc_core::{Codec, MediaKind, Timescale, TrackId, TrackInfo, TrackParams};

use crate::error::{Error, Result};

/// One sample (access unit) of a fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// Duration in the track's fMP4 timescale ([`track_timescale`]).
    pub duration: u32,
    /// `pts - dts` in the track's fMP4 timescale.
    pub cts_offset: i32,
    /// A sync sample (IDR / key frame; every audio sample).
    pub keyframe: bool,
    /// The sample bytes (length-prefixed NAL units, raw AAC, ...).
    pub data: Bytes,
}

/// The samples of one track in one fragment.
#[derive(Debug, Clone, Copy)]
pub struct TrackFragment<'a> {
    /// The track (as announced in the init segment).
    pub track: TrackId,
    /// in the fMP4 track timescale
    pub base_decode_time: u64,
    /// Samples in decode order.
    pub samples: &'a [Sample],
}

/// fMP4 timescale used for a track in init segment + fragments: 90000 for video, sample rate for audio.
pub fn track_timescale(track: &TrackInfo) -> Timescale {
    match &track.params {
        TrackParams::Audio(a) => Timescale::new(a.sample_rate).unwrap_or(Timescale::MPEG),
        TrackParams::Video(_) => Timescale::MPEG,
    }
}

/// Starts a box; returns its offset for [`end_box`].
fn begin_box(buf: &mut Vec<u8>, kind: &[u8; 4]) -> usize {
    let at = buf.len();
    buf.extend_from_slice(&[0, 0, 0, 0]);
    buf.extend_from_slice(kind);
    at
}

fn begin_full_box(buf: &mut Vec<u8>, kind: &[u8; 4], version: u8, flags: u32) -> usize {
    let at = begin_box(buf, kind);
    buf.extend_from_slice(&((u32::from(version) << 24) | (flags & 0x00ff_ffff)).to_be_bytes());
    at
}

fn end_box(buf: &mut [u8], at: usize) -> Result<()> {
    let size = u32::try_from(buf.len() - at)
        .map_err(|_| Error::InvalidArgument("box larger than 4 GiB".into()))?;
    buf[at..at + 4].copy_from_slice(&size.to_be_bytes());
    Ok(())
}

fn u16_(buf: &mut Vec<u8>, v: u16) {
    buf.extend_from_slice(&v.to_be_bytes());
}
fn u32_(buf: &mut Vec<u8>, v: u32) {
    buf.extend_from_slice(&v.to_be_bytes());
}

const MATRIX: [u32; 9] = [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000];

/// ftyp (cmfc/iso6 brands) + moov (mvhd, trak per track with the codec sample entry: avc1/avcC, hvc1/hvcC, mp4a/esds, Opus/dOps; mvex/trex)
pub fn init_segment(tracks: &[TrackInfo]) -> Result<Bytes> {
    if tracks.is_empty() {
        return Err(Error::InvalidArgument("init segment without tracks".into()));
    }
    let mut b = Vec::with_capacity(1024);
    let ftyp = begin_box(&mut b, b"ftyp");
    b.extend_from_slice(b"iso6");
    u32_(&mut b, 0);
    for brand in [b"iso6", b"cmfc", b"mp41"] {
        b.extend_from_slice(brand);
    }
    end_box(&mut b, ftyp)?;

    let moov = begin_box(&mut b, b"moov");
    let mvhd = begin_full_box(&mut b, b"mvhd", 0, 0);
    u32_(&mut b, 0); // creation_time
    u32_(&mut b, 0); // modification_time
    u32_(&mut b, 1000); // timescale
    u32_(&mut b, 0); // duration
    u32_(&mut b, 0x0001_0000); // rate
    u16_(&mut b, 0x0100); // volume
    b.extend_from_slice(&[0; 10]);
    for m in MATRIX {
        u32_(&mut b, m);
    }
    b.extend_from_slice(&[0; 24]); // pre_defined
    let next_id = tracks
        .iter()
        .map(|t| t.id.0)
        .max()
        .unwrap_or(0)
        .saturating_add(1);
    u32_(&mut b, next_id);
    end_box(&mut b, mvhd)?;

    for t in tracks {
        write_trak(&mut b, t)?;
    }

    let mvex = begin_box(&mut b, b"mvex");
    for t in tracks {
        let trex = begin_full_box(&mut b, b"trex", 0, 0);
        u32_(&mut b, t.id.0);
        u32_(&mut b, 1); // default_sample_description_index
        u32_(&mut b, 0); // default_sample_duration
        u32_(&mut b, 0); // default_sample_size
        u32_(&mut b, 0); // default_sample_flags
        end_box(&mut b, trex)?;
    }
    end_box(&mut b, mvex)?;
    end_box(&mut b, moov)?;
    Ok(Bytes::from(b))
}

fn write_trak(b: &mut Vec<u8>, t: &TrackInfo) -> Result<()> {
    if t.config.is_empty() && t.codec != Codec::Opus {
        return Err(Error::InvalidArgument(format!(
            "{:?}: no decoder configuration",
            t.id
        )));
    }
    let video = t.kind() == MediaKind::Video;
    let trak = begin_box(b, b"trak");
    let tkhd = begin_full_box(b, b"tkhd", 0, 0x3); // enabled | in_movie
    u32_(b, 0);
    u32_(b, 0);
    u32_(b, t.id.0);
    u32_(b, 0); // reserved
    u32_(b, 0); // duration
    b.extend_from_slice(&[0; 8]);
    u16_(b, 0); // layer
    u16_(b, 0); // alternate_group
    u16_(b, if video { 0 } else { 0x0100 });
    u16_(b, 0);
    for m in MATRIX {
        u32_(b, m);
    }
    let (w, h) = t.video().map_or((0, 0), |v| (v.width, v.height));
    u32_(b, w.min(0xffff) << 16);
    u32_(b, h.min(0xffff) << 16);
    end_box(b, tkhd)?;

    let mdia = begin_box(b, b"mdia");
    let mdhd = begin_full_box(b, b"mdhd", 0, 0);
    u32_(b, 0);
    u32_(b, 0);
    u32_(b, track_timescale(t).get());
    u32_(b, 0);
    u16_(b, 0x55c4); // 'und'
    u16_(b, 0);
    end_box(b, mdhd)?;
    let hdlr = begin_full_box(b, b"hdlr", 0, 0);
    u32_(b, 0);
    b.extend_from_slice(if video { b"vide" } else { b"soun" });
    b.extend_from_slice(&[0; 12]);
    b.extend_from_slice(if video {
        b"VideoHandler\0"
    } else {
        b"SoundHandler\0"
    });
    end_box(b, hdlr)?;

    let minf = begin_box(b, b"minf");
    if video {
        let vmhd = begin_full_box(b, b"vmhd", 0, 1);
        b.extend_from_slice(&[0; 8]);
        end_box(b, vmhd)?;
    } else {
        let smhd = begin_full_box(b, b"smhd", 0, 0);
        b.extend_from_slice(&[0; 4]);
        end_box(b, smhd)?;
    }
    let dinf = begin_box(b, b"dinf");
    let dref = begin_full_box(b, b"dref", 0, 0);
    u32_(b, 1);
    let url = begin_full_box(b, b"url ", 0, 1);
    end_box(b, url)?;
    end_box(b, dref)?;
    end_box(b, dinf)?;

    let stbl = begin_box(b, b"stbl");
    let stsd = begin_full_box(b, b"stsd", 0, 0);
    u32_(b, 1);
    write_sample_entry(b, t)?;
    end_box(b, stsd)?;
    for kind in [b"stts", b"stsc", b"stco"] {
        let bx = begin_full_box(b, kind, 0, 0);
        u32_(b, 0);
        end_box(b, bx)?;
    }
    let stsz = begin_full_box(b, b"stsz", 0, 0);
    u32_(b, 0);
    u32_(b, 0);
    end_box(b, stsz)?;
    end_box(b, stbl)?;
    end_box(b, minf)?;
    end_box(b, mdia)?;
    end_box(b, trak)?;
    Ok(())
}

fn write_sample_entry(b: &mut Vec<u8>, t: &TrackInfo) -> Result<()> {
    match (&t.params, t.codec) {
        (TrackParams::Video(v), codec @ (Codec::H264 | Codec::H265 | Codec::Av1)) => {
            let (entry, cfg) = match codec {
                Codec::H264 => (b"avc1", b"avcC"),
                Codec::H265 => (b"hvc1", b"hvcC"),
                _ => (b"av01", b"av1C"),
            };
            let e = begin_box(b, entry);
            b.extend_from_slice(&[0; 6]);
            u16_(b, 1); // data_reference_index
            b.extend_from_slice(&[0; 16]); // pre_defined, reserved, pre_defined[3]
            u16_(b, u16::try_from(v.width).unwrap_or(u16::MAX));
            u16_(b, u16::try_from(v.height).unwrap_or(u16::MAX));
            u32_(b, 0x0048_0000);
            u32_(b, 0x0048_0000);
            u32_(b, 0);
            u16_(b, 1); // frame_count
            b.extend_from_slice(&[0; 32]); // compressorname
            u16_(b, 0x0018);
            u16_(b, 0xffff);
            let c = begin_box(b, cfg);
            b.extend_from_slice(&t.config);
            end_box(b, c)?;
            end_box(b, e)
        }
        (TrackParams::Audio(a), codec @ (Codec::Aac | Codec::Opus)) => {
            let e = begin_box(
                b,
                if codec == Codec::Aac {
                    b"mp4a"
                } else {
                    b"Opus"
                },
            );
            b.extend_from_slice(&[0; 6]);
            u16_(b, 1);
            b.extend_from_slice(&[0; 8]);
            u16_(b, u16::from(a.channels.max(1)));
            u16_(b, 16);
            u32_(b, 0);
            let rate = if codec == Codec::Opus {
                48_000
            } else {
                a.sample_rate
            };
            u32_(b, if rate > 0xffff { 0 } else { rate << 16 });
            if codec == Codec::Aac {
                write_esds(b, t)?;
            } else {
                let d = begin_box(b, b"dOps");
                if t.config.is_empty() {
                    // Minimal dOps: version 0, channels, pre-skip 0, 48 kHz, gain 0, family 0.
                    b.extend_from_slice(&[0, a.channels.max(1), 0, 0]);
                    u32_(b, 48_000);
                    b.extend_from_slice(&[0, 0, 0]);
                } else {
                    b.extend_from_slice(&t.config);
                }
                end_box(b, d)?;
            }
            end_box(b, e)
        }
        _ => Err(Error::InvalidArgument(format!(
            "{:?}: codec {:?} has no fMP4 sample entry here",
            t.id, t.codec
        ))),
    }
}

/// Writes an MPEG-4 descriptor header (tag + expandable size).
fn descriptor(b: &mut Vec<u8>, tag: u8, len: usize) -> Result<()> {
    if len >= 1 << 28 {
        return Err(Error::InvalidArgument("descriptor too large".into()));
    }
    b.push(tag);
    b.push(0x80 | ((len >> 21) & 0x7f) as u8);
    b.push(0x80 | ((len >> 14) & 0x7f) as u8);
    b.push(0x80 | ((len >> 7) & 0x7f) as u8);
    b.push((len & 0x7f) as u8);
    Ok(())
}

fn write_esds(b: &mut Vec<u8>, t: &TrackInfo) -> Result<()> {
    let asc = &t.config;
    let bitrate = t.bitrate.unwrap_or(0);
    let dsi_len = 5 + asc.len();
    let dcd_len = 13 + dsi_len;
    let es_len = 3 + (5 + dcd_len) + (5 + 1);
    let esds = begin_full_box(b, b"esds", 0, 0);
    descriptor(b, 0x03, es_len)?;
    u16_(b, 0); // ES_ID
    b.push(0); // flags
    descriptor(b, 0x04, dcd_len)?;
    b.push(0x40); // Audio ISO/IEC 14496-3
    b.push((0x05 << 2) | 1); // AudioStream, upStream 0, reserved 1
    b.extend_from_slice(&[0, 0, 0]); // bufferSizeDB
    u32_(b, bitrate); // maxBitrate
    u32_(b, bitrate); // avgBitrate
    descriptor(b, 0x05, asc.len())?;
    b.extend_from_slice(asc);
    descriptor(b, 0x06, 1)?;
    b.push(0x02);
    end_box(b, esds)
}

/// `styp` box to put before the first fragment of a segment (msdh/msix/cmfs brands)
pub fn styp() -> Bytes {
    STYP.clone()
}

static STYP: Bytes = Bytes::from_static(&[
    0, 0, 0, 28, b's', b't', b'y', b'p', b'm', b's', b'd', b'h', 0, 0, 0, 0, b'm', b's', b'd',
    b'h', b'm', b's', b'i', b'x', b'c', b'm', b'f', b's',
]);

const SAMPLE_FLAGS_SYNC: u32 = 0x0200_0000; // sample_depends_on = 2 (no other samples)
const SAMPLE_FLAGS_NON_SYNC: u32 = 0x0101_0000; // depends_on = 1, is_non_sync_sample

/// one moof (mfhd with `sequence_number`, one traf per TrackFragment: tfhd default-base-is-moof, tfdt v1, trun with data offsets, sizes, durations, flags, cts offsets (version 1, signed)) + one mdat
pub fn fragment(sequence_number: u32, fragments: &[TrackFragment<'_>]) -> Result<Bytes> {
    if fragments.is_empty() {
        return Err(Error::InvalidArgument("fragment without tracks".into()));
    }
    // Sizes first: moof, then mdat payload.
    let mut moof_size: u64 = 8 + 16; // moof header + mfhd
    let mut payload: u64 = 0;
    for f in fragments {
        let n = f.samples.len() as u64;
        moof_size += 8 + 16 + 20 + (8 + 4 + 4 + 4) + 16 * n;
        payload += f.samples.iter().map(|s| s.data.len() as u64).sum::<u64>();
    }
    let mdat_header: u64 = if payload + 8 > u64::from(u32::MAX) {
        16
    } else {
        8
    };
    let total = moof_size + mdat_header + payload;
    let total_usize =
        usize::try_from(total).map_err(|_| Error::InvalidArgument("fragment too large".into()))?;
    let moof_u32 =
        u32::try_from(moof_size).map_err(|_| Error::InvalidArgument("moof too large".into()))?;

    let mut b = BytesMut::with_capacity(total_usize);
    b.put_u32(moof_u32);
    b.put_slice(b"moof");
    b.put_u32(16);
    b.put_slice(b"mfhd");
    b.put_u32(0);
    b.put_u32(sequence_number);
    let mut data_offset = moof_size + mdat_header;
    for f in fragments {
        let n = u32::try_from(f.samples.len())
            .map_err(|_| Error::InvalidArgument("too many samples".into()))?;
        let trun_size = 20 + 16 * n;
        b.put_u32(8 + 16 + 20 + trun_size);
        b.put_slice(b"traf");
        b.put_u32(16);
        b.put_slice(b"tfhd");
        b.put_u32(0x0002_0000); // default-base-is-moof
        b.put_u32(f.track.0);
        b.put_u32(20);
        b.put_slice(b"tfdt");
        b.put_u32(0x0100_0000); // version 1
        b.put_u64(f.base_decode_time);
        b.put_u32(trun_size);
        b.put_slice(b"trun");
        // version 1; data-offset, duration, size, flags, composition time offset
        b.put_u32(0x0100_0f01);
        b.put_u32(n);
        let off = i32::try_from(data_offset)
            .map_err(|_| Error::InvalidArgument("data offset beyond 2 GiB".into()))?;
        b.put_i32(off);
        for s in f.samples {
            let size = u32::try_from(s.data.len())
                .map_err(|_| Error::InvalidArgument("sample larger than 4 GiB".into()))?;
            b.put_u32(s.duration);
            b.put_u32(size);
            b.put_u32(if s.keyframe {
                SAMPLE_FLAGS_SYNC
            } else {
                SAMPLE_FLAGS_NON_SYNC
            });
            b.put_i32(s.cts_offset);
            data_offset += u64::from(size);
        }
    }
    if mdat_header == 16 {
        b.put_u32(1);
        b.put_slice(b"mdat");
        b.put_u64(payload + 16);
    } else {
        // payload + 8 <= u32::MAX was checked above.
        b.put_u32((payload + 8) as u32);
        b.put_slice(b"mdat");
    }
    for f in fragments {
        for s in f.samples {
            b.put_slice(&s.data);
        }
    }
    debug_assert_eq!(b.len(), total_usize);
    Ok(b.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn styp_is_well_formed() {
        let s = styp();
        assert_eq!(s.len(), 28);
        assert_eq!(&s[4..8], b"styp");
        assert_eq!(&s[24..28], b"cmfs");
    }

    #[test]
    fn fragment_offsets_point_into_mdat() {
        let samples = [
            Sample {
                duration: 3000,
                cts_offset: 0,
                keyframe: true,
                data: Bytes::from_static(b"abcd"),
            },
            Sample {
                duration: 3000,
                cts_offset: -3000,
                keyframe: false,
                data: Bytes::from_static(b"ef"),
            },
        ];
        let audio = [Sample {
            duration: 1024,
            cts_offset: 0,
            keyframe: true,
            data: Bytes::from_static(b"xyz"),
        }];
        let f = fragment(
            7,
            &[
                TrackFragment {
                    track: TrackId(1),
                    base_decode_time: 90_000,
                    samples: &samples,
                },
                TrackFragment {
                    track: TrackId(2),
                    base_decode_time: 48_000,
                    samples: &audio,
                },
            ],
        )
        .unwrap();
        let moof = u32::from_be_bytes(f[0..4].try_into().unwrap()) as usize;
        assert_eq!(&f[moof + 4..moof + 8], b"mdat");
        assert_eq!(&f[moof + 8..], b"abcdefxyz");
        assert_eq!(u32::from_be_bytes(f[20..24].try_into().unwrap()), 7);
    }
}
