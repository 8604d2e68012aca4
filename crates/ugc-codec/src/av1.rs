//! AV1 in ISO BMFF: low-overhead OBU streams, the sequence header OBU and
//! the `av1C` record (AV1 Codec ISO Media File Format Binding, 2.3), from
//! the AV1 bitstream specification (5.3 OBU syntax, 5.5 sequence header).
//!
//! * [`codec_string`]: RFC 6381 `av01.P.LLT.DD` of an `av1C`.
//! * [`obus`]: the OBUs of a low-overhead bitstream (each with its size
//!   field), e.g. an encoder's packet.
//! * [`SequenceHeader::parse`]: profile, level and tier of the first
//!   operating point and the colour configuration.
//! * [`av1c`]: an `av1C` record for a sequence header OBU (an encoder's
//!   global header), and [`without_temporal_delimiters`] for a sample
//!   (temporal delimiters are not stored in ISO BMFF samples).

use crate::error::{BitReader, Error, Reader, Result};

/// OBU types this module names (5.3.1).
pub mod obu_type {
    /// `OBU_SEQUENCE_HEADER`.
    pub const SEQUENCE_HEADER: u8 = 1;
    /// `OBU_TEMPORAL_DELIMITER`.
    pub const TEMPORAL_DELIMITER: u8 = 2;
}

/// Codec string of an `av1C` record: `av01.P.LLT.DD`.
pub fn codec_string(av1c: &[u8]) -> Result<String> {
    let mut r = Reader::new("av1C", av1c);
    let marker = r.u8()?;
    if marker & 0x80 == 0 {
        return Err(r.invalid("av1C marker bit not set"));
    }
    let b1 = r.u8()?;
    let b2 = r.u8()?;
    let profile = b1 >> 5;
    let level = b1 & 0x1f;
    let tier = if b2 & 0x80 != 0 { 'H' } else { 'M' };
    let depth = match (b2 & 0x40 != 0, b2 & 0x20 != 0) {
        (true, true) => 12,
        (true, false) => 10,
        _ => 8,
    };
    Ok(format!("av01.{profile}.{level:02}{tier}.{depth:02}"))
}

/// One OBU of a low-overhead bitstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Obu<'a> {
    /// `obu_type`.
    pub kind: u8,
    /// The whole OBU: header, size field and payload.
    pub bytes: &'a [u8],
    /// Its payload.
    pub payload: &'a [u8],
}

/// The OBUs of `data`, a low-overhead bitstream: every OBU has its size
/// field (`obu_has_size_field`), as encoders write them and ISO BMFF
/// samples hold them. Fails on a forbidden bit, a missing size field, an
/// over-long `leb128` or a size past the end.
pub fn obus(data: &[u8]) -> Result<Vec<Obu<'_>>> {
    const WHAT: &str = "AV1 OBU";
    let mut out = Vec::new();
    let mut r = Reader::new(WHAT, data);
    while r.pos() < data.len() {
        let start = r.pos();
        let header = r.u8()?;
        if header & 0x80 != 0 {
            return Err(r.invalid("obu_forbidden_bit set"));
        }
        let kind = (header >> 3) & 0x0f;
        if header & 0x04 != 0 {
            r.u8()?; // obu_extension_header
        }
        if header & 0x02 == 0 {
            return Err(r.invalid("OBU without a size field"));
        }
        let size = leb128(&mut r)?;
        let size = usize::try_from(size).map_err(|_| r.invalid("OBU size"))?;
        let payload = r.bytes(size)?;
        out.push(Obu {
            kind,
            bytes: &data[start..r.pos()],
            payload,
        });
    }
    Ok(out)
}

/// `leb128()` (4.10.5): at most 8 bytes, the value below 2^32.
fn leb128(r: &mut Reader<'_>) -> Result<u64> {
    let mut value: u64 = 0;
    for i in 0..8 {
        let b = r.u8()?;
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            if value > u64::from(u32::MAX) {
                return Err(r.invalid("leb128 value over 2^32 - 1"));
            }
            return Ok(value);
        }
    }
    Err(r.invalid("leb128 longer than 8 bytes"))
}

/// `data` without its temporal delimiter OBUs (an encoder's packet begins
/// with one; AV1-ISOBMFF 2.4 leaves them out of samples).
pub fn without_temporal_delimiters(data: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(data.len());
    for obu in obus(data)? {
        if obu.kind != obu_type::TEMPORAL_DELIMITER {
            out.extend_from_slice(obu.bytes);
        }
    }
    Ok(out)
}

