//! Main/backup/fallback sources of one Hub stream, on simulated time: which
//! source readers get, when the stream switches, and that timestamps go on
//! across every switch.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use proptest::prelude::*;
use ugc_core::hub::tests_support::av_tracks;
use ugc_core::{
    Error, Frame, Hub, HubConfig, HubPublisher, HubReader, MediaEvent, SourceRole, StreamPath,
    TrackId, Tracks,
};

const GOP_MS: i64 = 2000;
const VIDEO_MS: i64 = 40;
const AUDIO_MS: i64 = 23;

/// A simulated encoder: 25 fps video with a keyframe every 2 s and AAC-like
/// audio, its own clock starting at `base`; every payload starts with
/// `marker` so the test knows which source a frame came from.
struct Encoder {
    publisher: HubPublisher,
    marker: u8,
    base: i64,
    /// Media time sent so far, ms.
    next_video: i64,
    next_audio: i64,
}

impl Encoder {
    fn start(hub: &Hub, role: SourceRole, marker: u8, base: i64, tracks: Tracks) -> Self {
        Self::start_at(hub, role, marker, base, tracks, Instant::now())
    }

    fn start_at(
        hub: &Hub,
        role: SourceRole,
        marker: u8,
        base: i64,
        tracks: Tracks,
        now: Instant,
    ) -> Self {
        let mut publisher = hub.publish_at(&stream(), role, now);
        publisher.push(MediaEvent::Tracks(tracks)).unwrap();
        Encoder {
            publisher,
            marker,
            base,
            next_video: 0,
            next_audio: 0,
        }
    }

    /// Sends what the encoder produced up to `elapsed` of its own run, at
    /// wall time `now`, interleaved by timestamp.
    fn run_until(&mut self, elapsed: i64, now: Instant) -> Result<(), Error> {
        loop {
            let video_due = self.next_video <= elapsed;
            let audio_due = self.next_audio <= elapsed;
            let take_video = match (video_due, audio_due) {
                (false, false) => return Ok(()),
                (true, false) => true,
                (false, true) => false,
                (true, true) => self.next_video <= self.next_audio,
            };
            let (track, t, key) = if take_video {
                let t = self.next_video;
                self.next_video += VIDEO_MS;
                (1, t, t % GOP_MS == 0)
            } else {
                let t = self.next_audio;
                self.next_audio += AUDIO_MS;
                (2, t, true)
            };
            let dts = self.base + t;
            self.publisher.push_at(
                MediaEvent::Frame(Frame {
                    track: TrackId(track),
                    dts,
                    pts: dts,
                    keyframe: key,
                    data: Bytes::from(vec![self.marker; 8]),
                }),
                now,
            )?;
        }
    }
}

fn stream() -> StreamPath {
    StreamPath::parse("live/a").unwrap()
}

fn config() -> HubConfig {
    HubConfig {
        max_gops: 1000,
        max_bytes: 1 << 30,
        ..HubConfig::default()
    }
}

/// What a reader got: frames as (marker, track, dts, keyframe), and the
/// number of discontinuities and of track sets.
#[derive(Default, Debug)]
struct Seen {
    frames: Vec<(u8, u32, i64, bool)>,
    discontinuities: usize,
    track_sets: usize,
}

impl Seen {
    fn take(&mut self, r: &mut HubReader) {
        while let Some(e) = r.try_next() {
            match e {
                MediaEvent::Frame(f) => {
                    // The Hub's own silence (a hole in the audio at a
                    // switch) is marked `S`.
                    let audio = av_tracks().get(f.track).cloned();
                    let silent = audio.and_then(|t| ugc_core::silence::silent_frame(&t));
                    let marker = if silent.is_some_and(|s| s == f.data) {
                        b'S'
                    } else {
                        f.data[0]
                    };
                    self.frames.push((marker, f.track.0, f.dts, f.keyframe));
                }
                MediaEvent::Discontinuity(_) => self.discontinuities += 1,
                MediaEvent::Tracks(_) => self.track_sets += 1,
                _ => {}
            }
        }
    }

