//! H.265 / HEVC (minimal): the `hvcC` record (HEVCDecoderConfigurationRecord,
//! ISO/IEC 14496-15 8.3.3.1) for the codec string (Annex E), the NAL length
//! size, the parameter sets, the picture size from the SPS, and the picture
//! rate from the timing info of the VPS (7.3.2.1) or of the SPS's VUI
//! (E.2.1).
//!
//! Parameter sets come from peers: every reader here returns an error or
//! `None` on any input, never panics, and bounds its loops by the ranges the
//! spec allows.

use bytes::Bytes;
use ugc_core::Rational;

use crate::error::{BitReader, Error, Reader, Result};
use crate::h264::reduce;

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
    /// Pictures per second (`time_scale / num_units_in_tick`) from the
    /// first VPS's timing info, else the first SPS's VUI timing info (the
    /// order FFmpeg reads them in); `None` when neither has any.
    pub frame_rate: Option<Rational>,
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
        let mut vps_rate = None;
        let mut sps_rate = None;
        for _ in 0..num_arrays {
            let t = r.u8()? & 0x3f;
            let n = r.u16()?;
            for _ in 0..n {
                let len = usize::from(r.u16()?);
                let start = r.pos();
                r.bytes(len)?;
                let nal = record.slice(start..start + len);
                if t == NAL_SPS && size.is_none() {
                    let sps = parse_sps(&nal).ok();
                    size = sps.as_ref().map(|s| (s.width, s.height));
                    sps_rate = sps.and_then(|s| s.frame_rate);
                }
                if t == NAL_VPS && vps_rate.is_none() {
                    vps_rate = parse_vps_frame_rate(&nal).ok().flatten();
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
            frame_rate: vps_rate.or(sps_rate),
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
    /// Pictures per second from the VUI timing info
    /// (`vui_time_scale / vui_num_units_in_tick`, reduced); `None` without
    /// VUI or timing info, or when the SPS cannot be read that far (the
    /// fields above are still returned).
    ///
    /// With `field_seq_flag` a picture is a field, and this is the field
    /// rate, as FFmpeg reports it too.
    pub frame_rate: Option<Rational>,
}

/// Skips `profile_tier_level(1, max_sub_layers_minus1)` (7.3.3).
fn skip_profile_tier_level(r: &mut BitReader<'_>, max_sub_layers_minus1: u32) -> Result<()> {
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
    Ok(())
}

/// Skips the `(sub_layer_ordering_info_present_flag, then per sub-layer
/// max_dec_pic_buffering_minus1, max_num_reorder_pics,
/// max_latency_increase_plus1)` of a VPS or SPS.
fn skip_sub_layer_ordering_info(r: &mut BitReader<'_>, max_sub_layers_minus1: u32) -> Result<()> {
    let first = if r.flag()? { 0 } else { max_sub_layers_minus1 };
    for _ in first..=max_sub_layers_minus1 {
        r.ue()?;
        r.ue()?;
        r.ue()?;
    }
    Ok(())
}

/// Reads an HEVC SPS NAL unit (with its 2-byte header) up to the bit depths,
/// and on to the VUI timing info for [`SpsInfo::frame_rate`].
pub fn parse_sps(nal: &[u8]) -> Result<SpsInfo> {
    const WHAT: &str = "HEVC SPS";
    let rbsp = unescape_rbsp(nal);
    let mut r = BitReader::new(WHAT, &rbsp);
    r.skip(16)?; // NAL header
    r.skip(4)?; // sps_video_parameter_set_id
    let max_sub_layers_minus1 = r.bits(3)?;
    let temporal_id_nesting = r.flag()?;
    skip_profile_tier_level(&mut r, max_sub_layers_minus1)?;
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
    // What follows is optional to us: an SPS we cannot read to its VUI
    // still gives its size.
    let frame_rate = sps_frame_rate(&mut r, max_sub_layers_minus1).ok().flatten();
    Ok(SpsInfo {
        max_sub_layers: max_sub_layers_minus1 as u8 + 1,
        temporal_id_nesting,
        chroma_format_idc: u8::try_from(chroma_format_idc).unwrap_or(u8::MAX),
        bit_depth_luma,
        bit_depth_chroma,
        width: u32::try_from(w).unwrap_or(0),
        height: u32::try_from(h).unwrap_or(0),
        frame_rate,
    })
}

/// The rest of an SPS after the bit depths (7.3.2.2.1), up to the VUI
/// timing info (E.2.1): pictures per second, `None` when there is none.
fn sps_frame_rate(r: &mut BitReader<'_>, max_sub_layers_minus1: u32) -> Result<Option<Rational>> {
    let log2_max_pic_order_cnt_lsb_minus4 = r.ue()?;
    if log2_max_pic_order_cnt_lsb_minus4 > 12 {
        return Err(r.invalid("log2_max_pic_order_cnt_lsb_minus4 above 12"));
    }
    skip_sub_layer_ordering_info(r, max_sub_layers_minus1)?;
    // log2_min_luma_coding_block_size_minus3 .. max_transform_hierarchy_depth_intra
    for _ in 0..6 {
        r.ue()?;
    }
    if r.flag()? && r.flag()? {
        // scaling_list_enabled_flag, sps_scaling_list_data_present_flag
        skip_scaling_list_data(r)?;
    }
    r.skip(2)?; // amp_enabled_flag, sample_adaptive_offset_enabled_flag
    if r.flag()? {
        // pcm_enabled_flag: sample bit depths (4 + 4), two block sizes,
        // pcm_loop_filter_disabled_flag
        r.skip(8)?;
        r.ue()?;
        r.ue()?;
        r.skip(1)?;
    }
    let num_short_term_ref_pic_sets = r.ue()?;
    if num_short_term_ref_pic_sets > 64 {
        return Err(r.invalid("num_short_term_ref_pic_sets above 64"));
    }
    let mut num_delta_pocs = [0u32; 64];
    for idx in 0..num_short_term_ref_pic_sets as usize {
        let previous = idx
            .checked_sub(1)
            .and_then(|i| num_delta_pocs.get(i).copied());
        let n = skip_st_ref_pic_set(r, previous)?;
        if let Some(slot) = num_delta_pocs.get_mut(idx) {
            *slot = n;
        }
    }
    if r.flag()? {
        // long_term_ref_pics_present_flag
        let num_long_term_ref_pics_sps = r.ue()?;
        if num_long_term_ref_pics_sps > 32 {
            return Err(r.invalid("num_long_term_ref_pics_sps above 32"));
        }
        // lt_ref_pic_poc_lsb_sps (log2_max_pic_order_cnt_lsb bits) and
        // used_by_curr_pic_lt_sps_flag each.
        let bits = log2_max_pic_order_cnt_lsb_minus4 as usize + 4 + 1;
        r.skip(bits * num_long_term_ref_pics_sps as usize)?;
    }
    r.skip(2)?; // sps_temporal_mvp_enabled_flag, strong_intra_smoothing_enabled_flag
    if !r.flag()? {
        // vui_parameters_present_flag
        return Ok(None);
    }
    vui_frame_rate(r)
}

/// Skips `scaling_list_data()` (7.3.4). The `se(v)` coefficients are read
/// as `ue(v)`: the same code words, and only their length matters here.
fn skip_scaling_list_data(r: &mut BitReader<'_>) -> Result<()> {
    for size_id in 0..4u32 {
        let step = if size_id == 3 { 3 } else { 1 };
        for _matrix_id in (0..6).step_by(step) {
            if !r.flag()? {
                r.ue()?; // scaling_list_pred_matrix_id_delta
                continue;
            }
            if size_id > 1 {
                r.ue()?; // scaling_list_dc_coef_minus8
            }
            let coef_num = 64.min(1u32 << (4 + (size_id << 1)));
            for _ in 0..coef_num {
                r.ue()?; // scaling_list_delta_coef
            }
        }
    }
    Ok(())
}

/// Skips `st_ref_pic_set(stRpsIdx)` of an SPS (7.3.7) and returns its
/// `NumDeltaPocs`. `previous` is the `NumDeltaPocs` of set `stRpsIdx - 1`,
/// `None` for set 0. In an SPS a predicted set always refers to the set
/// before it (`delta_idx_minus1` is only in slice headers). Its pictures are
/// the entries whose `used_by_curr_pic_flag` or `use_delta_flag` is set,
/// counted as FFmpeg does.
fn skip_st_ref_pic_set(r: &mut BitReader<'_>, previous: Option<u32>) -> Result<u32> {
    let inter_ref_pic_set_prediction = match previous {
        Some(_) => r.flag()?,
        None => false,
    };
    if let (true, Some(reference)) = (inter_ref_pic_set_prediction, previous) {
        r.skip(1)?; // delta_rps_sign
        r.ue()?; // abs_delta_rps_minus1
        let mut n = 0u32;
        for _ in 0..=reference {
            // use_delta_flag is there only when used_by_curr_pic_flag is 0,
            // and inferred to be 1 otherwise.
            if r.flag()? || r.flag()? {
                n += 1;
            }
        }
        return Ok(n);
    }
    let num_negative_pics = r.ue()?;
    let num_positive_pics = r.ue()?;
    // Each is at most sps_max_dec_pic_buffering_minus1 (< 16).
    if num_negative_pics > 16 || num_positive_pics > 16 {
        return Err(r.invalid("more than 16 negative or positive pictures in a short-term RPS"));
    }
    for _ in 0..num_negative_pics + num_positive_pics {
        r.ue()?; // delta_poc_s{0,1}_minus1
        r.skip(1)?; // used_by_curr_pic_s{0,1}_flag
    }
    Ok(num_negative_pics + num_positive_pics)
}

/// Reads `vui_parameters()` (E.2.1) up to the timing info: pictures per
/// second, `None` without timing info.
fn vui_frame_rate(r: &mut BitReader<'_>) -> Result<Option<Rational>> {
    const EXTENDED_SAR: u32 = 255;
    if r.flag()? && r.bits(8)? == EXTENDED_SAR {
        // aspect_ratio_info_present_flag, aspect_ratio_idc: sar_width, sar_height
        r.skip(32)?;
    }
    if r.flag()? {
        r.skip(1)?; // overscan_info_present_flag: overscan_appropriate_flag
    }
    if r.flag()? {
        // video_signal_type_present_flag: video_format, video_full_range_flag
        r.skip(4)?;
        if r.flag()? {
            // colour_description_present_flag: primaries, transfer, matrix
            r.skip(24)?;
        }
    }
    if r.flag()? {
        // chroma_loc_info_present_flag
        r.ue()?;
        r.ue()?;
    }
    // neutral_chroma_indication_flag, field_seq_flag, frame_field_info_present_flag
    r.skip(3)?;
    if r.flag()? {
        // default_display_window_flag: four offsets
        for _ in 0..4 {
            r.ue()?;
        }
    }
    timing_info(r)
}

/// `*_timing_info_present_flag` and, when set, `*_num_units_in_tick` and
/// `*_time_scale` (same layout in the VPS and the VUI): pictures per second.
fn timing_info(r: &mut BitReader<'_>) -> Result<Option<Rational>> {
    if !r.flag()? {
        return Ok(None);
    }
    let num_units_in_tick = r.bits(32)?;
    let time_scale = r.bits(32)?;
    Ok(reduce(u64::from(time_scale), u64::from(num_units_in_tick)))
}

/// Pictures per second from the timing info of an HEVC VPS NAL unit (with
/// its 2-byte header; 7.3.2.1, `vps_time_scale / vps_num_units_in_tick`):
/// `None` when it has none.
pub fn parse_vps_frame_rate(nal: &[u8]) -> Result<Option<Rational>> {
    const WHAT: &str = "HEVC VPS";
    let rbsp = unescape_rbsp(nal);
    let mut r = BitReader::new(WHAT, &rbsp);
    r.skip(16)?; // NAL header
    // vps_video_parameter_set_id, vps_base_layer_internal_flag,
    // vps_base_layer_available_flag, vps_max_layers_minus1
    r.skip(4 + 1 + 1 + 6)?;
    let max_sub_layers_minus1 = r.bits(3)?;
    r.skip(1 + 16)?; // vps_temporal_id_nesting_flag, vps_reserved_0xffff_16bits
    skip_profile_tier_level(&mut r, max_sub_layers_minus1)?;
    skip_sub_layer_ordering_info(&mut r, max_sub_layers_minus1)?;
    let max_layer_id = r.bits(6)?;
    let num_layer_sets_minus1 = r.ue()?;
    if num_layer_sets_minus1 > 1023 {
        return Err(r.invalid("vps_num_layer_sets_minus1 above 1023"));
    }
    // layer_id_included_flag[i][j], i in 1..=num_layer_sets_minus1, j in 0..=max_layer_id
    r.skip(num_layer_sets_minus1 as usize * (max_layer_id as usize + 1))?;
    timing_info(&mut r)
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

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// Parameter sets of real encoders (ffprobe's `r_frame_rate` in
    /// brackets): libx265 3.5 from Debian's ffmpeg 5.1 `-preset slow` at
    /// 24000/1001 fps, and with `vui-timing-info=0` (no timing anywhere;
    /// ffprobe falls back to 25/1); kvazaar from the FFmpeg 9 wheel at
    /// 60000/1001 fps (VUI timing, none in the VPS).
    const X265_SLOW_23976_VPS: &str = "40010c01ffff01600000030090000003000003003c959809";
    const X265_SLOW_23976_SPS: &str =
        "42010101600000030090000003000003003ca00a080f165959a4932bc05a02000007d20000bb8010";
    const X265_NO_TIMING_SPS: &str =
        "42010101600000030090000003000003003ca00a080f16595952930bc05a0020";
    const KVAZAAR_5994_VPS: &str = "40010c02ffff0160000003008000000300000300ba000008110240";
    const KVAZAAR_5994_SPS: &str =
        "4201020160000003008000000300000300ba0000a00a080f16820464932ac040400000fa40003a9802";

    /// Made to exercise the SPS syntax the encoders above leave out
    /// (tests/data/hevc_crafted_parameter_sets.txt): scaling list data,
    /// PCM, three short-term RPS sets (two predicted), two long-term
    /// pictures, every VUI field before the timing info (30000/1001); and a
    /// VPS with timing info (25/1). FFmpeg 5.1's `trace_headers` reads the
    /// same values through `sps_extension_present_flag`, and ffprobe
    /// reports 316x232, SAR 4:3, 25/1 (the VPS first).
    const CRAFTED_VPS: &str = "40010c01ffff01600000030090000003000003003c95c0c0000003004000000654";
    const CRAFTED_SPS: &str = concat!(
        "42010101600000030090000003000003003ca00a080f1dcb96579244b95d10ae885744294ae8857442ba214a",
        "57442ba215d10a4cae8857442ba215d10ae8857442ba215d10ae8857442ba215d10ae995d10ae8857442ba21",
        "5d10ae8857442ba215d10ae8857442ba215d32ba215d10ae8857442ba215d10ae8857442ba215d10ae885744",
        "2ba9cae8857442ba215d10ae8857442ba215d10ae8857442ba215d10ae8a72ba215d10ae8857442ba215d10a",
        "e8857442ba215d10ae8857442ba29cae8857442ba215d10ae8857442ba215d10ae8857442ba215d10ae899ca",
        "e8857442ba215d10ae8857442ba215d10ae8857442ba215d10aebbbd08d6bfa652d88f21ffe000800076a020",
        "203c7e000007d20000ea6188",
    );

    fn hvcc(sets: &[&str]) -> HevcConfig {
        let nals: Vec<Vec<u8>> = sets.iter().map(|s| hex(s)).collect();
        let of = |t| -> Vec<&[u8]> {
            nals.iter()
                .filter(|n| nal_type(n) == Some(t))
                .map(Vec::as_slice)
                .collect()
        };
        let rec = build_hvcc(&of(NAL_VPS), &of(NAL_SPS), &[]).unwrap();
        HevcConfig::parse(&Bytes::from(rec)).unwrap()
    }

    #[test]
    fn frame_rate_from_sps_vui_timing_of_real_encoders() {
        let sps = |h| parse_sps(&hex(h)).unwrap();
        assert_eq!(
            sps(X265_SLOW_23976_SPS).frame_rate,
            Some(Rational::new(24000, 1001))
        );
        assert_eq!(
            sps(KVAZAAR_5994_SPS).frame_rate,
            Some(Rational::new(60000, 1001))
        );
        assert_eq!(sps(X265_NO_TIMING_SPS).frame_rate, None);
        assert_eq!(
            (
                sps(X265_NO_TIMING_SPS).width,
                sps(X265_NO_TIMING_SPS).height
            ),
            (320, 240)
        );
        // Neither writes timing info in its VPS.
        assert_eq!(
            parse_vps_frame_rate(&hex(X265_SLOW_23976_VPS)).unwrap(),
            None
        );
        assert_eq!(parse_vps_frame_rate(&hex(KVAZAAR_5994_VPS)).unwrap(), None);
        let c = hvcc(&[KVAZAAR_5994_VPS, KVAZAAR_5994_SPS]);
        assert_eq!(c.frame_rate, Some(Rational::new(60000, 1001)));
        // The ffmpeg 5.1 + libx265 capture of tests/data, at 25 fps.
        let c = HevcConfig::parse(&Bytes::from_static(X265_HVCC_352X288)).unwrap();
        assert_eq!(c.frame_rate, Some(Rational::new(25, 1)));
    }

    #[test]
    fn frame_rate_through_every_sps_syntax_and_from_the_vps() {
        let info = parse_sps(&hex(CRAFTED_SPS)).unwrap();
        assert_eq!((info.width, info.height), (316, 232));
        assert_eq!(info.frame_rate, Some(Rational::new(30000, 1001)));
        assert_eq!(
            parse_vps_frame_rate(&hex(CRAFTED_VPS)).unwrap(),
            Some(Rational::new(25, 1))
        );
        // The VPS's timing first, as FFmpeg reads them (ffprobe: 25/1).
        assert_eq!(
            hvcc(&[CRAFTED_VPS, CRAFTED_SPS]).frame_rate,
            Some(Rational::new(25, 1))
        );
        assert_eq!(
            hvcc(&[X265_SLOW_23976_VPS, CRAFTED_SPS]).frame_rate,
            Some(Rational::new(30000, 1001))
        );
        assert_eq!(
            hvcc(&[CRAFTED_VPS, X265_NO_TIMING_SPS]).frame_rate,
            Some(Rational::new(25, 1))
        );
        assert_eq!(hvcc(&[X265_NO_TIMING_SPS]).frame_rate, None);
    }

    /// MSB-first bytes of a bit string ("1 010 ..."; spaces ignored),
    /// zero-padded.
    fn bits(s: &str) -> Vec<u8> {
        let b: Vec<u8> = s
            .bytes()
            .filter(|c| !c.is_ascii_whitespace())
            .map(|c| c - b'0')
            .collect();
        b.chunks(8)
            .map(|c| {
                c.iter()
                    .enumerate()
                    .fold(0, |acc, (i, v)| acc | (v << (7 - i)))
            })
            .collect()
    }

    #[test]
    fn short_term_rps_sets_are_read_to_their_last_bit() {
        // Set 0 explicit: 2 negative, 1 positive pictures (ue 2 = 011, ue 1
        // = 010), each delta_poc ue + used flag.
        let set0 = "011 010  1 1  010 1  1 1";
        // Set 1 predicted from set 0 (4 entries): used; not used + use_delta;
        // not used + not use_delta; used -> 3 pictures.
        let set1 = "1 1 1  1  0 1  0 0  1";
        // Set 2 predicted from set 1 (4 entries): use_delta only on the
        // last one -> 1 picture; set 3 from set 2 (2 entries) -> 2.
        let set2 = "1 0 011  0 0  0 0  0 0  0 1";
        let set3 = "1 1 1  1  1";
        let data = bits(&format!("{set0} {set1} {set2} {set3} 1"));
        let mut r = BitReader::new("test", &data);
        let mut ends = Vec::new();
        let mut previous = None;
        for _ in 0..4 {
            let n = skip_st_ref_pic_set(&mut r, previous).unwrap();
            ends.push((n, r.bit_pos()));
            previous = Some(n);
        }
        let len = |s: &str| s.bytes().filter(|c| !c.is_ascii_whitespace()).count();
        let mut at = 0;
        let want: Vec<(u32, usize)> = [(3, set0), (3, set1), (1, set2), (2, set3)]
            .iter()
            .map(|&(n, s)| {
                at += len(s);
                (n, at)
            })
            .collect();
        assert_eq!(ends, want);
        assert!(r.flag().unwrap());
    }

    #[test]
    fn damaged_parameter_sets_never_panic_and_keep_the_size() {
        for set in [
            CRAFTED_SPS,
            CRAFTED_VPS,
            KVAZAAR_5994_SPS,
            X265_SLOW_23976_SPS,
        ] {
            let nal = hex(set);
            for n in 0..nal.len() {
                let _ = parse_sps(&nal[..n]);
                let _ = parse_vps_frame_rate(&nal[..n]);
            }
            for bit in 0..nal.len() * 8 {
                let mut bad = nal.clone();
                bad[bit / 8] ^= 0x80 >> (bit % 8);
                let _ = parse_sps(&bad);
                let _ = parse_vps_frame_rate(&bad);
            }
        }
        // Cut inside the VUI: the size is still read, the rate is not.
        let nal = hex(CRAFTED_SPS);
        let info = parse_sps(&nal[..nal.len() - 12]).unwrap();
        assert_eq!(
            ((info.width, info.height), info.frame_rate),
            ((316, 232), None)
        );
    }

    #[test]
    fn truncated_hvcc_never_panics() {
        for n in 0..X265_HVCC_352X288.len() {
            let _ = HevcConfig::parse(&Bytes::copy_from_slice(&X265_HVCC_352X288[..n]));
        }
    }
}
