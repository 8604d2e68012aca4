//! The DVR multivariant playlist: one `#EXT-X-STREAM-INF` per archived
//! rendition of a range, with `BANDWIDTH`/`AVERAGE-BANDWIDTH` measured on
//! the archived segments of the range and `CODECS`/`RESOLUTION` read from
//! the rendition's init segment (its `stsd` sample entries), so the
//! playlist describes what was recorded, not what is configured now.
//! `FRAME-RATE` comes from the timing info of the recorded parameter sets
//! (`avcC` / `hvcC`), when they have any.

use bytes::Bytes;
use ugc_core::Rational;

use crate::archive::ArchivedSegment;
use crate::export::{boxes, find};
use crate::playlist::VariantStream;

/// What an init segment says about its tracks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InitFacts {
    /// RFC 6381 codec strings in track order (tracks we cannot name are
    /// left out).
    pub codecs: Vec<String>,
    /// Width and height of the first video track.
    pub resolution: Option<(u32, u32)>,
    /// Frame rate of the first video track whose parameter sets declare one.
    pub frame_rate: Option<Rational>,
}

/// Reads codecs and resolution from an fMP4 init segment. Malformed input
/// gives whatever could be read (never panics).
pub fn init_facts(init: &[u8]) -> InitFacts {
    let mut facts = InitFacts::default();
    let Ok(top) = boxes(init, 0, init.len()) else {
        return facts;
    };
    let Some((_, mp, me)) = find(&top, b"moov") else {
        return facts;
    };
    for (kind, _, p, e) in boxes(init, mp, me).unwrap_or_default() {
        if &kind != b"trak" {
            continue;
        }
        let stsd = descend(init, p, e, &[b"mdia", b"minf", b"stbl", b"stsd"]);
        let Some((sp, se)) = stsd else { continue };
        // Full box header + entry count, then the first sample entry.
        let Ok(entries) = boxes(init, sp.saturating_add(8).min(se), se) else {
            continue;
        };
        let Some(&(entry, _, ep, ee)) = entries.first() else {
            continue;
        };
        match &entry {
            b"avc1" | b"avc3" | b"hvc1" | b"hev1" => {
                let w = init
                    .get(ep + 24..ep + 26)
                    .map(|b| u16::from_be_bytes([b[0], b[1]]));
                let h = init
                    .get(ep + 26..ep + 28)
                    .map(|b| u16::from_be_bytes([b[0], b[1]]));
                if facts.resolution.is_none()
                    && let (Some(w), Some(h)) = (w, h)
                    && w > 0
                    && h > 0
                {
                    facts.resolution = Some((u32::from(w), u32::from(h)));
                }
                let children = boxes(init, ep.saturating_add(78).min(ee), ee).unwrap_or_default();
                let described = if entry.starts_with(b"avc") {
                    find(&children, b"avcC").and_then(|(_, cp, ce)| {
                        ugc_codec::h264::AvcConfig::parse(&Bytes::copy_from_slice(
                            init.get(cp..ce)?,
                        ))
                        .ok()
                        .map(|c| (c.codec_string(), c.frame_rate))
                    })
                } else {
                    find(&children, b"hvcC").and_then(|(_, cp, ce)| {
                        ugc_codec::hevc::HevcConfig::parse(&Bytes::copy_from_slice(
                            init.get(cp..ce)?,
                        ))
                        .ok()
                        .map(|c| (c.codec_string(), c.frame_rate))
                    })
                };
                if let Some((codec, frame_rate)) = described {
                    facts.codecs.push(codec);
                    facts.frame_rate = facts.frame_rate.or(frame_rate);
                }
            }
            b"mp4a" => {
                let children = boxes(init, ep.saturating_add(28).min(ee), ee).unwrap_or_default();
                let asc = find(&children, b"esds")
                    .and_then(|(_, cp, ce)| esds_asc(init.get(cp.checked_add(4)?..ce)?));
                let codec = asc
                    .and_then(|a| ugc_codec::aac::Asc::parse(a).ok())
                    .map_or_else(|| "mp4a.40.2".to_owned(), |a| a.codec_string());
                facts.codecs.push(codec);
            }
            _ => {}
        }
    }
    facts
}

