use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;
use crate::archive::{ArchivedInit, ArchivedSegment, Location};

fn seg(session: i64, msn: u64, pdt_ms: i64, duration_ms: u32) -> SegmentName {
    SegmentName {
        pdt_ms,
        duration_ms,
        dts_ms: pdt_ms - session,
        session,
        msn,
        init: 0,
        discontinuity: msn == 0,
    }
}

/// A local index of `session` with segments of 2 s from `from` to `to`.
fn local(session: i64, from: i64, to: i64) -> TrackIndex {
    let mut t = TrackIndex::default();
    t.inits.insert(
        (session, 0),
        ArchivedInit {
            size: 700,
            location: Location::Local,
        },
    );
    let mut at = from;
    let mut msn = 0;
    while at < to {
        t.segments.push_back(ArchivedSegment {
            name: seg(session, msn, at, 2000),
            size: 1000,
            location: Location::Local,
        });
        at += 2000;
        msn += 1;
    }
    t
}

/// A peer listing of `session`: 2 s segments from `from` to `to`, offset
/// by a few ms from the local cuts (another origin's wall clock).
fn peer(session: i64, from: i64, to: i64) -> Vec<PeerFile> {
    let mut v = vec![PeerFile::Init {
        session,
        n: 0,
        size: 800,
    }];
    let mut at = from;
    let mut msn = 0;
    while at < to {
        v.push(PeerFile::Segment {
            name: seg(session, msn, at + 7, 2000),
            size: 1500,
        });
        at += 2000;
        msn += 1;
    }
    v
}

const T0: i64 = 1_800_000_000_000;

#[test]
fn a_hole_is_filled_with_the_peers_segments_and_their_init_first() {
    // Local: 0..20 s, then 40..60 s (down for 20 s). Peer: 0..60 s.
    let mut l = local(T0, T0, T0 + 20_000);
    for s in local(T0 + 40_000, T0 + 40_000, T0 + 60_000).segments {
        l.segments.push_back(s);
    }
    let p = peer(T0 - 5, T0, T0 + 60_000);
    let w = Window {
        from_ms: T0 - 3_600_000,
        settle_before_ms: T0 + 120_000,
    };
    let plan = plan(Some(&l), &p, w, u64::MAX);
    assert_eq!(plan.conflicts, 0);
    assert!(matches!(plan.fetch[0], PeerFile::Init { session, .. } if session == T0 - 5));
    let got: Vec<i64> = plan.fetch[1..]
        .iter()
        .map(|f| match f {
            PeerFile::Segment { name, .. } => name.pdt_ms - T0,
            PeerFile::Init { .. } => panic!("one init only"),
        })
        .collect();
    // The local segment 18..20 s covers 18.007..20.007's midpoint; the
    // peer's 38.007..40.007 has its midpoint at 39.007, not covered.
    assert_eq!(got, (10..20).map(|i| i * 2000 + 7).collect::<Vec<_>>());
    assert_eq!(plan.bytes, 800 + 10 * 1500);
    // Once fetched, nothing more to do.
    let mut after = l.clone();
    for f in &plan.fetch {
        if let PeerFile::Segment { name, size } = *f {
            let at = after.segments.partition_point(|s| s.name <= name);
            after.segments.insert(
                at,
                ArchivedSegment {
                    name,
                    size,
                    location: Location::Local,
                },
            );
        }
    }
    after.inits.insert(
        (T0 - 5, 0),
        ArchivedInit {
            size: 800,
            location: Location::Local,
        },
    );
    assert_eq!(super::plan(Some(&after), &p, w, u64::MAX), Plan::default());
    assert!(holes(Some(&after), T0, T0 + 60_000, 1000).is_empty());
    assert_eq!(
        holes(Some(&l), T0, T0 + 60_000, 1000),
        vec![(T0 + 20_000, T0 + 40_000)]
    );
}

#[test]
fn the_live_edge_and_what_is_past_the_depth_are_left() {
    let p = peer(T0, T0, T0 + 60_000);
    let plan = plan(
        None,
        &p,
        Window {
            from_ms: T0 + 10_000,
            settle_before_ms: T0 + 50_000,
        },
        u64::MAX,
    );
    let segs: Vec<_> = plan
        .fetch
        .iter()
        .filter_map(|f| match f {
            PeerFile::Segment { name, .. } => Some(name.pdt_ms),
            PeerFile::Init { .. } => None,
        })
        .collect();
    assert_eq!(segs.first(), Some(&(T0 + 10_007)));
    assert!(segs.iter().all(|&p| p + 2000 <= T0 + 50_000));
    assert_eq!(segs.len(), 19);
}