    /// Per track, DTS strictly increasing across the whole output.
    fn assert_monotonic(&self) {
        for track in [1, 2] {
            let dts: Vec<i64> = self
                .frames
                .iter()
                .filter(|f| f.1 == track)
                .map(|f| f.2)
                .collect();
            for w in dts.windows(2) {
                assert!(w[1] > w[0], "track {track} goes from {} to {}", w[0], w[1]);
            }
        }
    }

    /// Index of the first frame from `marker` after position `from`.
    fn first_of(&self, marker: u8, from: usize) -> Option<usize> {
        (from..self.frames.len()).find(|&i| self.frames[i].0 == marker)
    }

    /// The video gap (DTS) between the last frame before `i` and frame `i`
    /// on the video track.
    fn video_step_at(&self, i: usize) -> i64 {
        let next = (i..self.frames.len())
            .find(|&j| self.frames[j].1 == 1)
            .unwrap();
        let prev = (0..i).rev().find(|&j| self.frames[j].1 == 1).unwrap();
        self.frames[next].2 - self.frames[prev].2
    }
}

/// Runs `steps` of 10 ms; `f(step, ms)` drives the encoders.
fn simulate(mut f: impl FnMut(i64, Instant)) {
    let t0 = Instant::now();
    for step in 0..10_000 {
        let ms = step * 10;
        f(ms, t0 + Duration::from_millis(ms as u64));
    }
}

#[test]
fn a_silent_main_gives_way_to_the_backup_on_its_keyframe_and_takes_back_over() {
    let hub = Hub::new(config());
    let mut r = hub.subscribe(&stream());
    let mut seen = Seen::default();
    let mut main = Encoder::start(&hub, SourceRole::Main, b'M', 0, av_tracks());
    let mut backup = Encoder::start(&hub, SourceRole::Backup, b'B', 90_000, av_tracks());
    // Main is silent (a stalled encoder, the connection still open) from
    // 10 s to 20 s of wall time.
    simulate(|ms, now| {
        if ms > 60_000 {
            return;
        }
        if !(10_000..20_000).contains(&ms) {
            main.run_until(ms, now).unwrap();
        }
        backup.run_until(ms + 700, now).unwrap();
        seen.take(&mut r);
    });
    seen.assert_monotonic();
    assert_eq!(seen.discontinuities, 0, "same tracks: no discontinuity");
    assert_eq!(seen.track_sets, 1);
    let b = seen.first_of(b'B', 0).expect("the backup went live");
    assert_eq!(seen.frames[b].1, 1, "the backup starts on video");
    assert!(seen.frames[b].3, "on a keyframe");
    // The switch: main's last frame was at 10 s of its media (continuous
    // output), the backup's first keyframe after the 3 s timeout is at most
    // one GOP later in wall time. Output time moves by one frame (at most
    // one of each track: the timeline ends where its last track does).
    assert!(
        seen.video_step_at(b) <= VIDEO_MS + AUDIO_MS,
        "step {}",
        seen.video_step_at(b)
    );
    let m = seen.first_of(b'M', b).expect("main took back over");
    assert!(seen.frames[m].3 && seen.frames[m].1 == 1);
    assert_eq!(
        hub.stats(&stream()).unwrap().source_switches,
        2,
        "once away, once back"
    );
    // Away at 13-15 s (3 s timeout, then a keyframe); main was back at
    // 20 s, so back at 25-27 s (5 s hysteresis, then a keyframe).
    let on_backup_ms = seen.frames[b..m].iter().filter(|f| f.1 == 1).count() as i64 * VIDEO_MS;
    assert!(
        (20_000 + 5_000 - 15_000..=20_000 + 5_000 + GOP_MS - 13_000).contains(&on_backup_ms),
        "{on_backup_ms} ms on the backup"
    );
    assert!(seen.frames[m + 1..].iter().all(|f| f.0 == b'M'));
}

