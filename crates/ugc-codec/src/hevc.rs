//! H.265 / HEVC (minimal): the `hvcC` record (HEVCDecoderConfigurationRecord,
//! ISO/IEC 14496-15 8.3.3.1) for the codec string (Annex E), the NAL length
//! size, the parameter sets, and the picture size from the SPS.

use bytes::Bytes;

use crate::error::{BitReader, Error, Reader, Result};

/// NAL unit type of a video parameter set.
pub const NAL_VPS: u8 = 32;
/// NAL unit type of a sequence parameter set.
pub const NAL_SPS: u8 = 33;
/// NAL unit type of a picture parameter set.
pub const NAL_PPS: u8 = 34;
/// NAL unit type of an access unit delimiter.
pub const NAL_AUD: u8 = 35;

/// The HEVC NAL unit type of a NAL unit (bits 1..7 of its first byte).
pub fn nal_type(nal: &[u8]) -> Option<u8> {
    nal.first().map(|b| (b >> 1) & 0x3f)
}

/// Whether a NAL unit type is an IRAP picture (BLA, IDR, CRA: 16..=23).
pub fn is_irap_type(t: u8) -> bool {
    (16..=23).contains(&t)
}

/// A parsed `hvcC` record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HevcConfig {
    /// `general_profile_space` (0..=3).
    pub general_profile_space: u8,
    /// `general_tier_flag`.
    pub general_tier_flag: bool,
    /// `general_profile_idc`.
    pub general_profile_idc: u8,
    /// `general_profile_compatibility_flags` (flag 0 is the MSB).
    pub general_profile_compatibility_flags: u32,
    /// `general_constraint_indicator_flags` (6 bytes).
    pub general_constraint_indicator_flags: [u8; 6],
    /// `general_level_idc`.
    pub general_level_idc: u8,
    /// Bytes of the NAL length prefix in frames (1, 2 or 4).
    pub nal_length_size: u8,
    /// VPS, SPS and PPS NAL units in record order (zero-copy slices).
    pub parameter_sets: Vec<Bytes>,
    /// Picture width from the first SPS after the conformance window; 0 if the
    /// SPS is missing or could not be read.
    pub width: u32,
    /// Picture height, like `width`.
    pub height: u32,
}

impl HevcConfig {
    /// Parses an `hvcC` record.
    pub fn parse(record: &Bytes) -> Result<HevcConfig> {
        const WHAT: &str = "hvcC";
        let mut r = Reader::new(WHAT, record);
        let version = r.u8()?;
        if version != 1 {
            return Err(Error::unsupported(
                WHAT,
                format!("configurationVersion {version}"),
            ));
        }
        let b = r.u8()?;
        let compat = u32::from_be_bytes(r.array()?);
        let constraints: [u8; 6] = r.array()?;
        let level = r.u8()?;
        // min_spatial_segmentation(2) parallelism(1) chroma(1) luma depth(1)
        // chroma depth(1) avgFrameRate(2)
        r.bytes(8)?;
        let nls = (r.u8()? & 0x03) + 1;
        if nls == 3 {
            return Err(r.invalid("lengthSizeMinusOne = 2"));
        }
        let num_arrays = r.u8()?;
        let mut parameter_sets = Vec::new();
        let mut size = None;
        for _ in 0..num_arrays {
            let t = r.u8()? & 0x3f;
            let n = r.u16()?;
            for _ in 0..n {
                let len = usize::from(r.u16()?);
                let start = r.pos();
                r.bytes(len)?;
                let nal = record.slice(start..start + len);
                if t == NAL_SPS && size.is_none() {
                    size = parse_sps_size(&nal).ok();
                }
                if matches!(t, NAL_VPS | NAL_SPS | NAL_PPS) {
                    parameter_sets.push(nal);
                }
            }
        }
        let (width, height) = size.unwrap_or((0, 0));
        Ok(HevcConfig {
            general_profile_space: b >> 6,
            general_tier_flag: b & 0x20 != 0,
            general_profile_idc: b & 0x1f,
            general_profile_compatibility_flags: compat,
            general_constraint_indicator_flags: constraints,
            general_level_idc: level,
            nal_length_size: nls,
            parameter_sets,
            width,
            height,
        })
    }

    /// RFC 6381 codec string per ISO/IEC 14496-15 Annex E, e.g. `hvc1.1.6.L93.B0`.
    pub fn codec_string(&self) -> String {
        let space = match self.general_profile_space {
            1 => "A",
            2 => "B",
            3 => "C",
            _ => "",
        };
        let mut s = format!(
            "hvc1.{space}{}.{:X}.{}{}",
            self.general_profile_idc,
            self.general_profile_compatibility_flags.reverse_bits(),
            if self.general_tier_flag { 'H' } else { 'L' },
            self.general_level_idc
        );
        let c = &self.general_constraint_indicator_flags;
        let keep = c.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
        for b in &c[..keep] {
            s.push_str(&format!(".{b:X}"));
        }
        s
    }
}

