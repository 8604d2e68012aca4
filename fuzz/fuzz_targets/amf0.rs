//! AMF0 decode of arbitrary bytes; whatever decodes must re-encode to bytes
//! that decode to the same values (compared as encodings, so NaN payloads
//! and lossy UTF-8 compare sanely).
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use ugc_proto::rtmp::amf0;

fuzz_target!(|data: &[u8]| {
    let Ok(values) = amf0::decode(data) else {
        return;
    };
    let mut once = BytesMut::new();
    amf0::encode_all(&values, &mut once);
    let again = amf0::decode(&once).expect("our own encoding decodes");
    assert_eq!(again.len(), values.len());
    let mut twice = BytesMut::new();
    amf0::encode_all(&again, &mut twice);
    assert_eq!(once, twice, "encode(decode(encode(v))) != encode(v)");
});
