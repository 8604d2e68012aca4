//! Play tokens arrive as a `?token=` query parameter from any viewer.
//! Decoding must never panic, and a token that decodes re-encodes to
//! exactly itself (one canonical form, so no second token for the same
//! claims slips past a revocation keyed on the string).
#![no_main]

use libfuzzer_sys::fuzz_target;
use ugc_auth::TokenKey;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    // An all-zero secret so seeds signed with it reach the payload parser.
    let key = TokenKey::new(&[0u8; 32]);
    if let Ok(claims) = key.decode(s) {
        let again = key.sign(&claims).expect("decoded claims re-sign");
        assert_eq!(again, s, "non-canonical token accepted");
    }
    let _ = key.verify(s, 1_700_000_000);
});