/// What `av1C` repeats of a sequence header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SequenceHeader {
    /// `seq_profile` (0 Main, 1 High, 2 Professional).
    pub profile: u8,
    /// `seq_level_idx[0]`.
    pub level: u8,
    /// `seq_tier[0]`.
    pub tier: bool,
    /// `high_bitdepth`.
    pub high_bitdepth: bool,
    /// `twelve_bit`.
    pub twelve_bit: bool,
    /// `mono_chrome`.
    pub monochrome: bool,
    /// `subsampling_x`.
    pub subsampling_x: bool,
    /// `subsampling_y`.
    pub subsampling_y: bool,
    /// `chroma_sample_position`.
    pub chroma_sample_position: u8,
    /// `max_frame_width_minus_1 + 1`: the widest picture of the sequence.
    pub max_width: u32,
    /// `max_frame_height_minus_1 + 1`.
    pub max_height: u32,
}

impl SequenceHeader {
    /// Parses a sequence header OBU's payload (5.5) up to its colour
    /// configuration.
    pub fn parse(payload: &[u8]) -> Result<SequenceHeader> {
        let mut r = BitReader::new("AV1 sequence header", payload);
        let profile = r.bits(3)? as u8;
        if profile > 2 {
            return Err(r.invalid(format!("seq_profile {profile}")));
        }
        let _still_picture = r.flag()?;
        let reduced = r.flag()?;
        let (level, tier);
        if reduced {
            level = r.bits(5)? as u8;
            tier = false;
        } else {
            let timing_info = r.flag()?;
            let mut model = false;
            let mut delay_bits = 0;
            if timing_info {
                r.skip(64)?; // num_units_in_display_tick, time_scale
                if r.flag()? {
                    uvlc(&mut r)?; // num_ticks_per_picture_minus_1
                }
                model = r.flag()?;
                if model {
                    delay_bits = r.bits(5)? + 1;
                    r.skip(32 + 5 + 5)?;
                }
            }
            let (decoder_model, buffer_delay_bits) = (model, delay_bits);
            let delay_present = r.flag()?;
            let count = r.bits(5)? + 1;
            let (mut first_level, mut first_tier) = (0, false);
            for i in 0..count {
                r.skip(12)?; // operating_point_idc
                let l = r.bits(5)? as u8;
                let t = l > 7 && r.flag()?;
                if i == 0 {
                    (first_level, first_tier) = (l, t);
                }
                if decoder_model && r.flag()? {
                    r.skip(2 * buffer_delay_bits as usize + 1)?;
                }
                if delay_present && r.flag()? {
                    r.skip(4)?;
                }
            }
            (level, tier) = (first_level, first_tier);
        }
        let width_bits = r.bits(4)? + 1;
        let height_bits = r.bits(4)? + 1;
        let max_width = r.bits(width_bits)? + 1;
        let max_height = r.bits(height_bits)? + 1;
        if !reduced && r.flag()? {
            // frame_id_numbers_present_flag
            r.skip(4 + 3)?;
        }
        r.skip(3)?; // use_128x128_superblock, enable_filter_intra, enable_intra_edge_filter
        if !reduced {
            r.skip(4)?; // interintra, masked compound, warped motion, dual filter
            let order_hint = r.flag()?;
            if order_hint {
                r.skip(2)?; // enable_jnt_comp, enable_ref_frame_mvs
            }
            let force_screen_content = if r.flag()? { 2 } else { r.bits(1)? };
            if force_screen_content > 0 && !r.flag()? {
                r.skip(1)?; // seq_force_integer_mv
            }
            if order_hint {
                r.skip(3)?; // order_hint_bits_minus_1
            }
        }
        r.skip(3)?; // enable_superres, enable_cdef, enable_restoration
        // color_config (5.5.2)
        let high_bitdepth = r.flag()?;
        let twelve_bit = profile == 2 && high_bitdepth && r.flag()?;
        let monochrome = profile != 1 && r.flag()?;
        let (mut primaries, mut transfer, mut matrix) = (2, 2, 2);
        if r.flag()? {
            primaries = r.bits(8)?;
            transfer = r.bits(8)?;
            matrix = r.bits(8)?;
        }
        let (subsampling_x, subsampling_y, mut chroma_sample_position);
        chroma_sample_position = 0;
        if monochrome {
            r.skip(1)?; // color_range
            (subsampling_x, subsampling_y) = (true, true);
        } else if primaries == 1 && transfer == 13 && matrix == 0 {
            (subsampling_x, subsampling_y) = (false, false);
        } else {
            r.skip(1)?; // color_range
            (subsampling_x, subsampling_y) = match profile {
                0 => (true, true),
                1 => (false, false),
                _ if twelve_bit => {
                    let x = r.flag()?;
                    (x, x && r.flag()?)
                }
                _ => (true, false),
            };
            if subsampling_x && subsampling_y {
                chroma_sample_position = r.bits(2)? as u8;
            }
        }
        Ok(SequenceHeader {
            profile,
            level,
            tier,
            high_bitdepth,
            twelve_bit,
            monochrome,
            subsampling_x,
            subsampling_y,
            chroma_sample_position,
            max_width,
            max_height,
        })
    }
}