/// Payload of the boxes along `path` below `b[p..e]`.
fn descend(b: &[u8], mut p: usize, mut e: usize, path: &[&[u8; 4]]) -> Option<(usize, usize)> {
    for kind in path {
        let list = boxes(b, p, e).ok()?;
        let (_, np, ne) = find(&list, kind)?;
        p = np;
        e = ne;
    }
    Some((p, e))
}

/// An MPEG-4 descriptor at `d[at..]`: (tag, payload start, payload end).
fn descriptor(d: &[u8], at: usize) -> Option<(u8, usize, usize)> {
    let tag = *d.get(at)?;
    let mut len = 0usize;
    let mut q = at + 1;
    for _ in 0..4 {
        let b = *d.get(q)?;
        q += 1;
        len = (len << 7) | usize::from(b & 0x7f);
        if b & 0x80 == 0 {
            break;
        }
    }
    let end = q.checked_add(len)?.min(d.len());
    Some((tag, q, end))
}

/// The AudioSpecificConfig inside an `esds` payload (after version/flags).
fn esds_asc(d: &[u8]) -> Option<&[u8]> {
    let (tag, p, e) = descriptor(d, 0)?;
    if tag != 0x03 {
        return None;
    }
    let flags = *d.get(p + 2)?;
    let mut q = p + 3;
    if flags & 0x80 != 0 {
        q += 2;
    }
    if flags & 0x40 != 0 {
        q += 1 + usize::from(*d.get(q)?);
    }
    if flags & 0x20 != 0 {
        q += 2;
    }
    let (tag, dp, de) = descriptor(d, q)?;
    if tag != 0x04 || de > e {
        return None;
    }
    let (tag, ap, ae) = descriptor(d, dp + 13)?;
    (tag == 0x05 && ae <= de).then(|| d.get(ap..ae)).flatten()
}

/// The `#EXT-X-STREAM-INF` entry of a rendition with media playlist `uri`
/// over `segments` (the range), described by its init segment `init`.
pub fn dvr_variant(uri: &str, segments: &[ArchivedSegment], init: &[u8]) -> VariantStream {
    let mut peak = 0u64;
    let mut bits = 0u64;
    let mut ms = 0u64;
    for s in segments {
        let b = s.size.saturating_mul(8);
        if let Some(rate) = b
            .saturating_mul(1000)
            .checked_div(u64::from(s.name.duration_ms))
        {
            peak = peak.max(rate);
        }
        bits = bits.saturating_add(b);
        ms = ms.saturating_add(u64::from(s.name.duration_ms));
    }
    let facts = init_facts(init);
    VariantStream {
        uri: uri.to_owned(),
        bandwidth: peak,
        average_bandwidth: bits.saturating_mul(1000).checked_div(ms),
        codecs: facts.codecs.join(","),
        resolution: facts.resolution,
        frame_rate: facts.frame_rate,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn init_facts_of_an_h264_and_aac_init_segment() {
        let tracks = ugc_core::hub::tests_support::av_tracks();
        let init = ugc_codec::fmp4::init_segment(tracks.as_slice()).unwrap();
        let facts = init_facts(&init);
        assert_eq!(facts.codecs, ["avc1.64001f", "mp4a.40.2"]);
        assert_eq!(facts.resolution, Some((1280, 720)));
        let declared = ugc_codec::h264::AvcConfig::parse(&tracks.as_slice()[0].config)
            .unwrap()
            .frame_rate;
        assert!(declared.is_some());
        assert_eq!(facts.frame_rate, declared);
        // Cut anywhere: whatever could be read, no panic.
        for n in 0..init.len() {
            let _ = init_facts(&init[..n]);
        }
    }
}
