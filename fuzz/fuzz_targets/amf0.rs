//! AMF0 decode of arbitrary bytes; whatever decodes must re-encode to bytes
//! that decode to the same values (compared as encodings, so NaN payloads
//! and lossy UTF-8 compare sanely).
//!
//! Amplification (issue #17): the decoded values' heap, as the decoder counts
//! it, stays within `amf0::decoded_budget(input length)`, and the real peak
//! heap during the decode (counted by a global allocator) within twice that
//! plus room for an error message.
#![no_main]

#[path = "../common/peak_alloc.rs"]
mod peak_alloc;

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use ugc_proto::rtmp::amf0;

fuzz_target!(|data: &[u8]| {
    let base = peak_alloc::start();
    let decoded = amf0::decode(data);
    let peak = peak_alloc::peak_since(base);
    let bound = 2 * amf0::decoded_budget(data.len()) + 4096;
    assert!(
        peak <= bound,
        "decoding {} bytes peaked at {peak} heap bytes (bound {bound})",
        data.len()
    );
    let Ok(values) = decoded else {
        return;
    };
    let size = amf0::decoded_size(&values);
    assert!(
        size <= amf0::decoded_budget(data.len()),
        "{} bytes decoded to {size}",
        data.len()
    );
    let mut once = BytesMut::new();
    amf0::encode_all(&values, &mut once);
    let again = amf0::decode(&once).expect("our own encoding decodes");
    assert_eq!(again.len(), values.len());
    let mut twice = BytesMut::new();
    amf0::encode_all(&again, &mut twice);
    assert_eq!(once, twice, "encode(decode(encode(v))) != encode(v)");
});
