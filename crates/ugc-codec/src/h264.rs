//! H.264 / AVC: the `avcC` record (AVCDecoderConfigurationRecord, ISO/IEC
//! 14496-15 5.3.3.1), its SPS (via `h264-reader`), RFC 6381 codec strings, and
//! AVCC (length-prefixed) <-> Annex B (start codes) conversion.

use bytes::Bytes;
use h264_reader::nal::Nal as _;
use h264_reader::nal::RefNal;
use h264_reader::nal::sps::SeqParameterSet;
use ugc_core::Rational;

use crate::error::{Error, Reader, Result, short_hex};

/// NAL unit type of a non-IDR slice.
pub const NAL_SLICE: u8 = 1;
/// NAL unit type of an IDR slice.
pub const NAL_IDR: u8 = 5;
/// NAL unit type of SEI.
pub const NAL_SEI: u8 = 6;
/// NAL unit type of a sequence parameter set.
pub const NAL_SPS: u8 = 7;
/// NAL unit type of a picture parameter set.
pub const NAL_PPS: u8 = 8;
/// NAL unit type of an access unit delimiter.
pub const NAL_AUD: u8 = 9;

/// What the SPS says about the picture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpsInfo {
    /// `profile_idc`.
    pub profile_idc: u8,
    /// The constraint_set flags byte (`constraint_set0_flag` is the MSB).
    pub constraint_flags: u8,
    /// `level_idc`.
    pub level_idc: u8,
    /// Display width after cropping.
    pub width: u32,
    /// Display height after cropping.
    pub height: u32,
    /// Frame rate from the VUI timing info (`time_scale / (2 * num_units_in_tick)`), reduced.
    pub frame_rate: Option<Rational>,
}

/// Parses one SPS NAL unit (with its 1-byte NAL header, emulation prevention
/// bytes still in).
pub fn parse_sps(nal: &[u8]) -> Result<SpsInfo> {
    let header = *nal
        .first()
        .ok_or_else(|| Error::truncated("H.264 SPS", nal, 0, 1))?;
    if header & 0x1f != NAL_SPS {
        return Err(Error::invalid(
            "H.264 SPS",
            nal,
            0,
            format!("NAL type {} is not an SPS", header & 0x1f),
        ));
    }
    let sps = SeqParameterSet::from_bits(RefNal::new(nal, &[], true).rbsp_bits())
        .map_err(|e| Error::invalid("H.264 SPS", nal, 1, format!("{e:?}")))?;
    let (width, height) = sps
        .pixel_dimensions()
        .map_err(|e| Error::invalid("H.264 SPS", nal, 1, format!("{e:?}")))?;
    let frame_rate = sps
        .vui_parameters
        .as_ref()
        .and_then(|v| v.timing_info.as_ref())
        .and_then(|t| {
            reduce(
                u64::from(t.time_scale),
                u64::from(t.num_units_in_tick).checked_mul(2)?,
            )
        });
    Ok(SpsInfo {
        profile_idc: sps.profile_idc.into(),
        constraint_flags: sps.constraint_flags.into(),
        level_idc: sps.level_idc,
        width,
        height,
        frame_rate,
    })
}

/// `num/den` reduced to lowest terms, `None` for zero or when it does not fit `u32`.
pub(crate) fn reduce(num: u64, den: u64) -> Option<Rational> {
    if num == 0 || den == 0 {
        return None;
    }
    let (mut a, mut b) = (num, den);
    while b != 0 {
        (a, b) = (b, a % b);
    }
    Some(Rational::new(
        u32::try_from(num / a).ok()?,
        u32::try_from(den / a).ok()?,
    ))
}

/// A parsed `avcC` record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvcConfig {
    /// `AVCProfileIndication`.
    pub profile_idc: u8,
    /// `profile_compatibility` (the SPS constraint flags byte).
    pub constraint_flags: u8,
    /// `AVCLevelIndication`.
    pub level_idc: u8,
    /// Bytes of the NAL length prefix in frames (1, 2 or 4).
    pub nal_length_size: u8,
    /// The SPS NAL units (zero-copy slices of the record).
    pub sps: Vec<Bytes>,
    /// The PPS NAL units (zero-copy slices of the record).
    pub pps: Vec<Bytes>,
    /// Display width from the first SPS (after cropping).
    pub width: u32,
    /// Display height from the first SPS (after cropping).
    pub height: u32,
    /// Frame rate from the first SPS's VUI timing, when present.
    pub frame_rate: Option<Rational>,
}

