//! AAC: AudioSpecificConfig (ISO/IEC 14496-3 1.6.2.1) and ADTS headers
//! (ISO/IEC 14496-3 1.A.2.2).

use crate::error::{BitReader, Error, Result};

/// Sampling frequencies by `samplingFrequencyIndex`.
pub const SAMPLING_FREQUENCIES: [u32; 13] = [
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
];

/// A parsed AudioSpecificConfig.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asc {
    /// `audioObjectType` as signalled first (2 = AAC-LC, 5 = SBR/HE-AAC,
    /// 29 = PS/HE-AACv2); escape 31 resolved.
    pub audio_object_type: u8,
    /// The core object type: equals `audio_object_type` except for explicit
    /// SBR/PS signalling, where it is the underlying type (usually 2).
    pub core_object_type: u8,
    /// `samplingFrequencyIndex`, `None` when the frequency is explicit (index 15).
    pub sampling_frequency_index: Option<u8>,
    /// Core sampling frequency in Hz.
    pub sampling_frequency: u32,
    /// `channelConfiguration` (0 = defined in a program config element).
    pub channel_configuration: u8,
    /// `frameLengthFlag` of GASpecificConfig: 960-sample frames.
    pub frame_length_flag: bool,
    /// Output sampling frequency of explicit SBR signalling.
    pub extension_sampling_frequency: Option<u32>,
}

fn read_object_type(r: &mut BitReader<'_>) -> Result<u8> {
    let t = r.bits(5)?;
    let t = if t == 31 { 32 + r.bits(6)? } else { t };
    Ok(u8::try_from(t).unwrap_or(u8::MAX))
}

fn read_frequency(r: &mut BitReader<'_>, data: &[u8]) -> Result<(Option<u8>, u32)> {
    let idx = r.bits(4)?;
    if idx == 15 {
        let f = r.bits(24)?;
        if f == 0 {
            return Err(Error::invalid(
                "AudioSpecificConfig",
                data,
                0,
                "explicit frequency 0",
            ));
        }
        return Ok((None, f));
    }
    let f = SAMPLING_FREQUENCIES
        .get(idx as usize)
        .copied()
        .ok_or_else(|| {
            Error::invalid(
                "AudioSpecificConfig",
                data,
                0,
                format!("samplingFrequencyIndex {idx} is reserved"),
            )
        })?;
    Ok((Some(idx as u8), f))
}

impl Asc {
    /// Parses an AudioSpecificConfig (the body of an FLV AAC sequence header,
    /// or the DecoderSpecificInfo of an `esds`).
    pub fn parse(data: &[u8]) -> Result<Asc> {
        let mut r = BitReader::new("AudioSpecificConfig", data);
        let audio_object_type = read_object_type(&mut r)?;
        if audio_object_type == 0 {
            return Err(Error::invalid(
                "AudioSpecificConfig",
                data,
                0,
                "audioObjectType 0",
            ));
        }
        let (sampling_frequency_index, sampling_frequency) = read_frequency(&mut r, data)?;
        let channel_configuration = r.bits(4)? as u8;
        let mut core_object_type = audio_object_type;
        let mut extension_sampling_frequency = None;
        if audio_object_type == 5 || audio_object_type == 29 {
            extension_sampling_frequency = Some(read_frequency(&mut r, data)?.1);
            core_object_type = read_object_type(&mut r)?;
        }
        // GASpecificConfig starts with frameLengthFlag for the GA object types.
        let frame_length_flag = match core_object_type {
            1..=4 | 6 | 7 | 17 | 19..=23 => r.flag()?,
            _ => false,
        };
        Ok(Asc {
            audio_object_type,
            core_object_type,
            sampling_frequency_index,
            sampling_frequency,
            channel_configuration,
            frame_length_flag,
            extension_sampling_frequency,
        })
    }

    /// RFC 6381 codec string `mp4a.40.<aot>`.
    pub fn codec_string(&self) -> String {
        format!("mp4a.40.{}", self.audio_object_type)
    }

    /// Output sample rate: the SBR extension rate when signalled, else the core rate.
    pub fn sample_rate(&self) -> u32 {
        self.extension_sampling_frequency
            .unwrap_or(self.sampling_frequency)
    }

