//! The relay's init segment: a `moov` with one `trak` per track (the codec's
//! standard sample entry and configuration box, the Hub's timescale in
//! `mdhd`) plus the private boxes that make the round trip exact (`ugct` per
//! track, `ugci` per init). See the module doc of [`crate::relay`].

use bytes::Bytes;
use ugc_core::{
    AudioParams, Codec, Rational, Timescale, TrackId, TrackInfo, TrackParams, Tracks, VideoParams,
};

use super::boxes::{BoxWriter, Cursor, children, find, fourcc};
use crate::error::{Error, Result};

const MATRIX: [u32; 9] = [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000];

/// `ugci` flag: this init is context for a resumed connection, not an event.
pub(crate) const INIT_CONTEXT: u32 = 1;
/// `ugci` flag: the sender made this init for this connection (no sequence).
pub(crate) const INIT_SYNTHESIZED: u32 = 2;

/// What the `ugci` box of an init says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct InitMark {
    pub(crate) flags: u32,
    pub(crate) seq: u64,
}

/// Writes `moov` for `tracks` with the `ugci` mark.
pub(crate) fn write_moov(w: &mut BoxWriter, tracks: &Tracks, mark: InitMark) -> Result<()> {
    let moov = w.open(b"moov");
    let mvhd = w.open_full(b"mvhd", 0, 0);
    w.u32(0); // creation_time
    w.u32(0); // modification_time
    w.u32(1000); // timescale
    w.u32(0); // duration
    w.u32(0x0001_0000); // rate
    w.u16(0x0100); // volume
    w.zeros(10);
    for m in MATRIX {
        w.u32(m);
    }
    w.zeros(24); // pre_defined
    let next_id = tracks
        .iter()
        .map(|t| t.id.0)
        .max()
        .unwrap_or(0)
        .saturating_add(1);
    w.u32(next_id);
    w.close(mvhd)?;
    for t in tracks.iter() {
        write_trak(w, t)?;
    }
    let mvex = w.open(b"mvex");
    for t in tracks.iter() {
        let trex = w.open_full(b"trex", 0, 0);
        w.u32(t.id.0);
        w.u32(1); // default_sample_description_index
        w.u32(0); // default_sample_duration
        w.u32(0); // default_sample_size
        w.u32(0); // default_sample_flags
        w.close(trex)?;
    }
    w.close(mvex)?;
    let ugci = w.open_full(b"ugci", 0, mark.flags);
    w.u64(mark.seq);
    w.close(ugci)?;
    w.close(moov)
}

fn is_video(codec: Codec) -> bool {
    matches!(codec, Codec::H264 | Codec::H265 | Codec::Av1)
}

fn write_trak(w: &mut BoxWriter, t: &TrackInfo) -> Result<()> {
    let video = is_video(t.codec);
    let (width, height) = match &t.params {
        TrackParams::Video(v) => (v.width, v.height),
        TrackParams::Audio(_) => (0, 0),
    };
    let trak = w.open(b"trak");
    let tkhd = w.open_full(b"tkhd", 0, 0x3); // enabled | in_movie
    w.u32(0);
    w.u32(0);
    w.u32(t.id.0);
    w.u32(0); // reserved
    w.u32(0); // duration
    w.zeros(8);
    w.u16(0); // layer
    w.u16(0); // alternate_group
    w.u16(if video { 0 } else { 0x0100 });
    w.u16(0);
    for m in MATRIX {
        w.u32(m);
    }
    w.u32(width.min(0xffff) << 16);
    w.u32(height.min(0xffff) << 16);
    w.close(tkhd)?;

    let mdia = w.open(b"mdia");
    let mdhd = w.open_full(b"mdhd", 0, 0);
    w.u32(0);
    w.u32(0);
    w.u32(t.timescale.get());
    w.u32(0);
    w.u16(0x55c4); // 'und'
    w.u16(0);
    w.close(mdhd)?;
    let hdlr = w.open_full(b"hdlr", 0, 0);
    w.u32(0);
    w.bytes(if video { b"vide" } else { b"soun" });
    w.zeros(12);
    w.bytes(if video {
        b"VideoHandler\0"
    } else {
        b"SoundHandler\0"
    });
    w.close(hdlr)?;

    let minf = w.open(b"minf");
    if video {
        let vmhd = w.open_full(b"vmhd", 0, 1);
        w.zeros(8);
        w.close(vmhd)?;
    } else {
        let smhd = w.open_full(b"smhd", 0, 0);
        w.zeros(4);
        w.close(smhd)?;
    }
    let dinf = w.open(b"dinf");
    let dref = w.open_full(b"dref", 0, 0);
    w.u32(1);
    let url = w.open_full(b"url ", 0, 1);
    w.close(url)?;
    w.close(dref)?;
    w.close(dinf)?;
    let stbl = w.open(b"stbl");
    let stsd = w.open_full(b"stsd", 0, 0);
    w.u32(1);
    write_sample_entry(w, t, width, height)?;
    w.close(stsd)?;
    for kind in [b"stts", b"stsc", b"stco"] {
        let b = w.open_full(kind, 0, 0);
        w.u32(0);
        w.close(b)?;
    }
    let stsz = w.open_full(b"stsz", 0, 0);
    w.u32(0);
    w.u32(0);
    w.close(stsz)?;
    w.close(stbl)?;
    w.close(minf)?;
    w.close(mdia)?;
    write_ugct(w, t)?;
    w.close(trak)
}

