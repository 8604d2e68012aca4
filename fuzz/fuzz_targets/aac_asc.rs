//! AudioSpecificConfig and ADTS parsing never panic; an ADTS header written
//! from a parsed config parses back to the same fields.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ugc_codec::aac::{self, Asc};

fuzz_target!(|data: &[u8]| {
    let _ = aac::parse_adts(data);
    if let Ok(asc) = Asc::parse(data) {
        let _ = asc.codec_string();
        assert!(asc.samples_per_frame() >= 960);
        let len = data.len() * 31;
        if let Ok(h) = aac::try_adts_header(&asc, len) {
            let p = aac::parse_adts(&h).expect("own header").expect("7 bytes");
            assert_eq!(p.payload_len, len);
            assert_eq!(p.channel_configuration, asc.channel_configuration & 7);
        }
    }
});