#[test]
fn a_stream_with_a_timeout_of_its_own_fails_over_sooner() {
    // Main silent from 10 s; the backup's keyframes come at 11.3 s, 13.3 s...
    let first_backup_ms = |own: Option<u64>| {
        let hub = Hub::new(config());
        if let Some(ms) = own {
            hub.set_source_timeouts(std::sync::Arc::new(move |name: &StreamPath| {
                (name == &stream()).then(|| Duration::from_millis(ms))
            }));
        }
        assert_eq!(
            hub.source_timeout(&stream()),
            Duration::from_millis(own.unwrap_or(3_000))
        );
        assert_eq!(
            hub.source_timeout(&StreamPath::parse("live/other").unwrap()),
            Duration::from_secs(3)
        );
        let mut r = hub.subscribe(&stream());
        let mut seen = Seen::default();
        let mut main = Encoder::start(&hub, SourceRole::Main, b'M', 0, av_tracks());
        let mut backup = Encoder::start(&hub, SourceRole::Backup, b'B', 90_000, av_tracks());
        let mut first = None;
        simulate(|ms, now| {
            if ms > 20_000 {
                return;
            }
            if ms < 10_000 {
                main.run_until(ms, now).unwrap();
            }
            backup.run_until(ms + 700, now).unwrap();
            seen.take(&mut r);
            if first.is_none() && seen.first_of(b'B', 0).is_some() {
                first = Some(ms);
            }
        });
        seen.assert_monotonic();
        first.expect("the backup went live")
    };
    assert_eq!(
        first_backup_ms(Some(1_000)),
        11_300,
        "1 s, then its keyframe"
    );
    assert_eq!(first_backup_ms(None), 13_300, "the hub's 3 s");
    assert_eq!(first_backup_ms(Some(5_000)), 15_300);
}

#[test]
fn a_main_that_leaves_is_replaced_within_one_gop_and_the_fallback_after_both() {
    let hub = Hub::new(config());
    let mut r = hub.subscribe(&stream());
    let mut seen = Seen::default();
    let mut main = Some(Encoder::start(&hub, SourceRole::Main, b'M', 0, av_tracks()));
    let mut backup = Some(Encoder::start(
        &hub,
        SourceRole::Backup,
        b'B',
        5_000,
        av_tracks(),
    ));
    let mut fallback = Encoder::start(&hub, SourceRole::Fallback, b'F', 0, av_tracks());
    let mut left_at = Vec::new();
    simulate(|ms, now| {
        if ms == 10_000 {
            main = None; // the connection closed: detached at once
            left_at.push(seen.frames.len());
        }
        if ms == 30_000 {
            backup = None;
            left_at.push(seen.frames.len());
        }
        if let Some(m) = &mut main {
            m.run_until(ms, now).unwrap();
        }
        if let Some(b) = &mut backup {
            b.run_until(ms + 1_300, now).unwrap();
        }
        fallback.run_until(ms, now).unwrap();
        seen.take(&mut r);
    });
    seen.assert_monotonic();
    let b = seen.first_of(b'B', 0).unwrap();
    assert!(b >= left_at[0]);
    // Detached: no timeout to wait for, the next backup keyframe (<= 1 GOP).
    let video_between = seen.frames[left_at[0]..b]
        .iter()
        .filter(|f| f.1 == 1)
        .count();
    assert!(video_between <= 1, "{video_between}");
    let f = seen.first_of(b'F', b).unwrap();
    assert!(f >= left_at[1]);
    assert!(seen.frames[f..].iter().all(|x| x.0 == b'F'));
    assert_eq!(seen.discontinuities, 0);
}