/// Removes emulation prevention bytes (`00 00 03` -> `00 00`).
pub(crate) fn unescape_rbsp(nal: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nal.len());
    let mut zeros = 0;
    for &b in nal {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

/// Picture size (after the conformance window) from an HEVC SPS NAL unit.
pub fn parse_sps_size(nal: &[u8]) -> Result<(u32, u32)> {
    parse_sps(nal).map(|s| (s.width, s.height))
}

/// What [`parse_sps`] reads from an HEVC SPS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpsInfo {
    /// `sps_max_sub_layers_minus1 + 1`.
    pub max_sub_layers: u8,
    /// `sps_temporal_id_nesting_flag`.
    pub temporal_id_nesting: bool,
    /// `chroma_format_idc`.
    pub chroma_format_idc: u8,
    /// `bit_depth_luma_minus8 + 8`.
    pub bit_depth_luma: u8,
    /// `bit_depth_chroma_minus8 + 8`.
    pub bit_depth_chroma: u8,
    /// Width after the conformance window.
    pub width: u32,
    /// Height after the conformance window.
    pub height: u32,
}

/// Reads an HEVC SPS NAL unit (with its 2-byte header) up to the bit depths.
pub fn parse_sps(nal: &[u8]) -> Result<SpsInfo> {
    const WHAT: &str = "HEVC SPS";
    let rbsp = unescape_rbsp(nal);
    let mut r = BitReader::new(WHAT, &rbsp);
    r.skip(16)?; // NAL header
    r.skip(4)?; // sps_video_parameter_set_id
    let max_sub_layers_minus1 = r.bits(3)?;
    let temporal_id_nesting = r.flag()?;
    // profile_tier_level(1, max_sub_layers_minus1)
    r.skip(88)?; // general profile/tier/compat/constraints
    r.skip(8)?; // general_level_idc
    let mut sub = [(false, false); 8];
    for s in sub.iter_mut().take(max_sub_layers_minus1 as usize) {
        *s = (r.flag()?, r.flag()?);
    }
    if max_sub_layers_minus1 > 0 {
        r.skip(2 * (8 - max_sub_layers_minus1 as usize))?;
    }
    for &(profile, level) in sub.iter().take(max_sub_layers_minus1 as usize) {
        if profile {
            r.skip(88)?;
        }
        if level {
            r.skip(8)?;
        }
    }
    let _sps_id = r.ue()?;
    let chroma_format_idc = r.ue()?;
    let mut separate_colour_plane = false;
    if chroma_format_idc == 3 {
        separate_colour_plane = r.flag()?;
    }
    let width = r.ue()?;
    let height = r.ue()?;
    let (sub_w, sub_h) = match (chroma_format_idc, separate_colour_plane) {
        (1, _) => (2, 2),
        (2, _) => (2, 1),
        _ => (1, 1),
    };
    let (mut w, mut h) = (u64::from(width), u64::from(height));
    if r.flag()? {
        let left = r.ue()?;
        let right = r.ue()?;
        let top = r.ue()?;
        let bottom = r.ue()?;
        let crop_w = (u64::from(left) + u64::from(right)) * sub_w;
        let crop_h = (u64::from(top) + u64::from(bottom)) * sub_h;
        match (w.checked_sub(crop_w), h.checked_sub(crop_h)) {
            (Some(cw), Some(ch)) => (w, h) = (cw, ch),
            _ => {
                return Err(Error::invalid(
                    WHAT,
                    nal,
                    r.bit_pos() / 8,
                    "conformance window larger than the picture",
                ));
            }
        }
    }
    let depth = |v: u32| u8::try_from(v.saturating_add(8)).unwrap_or(u8::MAX);
    let bit_depth_luma = depth(r.ue()?);
    let bit_depth_chroma = depth(r.ue()?);
    Ok(SpsInfo {
        max_sub_layers: max_sub_layers_minus1 as u8 + 1,
        temporal_id_nesting,
        chroma_format_idc: u8::try_from(chroma_format_idc).unwrap_or(u8::MAX),
        bit_depth_luma,
        bit_depth_chroma,
        width: u32::try_from(w).unwrap_or(0),
        height: u32::try_from(h).unwrap_or(0),
    })
}