impl AvcConfig {
    /// Parses an `avcC` record (the body of an FLV AVC sequence header or of an
    /// MP4 `avcC` box). Requires at least one SPS that parses.
    pub fn parse(record: &Bytes) -> Result<AvcConfig> {
        const WHAT: &str = "avcC";
        let mut r = Reader::new(WHAT, record);
        let version = r.u8()?;
        if version != 1 {
            return Err(Error::unsupported(
                WHAT,
                format!("configurationVersion {version}"),
            ));
        }
        let profile_idc = r.u8()?;
        let constraint_flags = r.u8()?;
        let level_idc = r.u8()?;
        let nal_length_size = (r.u8()? & 0x03) + 1;
        if nal_length_size == 3 {
            return Err(r.invalid("lengthSizeMinusOne = 2"));
        }
        let num_sps = r.u8()? & 0x1f;
        let mut sps = Vec::with_capacity(usize::from(num_sps));
        for _ in 0..num_sps {
            let len = usize::from(r.u16()?);
            let start = r.pos();
            r.bytes(len)?;
            sps.push(record.slice(start..start + len));
        }
        let num_pps = r.u8()?;
        let mut pps = Vec::with_capacity(usize::from(num_pps));
        for _ in 0..num_pps {
            let len = usize::from(r.u16()?);
            let start = r.pos();
            r.bytes(len)?;
            pps.push(record.slice(start..start + len));
        }
        // Trailing chroma/bit-depth extension fields (High profiles) are not needed.
        let first = sps
            .first()
            .ok_or_else(|| Error::invalid(WHAT, record, 5, "no SPS"))?;
        let info = parse_sps(first)?;
        Ok(AvcConfig {
            profile_idc,
            constraint_flags,
            level_idc,
            nal_length_size,
            sps,
            pps,
            width: info.width,
            height: info.height,
            frame_rate: info.frame_rate,
        })
    }

    /// RFC 6381 codec string, `avc1.PPCCLL`.
    pub fn codec_string(&self) -> String {
        codec_string(self.profile_idc, self.constraint_flags, self.level_idc)
    }
}

/// RFC 6381 codec string `avc1.PPCCLL` (lowercase hex).
pub fn codec_string(profile_idc: u8, constraint_flags: u8, level_idc: u8) -> String {
    format!("avc1.{profile_idc:02x}{constraint_flags:02x}{level_idc:02x}")
}

/// Builds an `avcC` record (4-byte NAL lengths) from SPS and PPS NAL units.
/// Profile, compatibility and level come from the first SPS.
pub fn build_avcc(sps: &[&[u8]], pps: &[&[u8]]) -> Result<Vec<u8>> {
    let first = sps
        .first()
        .ok_or_else(|| Error::InvalidArgument("avcC needs at least one SPS".into()))?;
    let hdr = first
        .get(1..4)
        .ok_or_else(|| Error::truncated("H.264 SPS", first, 1, 3))?;
    if sps.len() > 31 || pps.len() > 255 {
        return Err(Error::InvalidArgument(
            "too many parameter sets for avcC".into(),
        ));
    }
    let mut out = vec![1, hdr[0], hdr[1], hdr[2], 0xff, 0xe0 | sps.len() as u8];
    for s in sps {
        let len = u16::try_from(s.len())
            .map_err(|_| Error::InvalidArgument("SPS longer than 65535 bytes".into()))?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(s);
    }
    out.push(pps.len() as u8);
    for p in pps {
        let len = u16::try_from(p.len())
            .map_err(|_| Error::InvalidArgument("PPS longer than 65535 bytes".into()))?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(p);
    }
    Ok(out)
}

/// The H.264 track `id` for the in-band parameter sets `sps` and `pps`
/// (NAL units with their headers): the `avcC` built from them, its codec
/// string and the picture size and frame rate of the SPS, on the 90 kHz
/// clock (MPEG-TS and RTP carry H.264 on it). For ingests that see Annex B
/// (SRT's MPEG-TS, WHIP's RTP).
pub fn track_from_parameter_sets(
    id: ugc_core::TrackId,
    sps: &[u8],
    pps: &[u8],
) -> Result<ugc_core::TrackInfo> {
    let config = Bytes::from(build_avcc(&[sps], &[pps])?);
    let c = AvcConfig::parse(&config)?;
    Ok(ugc_core::TrackInfo {
        id,
        codec: ugc_core::Codec::H264,
        timescale: ugc_core::Timescale::MPEG,
        codec_string: c.codec_string(),
        params: ugc_core::TrackParams::Video(ugc_core::VideoParams {
            width: c.width,
            height: c.height,
            frame_rate: c.frame_rate,
        }),
        config,
        bitrate: None,
    })
}

