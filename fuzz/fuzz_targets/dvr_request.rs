//! DVR file names and `Range` headers come from any viewer. Parsing never
//! panics; an archive segment name is accepted only in its one canonical
//! spelling; a byte range is always inside the entity.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ugc_dvr::range::{DvrFile, parse_dvr_file};
use ugc_proto::dvr::{ByteRange, parse_range};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let (file, header) = s.split_once('\n').unwrap_or((s, s));
    if let Ok(DvrFile::Segment(n)) = parse_dvr_file(file) {
        assert_eq!(format!("dvr-{}", n.file_name()), file, "non-canonical name accepted");
    }
    if let Ok(DvrFile::Range { seconds, .. } | DvrFile::Mp4 { seconds, .. }) = parse_dvr_file(file) {
        assert!((1..=86_400).contains(&seconds));
    }
    for len in [0u64, 1, 1000, u64::MAX] {
        if let ByteRange::Part(a, b) = parse_range(Some(header), len) {
            assert!(a < b && b <= len, "{a}..{b} of {len}");
        }
    }
});