fn write_sample_entry(w: &mut BoxWriter, t: &TrackInfo, width: u32, height: u32) -> Result<()> {
    let (entry, cfg): (&[u8; 4], &[u8; 4]) = match t.codec {
        Codec::H264 => (b"avc1", b"avcC"),
        Codec::H265 => (b"hvc1", b"hvcC"),
        Codec::Av1 => (b"av01", b"av1C"),
        Codec::Aac => (b"mp4a", b"esds"),
        Codec::Opus => (b"Opus", b"dOps"),
        other => {
            return Err(Error::Media(format!(
                "relay: codec {other:?} has no sample entry"
            )));
        }
    };
    let e = w.open(entry);
    w.zeros(6);
    w.u16(1); // data_reference_index
    if is_video(t.codec) {
        w.zeros(16); // pre_defined, reserved, pre_defined[3]
        w.u16(u16::try_from(width).unwrap_or(u16::MAX));
        w.u16(u16::try_from(height).unwrap_or(u16::MAX));
        w.u32(0x0048_0000);
        w.u32(0x0048_0000);
        w.u32(0);
        w.u16(1); // frame_count
        w.zeros(32); // compressorname
        w.u16(0x0018);
        w.u16(0xffff);
        let c = w.open(cfg);
        w.bytes(&t.config);
        w.close(c)?;
    } else {
        let (rate, channels) = match &t.params {
            TrackParams::Audio(a) => (a.sample_rate, a.channels),
            TrackParams::Video(_) => (0, 0),
        };
        w.zeros(8);
        w.u16(u16::from(channels));
        w.u16(16);
        w.u32(0);
        w.u32(if rate > 0xffff { 0 } else { rate << 16 });
        if t.codec == Codec::Aac {
            write_esds(w, &t.config, t.bitrate.unwrap_or(0))?;
        } else {
            let c = w.open(cfg);
            w.bytes(&t.config);
            w.close(c)?;
        }
    }
    w.close(e)
}

/// An MPEG-4 descriptor header: tag and a four-byte expandable size.
fn descriptor(w: &mut BoxWriter, tag: u8, len: usize) -> Result<()> {
    if len >= 1 << 28 {
        return Err(Error::Media("relay: AAC config too large".into()));
    }
    w.u8(tag);
    w.u8(0x80 | ((len >> 21) & 0x7f) as u8);
    w.u8(0x80 | ((len >> 14) & 0x7f) as u8);
    w.u8(0x80 | ((len >> 7) & 0x7f) as u8);
    w.u8((len & 0x7f) as u8);
    Ok(())
}

fn write_esds(w: &mut BoxWriter, asc: &[u8], bitrate: u32) -> Result<()> {
    let dsi_len = 5 + asc.len();
    let dcd_len = 13 + dsi_len;
    let es_len = 3 + (5 + dcd_len) + (5 + 1);
    let esds = w.open_full(b"esds", 0, 0);
    descriptor(w, 0x03, es_len)?;
    w.u16(0); // ES_ID
    w.u8(0); // flags
    descriptor(w, 0x04, dcd_len)?;
    w.u8(0x40); // Audio ISO/IEC 14496-3
    w.u8((0x05 << 2) | 1); // AudioStream
    w.bytes(&[0, 0, 0]); // bufferSizeDB
    w.u32(bitrate);
    w.u32(bitrate);
    descriptor(w, 0x05, asc.len())?;
    w.bytes(asc);
    descriptor(w, 0x06, 1)?;
    w.u8(0x02);
    w.close(esds)
}

const UGCT_FRAME_RATE: u32 = 1;
const UGCT_BITRATE: u32 = 2;