/// Every switch is announced on `Hub::source_switches` with the `now` it
/// happened at, and the time on the fallback adds up across outages
/// (`ugc_stream_fallback_seconds_total`).
#[test]
fn switches_are_announced_and_time_on_the_fallback_is_counted() {
    let hub = Hub::new(config());
    let mut switches = hub.source_switches();
    let mut r = hub.subscribe(&stream());
    let mut seen = Seen::default();
    let t0 = Instant::now();
    let start_main = |now| Encoder::start_at(&hub, SourceRole::Main, b'M', 0, av_tracks(), now);
    // The main encoder and the wall time it started at.
    let mut main = Some((start_main(t0), 0));
    let mut fallback = Encoder::start_at(&hub, SourceRole::Fallback, b'F', 0, av_tracks(), t0);
    simulate(|ms, now| {
        // Two outages: 10-20 s and 40-70 s of wall time.
        if ms == 10_000 || ms == 40_000 {
            main = None;
        }
        if ms == 20_000 || ms == 70_000 {
            main = Some((start_main(now), ms));
        }
        if let Some((m, started)) = &mut main {
            m.run_until(ms - *started, now).unwrap();
        }
        fallback.run_until(ms, now).unwrap();
        seen.take(&mut r);
    });
    seen.assert_monotonic();
    let mut got = Vec::new();
    while let Ok(s) = switches.try_recv() {
        assert_eq!(s.stream, stream());
        got.push((s.from, s.to, s.at.duration_since(t0).as_millis()));
    }
    // Away on the fallback's next keyframe (it runs on its own 2 s GOPs),
    // back on the returning publisher's first frame, a keyframe.
    let (main_, fb) = (SourceRole::Main, SourceRole::Fallback);
    assert_eq!(
        got,
        [
            (main_, fb, 10_000),
            (fb, main_, 20_000),
            (main_, fb, 40_000),
            (fb, main_, 70_000),
        ]
    );
    let snap = hub.stats(&stream()).unwrap();
    assert_eq!(snap.fallback_since, None);
    let total = snap.fallback_time(t0 + Duration::from_secs(1_000));
    assert_eq!(total, Duration::from_secs(10 + 30));
    // While on the fallback, the time grows with `now`.
    drop(main);
    let now = t0 + Duration::from_secs(200);
    fallback.run_until(200_000, now).unwrap();
    let snap = hub.stats(&stream()).unwrap();
    assert_eq!(snap.active_source, SourceRole::Fallback);
    assert_eq!(
        snap.fallback_time(now + Duration::from_secs(5)),
        Duration::from_secs(45)
    );
}

#[test]
fn different_tracks_are_one_discontinuity_and_a_new_track_set() {
    let hub = Hub::new(config());
    let mut r = hub.subscribe(&stream());
    let mut seen = Seen::default();
    let mut main = Some(Encoder::start(&hub, SourceRole::Main, b'M', 0, av_tracks()));
    let mut other = av_tracks().iter().cloned().collect::<Vec<_>>();
    if let ugc_core::TrackParams::Video(v) = &mut other[0].params {
        v.width = 640;
        v.height = 360;
    }
    let mut fallback = Encoder::start(&hub, SourceRole::Fallback, b'F', 0, Tracks::new(other));
    simulate(|ms, now| {
        if ms == 5_000 {
            main = None;
        }
        if let Some(m) = &mut main {
            m.run_until(ms, now).unwrap();
        }
        fallback.run_until(ms, now).unwrap();
        seen.take(&mut r);
    });
    seen.assert_monotonic();
    assert_eq!(seen.discontinuities, 1);
    assert_eq!(seen.track_sets, 2);
}

