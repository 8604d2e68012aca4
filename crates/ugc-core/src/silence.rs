//! Silent audio frames, to close a hole in an audio track where one source
//! hands over to another (see the Hub's switch).
//!
//! An AAC-LC frame of silence is a raw data block whose channel elements
//! carry no scale factor band (`max_sfb = 0`): every spectral coefficient is
//! zero and any decoder outputs 1024 samples of silence, whatever the sample
//! rate. Built here from ISO/IEC 14496-3 (4.4.2, `raw_data_block`,
//! `single_channel_element`, `channel_pair_element`,
//! `individual_channel_stream`, `ics_info`).

use bytes::Bytes;

use crate::media::{Codec, TrackInfo};

/// A frame of silence for `track`, or `None` when this codec or
/// configuration has none here (only AAC-LC, mono or stereo).
pub fn silent_frame(track: &TrackInfo) -> Option<Bytes> {
    match track.codec {
        Codec::Aac => silent_aac_lc(&track.config).map(Bytes::from),
        _ => None,
    }
}

/// The object type and channel configuration of an AudioSpecificConfig.
fn aac_config(asc: &[u8]) -> Option<(u8, u8)> {
    let mut r = BitReader { data: asc, at: 0 };
    let mut object = r.read(5)? as u8;
    if object == 31 {
        object = 32 + r.read(6)? as u8;
    }
    if r.read(4)? == 0xf {
        r.read(24)?; // explicit sampling frequency
    }
    let channels = r.read(4)? as u8;
    Some((object, channels))
}

/// A silent AAC-LC raw data block for the channel configuration in `asc`
/// (1: one single channel element, 2: one channel pair element).
fn silent_aac_lc(asc: &[u8]) -> Option<Vec<u8>> {
    const ID_SCE: u32 = 0;
    const ID_CPE: u32 = 1;
    const ID_END: u32 = 7;
    let (object, channels) = aac_config(asc)?;
    if object != 2 {
        return None;
    }
    let mut w = BitWriter::default();
    let ics = |w: &mut BitWriter| {
        w.put(100, 8); // global_gain (no band uses it)
        // ics_info: reserved, ONLY_LONG_SEQUENCE, sine window, max_sfb 0,
        // no prediction.
        w.put(0, 1);
        w.put(0, 2);
        w.put(0, 1);
        w.put(0, 6);
        w.put(0, 1);
        // section and scale factor data are empty for max_sfb 0; no pulse,
        // TNS nor gain control data; no spectral data.
        w.put(0, 3);
    };
    match channels {
        1 => {
            w.put(ID_SCE, 3);
            w.put(0, 4); // element_instance_tag
            ics(&mut w);
        }
        2 => {
            w.put(ID_CPE, 3);
            w.put(0, 4);
            w.put(0, 1); // common_window: each channel has its own ics_info
            ics(&mut w);
            ics(&mut w);
        }
        _ => return None,
    }
    w.put(ID_END, 3);
    Some(w.finish())
}

struct BitReader<'a> {
    data: &'a [u8],
    at: usize,
}

impl BitReader<'_> {
    fn read(&mut self, bits: usize) -> Option<u32> {
        let mut v = 0u32;
        for _ in 0..bits {
            let byte = *self.data.get(self.at / 8)?;
            v = (v << 1) | u32::from((byte >> (7 - self.at % 8)) & 1);
            self.at += 1;
        }
        Some(v)
    }
}

#[derive(Default)]
struct BitWriter {
    out: Vec<u8>,
    bits: usize,
}

impl BitWriter {
    fn put(&mut self, value: u32, bits: usize) {
        for i in (0..bits).rev() {
            if self.bits.is_multiple_of(8) {
                self.out.push(0);
            }
            let bit = ((value >> i) & 1) as u8;
            if let Some(last) = self.out.last_mut() {
                *last |= bit << (7 - self.bits % 8);
            }
            self.bits += 1;
        }
    }

    /// The bytes, the last one padded with zero bits (byte alignment).
    fn finish(self) -> Vec<u8> {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mono_and_stereo_lc_frames() {
        // AAC-LC 44.1 kHz mono / stereo; 48 kHz stereo.
        let mono = silent_aac_lc(&[0x12, 0x08]).unwrap();
        // SCE tag 0, gain 100, empty ics_info, no tools, END, padding.
        assert_eq!(mono, vec![0x00, 0xc8, 0x00, 0x07]);
        let stereo = silent_aac_lc(&[0x12, 0x10]).unwrap();
        assert_eq!(stereo.len(), 7); // 3+4+1+2*22+3 = 55 bits
        assert_eq!(stereo[0] >> 5, 1, "a channel pair element");
        assert_eq!(silent_aac_lc(&[0x11, 0x90]).unwrap(), stereo);
    }

    #[test]
    fn other_configurations_have_none() {
        assert_eq!(silent_aac_lc(&[0x2b, 0x92]), None); // HE-AAC (object type 5)
        assert_eq!(silent_aac_lc(&[0x12, 0x30]), None); // 6 channels
        assert_eq!(silent_aac_lc(&[0x12]), None); // truncated
        assert_eq!(silent_aac_lc(&[]), None);
    }
}