    /// Samples per frame at [`Asc::sample_rate`]: 1024 (960 with
    /// `frameLengthFlag`), doubled when explicit SBR doubles the rate.
    pub fn samples_per_frame(&self) -> u32 {
        let base = if self.frame_length_flag { 960 } else { 1024 };
        match self.extension_sampling_frequency {
            Some(ext) if ext > self.sampling_frequency => base * 2,
            _ => base,
        }
    }

    /// Channel count for the standard configurations (7 -> 8 channels; 0 -> 2 as a guess).
    pub fn channels(&self) -> u8 {
        match self.channel_configuration {
            0 => 2,
            7 => 8,
            c @ 1..=6 => c,
            _ => 2,
        }
    }
}

/// Fields of an ADTS header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdtsHeader {
    /// MPEG-4 audio object type (`profile_ObjectType + 1`, 1..=4).
    pub audio_object_type: u8,
    /// `sampling_frequency_index`.
    pub sampling_frequency_index: u8,
    /// `channel_configuration`.
    pub channel_configuration: u8,
    /// `aac_frame_length` minus the 7 header bytes.
    pub payload_len: usize,
}

/// Largest raw payload one ADTS frame (13-bit length, 7-byte header) can carry.
pub const ADTS_MAX_PAYLOAD: usize = 8191 - 7;

/// The 7-byte ADTS header (no CRC) for a raw AAC frame of `payload_len` bytes.
///
/// The object type and frequency index are those of the core (for HE-AAC the
/// ADTS stream is AAC-LC at the core rate, which decoders upsample implicitly);
/// an explicit frequency maps to the nearest table entry. `payload_len` above
/// [`ADTS_MAX_PAYLOAD`] is not representable: it is saturated, use
/// [`try_adts_header`] to get an error instead.
pub fn adts_header(asc: &Asc, payload_len: usize) -> [u8; 7] {
    let h = adts_fields(asc, payload_len.min(ADTS_MAX_PAYLOAD));
    write_adts(&h)
}

/// Like [`adts_header`] but fails when `payload_len` does not fit in ADTS.
pub fn try_adts_header(asc: &Asc, payload_len: usize) -> Result<[u8; 7]> {
    if payload_len > ADTS_MAX_PAYLOAD {
        return Err(Error::InvalidArgument(format!(
            "AAC frame of {payload_len} bytes does not fit an ADTS header"
        )));
    }
    Ok(write_adts(&adts_fields(asc, payload_len)))
}

fn adts_fields(asc: &Asc, payload_len: usize) -> AdtsHeader {
    let aot = if (1..=4).contains(&asc.core_object_type) {
        asc.core_object_type
    } else {
        2
    };
    let idx = asc.sampling_frequency_index.unwrap_or_else(|| {
        SAMPLING_FREQUENCIES
            .iter()
            .enumerate()
            .min_by_key(|(_, f)| f.abs_diff(asc.sampling_frequency))
            .map_or(4, |(i, _)| i as u8)
    });
    AdtsHeader {
        audio_object_type: aot,
        sampling_frequency_index: idx,
        channel_configuration: asc.channel_configuration & 0x07,
        payload_len,
    }
}

/// Serializes ADTS header fields (values are masked to their field widths).
pub fn write_adts(h: &AdtsHeader) -> [u8; 7] {
    let profile = h.audio_object_type.saturating_sub(1) & 0x03;
    let sfi = h.sampling_frequency_index & 0x0f;
    let ch = h.channel_configuration & 0x07;
    let len = (h.payload_len.saturating_add(7) & 0x1fff) as u32;
    [
        0xff,
        0xf1, // MPEG-4, layer 0, no CRC
        (profile << 6) | (sfi << 2) | (ch >> 2),
        ((ch & 0x03) << 6) | ((len >> 11) as u8 & 0x03),
        ((len >> 3) & 0xff) as u8,
        (((len & 0x07) as u8) << 5) | 0x1f,
        0xfc, // buffer fullness 0x7ff (VBR), 1 raw data block
    ]
}