#[test]
fn a_flapping_main_switches_a_bounded_number_of_times() {
    let hub = Hub::new(config());
    let mut r = hub.subscribe(&stream());
    let mut seen = Seen::default();
    let mut main: Option<Encoder> = None;
    let mut main_runs = 0;
    let mut main_started = 0;
    let mut backup = Encoder::start(&hub, SourceRole::Backup, b'B', 0, av_tracks());
    // Main comes for 2 s and goes for 2 s, for a minute.
    simulate(|ms, now| {
        if ms > 60_000 {
            return;
        }
        if ms % 4_000 == 0 {
            main_runs += 1;
            main_started = ms;
            main = Some(Encoder::start_at(
                &hub,
                SourceRole::Main,
                b'M',
                main_runs * 100_000,
                av_tracks(),
                now,
            ));
        } else if ms % 4_000 == 2_000 {
            main = None;
        }
        if let Some(m) = &mut main {
            m.run_until(ms - main_started, now).unwrap();
        }
        backup.run_until(ms, now).unwrap();
        seen.take(&mut r);
    });
    seen.assert_monotonic();
    // Main never stays 5 s, so after the first take-over (nothing was live
    // before it) the backup keeps the stream.
    let switches = hub.stats(&stream()).unwrap().source_switches;
    assert!(switches <= 2, "{switches} switches");
    let last_minute_main = seen.frames.iter().filter(|f| f.0 == b'M').count();
    assert!(last_minute_main <= 2_000 / 23 + 2_000 / 40 + 2);
}

#[test]
fn a_main_that_just_attached_gets_the_source_timeout_to_send() {
    // An encoder with a backup URL connects both at once; the backup's
    // first keyframe comes before the main one's.
    let hub = Hub::new(config());
    let mut r = hub.subscribe(&stream());
    let mut seen = Seen::default();
    let t0 = Instant::now();
    let mut main = Encoder::start_at(&hub, SourceRole::Main, b'M', 0, av_tracks(), t0);
    let mut backup = Encoder::start_at(&hub, SourceRole::Backup, b'B', 0, av_tracks(), t0);
    for ms in (0..10_000).step_by(10) {
        let now = t0 + Duration::from_millis(ms as u64);
        backup.run_until(ms, now).unwrap();
        if ms >= 1_500 {
            main.run_until(ms - 1_500, now).unwrap();
        }
        seen.take(&mut r);
    }
    assert!(seen.frames.iter().all(|f| f.0 == b'M'), "main is live");
    assert_eq!(hub.stats(&stream()).unwrap().source_switches, 0);
}

#[test]
fn a_publisher_back_takes_over_from_the_fallback_on_its_first_keyframe() {
    let hub = Hub::new(config());
    let mut r = hub.subscribe(&stream());
    let mut seen = Seen::default();
    let t0 = Instant::now();
    let mut fallback = Encoder::start_at(&hub, SourceRole::Fallback, b'F', 0, av_tracks(), t0);
    let mut main: Option<Encoder> = None;
    for ms in (0..10_000).step_by(10) {
        let now = t0 + Duration::from_millis(ms as u64);
        if ms == 3_000 {
            main = Some(Encoder::start_at(
                &hub,
                SourceRole::Main,
                b'M',
                0,
                av_tracks(),
                now,
            ));
        }
        fallback.run_until(ms, now).unwrap();
        if let Some(m) = &mut main {
            m.run_until(ms - 3_000, now).unwrap();
        }
        seen.take(&mut r);
    }
    seen.assert_monotonic();
    let m = seen.first_of(b'M', 0).unwrap();
    let fallback_video = seen.frames[..m].iter().filter(|f| f.1 == 1).count() as i64;
    // Main's first keyframe is at 3 s: no hysteresis from a slate.
    // (the fallback's own frame of that instant goes first).
    assert_eq!(fallback_video * VIDEO_MS, 3_000 + VIDEO_MS);
    // With a hold, the fallback keeps the stream for it.
    let hub = Hub::new(HubConfig {
        switch_back_from_fallback_after: Duration::from_secs(5),
        ..config()
    });
    let mut r = hub.subscribe(&stream());
    let mut seen = Seen::default();
    let mut fallback = Encoder::start_at(&hub, SourceRole::Fallback, b'F', 0, av_tracks(), t0);
    let mut main: Option<Encoder> = None;
    for ms in (0..15_000).step_by(10) {
        let now = t0 + Duration::from_millis(ms as u64);
        if ms == 3_000 {
            main = Some(Encoder::start_at(
                &hub,
                SourceRole::Main,
                b'M',
                0,
                av_tracks(),
                now,
            ));
        }
        fallback.run_until(ms, now).unwrap();
        if let Some(m) = &mut main {
            m.run_until(ms - 3_000, now).unwrap();
        }
        seen.take(&mut r);
    }
    let m = seen.first_of(b'M', 0).unwrap();
    let fallback_video = seen.frames[..m].iter().filter(|f| f.1 == 1).count() as i64;
    assert_eq!(
        fallback_video * VIDEO_MS,
        3_000 + 6_000 + VIDEO_MS,
        "5 s, then a keyframe"
    );
}

