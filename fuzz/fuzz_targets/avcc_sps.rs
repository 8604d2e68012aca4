//! `avcC` / SPS / `hvcC` / HEVC VPS parsing and AVCC -> Annex B conversion
//! never panic; a parsed avcC round-trips through `build_avcc`; an hvcC built
//! around a readable HEVC SPS gives back its size and frame rate. AV1 (what
//! a WHIP publisher's and an Enhanced RTMP publisher's sequence headers go
//! through): OBU splitting, sequence header parsing, the `av1C` built from
//! it (its codec string and picture size readable again, its size the
//! input's plus the 4-byte header at most).
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use ugc_codec::av1;
use ugc_codec::h264::{self, AvcConfig};
use ugc_codec::hevc::HevcConfig;

fn av1(data: &[u8]) {
    if let Ok(obus) = av1::obus(data) {
        let total: usize = obus.iter().map(|o| o.bytes.len()).sum();
        assert_eq!(total, data.len(), "OBUs cover the input");
        for o in &obus {
            let _ = av1::SequenceHeader::parse(o.payload);
        }
        let sample = av1::without_temporal_delimiters(data).expect("split once, splits again");
        assert!(sample.len() <= data.len());
    }
    if let Ok(c) = av1::av1c(data) {
        assert!(c.len() <= data.len() + 4, "av1C of {} bytes from {}", c.len(), data.len());
        av1::codec_string(&c).expect("a built av1C has a codec string");
        if data.first() != Some(&0x81) {
            assert!(av1::dimensions(&c).is_some(), "a built av1C has its size");
        }
    }
    let _ = av1::dimensions(data);
}

fuzz_target!(|data: &[u8]| {
    av1(data);
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
