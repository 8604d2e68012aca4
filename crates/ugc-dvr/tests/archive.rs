//! The archive on a real file system: writes, rebuild after a "crash",
//! write errors (recording pauses, nothing busy-loops), retention, and the
//! MP4 export's layout.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use ugc_core::MediaEvent;
use ugc_dvr::archive::{
    Archive, ArchiveConfig, ArchivedSegment, Location, SegmentName, TrackIndex, TrackKey,
    now_unix_ms, plan_retention,
};
use ugc_dvr::{SegmentObserver, Segmenter, SegmenterOutput};

struct Dir(PathBuf);
impl Dir {
    fn new(tag: &str) -> Dir {
        let p = std::env::temp_dir().join(format!("ugc-dvr-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Dir(p)
    }
}
impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `seconds` of 25 fps video (1 s GOPs) + audio, wall clock from `t0`.
fn outputs(seconds: i64, t0: i64) -> Vec<SegmenterOutput> {
    let mut seg = Segmenter::new(config(2000));
    let mut out = Vec::new();
    let mut events = vec![MediaEvent::Tracks(av())];
    for i in 0..seconds * 25 {
        events.push(v(i * 40, i % 25 == 0));
        events.push(a(i * 40));
    }
    events.push(MediaEvent::End);
    for (i, e) in events.into_iter().enumerate() {
        seg.push(e, t0 + i as i64 * 20).unwrap();
        while let Some(o) = seg.poll() {
            out.push(o);
        }
    }
    out
}

fn record(archive: &Archive, hub: &str, outs: &[SegmenterOutput]) {
    let mut r = archive.recorder(&path(hub)).unwrap();
    for o in outs {
        r.on_output(o, true);
    }
    assert!(archive.flush_blocking(Duration::from_secs(10)));
}

#[test]
fn segments_survive_a_restart_and_tmp_leftovers_are_removed() {
    let dir = Dir::new("restart");
    let t0 = now_unix_ms() - 60_000;
    let key = TrackKey::source(&path("live/a"));
    {
        let archive = Archive::open(ArchiveConfig::new(&dir.0, 1)).unwrap();
        record(&archive, "live/a", &outputs(20, t0));
        assert_eq!(archive.range(&key, 0, i64::MAX).len(), 10);
        assert_eq!(archive.stats().segments_written.load(Ordering::Relaxed), 10);
    }
    // A segment in progress when the process died.
    let sdir = dir.0.join("live/a/src");
    std::fs::write(sdir.join("s1_2_3_4_5_6_c.m4s.tmp"), b"partial").unwrap();
    // A segment whose init segment is gone cannot be played: not indexed.
    std::fs::write(sdir.join("s9_2000_0_777_0_0_c.m4s"), b"orphan").unwrap();
    let archive = Archive::open(ArchiveConfig::new(&dir.0, 1)).unwrap();
    let segs = archive.range(&key, 0, i64::MAX);
    assert_eq!(segs.len(), 10);
    assert!(!sdir.join("s1_2_3_4_5_6_c.m4s.tmp").exists());
    // Consecutive, 2 s each, one session.
    for w in segs.windows(2) {
        assert_eq!(w[1].name.msn, w[0].name.msn + 1);
        assert_eq!(w[0].name.duration_ms, 2000);
        assert_eq!(w[1].name.session, w[0].name.session);
    }
    // The range rule: segments whose midpoint is inside.
    let first = segs[0].name.pdt_ms;
    assert_eq!(archive.range(&key, first + 1000, first + 7000).len(), 3);
    assert_eq!(archive.range(&key, first + 2500, first + 2600).len(), 1);
    assert!(
        archive
            .range(&key, first - 100_000, first - 50_000)
            .is_empty()
    );
    // A new recorder gets a later session.
    let r = archive.recorder(&path("live/a")).unwrap();
    assert!(r.session() > segs[0].name.session);
}

/// An origin that joined mid-event records its first segments as
/// provisional (held back from the live window: cut before it had seen
/// enough of the stream). A peer's own copy of that time, imported,
/// replaces them on disk and in the index; the provisional name still
/// serves (the copy), and a provisional segment of that time recorded
/// after the copy is not written. Reopened, the archive holds the copies.
#[test]
fn a_peers_copy_replaces_provisional_segments() {
    let dir = Dir::new("provisional");
    let stream = path("live/p");
    let key = TrackKey::source(&stream);
    let outs = outputs(12, now_unix_ms() - 30_000);
    let held = |outs: &[SegmenterOutput], n: usize| {
        let mut segs = 0;
        outs.iter()
            .map(|o| {
                let seg = matches!(o, SegmenterOutput::Segment(_));
                segs += usize::from(seg);
                (o.clone(), !(seg && segs <= n))
            })
            .collect::<Vec<_>>()
    };
    let archive = Archive::open(ArchiveConfig::new(&dir.0, 2)).unwrap();
    let mut r = archive.recorder(&stream).unwrap();
    for (o, live) in held(&outs, 2) {
        r.on_output(&o, live);
    }
    assert!(archive.flush_blocking(Duration::from_secs(10)));
    let before = archive.range(&key, 0, i64::MAX);
    assert_eq!(before.len(), 6);
    let marked: Vec<bool> = before.iter().map(|s| s.name.is_provisional()).collect();
    assert_eq!(marked, [true, true, false, false, false, false]);
    // Named with the digest of their bytes.
    let first = before[0].name;
    let bytes = std::fs::read(archive.segment_path(&key, &first)).unwrap();
    assert_eq!(first.provisional, Some(ugc_dvr::archive::digest(&[&bytes])));
    assert!(
        first
            .file_name()
            .ends_with(&format!("p{:016x}.m4s", first.provisional.unwrap())),
        "{first:?}"
    );
    // A peer's provisional copy of the second under another digest: taken
    // only if it beats this one; one whose bytes do not match its name is
    // refused.
    let second = before[1].clone();
    let theirs = b"another cut of the same time".to_vec();
    let their_name = SegmentName {
        provisional: Some(ugc_dvr::archive::digest(&[&theirs])),
        ..second.name
    };
    assert!(
        archive
            .import_segment(
                &key,
                &SegmentName {
                    provisional: Some(1),
                    ..second.name
                },
                &theirs
            )
            .is_err()
    );
    archive.import_segment(&key, &their_name, &theirs).unwrap();
    let now = archive.range(&key, second.name.pdt_ms, second.name.end_ms());
    let beats = their_name.provisional_beats(theirs.len() as u64, &second.name, second.size);
    assert!(!beats, "a shorter copy never beats");
    assert_eq!(now.len(), 1);
    assert_eq!(now[0].name, second.name);
    // A larger one beats it and takes its place.
    let larger = vec![7u8; second.size as usize + 1];
    let larger_name = SegmentName {
        provisional: Some(ugc_dvr::archive::digest(&[&larger])),
        ..second.name
    };
    archive.import_segment(&key, &larger_name, &larger).unwrap();
    let now = archive.range(&key, second.name.pdt_ms, second.name.end_ms());
    assert_eq!(now.len(), 1);
    assert_eq!(now[0].name, larger_name);
    assert!(!archive.segment_path(&key, &second.name).exists());
    // The peer's own copy of the first segment: same name, not provisional.
    let copy = first.settled();
    archive
        .import_segment(&key, &copy, b"the peer's bytes")
        .unwrap();
    let after = archive.range(&key, 0, i64::MAX);
    assert_eq!(after.len(), 6);
    assert_eq!(after[0].name, copy);
    assert!(!archive.segment_path(&key, &first).exists());
    assert_eq!(archive.stats().segments_replaced.load(Ordering::Relaxed), 2);
    // A player holding the provisional name gets the copy.
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let served = rt.block_on(archive.segment_file(&key, &first)).unwrap();
    assert_eq!(std::fs::read(served).unwrap(), b"the peer's bytes");
    // The same seconds of the same timeline recorded provisionally again
    // (another restart): the copy stays, nothing is added.
    let mut r2 = archive
        .recorder_as(&stream, u64::try_from(first.session).unwrap())
        .unwrap();
    for (o, live) in held(&outs, 1) {
        r2.on_output(&o, live);
    }
    assert!(archive.flush_blocking(Duration::from_secs(10)));
    let again = archive.range(&key, 0, i64::MAX);
    assert_eq!(again[0].name, copy);
    assert!(
        again
            .iter()
            .all(|s| s.name.pdt_ms != first.pdt_ms || s.name == copy),
        "{again:?}"
    );
    drop(archive);
    let reopened = Archive::open(ArchiveConfig::new(&dir.0, 2)).unwrap();
    let names: Vec<SegmentName> = reopened
        .range(&key, 0, first.end_ms())
        .iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, [copy]);
    // Another timeline's provisional segment of that time is other media:
    // recorded beside the copy, which keeps its place.
    let mut r3 = reopened.recorder(&stream).unwrap();
    for (o, live) in held(&outs, 1) {
        r3.on_output(&o, live);
    }
    assert!(reopened.flush_blocking(Duration::from_secs(10)));
    let both = reopened.range(&key, first.pdt_ms, first.end_ms());
    assert!(both.iter().any(|s| s.name == copy), "{both:?}");
    assert!(
        both.iter()
            .any(|s| s.name.is_provisional() && s.name.session == r3.session()),
        "{both:?}"
    );
}

#[test]
fn write_errors_pause_recording_and_it_resumes() {
    let dir = Dir::new("full");
    let mut cfg = ArchiveConfig::new(&dir.0, 1);
    cfg.pause_on_error = Duration::from_millis(300);
    let archive = Archive::open(cfg).unwrap();
    let key = TrackKey::source(&path("live/b"));
    // The stream's directory cannot be created: every write fails, like a
    // full disk.
    std::fs::create_dir_all(dir.0.join("live")).unwrap();
    std::fs::write(dir.0.join("live/b"), b"not a directory").unwrap();
    let outs = outputs(20, now_unix_ms() - 60_000);
    record(&archive, "live/b", &outs);
    let status = archive.status(&key);
    assert!(status.paused.is_some(), "{status:?}");
    // One failed attempt, then the pause drops segments without touching
    // the disk (no busy loop).
    assert_eq!(archive.stats().write_errors.load(Ordering::Relaxed), 1);
    assert_eq!(archive.stats().segments_dropped.load(Ordering::Relaxed), 10);
    // Space again; after the pause the next session records.
    std::fs::remove_file(dir.0.join("live/b")).unwrap();
    std::thread::sleep(Duration::from_millis(350));
    record(&archive, "live/b", &outputs(6, now_unix_ms() - 10_000));
    assert_eq!(archive.status(&key).paused, None);
    assert_eq!(archive.range(&key, 0, i64::MAX).len(), 3);
}

fn entry(stream: &str, pdt: i64, size: u64) -> (TrackKey, ArchivedSegment) {
    (
        TrackKey::source(&path(stream)),
        ArchivedSegment {
            name: SegmentName {
                pdt_ms: pdt,
                duration_ms: 2000,
                dts_ms: 0,
                session: 1,
                msn: 0,
                init: 0,
                discontinuity: false,
                provisional: None,
            },
            size,
            location: Location::Local,
        },
    )
}

#[test]
fn retention_by_depth_then_by_total_size_oldest_first() {
    let hour = 3_600_000;
    let now = 100 * hour;
    let mut index: HashMap<TrackKey, TrackIndex> = HashMap::new();
    // a: 3 h deep, 1 segment per 10 min; b: same, starting 5 min later.
    for (stream, offset) in [("live/a", 0), ("live/b", 5 * 60_000)] {
        for i in 0..18 {
            let (k, s) = entry(stream, now - 3 * hour + offset + i * 600_000, 100);
            let t = index.entry(k).or_default();
            t.local_bytes += s.size;
            t.segments.push_back(s);
        }
    }
    let depth = |s: &ugc_core::StreamPath| if s.as_str() == "live/a" { 1 } else { 2 };
    let plan = plan_retention(&index, &depth, None, &HashSet::new(), now);
    let a = plan
        .segments
        .iter()
        .filter(|(k, _)| k.stream.as_str() == "live/a")
        .count();
    let b = plan
        .segments
        .iter()
        .filter(|(k, _)| k.stream.as_str() == "live/b")
        .count();
    // a keeps the last hour (6 segments ending after now-1h), b two hours.
    assert_eq!((a, b), (12, 6));
    // Size cap: 3600 bytes total, cap 1000: the oldest go first, across
    // streams, alternating a/b by age.
    let plan = plan_retention(&index, &|_| 0, Some(1000), &HashSet::new(), now);
    assert_eq!(plan.segments.len(), 26);
    let pdts: Vec<i64> = plan.segments.iter().map(|(_, s)| s.name.pdt_ms).collect();
    let mut sorted = pdts.clone();
    sorted.sort();
    assert_eq!(pdts, sorted, "oldest first");
    // Depth 0 keeps everything (recording off does not delete).
    let plan = plan_retention(&index, &|_| 0, None, &HashSet::new(), now);
    assert!(plan.segments.is_empty());
}

/// Objects of the remote tier go only when depth dropped every segment in
/// them: one straddling the horizon stays, and the local size bound never
/// deletes one.
#[test]
fn retention_expires_remote_objects_by_depth_only() {
    let hour = 3_600_000;
    let now = 100 * hour;
    let mut index: HashMap<TrackKey, TrackIndex> = HashMap::new();
    // Session 1 (object o1): 3 h ago for 20 min. Session 2 (o2): from
    // 70 min ago for 20 min (straddles a 1 h horizon). Session 3: local,
    // 10 min ago.
    for (session, object, from, count) in [
        (1, Some("o1"), now - 3 * hour, 10),
        (2, Some("o2"), now - 70 * 60_000, 10),
        (3, None, now - 10 * 60_000, 3),
    ] {
        for i in 0..count {
            let (k, mut s) = entry("live/r", from + i * 120_000, 100);
            s.name.session = session;
            s.name.msn = i as u64;
            if let Some(o) = object {
                s.location = Location::Remote {
                    object: o.into(),
                    offset: i as u64 * 100,
                };
            }
            let t = index.entry(k).or_default();
            if s.location == Location::Local {
                t.local_bytes += s.size;
            }
            t.segments.push_back(s);
        }
    }
    let plan = plan_retention(&index, &|_| 1, None, &HashSet::new(), now);
    let objects: Vec<(i64, &str)> = plan.objects.iter().map(|(_, s, o)| (*s, &**o)).collect();
    assert_eq!(objects, vec![(1, "o1")]);
    // o2's segments before the horizon go from the index, the object stays.
    assert!(plan.segments.iter().any(|(_, s)| s.name.session == 2));
    // Size pressure (cap 0) drops local and older remote entries from the
    // index, never an object.
    let plan = plan_retention(&index, &|_| 0, Some(0), &HashSet::new(), now);
    assert!(!plan.segments.is_empty());
    assert!(plan.objects.is_empty());
}

#[test]
fn retention_deletes_files_past_the_depth() {
    let dir = Dir::new("depth");
    let archive = Archive::open(ArchiveConfig::new(&dir.0, 1)).unwrap();
    let key = TrackKey::source(&path("live/c"));
    // Two hours ago: past the 1 h depth, removed as soon as retention runs.
    record(
        &archive,
        "live/c",
        &outputs(10, now_unix_ms() - 2 * 3_600_000),
    );
    archive.sweep();
    assert!(archive.flush_blocking(Duration::from_secs(5)));
    assert!(archive.range(&key, 0, i64::MAX).is_empty());
    let left: Vec<_> = std::fs::read_dir(dir.0.join("live/c/src"))
        .unwrap()
        .flatten()
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert_eq!(archive.local_bytes(), 0);
}

#[test]
fn export_puts_moov_first_and_reads_any_range() {
    let dir = Dir::new("export");
    let archive = Archive::open(ArchiveConfig::new(&dir.0, 1)).unwrap();
    let key = TrackKey::source(&path("live/d"));
    let outs = outputs(20, now_unix_ms() - 60_000);
    record(&archive, "live/d", &outs);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let plan = rt.block_on(archive.plan_export(&key, 0, i64::MAX)).unwrap();
    let plan = Arc::new(plan);
    assert!(plan.moov_offset < plan.mdat_offset);
    assert!(
        (plan.duration_ms as i64 - 20_000).abs() <= 100,
        "{}",
        plan.duration_ms
    );
    let mut all = Vec::new();
    plan.write_to(&mut all, |_| {}).unwrap();
    assert_eq!(all.len() as u64, plan.len);
    // The file-to-file path writes the same bytes.
    let out_path = dir.0.join("out.mp4");
    let mut f = std::fs::File::create(&out_path).unwrap();
    assert_eq!(plan.write_file(&mut f, |_| {}).unwrap(), plan.len);
    drop(f);
    assert!(std::fs::read(&out_path).unwrap() == all);
    // The mdat holds every frame payload exactly once, in order.
    let payload_bytes: usize = outs
        .iter()
        .filter_map(|o| match o {
            SegmenterOutput::Segment(s) => {
                Some(s.frames.iter().map(|f| f.data.len()).sum::<usize>())
            }
            _ => None,
        })
        .sum();
    assert_eq!(all.len() - plan.header.len(), payload_bytes);
    // Any sub-range equals the same bytes of the whole.
    use std::io::Read as _;
    for (a, b) in [
        (0u64, 10u64),
        (30, 700),
        (plan.len - 5, plan.len),
        (plan.mdat_offset + 3, plan.len - 2),
    ] {
        let mut buf = Vec::new();
        plan.reader(a, b).read_to_end(&mut buf).unwrap();
        assert_eq!(buf, all[a as usize..b as usize], "{a}..{b}");
    }
}

#[test]
fn recordings_group_renditions_by_event_and_delete_removes_one() {
    let dir = Dir::new("recordings");
    let archive = Archive::open(ArchiveConfig::new(&dir.0, 2)).unwrap();
    let stream = path("live/r");
    let t0 = now_unix_ms() - 3_600_000;
    // Event 1: the source and a ladder rung starting a moment later.
    record(&archive, "live/r", &outputs(20, t0));
    record(&archive, "live/r/720p", &outputs(18, t0 + 1_500));
    // Event 2, ten minutes later, source only.
    let t1 = t0 + 600_000;
    record(&archive, "live/r", &outputs(10, t1));
    // Another stream is not listed.
    record(&archive, "live/other", &outputs(10, t0));
    let recs = archive.recordings(&stream);
    assert_eq!(recs.len(), 2, "{recs:#?}");
    let (second, first) = (&recs[0], &recs[1]);
    assert_eq!(first.renditions(), vec!["720p", "src"]);
    assert_eq!(second.renditions(), vec!["src"]);
    assert!(first.start_ms >= t0 && first.start_ms < t0 + 1_000);
    assert!((first.duration_ms() - 20_000).abs() <= 2_000, "{first:?}");
    assert!((second.duration_ms() - 10_000).abs() <= 2_000, "{second:?}");
    assert!(!first.recording() && !second.recording());
    assert_eq!(first.stored(), ugc_dvr::archive::Stored::Local);
    let on_disk = |r: &str| {
        std::fs::read_dir(dir.0.join("live/r").join(r))
            .map(|d| d.flatten().count())
            .unwrap_or(0)
    };
    assert_eq!(on_disk("720p"), 9 + 1, "segments and the init segment");
    let before = archive.local_bytes();

    let gone = archive.delete_recording(&stream, first.id).unwrap();
    assert_eq!(gone.id, first.id);
    // The archive's local total counts segments; the recording's size
    // also its two init segments.
    let freed = before - archive.local_bytes();
    assert!(freed > 0 && freed < first.bytes() && first.bytes() - freed < 8_000);
    let left = archive.recordings(&stream);
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].id, second.id);
    assert_eq!(on_disk("720p"), 0);
    assert_eq!(on_disk("src"), 5 + 1, "only event 2 is left");
    assert_eq!(archive.recordings(&path("live/other")).len(), 1);
    assert_eq!(
        archive.stats().recordings_deleted.load(Ordering::Relaxed),
        1
    );
    assert!(matches!(
        archive.delete_recording(&stream, first.id),
        Err(ugc_dvr::archive::DeleteRecordingError::NotFound)
    ));
    // After a restart the index (rebuilt from the files) agrees.
    drop(archive);
    let archive = Archive::open(ArchiveConfig::new(&dir.0, 2)).unwrap();
    let again = archive.recordings(&stream);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].id, second.id);
}