/// The NAL units of an AVCC/HVCC frame (length-prefixed, `nal_length_size`
/// bytes of big-endian length before each NAL unit).
pub fn nal_units(frame: &[u8], nal_length_size: u8) -> NalUnits<'_> {
    NalUnits {
        frame,
        pos: 0,
        nal_length_size: usize::from(nal_length_size),
        failed: false,
    }
}

/// Iterator over the NAL units of a length-prefixed frame; see [`nal_units`].
/// Yields one error and stops on a truncated or impossible length.
#[derive(Debug, Clone)]
pub struct NalUnits<'a> {
    frame: &'a [u8],
    pos: usize,
    nal_length_size: usize,
    failed: bool,
}

impl<'a> Iterator for NalUnits<'a> {
    type Item = Result<&'a [u8]>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.frame.len() {
            return None;
        }
        let n = self.nal_length_size;
        if !matches!(n, 1 | 2 | 4) {
            self.failed = true;
            return Some(Err(Error::InvalidArgument(format!(
                "NAL length size {n} (must be 1, 2 or 4)"
            ))));
        }
        let mut r = Reader::new("length-prefixed NAL units", self.frame);
        // `pos < len` was checked; `bytes` re-checks everything.
        let res = (|| {
            r.bytes(self.pos)?;
            let len_bytes = r.bytes(n)?;
            let len = len_bytes
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
            let start = r.pos();
            let nal = r.bytes(len)?;
            Ok((nal, start + len))
        })();
        match res {
            Ok((nal, next)) => {
                self.pos = next;
                Some(Ok(nal))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// The H.264 NAL unit type of a NAL unit (low 5 bits of its first byte).
pub fn nal_type(nal: &[u8]) -> Option<u8> {
    nal.first().map(|b| b & 0x1f)
}

/// Whether a length-prefixed frame holds an IDR slice. Malformed framing
/// counts as "no".
pub fn is_idr(frame: &[u8], nal_length_size: u8) -> bool {
    nal_units(frame, nal_length_size)
        .map_while(|n| n.ok())
        .any(|n| nal_type(n) == Some(NAL_IDR))
}

const START_CODE: [u8; 4] = [0, 0, 0, 1];

/// Converts a length-prefixed frame to Annex B (4-byte start codes), appending
/// to `out`. On error `out` may hold a partial conversion.
pub fn avcc_to_annexb_into(frame: &[u8], nal_length_size: u8, out: &mut Vec<u8>) -> Result<()> {
    out.reserve(frame.len() + 16);
    for nal in nal_units(frame, nal_length_size) {
        out.extend_from_slice(&START_CODE);
        out.extend_from_slice(nal?);
    }
    Ok(())
}

/// Converts a length-prefixed frame to Annex B (4-byte start codes).
pub fn avcc_to_annexb(frame: &[u8], nal_length_size: u8) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(frame.len() + 16);
    avcc_to_annexb_into(frame, nal_length_size, &mut out)?;
    Ok(out)
}

/// The NAL units of an Annex B byte stream (3- or 4-byte start codes; bytes
/// before the first start code are ignored; trailing zero bytes of a NAL unit
/// are dropped as `trailing_zero_8bits`).
pub fn annexb_nal_units(data: &[u8]) -> Vec<&[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 2 < data.len() {
        if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            starts.push((i, i + 3));
            i += 3;
        } else {
            i += 1;
        }
    }
    let mut nals = Vec::with_capacity(starts.len());
    for (k, &(_, body)) in starts.iter().enumerate() {
        let end = starts.get(k + 1).map_or(data.len(), |&(sc, _)| sc);
        let mut nal = data.get(body..end).unwrap_or(&[]);
        while let [rest @ .., 0] = nal {
            nal = rest;
        }
        if !nal.is_empty() {
            nals.push(nal);
        }
    }
    nals
}