#[test]
fn an_init_of_another_size_under_the_same_name_is_never_mixed() {
    let l = local(T0, T0, T0 + 2000);
    let mut p = peer(T0, T0 + 10_000, T0 + 20_000);
    // The peer's session id is the local one (same ms), init size differs.
    let w = Window {
        from_ms: 0,
        settle_before_ms: i64::MAX,
    };
    let plan1 = plan(Some(&l), &p, w, u64::MAX);
    assert!(plan1.fetch.is_empty());
    assert_eq!(plan1.conflicts, 5);
    // Same size: the local init serves, only segments are fetched.
    p[0] = PeerFile::Init {
        session: T0,
        n: 0,
        size: 700,
    };
    let plan2 = plan(Some(&l), &p, w, u64::MAX);
    assert_eq!(plan2.fetch.len(), 5);
    assert!(
        plan2
            .fetch
            .iter()
            .all(|f| matches!(f, PeerFile::Segment { .. }))
    );
}

#[test]
fn a_round_is_bounded_in_bytes_and_segments_without_an_init_are_left() {
    let mut p = peer(T0, T0, T0 + 20_000);
    let w = Window {
        from_ms: 0,
        settle_before_ms: i64::MAX,
    };
    let plan1 = plan(None, &p, w, 4000);
    // The init (800) and two segments (1500 each) fit in 4000.
    assert_eq!(plan1.fetch.len(), 3);
    assert_eq!(plan1.bytes, 3800);
    p.remove(0);
    assert!(plan(None, &p, w, u64::MAX).fetch.is_empty());
}

#[test]
fn listings_parse_strictly() {
    let n = seg(T0, 3, T0 + 6000, 2002);
    let text = render_listing(&[(T0, 0, 812)], &[(n, 123_456)]);
    assert_eq!(
        parse_listing(&text).unwrap(),
        vec![
            PeerFile::Init {
                session: T0,
                n: 0,
                size: 812
            },
            PeerFile::Segment {
                name: n,
                size: 123_456
            }
        ]
    );
    for bad in [
        "x 1",
        "i1_0.mp4",
        "i1_0.mp4 -1",
        "i1_0.mp4 1 2",
        "i1_0.mp4 +1",
        "i1_0.mp4  1",
        "../i1_0.mp4 1",
        "i1_0.mp4 99999999999999999999999",
    ] {
        assert_eq!(parse_listing(bad), Err(ListingError::BadLine(1)), "{bad}");
    }
    assert_eq!(parse_listing("\n\n").unwrap(), vec![]);
    let long = "i1_0.mp4 1\n".repeat(MAX_LISTING_LINES + 1);
    assert_eq!(parse_listing(&long), Err(ListingError::TooLong));
}

#[test]
fn track_listings_name_streams_and_renditions() {
    let s = ugc_core::StreamPath::new("live", "foo").unwrap();
    let keys = [
        TrackKey::source(&s),
        TrackKey::rendition(&s, "720p").unwrap(),
    ];
    let text: String = keys.iter().map(render_track).collect();
    assert_eq!(text, "live/foo src\nlive/foo 720p\n");
    assert_eq!(parse_tracks(&text), keys.to_vec());
    assert!(parse_tracks("live/foo/720p src\nnope\nlive/../x src\n").is_empty());
}

#[test]
fn the_pacer_holds_the_rate() {
    let t = Instant::now();
    let mut p = Pacer::new(1_000_000);
    assert_eq!(p.reserve(t, 500_000), Duration::ZERO);
    assert_eq!(p.reserve(t, 500_000), Duration::from_millis(500));
    assert_eq!(p.reserve(t, 1), Duration::from_secs(1));
    // Idle time earns no burst.
    let later = t + Duration::from_secs(10);
    assert_eq!(p.reserve(later, 2_000_000), Duration::ZERO);
    assert_eq!(p.reserve(later, 1), Duration::from_secs(2));
    assert_eq!(Pacer::new(0).reserve(t, u64::MAX), Duration::ZERO);
    // A size no file has (a peer's listing) books a bounded time.
    let mut p = Pacer::new(1);
    assert_eq!(p.reserve(t, u64::MAX), Duration::ZERO);
    assert_eq!(p.reserve(t, 1), MAX_BOOKING);
}