#[test]
fn a_recording_still_running_is_listed_but_not_deleted() {
    let dir = Dir::new("recording-live");
    let archive = Archive::open(ArchiveConfig::new(&dir.0, 2)).unwrap();
    let stream = path("live/l");
    let outs = outputs(10, now_unix_ms() - 20_000);
    let mut r = archive.recorder(&stream).unwrap();
    // Everything but the end: the stream is still live.
    for o in outs.iter().filter(|o| !matches!(o, SegmenterOutput::Ended)) {
        r.on_output(o, true);
    }
    assert!(archive.flush_blocking(Duration::from_secs(10)));
    let recs = archive.recordings(&stream);
    assert_eq!(recs.len(), 1);
    assert!(recs[0].recording());
    assert!(matches!(
        archive.delete_recording(&stream, recs[0].id),
        Err(ugc_dvr::archive::DeleteRecordingError::Recording)
    ));
    assert_eq!(archive.recordings(&stream).len(), 1);
    drop(r);
}

#[test]
fn a_deleted_span_takes_every_overlapping_event_and_is_remembered() {
    let dir = Dir::new("delete-span");
    let stream = path("live/s");
    let t0 = now_unix_ms() - 3_600_000;
    {
        let archive = Archive::open(ArchiveConfig::new(&dir.0, 2)).unwrap();
        record(&archive, "live/s", &outputs(10, t0));
        record(&archive, "live/s", &outputs(10, t0 + 600_000));
        let first = archive.recordings(&stream)[1].clone();
        // Another origin's copy of the first event started a second later
        // and ended a second earlier: its span still takes this one whole.
        let n = archive
            .delete_span(&stream, first.start_ms + 1_000, first.end_ms - 1_000)
            .unwrap();
        assert_eq!(n, 1);
        let left = archive.recordings(&stream);
        assert_eq!(left.len(), 1);
        assert!(left[0].start_ms >= t0 + 600_000);
        // The remembered span covers the whole event deleted here.
        assert_eq!(
            archive.deleted_spans(&stream),
            vec![(first.start_ms, first.end_ms)]
        );
        assert!(archive.deleted_spans(&path("live/other")).is_empty());
        // Nothing overlapping: nothing deleted, the span is remembered.
        assert_eq!(
            archive
                .delete_span(&stream, t0 + 200_000, t0 + 300_000)
                .unwrap(),
            0
        );
        assert_eq!(archive.deleted().len(), 2);
    }
    // Deletions survive a restart (`.deleted` at the archive root).
    let archive = Archive::open(ArchiveConfig::new(&dir.0, 2)).unwrap();
    assert_eq!(archive.deleted_spans(&stream).len(), 2);
    assert_eq!(archive.recordings(&stream).len(), 1);
}