fn write_ugct(w: &mut BoxWriter, t: &TrackInfo) -> Result<()> {
    let mut flags = 0;
    if t.bitrate.is_some() {
        flags |= UGCT_BITRATE;
    }
    if matches!(&t.params, TrackParams::Video(v) if v.frame_rate.is_some()) {
        flags |= UGCT_FRAME_RATE;
    }
    let b = w.open_full(b"ugct", 0, flags);
    match &t.params {
        TrackParams::Video(v) => {
            w.u8(0);
            w.u32(v.width);
            w.u32(v.height);
            if let Some(r) = v.frame_rate {
                w.u32(r.num);
                w.u32(r.den);
            }
        }
        TrackParams::Audio(a) => {
            w.u8(1);
            w.u32(a.sample_rate);
            w.u8(a.channels);
            w.u32(a.samples_per_frame);
        }
    }
    if let Some(br) = t.bitrate {
        w.u32(br);
    }
    let cs = t.codec_string.as_bytes();
    let len = u16::try_from(cs.len())
        .map_err(|_| Error::Media("relay: codec string longer than 65535 bytes".into()))?;
    w.u16(len);
    w.bytes(cs);
    w.close(b)
}

/// A parse failure inside a `moov`: offset within the moov body, reason.
pub(crate) type InitError = (usize, String);

fn err<T>(at: usize, reason: impl Into<String>) -> Result<T, InitError> {
    Err((at, reason.into()))
}

/// Parses a `moov` body back into tracks and its `ugci` mark.
pub(crate) fn parse_moov(body: &[u8], max_tracks: usize) -> Result<(Tracks, InitMark), InitError> {
    let mut tracks = Vec::new();
    let mut mark = None;
    for c in children(body) {
        let c = c?;
        match &c.kind {
            b"trak" => {
                if tracks.len() >= max_tracks {
                    return err(c.offset, format!("more than {max_tracks} tracks"));
                }
                let t = parse_trak(c.body).map_err(|(at, r)| (c.offset + 8 + at, r))?;
                tracks.push(t);
            }
            b"ugci" => {
                let mut cur = Cursor::new(c.body);
                let (Some(vf), Some(seq)) = (cur.u32(), cur.u64()) else {
                    return err(c.offset, "ugci truncated");
                };
                if vf >> 24 != 0 {
                    return err(c.offset, format!("ugci version {} unknown", vf >> 24));
                }
                mark = Some(InitMark {
                    flags: vf & 0x00ff_ffff,
                    seq,
                });
            }
            _ => {}
        }
    }
    let Some(mark) = mark else {
        return err(0, "moov without ugci (not written by a ugc relay)");
    };
    Ok((Tracks::new(tracks), mark))
}

/// Descends `path` from `body`; the body of the last box.
fn descend<'a>(body: &'a [u8], path: &[&[u8; 4]]) -> Result<&'a [u8], InitError> {
    let mut cur = body;
    let mut base = 0;
    for kind in path {
        match find(cur, kind).map_err(|(at, r)| (base + at, r))? {
            Some(c) => {
                base += c.offset + 8;
                cur = c.body;
            }
            None => return err(base, format!("missing {}", fourcc(kind))),
        }
    }
    Ok(cur)
}

fn parse_trak(body: &[u8]) -> Result<TrackInfo, InitError> {
    let tkhd = descend(body, &[b"tkhd"])?;
    let mut c = Cursor::new(tkhd);
    let version = c.u8().ok_or((0, "tkhd truncated".to_string()))?;
    c.skip(3);
    c.skip(if version == 1 { 16 } else { 8 });
    let id = c.u32().ok_or((0, "tkhd truncated".to_string()))?;

    let mdhd = descend(body, &[b"mdia", b"mdhd"])?;
    let mut c = Cursor::new(mdhd);
    let version = c.u8().ok_or((0, "mdhd truncated".to_string()))?;
    c.skip(3);
    c.skip(if version == 1 { 16 } else { 8 });
    let scale = c.u32().ok_or((0, "mdhd truncated".to_string()))?;
    let timescale = Timescale::new(scale).ok_or((0, "mdhd timescale 0".to_string()))?;

    let stsd = descend(body, &[b"mdia", b"minf", b"stbl", b"stsd"])?;
    let mut c = Cursor::new(stsd);
    c.skip(4); // version, flags
    let count = c.u32().ok_or((0, "stsd truncated".to_string()))?;
    if count != 1 {
        return err(0, format!("stsd with {count} sample entries, want 1"));
    }
    let entry = children(c.rest())
        .next()
        .ok_or((0, "stsd without entry".to_string()))??;
    let (codec, header) = match &entry.kind {
        b"avc1" | b"avc3" => (Codec::H264, 78),
        b"hvc1" | b"hev1" => (Codec::H265, 78),
        b"av01" => (Codec::Av1, 78),
        b"mp4a" => (Codec::Aac, 28),
        b"Opus" => (Codec::Opus, 28),
        k => return err(0, format!("sample entry {} unsupported", fourcc(k))),
    };
    let boxes = entry
        .body
        .get(header..)
        .ok_or((0, format!("sample entry {} truncated", fourcc(&entry.kind))))?;
    let cfg_kind: &[u8; 4] = match codec {
        Codec::H264 => b"avcC",
        Codec::H265 => b"hvcC",
        Codec::Av1 => b"av1C",
        Codec::Aac => b"esds",
        _ => b"dOps",
    };
    let cfg = find(boxes, cfg_kind)?.ok_or((0, format!("missing {}", fourcc(cfg_kind))))?;
    let config = if codec == Codec::Aac {
        parse_esds(cfg.body).map_err(|r| (0, r))?
    } else {
        Bytes::copy_from_slice(cfg.body)
    };

    let ugct = descend(body, &[b"ugct"])?;
    let (params, bitrate, codec_string) = parse_ugct(ugct).map_err(|r| (0, r))?;
    Ok(TrackInfo {
        id: TrackId(id),
        codec,
        timescale,
        config,
        codec_string,
        params,
        bitrate,
    })
}

