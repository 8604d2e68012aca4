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
        provisional: None,
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
        recording: None,
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
            recording: None,
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
        recording: None,
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

/// Marks the segments of `t` starting in `[from, to)` provisional with
/// `digest` and `size`.
fn provisional(t: &mut TrackIndex, from: i64, to: i64, digest: u64, size: u64) {
    for s in t.segments.iter_mut() {
        if (from..to).contains(&s.name.pdt_ms) {
            s.name.provisional = Some(digest);
            s.size = size;
        }
    }
}

/// Fetches `plan` into `t` as the adapter does: each segment replaces what
/// it beats.
fn apply(t: &mut TrackIndex, plan: &Plan) -> usize {
    let mut replaced = 0;
    for f in &plan.fetch {
        match *f {
            PeerFile::Init { session, n, size } => {
                t.inits.insert(
                    (session, n),
                    ArchivedInit {
                        size,
                        location: Location::Local,
                    },
                );
            }
            PeerFile::Segment { name, size } => {
                replaced += t.take_replaced(&name, size).len();
                t.insert(ArchivedSegment {
                    name,
                    size,
                    location: Location::Local,
                });
            }
        }
    }
    replaced
}

/// What an origin lists of `t`.
fn listing(t: &TrackIndex) -> Vec<PeerFile> {
    let mut v: Vec<PeerFile> = t
        .inits
        .iter()
        .map(|(&(session, n), i)| PeerFile::Init {
            session,
            n,
            size: i.size,
        })
        .collect();
    v.extend(t.segments.iter().map(|s| PeerFile::Segment {
        name: s.name,
        size: s.size,
    }));
    v
}

fn fetched_ms(plan: &Plan) -> Vec<i64> {
    plan.fetch
        .iter()
        .filter_map(|f| match f {
            PeerFile::Segment { name, .. } => Some(name.pdt_ms - T0),
            PeerFile::Init { .. } => None,
        })
        .collect()
}

#[test]
fn provisional_segments_give_way_to_a_settled_or_a_better_copy() {
    let w = Window {
        from_ms: 0,
        settle_before_ms: i64::MAX,
        recording: None,
    };
    // Both hold 0..20 s under the same names. Here: 10..14 s provisional
    // (cut after a restart), 16..18 s and 18..20 s provisional too. There:
    // 0..4 s provisional (the stream's start), 16..20 s provisional,
    // of the same size as here.
    let mut a = local(T0, T0, T0 + 20_000);
    provisional(&mut a, T0 + 10_000, T0 + 14_000, 5, 1000);
    provisional(&mut a, T0 + 16_000, T0 + 18_000, 9, 1000);
    provisional(&mut a, T0 + 18_000, T0 + 20_000, 1, 1000);
    let mut b = local(T0, T0, T0 + 20_000);
    provisional(&mut b, T0, T0 + 4_000, 7, 1000);
    provisional(&mut b, T0 + 16_000, T0 + 20_000, 3, 1000);
    // Here takes there's own copies of 10..14 s and its 16..18 s (digest 3
    // beats 9); never a provisional copy over a settled one (0..4 s), nor
    // one it beats (18..20 s: 1 beats 3).
    let plan_a = plan(Some(&a), &listing(&b), w, u64::MAX);
    assert_eq!(fetched_ms(&plan_a), [10_000, 12_000, 16_000]);
    // There takes here's 18..20 s and its settled 0..4 s.
    let plan_b = plan(Some(&b), &listing(&a), w, u64::MAX);
    assert_eq!(fetched_ms(&plan_b), [0, 2_000, 18_000]);
    assert_eq!(apply(&mut a, &plan_a), 3);
    assert_eq!(apply(&mut b, &plan_b), 3);
    // One copy of every second at both, the same.
    assert_eq!(listing(&a), listing(&b));
    assert_eq!(a.segments.len(), 10);
    assert_eq!(plan(Some(&a), &listing(&b), w, u64::MAX), Plan::default());
    // A larger provisional copy beats whatever its digest.
    let mut c = local(T0, T0, T0 + 2_000);
    provisional(&mut c, T0, T0 + 2_000, 0, 900);
    let mut a2 = a.clone();
    provisional(&mut a2, T0, T0 + 2_000, 2, 1000);
    // (c holds only 0..2 s: it fetches the rest of a2 either way.)
    assert!(fetched_ms(&plan(Some(&c), &listing(&a2), w, u64::MAX)).contains(&0));
    assert!(plan(Some(&a2), &listing(&c), w, u64::MAX).fetch.is_empty());
    provisional(&mut c, T0, T0 + 2_000, 0, 1100);
    assert!(!fetched_ms(&plan(Some(&c), &listing(&a2), w, u64::MAX)).contains(&0));
    assert_eq!(fetched_ms(&plan(Some(&a2), &listing(&c), w, u64::MAX)), [0]);
    // Another timeline's settled segment of that time is other media: a
    // provisional one here stays.
    let mut other = local(T0 + 1, T0, T0 + 20_000);
    for s in other.segments.iter_mut() {
        s.name.session = T0 + 1;
    }
    let mut d = local(T0, T0, T0 + 20_000);
    provisional(&mut d, T0 + 10_000, T0 + 12_000, 4, 1000);
    assert!(
        !fetched_ms(&plan(Some(&d), &listing(&other), w, u64::MAX)).contains(&10_000),
        "another session's copy never replaces"
    );
    // A provisional segment already in the remote tier stays (its bytes
    // are in an uploaded object).
    let mut remote = local(T0, T0, T0 + 20_000);
    provisional(&mut remote, T0, T0 + 20_000, 9, 1000);
    for s in remote.segments.iter_mut() {
        s.location = Location::Remote {
            object: "o".into(),
            offset: 0,
        };
    }
    assert!(
        plan(Some(&remote), &listing(&b), w, u64::MAX)
            .fetch
            .is_empty()
    );
}

