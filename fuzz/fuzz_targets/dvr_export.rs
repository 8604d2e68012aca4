//! The MP4 export reads archived segment files back; a corrupt or truncated
//! file (disk error, foreign file) must give an error, never a panic or an
//! output that reads outside its inputs.
#![no_main]

use std::io::Read as _;

use libfuzzer_sys::fuzz_target;
use ugc_dvr::export::{ExportSegment, plan_export};

fuzz_target!(|data: &[u8]| {
    // First two bytes: the length of the init segment that follows.
    let Some((len, rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let at = usize::from(u16::from_be_bytes(*len)).min(rest.len());
    let (init, seg) = rest.split_at(at);
    // libFuzzer exits without teardown, so this directory stays behind:
    // `make fuzz-smoke` points TMPDIR into a directory it removes.
    let dir = std::env::temp_dir().join(format!("ugc-fuzz-export-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("seg.m4s");
    if std::fs::write(&path, seg).is_err() {
        return;
    }
    let inits = vec![(dir.join("init.mp4"), bytes::Bytes::copy_from_slice(init))];
    let segs = [ExportSegment { path, init: 0 }];
    if let Ok(plan) = plan_export(&inits, &segs) {
        let mut out = Vec::new();
        plan.reader(0, plan.len).read_to_end(&mut out).expect("planned bytes are readable");
        assert_eq!(out.len() as u64, plan.len);
    }
});