/// `uvlc()` (4.10.3), its value not needed.
fn uvlc(r: &mut BitReader<'_>) -> Result<()> {
    let mut zeros = 0;
    while !r.flag()? {
        zeros += 1;
        if zeros >= 32 {
            return Err(r.invalid("uvlc longer than 32 bits"));
        }
    }
    r.skip(zeros)
}

/// The `av1C` record of an encoder whose global header is `header`: a
/// sequence header OBU (libaom's), or OBUs holding one, or an `av1C`
/// already (returned as it is). The record carries the sequence header
/// OBU as its `configOBUs`.
pub fn av1c(header: &[u8]) -> Result<Vec<u8>> {
    if header.first().is_some_and(|b| *b == 0x81) && header.len() >= 4 {
        codec_string(header)?;
        return Ok(header.to_vec());
    }
    let obus = obus(header)?;
    let seq = obus
        .iter()
        .find(|o| o.kind == obu_type::SEQUENCE_HEADER)
        .ok_or_else(|| Error::invalid("AV1 header", header, 0, "no sequence header OBU"))?;
    let h = SequenceHeader::parse(seq.payload)?;
    let bit = |b: bool, at: u8| u8::from(b) << at;
    let mut out = vec![
        0x81, // marker, version 1
        (h.profile << 5) | (h.level & 0x1f),
        bit(h.tier, 7)
            | bit(h.high_bitdepth, 6)
            | bit(h.twelve_bit, 5)
            | bit(h.monochrome, 4)
            | bit(h.subsampling_x, 3)
            | bit(h.subsampling_y, 2)
            | (h.chroma_sample_position & 3),
        0, // no initial_presentation_delay
    ];
    out.extend_from_slice(seq.bytes);
    Ok(out)
}

/// The largest picture (width, height) of an `av1C` record's sequence
/// header (in its `configOBUs`); `None` when it holds none.
pub fn dimensions(av1c: &[u8]) -> Option<(u32, u32)> {
    let obus = obus(av1c.get(4..)?).ok()?;
    let seq = obus.iter().find(|o| o.kind == obu_type::SEQUENCE_HEADER)?;
    let h = SequenceHeader::parse(seq.payload).ok()?;
    Some((h.max_width, h.max_height))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The sequence header OBU of libaom (320x240, Main, level 2.0, 8 bit
    /// 4:2:0) in the av1C of `tests/data/ffmpeg51_libaom_opus_320x240_1s.mp4`.
    const SEQ_OBU: [u8; 13] = [
        0x0a, 0x0b, 0x00, 0x00, 0x00, 0x04, 0x3c, 0xff, 0xbc, 0xda, 0xf9, 0x00, 0x40,
    ];

    #[test]
    fn a_libaom_sequence_header_makes_its_av1c() {
        let obus = obus(&SEQ_OBU).unwrap();
        assert_eq!(obus.len(), 1);
        assert_eq!(obus[0].kind, obu_type::SEQUENCE_HEADER);
        let h = SequenceHeader::parse(obus[0].payload).unwrap();
        assert_eq!((h.profile, h.level, h.tier), (0, 0, false));
        assert!(!h.high_bitdepth && !h.monochrome);
        assert!(h.subsampling_x && h.subsampling_y);
        assert_eq!((h.max_width, h.max_height), (320, 240));
        let c = av1c(&SEQ_OBU).unwrap();
        // The file's own av1C, byte for byte.
        assert_eq!(&c[..4], &[0x81, 0x00, 0x0c, 0x00]);
        assert_eq!(&c[4..], &SEQ_OBU);
        assert_eq!(codec_string(&c).unwrap(), "av01.0.00M.08");
        assert_eq!(dimensions(&c), Some((320, 240)));
        assert_eq!(dimensions(&c[..4]), None, "no configOBUs");
        // An av1C already is kept.
        assert_eq!(av1c(&c).unwrap(), c);
    }

    #[test]
    fn temporal_delimiters_are_left_out_of_samples() {
        let mut packet = vec![0x12, 0x00]; // temporal delimiter, size 0
        packet.extend_from_slice(&SEQ_OBU);
        packet.extend_from_slice(&[0x32, 0x02, 0xaa, 0xbb]); // a frame OBU
        let sample = without_temporal_delimiters(&packet).unwrap();
        let mut want = SEQ_OBU.to_vec();
        want.extend_from_slice(&[0x32, 0x02, 0xaa, 0xbb]);
        assert_eq!(sample, want);
        assert!(obus(&[0x32, 0x05, 0xaa]).is_err(), "size past the end");
        assert!(obus(&[0x30, 0xaa]).is_err(), "no size field");
        assert!(obus(&[0x92, 0x00]).is_err(), "forbidden bit");
    }

    proptest! {
        /// Any bytes: an error or a record, never a panic.
        #[test]
        fn any_bytes_are_an_error_or_a_record(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = av1c(&data);
            let _ = without_temporal_delimiters(&data);
            let _ = SequenceHeader::parse(&data);
        }
    }
}
