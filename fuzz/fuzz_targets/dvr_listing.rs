//! A peer origin's DVR listing (replication, `ugc_dvr::replica`) is bytes
//! from another machine. Parsing never panics; what parses renders back to
//! a listing that parses to the same files; tracks listings never name a
//! path outside the archive; and a plan over any listing fetches each file
//! once, every segment after the init it needs, within the window. A
//! deleted-recordings listing parses to non-empty spans of source streams
//! that render back to themselves; with a live recording, no segment of
//! another session past its end is fetched.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ugc_dvr::archive::{ArchivedSegment, Location, TrackIndex};
use ugc_dvr::replica::{
    PeerFile, Window, parse_deleted, parse_listing, parse_tracks, plan, render_deleted,
    without_deleted,
};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for key in parse_tracks(text) {
        let dir = key.rel_dir();
        assert!(
            dir.components()
                .all(|c| matches!(c, std::path::Component::Normal(_)))
        );
    }
    let deleted = parse_deleted(text);
    for (stream, from, to) in &deleted {
        assert!(from < to && stream.rendition().is_none());
    }
    let again: String = deleted
        .iter()
        .map(|(s, f, t)| render_deleted(s, *f, *t))
        .collect();
    assert_eq!(parse_deleted(&again), deleted);
    let Ok(files) = parse_listing(text) else {
        return;
    };
    let spans: Vec<(i64, i64)> = deleted.iter().map(|&(_, f, t)| (f, t)).collect();
    assert!(without_deleted(files.clone(), &spans).len() <= files.len());
    let again: String = files
        .iter()
        .map(|f| format!("{} {}\n", f.file_name(), f.size()))
        .collect();
    assert_eq!(parse_listing(&again).as_ref(), Ok(&files));
    let window = Window {
        from_ms: 0,
        settle_before_ms: i64::MAX / 2,
        recording: None,
    };
    let p = plan(Some(&TrackIndex::default()), &files, window, u64::MAX);
    let mut seen = std::collections::BTreeSet::new();
    let mut inits = std::collections::BTreeSet::new();
    for f in &p.fetch {
        assert!(seen.insert(f.file_name()), "{} twice", f.file_name());
        match *f {
            PeerFile::Init { session, n, .. } => {
                inits.insert((session, n));
            }
            PeerFile::Segment { name, .. } => {
                assert!(inits.contains(&(name.session, name.init)));
                assert!(name.pdt_ms >= window.from_ms && name.end_ms() <= window.settle_before_ms);
            }
        }
    }
    // An archive that holds the listing's first half of segments and
    // records the newest one's session now: no segment of another session
    // past its recording's end is fetched, each file at most once.
    let mut segments: Vec<(ugc_dvr::archive::SegmentName, u64)> = files
        .iter()
        .filter_map(|f| match *f {
            PeerFile::Segment { name, size } => Some((name, size)),
            PeerFile::Init { .. } => None,
        })
        .collect();
    segments.sort();
    segments.dedup_by_key(|s| s.0);
    let mut local = TrackIndex::default();
    for &(name, size) in &segments[..segments.len() / 2] {
        local.segments.push_back(ArchivedSegment {
            name,
            size,
            location: Location::Local,
        });
    }
    let Some(newest) = local.segments.back().map(|s| s.name) else {
        return;
    };
    let recording = Window {
        recording: Some(newest.session),
        ..window
    };
    let p = plan(Some(&local), &files, recording, u64::MAX);
    let mut seen = std::collections::BTreeSet::new();
    for f in &p.fetch {
        assert!(seen.insert(f.file_name()), "{} twice", f.file_name());
        if let PeerFile::Segment { name, .. } = *f {
            assert!(
                name.session == newest.session || name.mid_ms() < newest.end_ms(),
                "{} past the live recording",
                f.file_name()
            );
        }
    }
});
