//! DVR file names and `Range` headers come from any viewer. Parsing never
//! panics; an archive segment name is accepted only in its one canonical
//! spelling; a byte range is always inside the entity.
//!
//! The DVR range "queries" are file names (`index-<from>-<seconds>.m3u8`,
//! `index-<from>-now.m3u8`, `archive-<from>-<seconds>.mp4`, `dvr-i<s>_<n>.mp4`):
//! what parses has a non-negative start, a length within 1..=86400 s, and
//! re-parses to the same value from its canonical spelling (which is never
//! longer than what was sent). The LL-HLS query strings are in
//! `origin_query`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ugc_dvr::range::{DvrFile, MAX_RANGE_SECONDS, parse_dvr_file};
use ugc_proto::dvr::{ByteRange, parse_range};

fn canonical(f: &DvrFile) -> String {
    match f {
        DvrFile::Range { from, seconds } => format!("index-{from}-{seconds}.m3u8"),
        DvrFile::FromNow { from } => format!("index-{from}-now.m3u8"),
        DvrFile::Mp4 { from, seconds } => format!("archive-{from}-{seconds}.mp4"),
        DvrFile::Segment(n) => format!("dvr-{}", n.file_name()),
        DvrFile::Init { session, n } => format!("dvr-i{session}_{n}.mp4"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let (file, header) = s.split_once('\n').unwrap_or((s, s));
    if let Ok(parsed) = parse_dvr_file(file) {
        match parsed {
            DvrFile::Segment(n) => {
                assert_eq!(format!("dvr-{}", n.file_name()), file, "non-canonical name accepted");
            }
            DvrFile::Range { from, seconds } | DvrFile::Mp4 { from, seconds } => {
                assert!(from >= 0);
                assert!((1..=MAX_RANGE_SECONDS).contains(&seconds));
            }
            DvrFile::FromNow { from } => assert!(from >= 0),
            DvrFile::Init { .. } => {}
        }
        let c = canonical(&parsed);
        assert!(c.len() <= file.len(), "{c} longer than {file}");
        assert_eq!(parse_dvr_file(&c), Ok(parsed), "{file} -> {c}");
    }
    for len in [0u64, 1, 1000, u64::MAX] {
        if let ByteRange::Part(a, b) = parse_range(Some(header), len) {
            assert!(a < b && b <= len, "{a}..{b} of {len}");
        }
    }
});
