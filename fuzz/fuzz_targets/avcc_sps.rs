//! `avcC` / SPS / `hvcC` / HEVC VPS parsing and AVCC -> Annex B conversion
//! never panic; a parsed avcC round-trips through `build_avcc`; an hvcC built
//! around a readable HEVC SPS gives back its size and frame rate.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use ugc_codec::h264::{self, AvcConfig};
use ugc_codec::hevc::HevcConfig;

fuzz_target!(|data: &[u8]| {
    let b = Bytes::copy_from_slice(data);
    if let Ok(c) = AvcConfig::parse(&b) {
        let _ = c.codec_string();
        let sps: Vec<&[u8]> = c.sps.iter().map(|s| &s[..]).collect();
        let pps: Vec<&[u8]> = c.pps.iter().map(|s| &s[..]).collect();
        if let Ok(rebuilt) = h264::build_avcc(&sps, &pps) {
            let again = AvcConfig::parse(&Bytes::from(rebuilt)).expect("rebuilt avcC parses");
            assert_eq!((again.width, again.height), (c.width, c.height));
            assert_eq!(again.sps, c.sps);
            assert_eq!(again.pps, c.pps);
        }
    }
    let _ = h264::parse_sps(data);
    if let Ok(c) = HevcConfig::parse(&b) {
        let _ = c.codec_string();
    }
    if let Ok(info) = ugc_codec::hevc::parse_sps(data) {
        // An hvcC built around a readable SPS parses back to the same size
        // and (without a VPS) the SPS's frame rate.
        if let Ok(rec) = ugc_codec::hevc::build_hvcc(&[], &[data], &[]) {
            let c = HevcConfig::parse(&Bytes::from(rec)).expect("built hvcC parses");
            assert_eq!((c.width, c.height), (info.width, info.height));
            assert_eq!(c.frame_rate, info.frame_rate);
        }
        if let Some(r) = info.frame_rate {
            assert!(r.num > 0 && r.den > 0);
        }
    }
    if let Ok(Some(r)) = ugc_codec::hevc::parse_vps_frame_rate(data) {
        assert!(r.num > 0 && r.den > 0);
    }
    for nls in [1u8, 2, 4] {
        if let Ok(ab) = h264::avcc_to_annexb(data, nls) {
            let _ = h264::annexb_to_avcc(&ab, nls);
        }
        let _ = h264::is_idr(data, nls);
    }
});