#[test]
fn a_standby_publisher_is_told_it_is_not_live() {
    let hub = Hub::new(config());
    let main = hub.publish_as(&stream(), SourceRole::Main);
    let backup = hub.publish_as(&stream(), SourceRole::Backup);
    assert!(main.is_live() && main.is_current());
    assert!(!backup.is_live() && backup.is_current());
    let snap = hub.stats(&stream()).unwrap();
    assert_eq!(snap.sources, vec![SourceRole::Main, SourceRole::Backup]);
    assert_eq!(snap.active_source, SourceRole::Main);
    drop(main);
    assert!(hub.is_publishing(&stream()), "the backup is still attached");
    hub.disconnect_publisher(&stream());
    assert!(!hub.is_publishing(&stream()));
    assert!(!backup.is_current());
}

proptest! {
    /// Any schedule of three sources coming, going and stalling: readers
    /// only ever get one source's frames at a time, per-track timestamps
    /// strictly increase, and every switch lands on a keyframe.
    #[test]
    fn any_schedule_keeps_the_timeline(
        schedule in proptest::collection::vec((0u8..3, 0u8..3, 1u64..80), 1..40),
        bases in proptest::array::uniform3(0i64..1_000_000),
    ) {
        let hub = Hub::new(config());
        let mut r = hub.subscribe(&stream());
        let mut seen = Seen::default();
        let markers = [b'M', b'B', b'F'];
        let mut encs: [Option<Encoder>; 3] = [None, None, None];
        let mut started = [0i64; 3];
        let t0 = Instant::now();
        let mut ms = 0i64;
        for (who, what, tenths) in schedule {
            let i = who as usize;
            match what {
                0 => {
                    encs[i] = Some(Encoder::start_at(
                        &hub, SourceRole::ALL[i], markers[i], bases[i], av_tracks(),
                        t0 + Duration::from_millis(ms as u64),
                    ));
                    started[i] = ms;
                }
                1 => encs[i] = None,
                _ => {} // keep going; `tenths` of silence below for it
            }
            let silent = if what == 2 { Some(i) } else { None };
            for _ in 0..tenths * 10 {
                ms += 10;
                let now = t0 + Duration::from_millis(ms as u64);
                for (j, e) in encs.iter_mut().enumerate() {
                    if silent == Some(j) {
                        continue;
                    }
                    if let Some(e) = e {
                        // A stalled encoder later catches up in a burst.
                        e.run_until(ms - started[j], now).unwrap();
                    }
                }
                seen.take(&mut r);
            }
        }
        seen.assert_monotonic();
        let sources: Vec<_> = seen.frames.iter().filter(|f| f.0 != b'S').collect();
        for w in sources.windows(2) {
            if w[0].0 != w[1].0 {
                // A new source starts on a video keyframe.
                prop_assert!(w[1].1 == 1 && w[1].3, "{:?} -> {:?}", w[0], w[1]);
            }
        }
    }
}