/// The DecoderSpecificInfo (AudioSpecificConfig) of an `esds` body.
fn parse_esds(body: &[u8]) -> Result<Bytes, String> {
    let mut c = Cursor::new(body);
    c.skip(4).ok_or("esds truncated")?;
    let es = descriptor_body(&mut c, 0x03)?;
    let mut c = Cursor::new(es);
    c.skip(2).ok_or("ES_Descriptor truncated")?;
    let flags = c.u8().ok_or("ES_Descriptor truncated")?;
    if flags & 0x80 != 0 {
        c.skip(2).ok_or("ES_Descriptor truncated")?;
    }
    if flags & 0x40 != 0 {
        let n = c.u8().ok_or("ES_Descriptor truncated")?;
        c.skip(usize::from(n)).ok_or("ES_Descriptor truncated")?;
    }
    if flags & 0x20 != 0 {
        c.skip(2).ok_or("ES_Descriptor truncated")?;
    }
    let dcd = descriptor_body(&mut c, 0x04)?;
    let mut c = Cursor::new(dcd);
    c.skip(13).ok_or("DecoderConfigDescriptor truncated")?;
    if c.remaining() == 0 {
        return Ok(Bytes::new());
    }
    let dsi = descriptor_body(&mut c, 0x05)?;
    Ok(Bytes::copy_from_slice(dsi))
}

fn descriptor_body<'a>(c: &mut Cursor<'a>, want: u8) -> Result<&'a [u8], String> {
    let tag = c.u8().ok_or("descriptor truncated")?;
    if tag != want {
        return Err(format!("descriptor tag {tag:#04x}, want {want:#04x}"));
    }
    let mut len = 0usize;
    for _ in 0..4 {
        let b = c.u8().ok_or("descriptor size truncated")?;
        len = (len << 7) | usize::from(b & 0x7f);
        if b & 0x80 == 0 {
            return c.take(len).ok_or_else(|| "descriptor overruns esds".into());
        }
    }
    Err("descriptor size longer than 4 bytes".into())
}

fn parse_ugct(body: &[u8]) -> Result<(TrackParams, Option<u32>, String), String> {
    let t = "ugct truncated";
    let mut c = Cursor::new(body);
    let vf = c.u32().ok_or(t)?;
    if vf >> 24 != 0 {
        return Err(format!("ugct version {} unknown", vf >> 24));
    }
    let params = match c.u8().ok_or(t)? {
        0 => {
            let width = c.u32().ok_or(t)?;
            let height = c.u32().ok_or(t)?;
            let frame_rate = if vf & UGCT_FRAME_RATE != 0 {
                Some(Rational::new(c.u32().ok_or(t)?, c.u32().ok_or(t)?))
            } else {
                None
            };
            TrackParams::Video(VideoParams {
                width,
                height,
                frame_rate,
            })
        }
        1 => TrackParams::Audio(AudioParams {
            sample_rate: c.u32().ok_or(t)?,
            channels: c.u8().ok_or(t)?,
            samples_per_frame: c.u32().ok_or(t)?,
        }),
        k => return Err(format!("ugct track kind {k} unknown")),
    };
    let bitrate = if vf & UGCT_BITRATE != 0 {
        Some(c.u32().ok_or(t)?)
    } else {
        None
    };
    let len = c.u16().ok_or(t)?;
    let cs = c.take(usize::from(len)).ok_or(t)?;
    let codec_string = std::str::from_utf8(cs)
        .map_err(|_| "ugct codec string is not UTF-8".to_string())?
        .to_owned();
    Ok((params, bitrate, codec_string))
}