#[test]
fn a_round_is_bounded_in_bytes_and_segments_without_an_init_are_left() {
    let mut p = peer(T0, T0, T0 + 20_000);
    let w = Window {
        from_ms: 0,
        settle_before_ms: i64::MAX,
        recording: None,
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
                (SegmentName { pdt_ms, duration_ms, dts_ms, session, msn, init, discontinuity, provisional: None }, size)
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
        let w = Window { from_ms: T0, settle_before_ms: T0 + settle * 1000, recording: None };
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

    /// Two origins with the same cuts, any of whose segments provisional
    /// (digests drawn from few values, so ties happen): after
    /// each fetched the other's plan (rounds in turn), their listings are
    /// the same over the time both hold, no time is listed twice, and a
    /// further round fetches nothing.
    #[test]
    fn two_origins_settle_on_one_copy_of_every_second(
        a_from in 0i64..10, a_len in 0i64..20, b_from in 0i64..10, b_len in 0i64..20,
        a_prov in proptest::collection::vec(proptest::option::of(0u64..4), 20),
        b_prov in proptest::collection::vec(proptest::option::of(0u64..4), 20),
    ) {
        // The digest stands for the bytes, so it decides the size: 0 and 1
        // tie in size, 2 and 3 are larger.
        let mark = |t: &mut TrackIndex, prov: &[Option<u64>]| {
            for (s, p) in t.segments.iter_mut().zip(prov) {
                if let Some(digest) = *p {
                    s.name.provisional = Some(digest);
                    s.size = 1000 + digest / 2;
                }
            }
        };
        let mut a = local(T0, T0 + a_from * 2000, T0 + (a_from + a_len) * 2000);
        let mut b = local(T0, T0 + b_from * 2000, T0 + (b_from + b_len) * 2000);
        // The same cut of the same time: the same segment number at both.
        mark(&mut a, &a_prov[..]);
        mark(&mut b, &b_prov[(a_from - b_from).max(0) as usize..]);
        for s in a.segments.iter_mut().chain(b.segments.iter_mut()) {
            s.name.msn = ((s.name.pdt_ms - T0) / 2000) as u64;
            s.name.discontinuity = false;
        }
        let w = Window { from_ms: T0, settle_before_ms: i64::MAX, recording: None };
        for _ in 0..2 {
            let pa = plan(Some(&a), &listing(&b), w, u64::MAX);
            apply(&mut a, &pa);
            let pb = plan(Some(&b), &listing(&a), w, u64::MAX);
            apply(&mut b, &pb);
        }
        prop_assert_eq!(plan(Some(&a), &listing(&b), w, u64::MAX), Plan::default());
        prop_assert_eq!(plan(Some(&b), &listing(&a), w, u64::MAX), Plan::default());
        prop_assert_eq!(listing(&a), listing(&b));
        for t in [&a, &b] {
            let mids: Vec<i64> = t.segments.iter().map(|s| s.name.mid_ms()).collect();
            for (i, s) in t.segments.iter().enumerate() {
                let inside = mids.iter().enumerate()
                    .filter(|&(j, &m)| j != i && s.name.pdt_ms <= m && m < s.name.end_ms())
                    .count();
                prop_assert_eq!(inside, 0, "{:?}", t.segments);
            }
        }
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
            provisional: None,
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

/// An origin that records the track now in session S1 while its peer's
/// copy is session S2 (their timelines parted): the peer's segments past
/// the newest S1 segment are left (this recording covers that time; they
/// are the same stream dated otherwise), those before it still fill a
/// hole; a peer on the same session, or an archive that records nothing
/// now, takes them as before.
#[test]
fn a_live_recordings_time_is_not_filled_from_a_peer_of_another_session() {
    // Local S1: 0..20 s, a hole, 30..40 s, recording now.
    let mut l = local(T0, T0, T0 + 20_000);
    for s in local(T0, T0 + 30_000, T0 + 40_000).segments {
        l.segments.push_back(s);
    }
    let w = |recording| Window {
        from_ms: T0 - 3_600_000,
        settle_before_ms: T0 + 120_000,
        recording,
    };
    // The peer: S2, 0..60 s.
    let other = peer(T0 + 1, T0, T0 + 60_000);
    let p = plan(Some(&l), &other, w(Some(T0)), u64::MAX);
    assert_eq!(fetched_ms(&p), [20_007, 22_007, 24_007, 26_007, 28_007]);
    assert_eq!(p.past_live_edge, 10);
    // Recording nothing now (a replica, or the stream left this origin).
    let p = plan(Some(&l), &other, w(None), u64::MAX);
    assert_eq!(fetched_ms(&p).len(), 15);
    assert_eq!(p.past_live_edge, 0);
    // A peer on the same session (its init the same), ahead of this
    // recording.
    let mut same = peer(T0, T0, T0 + 60_000);
    same[0] = PeerFile::Init {
        session: T0,
        n: 0,
        size: 700,
    };
    let p = plan(Some(&l), &same, w(Some(T0)), u64::MAX);
    assert_eq!(fetched_ms(&p).len(), 15);
    // Recording a session with no segment yet: nothing to judge by.
    let p = plan(Some(&l), &other, w(Some(T0 + 50_000)), u64::MAX);
    assert_eq!(fetched_ms(&p).len(), 15);
}