/// Builds an `hvcC` record (4-byte NAL lengths) from VPS, SPS and PPS NAL
/// units (with their NAL headers, emulation prevention in). Profile, tier,
/// level and constraint flags are copied from the first SPS's
/// `profile_tier_level`.
pub fn build_hvcc(vps: &[&[u8]], sps: &[&[u8]], pps: &[&[u8]]) -> Result<Vec<u8>> {
    let first = sps
        .first()
        .ok_or_else(|| Error::InvalidArgument("hvcC needs at least one SPS".into()))?;
    let info = parse_sps(first)?;
    let rbsp = unescape_rbsp(first);
    // NAL header (2) + vps id/max sub layers/nesting (1), then 12 bytes of general PTL.
    let ptl = rbsp
        .get(3..15)
        .ok_or_else(|| Error::truncated("HEVC SPS", first, 3, 12))?;
    let mut out = Vec::with_capacity(64);
    out.push(1);
    out.extend_from_slice(ptl);
    out.extend_from_slice(&[0xf0, 0x00, 0xfc]); // min_spatial_segmentation 0, parallelism 0
    out.push(0xfc | (info.chroma_format_idc & 0x03));
    out.push(0xf8 | (info.bit_depth_luma.saturating_sub(8) & 0x07));
    out.push(0xf8 | (info.bit_depth_chroma.saturating_sub(8) & 0x07));
    out.extend_from_slice(&[0, 0]); // avgFrameRate
    out.push(
        ((info.max_sub_layers & 0x07) << 3) | (u8::from(info.temporal_id_nesting) << 2) | 0x03,
    );
    let arrays: [(u8, &[&[u8]]); 3] = [(NAL_VPS, vps), (NAL_SPS, sps), (NAL_PPS, pps)];
    out.push(arrays.iter().filter(|(_, n)| !n.is_empty()).count() as u8);
    for (t, nals) in arrays {
        if nals.is_empty() {
            continue;
        }
        out.push(0x80 | t); // array_completeness
        let n = u16::try_from(nals.len())
            .map_err(|_| Error::InvalidArgument("too many parameter sets".into()))?;
        out.extend_from_slice(&n.to_be_bytes());
        for nal in nals {
            let len = u16::try_from(nal.len())
                .map_err(|_| Error::InvalidArgument("parameter set longer than 65535".into()))?;
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(nal);
        }
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// VPS/SPS/PPS arrays of an `hvcC` written by ffmpeg 5.1 + libx265 3.5
    /// (Main, 352x288, level 2 = 60); the SEI array is left out.
    pub(crate) const X265_HVCC_352X288: &[u8] = &[
        0x01, 0x01, 0x60, 0x00, 0x00, 0x00, 0x90, 0x00, 0x00, 0x00, 0x00, 0x00, 0x3c, 0xf0, 0x00,
        0xfc, 0xfd, 0xf8, 0xf8, 0x00, 0x00, 0x0f, 0x03, // header, 3 arrays
        0xa0, 0x00, 0x01, 0x00, 0x18, 0x40, 0x01, 0x0c, 0x01, 0xff, 0xff, 0x01, 0x60, 0x00, 0x00,
        0x03, 0x00, 0x90, 0x00, 0x00, 0x03, 0x00, 0x00, 0x03, 0x00, 0x3c, 0x95, 0x98,
        0x09, // VPS
        0xa1, 0x00, 0x01, 0x00, 0x29, 0x42, 0x01, 0x01, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90,
        0x00, 0x00, 0x03, 0x00, 0x00, 0x03, 0x00, 0x3c, 0xa0, 0x0b, 0x08, 0x04, 0x85, 0x96, 0x56,
        0x69, 0x24, 0xca, 0xf0, 0x16, 0x80, 0x80, 0x00, 0x00, 0x03, 0x00, 0x80, 0x00, 0x00, 0x0c,
        0x84, // SPS
        0xa2, 0x00, 0x01, 0x00, 0x07, 0x44, 0x01, 0xc1, 0x72, 0xb4, 0x62, 0x40, // PPS
    ];

    #[test]
    fn x265_hvcc_codec_string_and_size() {
        let c = HevcConfig::parse(&Bytes::from_static(X265_HVCC_352X288)).unwrap();
        assert_eq!(c.codec_string(), "hvc1.1.6.L60.90");
        assert_eq!(c.nal_length_size, 4);
        assert_eq!((c.width, c.height), (352, 288));
        assert_eq!(c.parameter_sets.len(), 3);
        // Rebuilding from the parameter sets gives the same profile/level/size.
        let ps: Vec<&[u8]> = c.parameter_sets.iter().map(|b| &b[..]).collect();
        let rebuilt = build_hvcc(&[ps[0]], &[ps[1]], &[ps[2]]).unwrap();
        let again = HevcConfig::parse(&Bytes::from(rebuilt)).unwrap();
        assert_eq!(again.codec_string(), c.codec_string());
        assert_eq!((again.width, again.height), (352, 288));
    }

    #[test]
    fn codec_string_main10_high_tier() {
        let mut c = HevcConfig::parse(&Bytes::from_static(X265_HVCC_352X288)).unwrap();
        c.general_profile_idc = 2;
        c.general_profile_compatibility_flags = 0x2000_0000;
        c.general_tier_flag = true;
        c.general_level_idc = 120;
        c.general_constraint_indicator_flags = [0xb0, 0, 0, 0, 0, 0];
        assert_eq!(c.codec_string(), "hvc1.2.4.H120.B0");
    }

    #[test]
    fn truncated_hvcc_never_panics() {
        for n in 0..X265_HVCC_352X288.len() {
            let _ = HevcConfig::parse(&Bytes::copy_from_slice(&X265_HVCC_352X288[..n]));
        }
    }
}
