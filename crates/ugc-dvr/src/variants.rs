//! The DVR multivariant playlist: one `#EXT-X-STREAM-INF` per archived
//! rendition of a range, with `BANDWIDTH`/`AVERAGE-BANDWIDTH` measured on
//! the archived segments of the range and `CODECS`/`RESOLUTION` read from
//! the rendition's init segment (its `stsd` sample entries), so the
//! playlist describes what was recorded, not what is configured now.
//! `FRAME-RATE` comes from the timing info of the recorded parameter sets
//! (`avcC` / `hvcC`), when they have any.

use bytes::Bytes;
use mp4_atom::{Any, Atom, Codec, DecodeMaybe as _, Moov, Visual};
use ugc_core::Rational;

use crate::archive::ArchivedSegment;
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

/// The first `moov` of `init`, `None` when the box layer cannot read it.
fn read_moov(init: &[u8]) -> Option<Moov> {
    crate::box_guard::check(init).ok()?;
    let mut buf = init;
    loop {
        match Any::decode_maybe(&mut buf) {
            Ok(Some(Any::Moov(moov))) => return Some(moov),
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return None,
        }
    }
}

/// The body of a decoder configuration box, as the record our codec
/// readers parse.
fn record<A: Atom>(config: &A) -> Option<Bytes> {
    let mut b = Vec::new();
    config.encode_body(&mut b).ok()?;
    Some(Bytes::from(b))
}

/// Reads codecs and resolution from an fMP4 init segment. Malformed input
/// gives no facts (never panics).
pub fn init_facts(init: &[u8]) -> InitFacts {
    let mut facts = InitFacts::default();
    let Some(moov) = read_moov(init) else {
        return facts;
    };
    for trak in &moov.trak {
        let Some(entry) = trak.mdia.minf.stbl.stsd.codecs.first() else {
            continue;
        };
        let video = |facts: &mut InitFacts, visual: &Visual, described: Option<(String, _)>| {
            if facts.resolution.is_none() && visual.width > 0 && visual.height > 0 {
                facts.resolution = Some((u32::from(visual.width), u32::from(visual.height)));
            }
            if let Some((codec, frame_rate)) = described {
                facts.codecs.push(codec);
                facts.frame_rate = facts.frame_rate.or(frame_rate);
            }
        };
        let avc = |avcc| {
            let c = ugc_codec::h264::AvcConfig::parse(&record(avcc)?).ok()?;
            Some((c.codec_string(), c.frame_rate))
        };
        let hevc = |hvcc| {
            let c = ugc_codec::hevc::HevcConfig::parse(&record(hvcc)?).ok()?;
            Some((c.codec_string(), c.frame_rate))
        };
        match entry {
            Codec::Avc1(e) => video(&mut facts, &e.visual, avc(&e.avcc)),
            Codec::Avc3(e) => video(&mut facts, &e.visual, avc(&e.avcc)),
            Codec::Hvc1(e) => video(&mut facts, &e.visual, hevc(&e.hvcc)),
            Codec::Hev1(e) => video(&mut facts, &e.visual, hevc(&e.hvcc)),
            Codec::Mp4a(e) => {
                let codec = e
                    .esds
                    .es_desc
                    .dec_config
                    .dec_specific
                    .as_ref()
                    .and_then(|d| ugc_codec::aac::Asc::parse(&d.raw).ok())
                    .map_or_else(|| "mp4a.40.2".to_owned(), |a| a.codec_string());
                facts.codecs.push(codec);
            }
            _ => {}
        }
    }
    facts
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
        // Cut anywhere: no panic.
        for n in 0..init.len() {
            let _ = init_facts(&init[..n]);
        }
    }
}
