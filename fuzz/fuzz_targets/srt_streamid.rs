//! SRT stream ids (what an SRT caller sends in its handshake): parsing never
//! panics; an accepted id yields a non-empty app and a key without `/`, and
//! mode publish; a refusal has an access-control or bad-request code.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ugc_proto::srt::streamid::{Mode, StreamId};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    match StreamId::parse(s) {
        Ok(sid) => {
            assert!(!sid.app.is_empty() && !sid.key.is_empty());
            assert!(!sid.key.contains('/'));
            assert_eq!(sid.mode, Mode::Publish);
            assert!(s.len() <= 512);
        }
        Err(e) => {
            let c = e.reject_code();
            assert!((2400..2500).contains(&c));
        }
    }
});