/// Converts an Annex B byte stream to a length-prefixed frame.
pub fn annexb_to_avcc(data: &[u8], nal_length_size: u8) -> Result<Vec<u8>> {
    let n = usize::from(nal_length_size);
    if !matches!(n, 1 | 2 | 4) {
        return Err(Error::InvalidArgument(format!(
            "NAL length size {n} (must be 1, 2 or 4)"
        )));
    }
    let mut out = Vec::with_capacity(data.len() + 8);
    for nal in annexb_nal_units(data) {
        let len = nal.len() as u64;
        if len >> (8 * n) != 0 {
            return Err(Error::InvalidArgument(format!(
                "NAL unit of {len} bytes does not fit a {n}-byte length [{}]",
                short_hex(nal)
            )));
        }
        out.extend_from_slice(&len.to_be_bytes()[8 - n..]);
        out.extend_from_slice(nal);
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// avcC of the ffmpeg 5.1 / libx264 capture in tests/data (High@1.3, 320x240).
    pub(crate) const X264_AVCC_320X240: &[u8] = &[
        0x01, 0x64, 0x00, 0x0d, 0xff, 0xe1, 0x00, 0x19, 0x67, 0x64, 0x00, 0x0d, 0xac, 0xd9, 0x41,
        0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0xc0, 0xf1,
        0x42, 0x99, 0x60, 0x01, 0x00, 0x04, 0x68, 0xef, 0xbc, 0xb0, 0xfd, 0xf8, 0xf8, 0x00,
    ];

    #[test]
    fn x264_avcc_gives_dimensions_and_codec_string() {
        let c = AvcConfig::parse(&Bytes::from_static(X264_AVCC_320X240)).unwrap();
        assert_eq!((c.width, c.height), (320, 240));
        assert_eq!(c.nal_length_size, 4);
        assert_eq!(c.codec_string(), "avc1.64000d");
        assert_eq!(c.sps.len(), 1);
        assert_eq!(c.pps.len(), 1);
        assert_eq!(c.frame_rate, Some(Rational::new(30, 1)));
    }

    #[test]
    fn truncated_avcc_is_an_error_not_a_panic() {
        // The first 40 bytes hold the SPS and PPS arrays; the rest is the optional
        // High-profile extension, which may be cut off.
        for n in 0..40 {
            let b = Bytes::copy_from_slice(&X264_AVCC_320X240[..n]);
            assert!(AvcConfig::parse(&b).is_err(), "prefix {n}");
        }
    }

    #[test]
    fn annexb_conversion_and_idr_detection() {
        let frame = [0, 0, 0, 2, 0x65, 0xaa, 0, 0, 0, 1, 0x06];
        assert!(is_idr(&frame, 4));
        let ab = avcc_to_annexb(&frame, 4).unwrap();
        assert_eq!(ab, [0, 0, 0, 1, 0x65, 0xaa, 0, 0, 0, 1, 0x06]);
        assert!(avcc_to_annexb(&[0, 0, 0, 9, 1], 4).is_err());
        assert!(!is_idr(&[0, 0, 0, 9, 0x65], 4));
    }

    proptest! {
        #[test]
        fn avcc_annexb_round_trip(nals in proptest::collection::vec(
            proptest::collection::vec(any::<u8>(), 1..200), 1..8), nls in prop_oneof![Just(1u8), Just(2), Just(4)]) {
            // Annex B cannot carry NAL units containing start-code-like patterns or
            // trailing zeros; real NAL units have emulation prevention. Make them legal.
            let nals: Vec<Vec<u8>> = nals.into_iter().map(|mut n| {
                for b in n.iter_mut() { if *b <= 3 { *b = 0x40; } }
                n
            }).collect();
            let mut avcc = Vec::new();
            for n in &nals {
                let len = n.len() as u64;
                avcc.extend_from_slice(&len.to_be_bytes()[8 - usize::from(nls)..]);
                avcc.extend_from_slice(n);
            }
            let ab = avcc_to_annexb(&avcc, nls).unwrap();
            prop_assert_eq!(annexb_to_avcc(&ab, nls).unwrap(), avcc);
        }

        #[test]
        fn nal_iteration_never_panics(data in proptest::collection::vec(any::<u8>(), 0..64), nls in 0u8..6) {
            let _ = nal_units(&data, nls).count();
            let _ = avcc_to_annexb(&data, nls);
            let _ = AvcConfig::parse(&Bytes::from(data));
        }
    }
}