/// Parses an ADTS header at the start of `data`; `Ok(None)` when fewer than 7
/// bytes are there.
pub fn parse_adts(data: &[u8]) -> Result<Option<AdtsHeader>> {
    let Some(h) = data.get(..7) else {
        return Ok(None);
    };
    if h[0] != 0xff || h[1] & 0xf0 != 0xf0 {
        return Err(Error::invalid("ADTS header", data, 0, "no syncword"));
    }
    let len = (usize::from(h[3] & 0x03) << 11) | (usize::from(h[4]) << 3) | usize::from(h[5] >> 5);
    let header_len = if h[1] & 0x01 == 0 { 9 } else { 7 };
    let payload_len = len
        .checked_sub(header_len)
        .ok_or_else(|| Error::invalid("ADTS header", data, 3, "frame length below header size"))?;
    Ok(Some(AdtsHeader {
        audio_object_type: (h[2] >> 6) + 1,
        sampling_frequency_index: (h[2] >> 2) & 0x0f,
        channel_configuration: ((h[2] & 0x01) << 2) | (h[3] >> 6),
        payload_len,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ffmpeg_aac_lc_with_sbr_sync_extension() {
        // ffmpeg 5.1 native AAC encoder, 44.1 kHz mono, as sent in FLV.
        let a = Asc::parse(&[0x12, 0x08, 0x56, 0xe5, 0x00]).unwrap();
        assert_eq!(a.audio_object_type, 2);
        assert_eq!(a.sampling_frequency, 44100);
        assert_eq!(a.channel_configuration, 1);
        assert_eq!(a.samples_per_frame(), 1024);
        assert_eq!(a.codec_string(), "mp4a.40.2");
    }

    #[test]
    fn escape_object_type_and_explicit_frequency() {
        // aot 31 + 6 bits (=> 32 + 1 = 33), sfi 15 + 24-bit 44100, ch 2.
        let mut bits: u64 = 0;
        let mut n = 0;
        let mut put = |v: u64, w: u32| {
            bits = (bits << w) | v;
            n += w;
        };
        put(31, 5);
        put(1, 6);
        put(15, 4);
        put(44100, 24);
        put(2, 4);
        let pad = (8 - n % 8) % 8;
        let total = n + pad;
        let v = bits << pad;
        let bytes: Vec<u8> = (0..total / 8).rev().map(|i| (v >> (i * 8)) as u8).collect();
        let a = Asc::parse(&bytes).unwrap();
        assert_eq!(a.audio_object_type, 33);
        assert_eq!(a.sampling_frequency_index, None);
        assert_eq!(a.sampling_frequency, 44100);
        assert_eq!(a.channel_configuration, 2);
    }

    #[test]
    fn he_aac_explicit_sbr_and_960_frames() {
        // aot 5, sfi 6 (24 kHz), ch 2, ext sfi 3 (48 kHz), aot 2, frameLengthFlag 0
        let a = Asc::parse(&[0x2b, 0x11, 0x88, 0x00]).unwrap();
        assert_eq!(a.audio_object_type, 5);
        assert_eq!(a.core_object_type, 2);
        assert_eq!(a.sample_rate(), 48000);
        assert_eq!(a.samples_per_frame(), 2048);
        assert_eq!(a.codec_string(), "mp4a.40.5");
        // AAC-LC 48 kHz stereo with frameLengthFlag.
        let a = Asc::parse(&[0x11, 0x94]).unwrap();
        assert!(a.frame_length_flag);
        assert_eq!(a.samples_per_frame(), 960);
    }

    #[test]
    fn bad_configs_are_errors() {
        assert!(Asc::parse(&[]).is_err());
        assert!(Asc::parse(&[0x17, 0x80]).is_err()); // sfi 13 reserved
        assert!(Asc::parse(&[0x00, 0x00]).is_err()); // aot 0
    }

    proptest! {
        #[test]
        fn adts_fields_round_trip(aot in 1u8..=4, sfi in 0u8..13, ch in 0u8..8, len in 0usize..=ADTS_MAX_PAYLOAD) {
            let asc = Asc { audio_object_type: aot, core_object_type: aot, sampling_frequency_index: Some(sfi),
                sampling_frequency: SAMPLING_FREQUENCIES[sfi as usize], channel_configuration: ch,
                frame_length_flag: false, extension_sampling_frequency: None };
            let h = try_adts_header(&asc, len).unwrap();
            let p = parse_adts(&h).unwrap().unwrap();
            prop_assert_eq!(p, AdtsHeader { audio_object_type: aot, sampling_frequency_index: sfi, channel_configuration: ch, payload_len: len });
        }

        #[test]
        fn asc_parse_never_panics(data in proptest::collection::vec(any::<u8>(), 0..16)) {
            if let Ok(a) = Asc::parse(&data) {
                let _ = adts_header(&a, 100);
                prop_assert!(a.samples_per_frame() >= 960);
            }
        }
    }
}