proptest! {
    #[test]
    fn any_listing_round_trips(
        inits in proptest::collection::vec((any::<i64>(), any::<u32>(), any::<u64>()), 0..4),
        segs in proptest::collection::vec(
            (any::<i64>(), any::<u32>(), any::<i64>(), any::<i64>(), any::<u64>(), any::<u32>(), any::<bool>(), any::<u64>()),
            0..8,
        ),
    ) {
        let segments: Vec<(SegmentName, u64)> = segs
            .iter()
            .map(|&(pdt_ms, duration_ms, dts_ms, session, msn, init, discontinuity, size)| {
                (SegmentName { pdt_ms, duration_ms, dts_ms, session, msn, init, discontinuity }, size)
            })
            .collect();
        let text = render_listing(&inits, &segments);
        let parsed = parse_listing(&text).unwrap();
        let want: Vec<PeerFile> = inits
            .iter()
            .map(|&(session, n, size)| PeerFile::Init { session, n, size })
            .chain(segments.iter().map(|&(name, size)| PeerFile::Segment { name, size }))
            .collect();
        prop_assert_eq!(parsed, want);
    }

    #[test]
    fn any_text_parses_or_errs(text in ".{0,300}") {
        if let Ok(files) = parse_listing(&text) {
            let again: String = files.iter().map(|f| format!("{} {}\n", f.file_name(), f.size())).collect();
            prop_assert_eq!(parse_listing(&again).unwrap(), files);
        }
    }

    /// Whatever the peer lists, after fetching the plan (unbounded) the
    /// plan is empty, and every fetched segment's init is local or fetched
    /// before it.
    #[test]
    fn a_plan_once_fetched_leaves_nothing(
        local_from in 0i64..30, local_len in 0i64..30, peer_from in 0i64..30, peer_len in 0i64..40,
        settle in 0i64..80,
    ) {
        let l = local(T0, T0 + local_from * 1000, T0 + (local_from + local_len) * 1000);
        let p = peer(T0 + 1, T0 + peer_from * 1000, T0 + (peer_from + peer_len) * 1000);
        let w = Window { from_ms: T0, settle_before_ms: T0 + settle * 1000 };
        let first = plan(Some(&l), &p, w, u64::MAX);
        let mut after = l.clone();
        for f in &first.fetch {
            match *f {
                PeerFile::Init { session, n, size } => {
                    after.inits.insert((session, n), ArchivedInit { size, location: Location::Local });
                }
                PeerFile::Segment { name, size } => {
                    prop_assert!(after.inits.contains_key(&(name.session, name.init)));
                    prop_assert!(name.end_ms() <= w.settle_before_ms);
                    let at = after.segments.partition_point(|s| s.name <= name);
                    after.segments.insert(at, ArchivedSegment { name, size, location: Location::Local });
                }
            }
        }
        prop_assert_eq!(plan(Some(&after), &p, w, u64::MAX), Plan::default());
    }
}

#[test]
fn deleted_spans_round_trip_and_keep_their_segments_out() {
    let stream = ugc_core::StreamPath::parse("live/show").unwrap();
    let text = format!(
        "{}garbage\nlive/x 5 5\nlive/show/720p 1 2\n{}",
        render_deleted(&stream, 1_000, 9_000),
        render_deleted(&stream, 20_000, 30_000)
    );
    assert_eq!(
        parse_deleted(&text),
        vec![(stream.clone(), 1_000, 9_000), (stream, 20_000, 30_000)]
    );
    let seg = |pdt: i64| PeerFile::Segment {
        name: SegmentName {
            pdt_ms: pdt,
            duration_ms: 2000,
            dts_ms: 0,
            session: 1,
            msn: 0,
            init: 0,
            discontinuity: false,
        },
        size: 10,
    };
    let init = PeerFile::Init {
        session: 1,
        n: 0,
        size: 5,
    };
    let files = vec![init, seg(0), seg(7_000), seg(8_500), seg(12_000)];
    // Midpoints 1000 (in), 8000 (in), 9500 (out), 13000 (out).
    assert_eq!(
        without_deleted(files.clone(), &[(1_000, 9_000)]),
        vec![init, seg(8_500), seg(12_000)]
    );
    assert_eq!(without_deleted(files.clone(), &[]), files);
}
