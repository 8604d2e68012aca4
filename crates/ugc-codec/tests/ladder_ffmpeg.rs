//! The FFmpeg ladder on a real capture (feature `ffmpeg`): IDRs aligned
//! across rungs, audio in every rung, never upscaled, passthrough, logo
//! pixels, and corrupt input that must not take the ladder down.
#![cfg(feature = "ffmpeg")]
#![allow(clippy::unwrap_used)]

mod support {
    pub mod flv_file;
    pub mod scratch;
}

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use bytes::Bytes;
use support::flv_file::read_flv;
use ugc_codec::flv::FlvIngest;
use ugc_codec::ladder::{Corner, LadderConfig, LadderDemux, LogoConfig, RenditionConfig};
use ugc_codec::transcode::Ladder;
use ugc_core::{Frame, MediaEvent, StreamPath, Tracks, Transform};

const CAPTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/ffmpeg51_libx264_aac_320x240_2s.flv"
);

fn events_of(file: &Bytes) -> Vec<MediaEvent> {
    let mut ingest = FlvIngest::new();
    let mut out = Vec::new();
    for tag in read_flv(file) {
        let ts = i64::from(tag.timestamp);
        match tag.tag_type {
            8 => ingest.push_audio(ts, tag.body).unwrap(),
            9 => ingest.push_video(ts, tag.body).unwrap(),
            _ => {}
        }
        while let Some(e) = ingest.poll_event() {
            out.push(e);
        }
    }
    out
}

fn capture() -> Vec<MediaEvent> {
    events_of(&Bytes::from(std::fs::read(CAPTURE).unwrap()))
}

fn tmp(name: &str) -> PathBuf {
    support::scratch::scratch("ugc-ladder-test", name)
}

fn small_ladder() -> LadderConfig {
    LadderConfig {
        renditions: vec![
            RenditionConfig::new("480p", 480, 1500, 128),
            RenditionConfig::new("240p", 240, 400, 96),
            RenditionConfig::new("120p", 120, 150, 64),
        ],
        passthrough: Some("source".into()),
        preset: "superfast".into(),
        keyframe_interval_ms: 500,
        drop_when_behind: false,
        encoder_threads: 1,
        ..LadderConfig::default()
    }
}

/// Per rendition: its track sets and frames.
type Split = BTreeMap<usize, (Vec<Tracks>, Vec<Frame>, bool)>;

fn run(config: LadderConfig, input: Vec<MediaEvent>) -> (Split, Ladder) {
    let mut ladder = Ladder::new(config).unwrap();
    let mut out = Vec::new();
    for e in input {
        ladder.push(e, &mut out).unwrap();
    }
    ladder.flush(&mut out).unwrap();
    let mut demux = LadderDemux::new();
    let mut split = Split::new();
    for e in out {
        for (i, e) in demux.route(e) {
            let entry = split.entry(i).or_default();
            match e {
                MediaEvent::Tracks(t) => entry.0.push(t),
                MediaEvent::Frame(f) => entry.1.push(f),
                MediaEvent::End => entry.2 = true,
                _ => {}
            }
        }
    }
    (split, ladder)
}

fn video_keyframe_pts(frames: &[Frame]) -> Vec<i64> {
    frames
        .iter()
        .filter(|f| f.track.0 == 1 && f.keyframe)
        .map(|f| f.pts)
        .collect()
}

#[test]
fn rungs_are_planned_aligned_and_have_audio() {
    let (split, ladder) = run(small_ladder(), capture());
    // 480p is taller than the 320x240 source: left out (never upscale).
    // 240p and 120p re-encoded, index 3 = passthrough.
    assert_eq!(split.keys().copied().collect::<Vec<_>>(), vec![1, 2, 3]);
    let size = |i: usize| {
        let t = &split[&i].0[0];
        let v = t.video().unwrap().video().unwrap();
        (v.width, v.height)
    };
    assert_eq!(size(1), (320, 240));
    assert_eq!(size(2), (160, 120));
    assert_eq!(size(3), (320, 240));
    let k1 = video_keyframe_pts(&split[&1].1);
    let k2 = video_keyframe_pts(&split[&2].1);
    assert!(k1.len() >= 3, "IDRs every 500 ms over 2 s: {k1:?}");
    assert_eq!(k1, k2, "IDRs at the same pts in every rung");
    for i in [1, 2] {
        let (tracks, frames, ended) = &split[&i];
        assert!(ended);
        let t = &tracks[0];
        assert_eq!(t.audio().unwrap().codec_string, "mp4a.40.2");
        assert!(t.video().unwrap().codec_string.starts_with("avc1."));
        let audio = frames.iter().filter(|f| f.track.0 == 2).count();
        let video = frames.iter().filter(|f| f.track.0 == 1).count();
        assert!(audio > 60, "rung {i}: {audio} AAC frames");
        assert!(video >= 55, "rung {i}: {video} pictures");
    }
    let s = ladder.stats();
    assert_eq!(s.pictures_dropped, 0);
    assert_eq!(s.decode_errors, 0);
    // About 2 s of 30 fps source decoded (the first picture's own
    // duration is not counted), and each stage worked for part of it.
    assert!(
        (1_800_000..=2_100_000).contains(&s.media_us),
        "media {} us",
        s.media_us
    );
    assert!(s.decode_busy_ns > 0);
    let rungs = ladder.stats_handle().rungs_busy();
    assert_eq!(
        rungs.keys().copied().collect::<Vec<_>>(),
        vec![1, 2],
        "{rungs:?}"
    );
    assert!(rungs.values().all(|n| *n > 0), "{rungs:?}");
}

fn annexb(frames: &[Frame]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in frames.iter().filter(|f| f.track.0 == 1) {
        ugc_codec::h264::avcc_to_annexb_into(&f.data, 4, &mut out).unwrap();
    }
    out
}

/// The last decoded picture of an Annex B stream as RGB24 bytes.
fn last_picture_rgb(h264: &[u8], tracks: &Tracks, name: &str) -> (Vec<u8>, u32, u32) {
    let v = tracks.video().unwrap();
    let cfg = ugc_codec::h264::AvcConfig::parse(&v.config).unwrap();
    let mut stream = Vec::new();
    for ps in cfg.sps.iter().chain(cfg.pps.iter()) {
        stream.extend_from_slice(&[0, 0, 0, 1]);
        stream.extend_from_slice(ps);
    }
    stream.extend_from_slice(h264);
    let path = tmp(name);
    std::fs::write(&path, &stream).unwrap();
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-f", "h264", "-i"])
        .arg(&path)
        .args(["-pix_fmt", "rgb24", "-f", "rawvideo", "-update", "1", "-"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let p = v.video().unwrap();
    let frame = (p.width * p.height * 3) as usize;
    let data = out.stdout;
    assert!(data.len() >= frame);
    (data[data.len() - frame..].to_vec(), p.width, p.height)
}

fn pixel(rgb: &[u8], w: u32, x: u32, y: u32) -> (u8, u8, u8) {
    let o = ((y * w + x) * 3) as usize;
    (rgb[o], rgb[o + 1], rgb[o + 2])
}

#[test]
fn logo_is_burnt_in_at_its_corner() {
    let png = tmp("logo.png");
    let ok = Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "color=c=0xff0000:s=40x40",
            "-frames:v",
            "1",
        ])
        .arg(&png)
        .status()
        .unwrap();
    assert!(ok.success());
    let mut config = small_ladder();
    config.passthrough = None;
    config.logo = Some(LogoConfig {
        png: std::fs::read(&png).unwrap(),
        corner: Corner::TopRight,
        margin: 0,
        opacity: 100,
        // 40 px at 240 lines = 180 px at 1080.
        height: 180,
    });
    let (split, _) = run(config, capture());
    let (tracks, frames, _) = &split[&1];
    let (rgb, w, h) = last_picture_rgb(&annexb(frames), &tracks[0], "logo240.h264");
    assert_eq!((w, h), (320, 240));
    // Inside the logo (top right, 40x40): red.
    let (r, g, b) = pixel(&rgb, w, w - 20, 20);
    assert!(r > 200 && g < 60 && b < 60, "logo pixel {:?}", (r, g, b));
    // Outside: the capture's picture, not red.
    let (r, g, b) = pixel(&rgb, w, 20, h - 20);
    assert!(
        !(r > 200 && g < 60 && b < 60),
        "no logo at bottom left {:?}",
        (r, g, b)
    );
    // The 120p rung has it too, at half size.
    let (tracks, frames, _) = &split[&2];
    let (rgb, w, _) = last_picture_rgb(&annexb(frames), &tracks[0], "logo120.h264");
    let (r, g, b) = pixel(&rgb, w, w - 10, 10);
    assert!(
        r > 180 && g < 80 && b < 80,
        "logo pixel at 120p {:?}",
        (r, g, b)
    );
}

/// A second source at another resolution, made by ffmpeg.
fn other_resolution() -> Option<Vec<MediaEvent>> {
    let path = tmp("176x144.flv");
    let ok = Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=s=176x144:r=25:d=1",
            "-f",
            "lavfi",
            "-i",
            "sine=f=440:d=1",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            "25",
            "-c:a",
            "aac",
            "-shortest",
            "-f",
            "flv",
        ])
        .arg(&path)
        .status()
        .ok()?;
    ok.success()
        .then(|| events_of(&Bytes::from(std::fs::read(&path).unwrap())))
}

fn shift(events: Vec<MediaEvent>, by: i64) -> Vec<MediaEvent> {
    events
        .into_iter()
        .map(|e| match e {
            MediaEvent::Frame(mut f) => {
                f.dts += by;
                f.pts += by;
                MediaEvent::Frame(f)
            }
            e => e,
        })
        .collect()
}

/// The video track id of a capture's events.
fn cap_video_id(events: &[MediaEvent]) -> ugc_core::TrackId {
    events
        .iter()
        .find_map(|e| match e {
            MediaEvent::Tracks(t) => t.video().map(|v| v.id),
            _ => None,
        })
        .unwrap()
}

/// A source switch to another encoder at the same size (a backup, the
/// slate: a discontinuity, then a new track set with other parameter
/// sets) loses no picture of the old one (the old decoder is drained into
/// the rungs first) and no sound, and the renditions go on without a
/// discontinuity: their codec parameters do not change.
///
/// With a hole before the new source (a Hub's landing on the segment
/// grid, here 600 ms) the old source's last picture is repeated up to it:
/// no step in the pictures either, and the IDR after it is decoded a frame
/// or two before it is presented, not at the time of a picture before the
/// hole (x264's decode times, 593 ms early in e2e_roles, put the origins'
/// segment of that IDR at 2.567 s of 1 s).
#[test]
fn a_source_switch_keeps_the_old_sources_last_pictures() {
    for hole in [0, 600] {
        a_source_switch_after(hole);
    }
}

fn a_source_switch_after(hole: i64) {
    let cap = capture();
    let input_pictures = cap
        .iter()
        .filter(|e| matches!(e, MediaEvent::Frame(f) if f.track.0 == 1))
        .count();
    let last_pts = cap
        .iter()
        .filter_map(|e| match e {
            MediaEvent::Frame(f) if f.track.0 == 1 => Some(f.pts),
            _ => None,
        })
        .max()
        .unwrap();
    let path = tmp("320x240-other.flv");
    let made = Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=s=320x240:r=25:d=1",
        ])
        .args(["-f", "lavfi", "-i", "sine=f=440:d=1", "-c:v", "libx264"])
        .args([
            "-preset",
            "ultrafast",
            "-g",
            "25",
            "-c:a",
            "aac",
            "-shortest",
            "-f",
            "flv",
        ])
        .arg(&path)
        .status()
        .expect("ffmpeg");
    assert!(made.success());
    let other = events_of(&Bytes::from(std::fs::read(&path).unwrap()));
    // Where the second source's pictures start on the first's clock.
    let other_video = cap_video_id(&other);
    let new_first = last_pts
        + 40
        + hole
        + other
            .iter()
            .filter_map(|e| match e {
                MediaEvent::Frame(f) if f.track == other_video => Some(f.pts),
                _ => None,
            })
            .min()
            .unwrap();
    // As the Hub hands a switch on: a discontinuity, the new track set.
    let mut input = cap;
    input.push(MediaEvent::Discontinuity(
        ugc_core::DiscontinuityReason::SourceChanged,
    ));
    // The second source's video counts in 90 kHz (as the slate does) where
    // the first counted in ms.
    let video_id = cap_video_id(&input);
    input.extend(shift(other, last_pts + 40 + hole).into_iter().map(|e| {
        match e {
            MediaEvent::Tracks(t) => MediaEvent::Tracks(Tracks::new(
                t.iter()
                    .cloned()
                    .map(|mut i| {
                        if i.id == video_id {
                            i.timescale = ugc_core::Timescale::new(90_000).unwrap();
                        }
                        i
                    })
                    .collect(),
            )),
            MediaEvent::Frame(mut f) if f.track == video_id => {
                f.dts *= 90;
                f.pts *= 90;
                MediaEvent::Frame(f)
            }
            e => e,
        }
    }));
    let config = LadderConfig {
        passthrough: None,
        ..small_ladder()
    };
    let mut ladder = Ladder::new(config).unwrap();
    let mut out = Vec::new();
    for e in input {
        ladder.push(e, &mut out).unwrap();
    }
    ladder.flush(&mut out).unwrap();
    // Rung 1's pictures and sound.
    let video = ugc_codec::ladder::video_track(1);
    let audio = ugc_codec::ladder::audio_track(1);
    assert!(
        !out.iter()
            .any(|e| matches!(e, MediaEvent::Discontinuity(_))),
        "a new source at continuous timestamps is no discontinuity for the renditions"
    );
    let pictures: Vec<i64> = out
        .iter()
        .filter_map(|e| match e {
            MediaEvent::Frame(f) if f.track == video => Some(f.pts),
            _ => None,
        })
        .collect();
    let old = pictures.iter().filter(|p| **p <= last_pts).count();
    assert_eq!(old, input_pictures, "every picture of the first source");
    // (Before it, the first's last picture repeated over the hole.)
    let first_new = pictures.iter().position(|p| *p >= new_first).unwrap();
    assert!(
        pictures[first_new..].iter().all(|p| *p >= new_first),
        "the first source's pictures all come before the second's"
    );
    assert!(
        pictures.len() - first_new >= 20,
        "the second source is encoded too"
    );
    // On the rungs' clock (ms, the first source's): no jump at the switch
    // (pictures in presentation order: the rungs make B-frames).
    let mut shown = pictures.clone();
    shown.sort_unstable();
    let step = shown.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    assert!(
        step <= 80,
        "a {step} ms step between pictures (hole {hole})"
    );
    let repeated = ladder.stats().pictures_repeated;
    let new_key = out
        .iter()
        .find_map(|e| match e {
            MediaEvent::Frame(f)
                if f.track == video && f.keyframe && f.pts >= last_pts + 40 + hole =>
            {
                Some(f.clone())
            }
            _ => None,
        })
        .unwrap();
    assert!(
        new_key.pts - new_key.dts <= 100,
        "the new source's IDR decoded {} ms before it is shown (hole {hole})",
        new_key.pts - new_key.dts
    );
    if hole > 0 {
        // 600 ms at the first source's frame rate, less the last frame.
        assert!((10..=20).contains(&repeated), "{repeated} repeated");
        return; // (the input has a hole in its sound too: no Hub filled it)
    }
    assert_eq!(repeated, 0);
    // The sound goes on with no hole across the switch (44.1 kHz AAC
    // frames of 1024 samples: no step over 1.5 frames).
    let sound: Vec<i64> = out
        .iter()
        .filter_map(|e| match e {
            MediaEvent::Frame(f) if f.track == audio => Some(f.dts),
            _ => None,
        })
        .collect();
    let step = sound.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    assert!(step <= 1536, "a {step}-sample hole in the sound");
    assert_eq!(ladder.stats().pictures_dropped, 0);
}

#[test]
fn corrupt_input_resyncs_and_resolution_changes_replan() {
    let mut input = Vec::new();
    let cap = capture();
    // Missing SPS: pictures before any track set, and a track set whose
    // avcC has no usable SPS, are ignored.
    for e in &cap {
        if let MediaEvent::Frame(f) = e {
            input.push(MediaEvent::Frame(f.clone()));
            break;
        }
    }
    // Truncated NAL units: every 7th video frame cut in half.
    let mut n = 0;
    for e in cap.iter().cloned() {
        match e {
            MediaEvent::Frame(mut f) if f.track.0 == 1 => {
                n += 1;
                if n % 7 == 3 {
                    f.data = f.data.slice(..f.data.len() / 2);
                }
                input.push(MediaEvent::Frame(f));
            }
            e => input.push(e),
        }
    }
    // Garbage frames.
    input.push(MediaEvent::Frame(Frame {
        track: ugc_core::TrackId(1),
        dts: 2100,
        pts: 2100,
        keyframe: false,
        data: Bytes::from_static(&[0, 0, 0, 9, 0x41, 0xff, 0xff, 0xff]),
    }));
    // A resolution change mid-stream.
    let Some(other) = other_resolution() else {
        eprintln!("NOTICE: ffmpeg not available; skipping the resolution change");
        return;
    };
    input.extend(shift(other, 2200));
    let (split, ladder) = run(small_ladder(), input);
    let stats = ladder.stats();
    assert!(stats.decode_errors > 0 || stats.pictures_encoded > 0);
    let (tracks, frames, ended) = &split[&2];
    assert!(*ended);
    // 120p for both sources (160x120, then 146x120 for 176x144: even width).
    assert_eq!(
        tracks.len(),
        2,
        "a new track set after the resolution change"
    );
    let w2 = tracks[1].video().unwrap().video().unwrap().width;
    assert_eq!(w2, 146);
    let after = frames
        .iter()
        .filter(|f| f.track.0 == 1 && f.pts >= 2200)
        .count();
    assert!(
        after >= 20,
        "the ladder kept encoding after the change: {after}"
    );
    // 240p is taller than 176x144: that rung is gone after the change.
    assert_eq!(split[&1].0.len(), 1);
}

#[test]
fn live_mode_drops_instead_of_queueing() {
    // One thread, slow preset and a tiny queue: the rungs cannot keep up
    // with input pushed as fast as possible.
    let mut config = small_ladder();
    config.drop_when_behind = true;
    config.max_pending_frames = 1;
    config.max_delay_ms = 0;
    config.preset = "medium".into();
    let mut ladder = Ladder::new(config).unwrap();
    let mut out = Vec::new();
    for e in capture() {
        ladder.push(e, &mut out).unwrap();
    }
    ladder.flush(&mut out).unwrap();
    let s = ladder.stats();
    assert!(
        s.pictures_dropped + s.input_dropped > 0,
        "nothing dropped: {s:?}"
    );
    // Still aligned: same IDR pts in every rung.
    let mut demux = LadderDemux::new();
    let mut keys: BTreeMap<usize, Vec<i64>> = BTreeMap::new();
    for e in out {
        for (i, e) in demux.route(e) {
            if let MediaEvent::Frame(f) = e
                && f.track.0 == 1
                && f.keyframe
                && i < 3
            {
                keys.entry(i).or_default().push(f.pts);
            }
        }
    }
    assert_eq!(keys.get(&1), keys.get(&2));
}

/// Live, a ladder handed a whole GOP at once (a relay pull or a reader
/// joining at the last keyframe) with rungs slower than the burst: the
/// input waits for them within `max_delay_ms` and no picture is lost. The
/// same burst with no delay allowed drops pictures (at a transcoder
/// takeover it cut 0.5 s out of the new rendition's first segment).
#[test]
fn live_mode_absorbs_a_burst_within_its_delay() {
    let burst = |max_delay_ms| {
        let mut config = small_ladder();
        config.drop_when_behind = true;
        config.max_pending_frames = 2;
        config.max_delay_ms = max_delay_ms;
        let mut ladder = Ladder::new(config).unwrap();
        let mut out = Vec::new();
        for e in capture() {
            ladder.push(e, &mut out).unwrap();
        }
        ladder.flush(&mut out).unwrap();
        let s = ladder.stats();
        (s.pictures_dropped + s.input_dropped, s.pictures_encoded)
    };
    let (dropped, encoded) = burst(30_000);
    assert_eq!(dropped, 0, "{encoded} encoded");
    let (dropped, _) = burst(0);
    assert!(dropped > 0, "nothing dropped without a delay");
}

#[tokio::test]
async fn run_ladder_counts_per_rendition_while_it_runs() {
    use std::sync::Arc;
    use ugc_codec::transcode::{LadderRunStats, run_ladder_with_stats};
    use ugc_core::{Hub, HubConfig};

    let hub = Hub::new(HubConfig::default());
    let mut events = capture().into_iter();
    let mut publisher = hub.publish(&StreamPath::parse("live/t").unwrap());
    publisher.push(events.next().unwrap()).unwrap();
    let stats = Arc::new(LadderRunStats::default());
    let (_stop, stop_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(run_ladder_with_stats(
        hub.clone(),
        StreamPath::parse("live/t").unwrap(),
        small_ladder(),
        stop_rx,
        stats.clone(),
    ));
    // Let it subscribe before the rest of the capture arrives.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    for e in events {
        publisher.push(e).unwrap();
    }
    hub.end(&StreamPath::parse("live/t").unwrap());
    let report = task.await.unwrap().unwrap();
    // The caller's handle saw what the run reports.
    assert_eq!(stats.report(), report);
    assert_eq!(report.restarts, 0);
    assert!(report.stats.frames_in > 0, "{report:?}");
    // 320x240 in: 480p is left out (never upscale); the passthrough is last.
    let names: Vec<&str> = report.renditions.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["240p", "120p", "source"], "{report:?}");
    let sizes: Vec<(u32, u32)> = report
        .renditions
        .iter()
        .map(|r| (r.width, r.height))
        .collect();
    assert_eq!(sizes, [(320, 240), (160, 120), (320, 240)]);
    for r in &report.renditions {
        assert!(r.video_frames > 0 && r.audio_frames > 0, "{r:?}");
    }
    let out: u64 = report
        .renditions
        .iter()
        .map(|r| r.video_frames + r.audio_frames)
        .sum();
    assert!(out <= report.stats.frames_out, "{report:?}");
}

/// The packets of a single-stream Ogg file, joined across pages.
fn ogg_packets(mut data: &[u8]) -> Vec<Bytes> {
    let mut packets = Vec::new();
    let mut packet = Vec::new();
    while data.len() >= 27 && data.starts_with(b"OggS") {
        let segments = usize::from(data[26]);
        let lacing = &data[27..27 + segments];
        let mut body = &data[27 + segments..];
        for &len in lacing {
            let (piece, rest) = body.split_at(usize::from(len));
            packet.extend_from_slice(piece);
            body = rest;
            if len < 255 {
                packets.push(Bytes::from(std::mem::take(&mut packet)));
            }
        }
        data = body;
    }
    packets
}

/// The capture's video with its AAC replaced by 2 s of a 440 Hz tone in
/// Opus (what a WebRTC publisher sends): 20 ms packets from libopus, the
/// `OpusHead` as the track's config, interleaved by time.
fn capture_with_opus() -> Vec<MediaEvent> {
    use ugc_core::{AudioParams, Codec, Timescale, TrackInfo, TrackParams};
    let ogg = tmp("tone.opus");
    let made = Command::new("ffmpeg")
        .args(["-hide_banner", "-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg("sine=frequency=440:sample_rate=48000:duration=2")
        .args([
            "-ac",
            "2",
            "-c:a",
            "libopus",
            "-b:a",
            "96k",
            "-frame_duration",
            "20",
        ])
        .arg(&ogg)
        .status()
        .unwrap();
    assert!(made.success());
    let packets = ogg_packets(&std::fs::read(&ogg).unwrap());
    assert!(packets[0].starts_with(b"OpusHead") && packets[1].starts_with(b"OpusTags"));
    let mut out = Vec::new();
    let mut opus = packets[2..].iter().enumerate().map(|(k, p)| {
        let t = k as i64 * 960;
        (t * 1000 / 48_000, t, p.clone())
    });
    let mut next_opus = opus.next();
    let mut audio_id = None;
    for e in capture() {
        match e {
            MediaEvent::Tracks(t) => {
                let aac = t.audio().unwrap().clone();
                audio_id = Some(aac.id);
                let mut infos: Vec<TrackInfo> =
                    t.iter().filter(|i| i.id != aac.id).cloned().collect();
                infos.push(TrackInfo {
                    id: aac.id,
                    codec: Codec::Opus,
                    timescale: Timescale::new(48_000).unwrap(),
                    config: packets[0].clone(),
                    codec_string: "opus".into(),
                    params: TrackParams::Audio(AudioParams {
                        sample_rate: 48_000,
                        channels: 2,
                        samples_per_frame: 960,
                    }),
                    bitrate: Some(96_000),
                });
                out.push(MediaEvent::Tracks(Tracks::new(infos)));
            }
            MediaEvent::Frame(f) if Some(f.track) == audio_id => {}
            MediaEvent::Frame(f) => {
                while let Some((_, t, p)) = next_opus.take_if(|(ms, ..)| *ms <= f.dts) {
                    out.push(MediaEvent::Frame(Frame {
                        track: audio_id.unwrap(),
                        dts: t,
                        pts: t,
                        keyframe: true,
                        data: p,
                    }));
                    next_opus = opus.next();
                }
                out.push(MediaEvent::Frame(f));
            }
            other => out.push(other),
        }
    }
    out
}

/// The RMS level (dB) ffmpeg hears in `frames` of AAC with `config` (as
/// an ADTS file `name`); no decode error allowed.
fn aac_rms(frames: &[&Frame], config: &Bytes, name: &str) -> f64 {
    let asc = ugc_codec::aac::Asc::parse(config).unwrap();
    let mut adts = Vec::new();
    for f in frames {
        adts.extend_from_slice(&ugc_codec::aac::adts_header(&asc, f.data.len()));
        adts.extend_from_slice(&f.data);
    }
    let file = tmp(name);
    std::fs::write(&file, adts).unwrap();
    let stats = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostats", "-v", "info", "-i"])
        .arg(&file)
        .args(["-af", "astats=metadata=0:reset=0", "-f", "null", "-"])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&stats.stderr);
    assert!(!log.contains("Error"), "{name}: {log}");
    log.lines()
        .filter(|l| l.contains("RMS level dB"))
        .filter_map(|l| l.rsplit(':').next()?.trim().parse::<f64>().ok())
        .next_back()
        .unwrap_or_else(|| panic!("no astats in {log}"))
}

/// Opus -> AAC alone (no ladder), as the packager runs it for HLS players
/// without Opus: the audio track keeps its id and becomes AAC-LC at 48
/// kHz that decodes to the tone, on the Opus's timeline (a 100 ms hole of
/// lost packets is filled, not closed: the audio after it stays in
/// place); the video passes untouched.
#[test]
fn audio_transcode_makes_aac_of_opus_and_passes_the_video() {
    use ugc_codec::transcode::AudioTranscode;
    use ugc_core::Codec;
    let all = capture_with_opus();
    let opus_id = all
        .iter()
        .find_map(|e| match e {
            MediaEvent::Tracks(t) => t.audio().map(|a| a.id),
            _ => None,
        })
        .unwrap();
    // Opus frames 40..45 (20 ms, 960 ticks each) are lost.
    let input: Vec<MediaEvent> = all
        .into_iter()
        .filter(|e| {
            !matches!(e, MediaEvent::Frame(f) if f.track == opus_id && (40..45).contains(&(f.pts / 960)))
        })
        .collect();
    let mut t = AudioTranscode::opus_to_aac();
    let mut out = Vec::new();
    for e in input.clone() {
        t.push(e, &mut out).unwrap();
    }
    t.flush(&mut out).unwrap();
    let tracks_in = input.iter().find_map(|e| match e {
        MediaEvent::Tracks(t) => Some(t.clone()),
        _ => None,
    });
    let tracks_out = out.iter().find_map(|e| match e {
        MediaEvent::Tracks(t) => Some(t.clone()),
        _ => None,
    });
    let (tracks_in, tracks_out) = (tracks_in.unwrap(), tracks_out.unwrap());
    let opus = tracks_in.audio().unwrap();
    let aac = tracks_out.audio().unwrap();
    assert_eq!((aac.id, aac.codec), (opus.id, Codec::Aac));
    assert_eq!(aac.codec_string, "mp4a.40.2");
    assert_eq!(aac.timescale.get(), 48_000);
    let video_of = |events: &[MediaEvent]| -> Vec<Frame> {
        events
            .iter()
            .filter_map(|e| match e {
                MediaEvent::Frame(f) if f.track != opus.id => Some(f.clone()),
                _ => None,
            })
            .collect()
    };
    assert_eq!(
        video_of(&out),
        video_of(&input),
        "the video passes as it was"
    );
    let frames: Vec<&Frame> = out
        .iter()
        .filter_map(|e| match e {
            MediaEvent::Frame(f) if f.track == aac.id => Some(f),
            _ => None,
        })
        .collect();
    // 2 s at 48 kHz: 93.75 AAC frames (the tone is cut with the video).
    assert!(frames.len() >= 80, "{} AAC frames", frames.len());
    for w in frames.windows(2) {
        assert_eq!(w[1].pts - w[0].pts, 1024, "AAC frames back to back");
    }
    // The hole was filled: the last AAC frame ends where the last Opus
    // frame does (less the priming, within a frame).
    let last_opus = input
        .iter()
        .filter_map(|e| match e {
            MediaEvent::Frame(f) if f.track == opus.id => Some(f.pts + 960),
            _ => None,
        })
        .next_back()
        .unwrap();
    let last_aac = frames.last().unwrap().pts + 1024;
    assert!(
        (last_aac - (last_opus - 1024)).abs() <= 2048,
        "AAC ends at {last_aac}, Opus at {last_opus}"
    );
    // On the Opus's timeline: the first AAC frame is the first Opus
    // frame's time less the encoder's priming (1024 samples).
    let first_opus = input
        .iter()
        .find_map(|e| match e {
            MediaEvent::Frame(f) if f.track == opus.id => Some(f.pts),
            _ => None,
        })
        .unwrap();
    assert!(
        (frames[0].pts - (first_opus - 1024)).abs() <= 960,
        "first AAC at {} for Opus at {first_opus}",
        frames[0].pts
    );
    let rms = aac_rms(&frames, &aac.config, "opus-to-aac.aac");
    assert!(rms > -30.0, "RMS {rms} dB");
    assert_eq!(t.decode_errors, 0);
}

#[test]
fn opus_input_becomes_aac_in_every_rung() {
    let mut config = small_ladder();
    config.passthrough = None;
    let (split, ladder) = run(config, capture_with_opus());
    assert_eq!(split.keys().copied().collect::<Vec<_>>(), vec![1, 2]);
    for i in [1, 2] {
        let (tracks, frames, _) = &split[&i];
        let audio = tracks[0].audio().unwrap();
        assert_eq!(audio.codec_string, "mp4a.40.2", "rung {i}");
        let aac: Vec<&Frame> = frames.iter().filter(|f| f.track == audio.id).collect();
        // 2 s at 48 kHz is 93.75 AAC frames; the tone ends with the video.
        assert!(aac.len() >= 80, "rung {i}: {} AAC frames", aac.len());
        // The AAC decodes to the tone, not to silence.
        let rms = aac_rms(&aac, &audio.config, &format!("opus-rung-{i}.aac"));
        // A full-scale sine at 1/8 amplitude (lavfi's default) is -21 dB RMS.
        assert!(rms > -30.0, "rung {i}: RMS {rms} dB");
    }
    assert_eq!(ladder.stats().decode_errors, 0);
}

/// The ladder is a transform like any other: `pump` feeds it and takes the
/// output its threads make (through `Transform::poll_output`, woken by
/// them) while the source still runs, then the rest at the flush.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ladder_runs_under_pump_like_any_transform() {
    use std::sync::{Arc, Mutex};
    use ugc_core::{Sink, Source, pump};

    /// The capture at once, then a pause of a second before it ends; notes
    /// how much output the sink had when the pause began and ended.
    struct Paused(std::vec::IntoIter<MediaEvent>, Collect);
    impl Source for Paused {
        async fn next_event(&mut self) -> ugc_core::Result<Option<MediaEvent>> {
            let next = self.0.next();
            if next.is_none() {
                let seen = || self.1.0.lock().unwrap().0.len();
                let at_pause = seen();
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                self.1.0.lock().unwrap().1 = Some((at_pause, seen()));
            }
            Ok(next)
        }
    }
    /// Events, and the output seen when the pause began and ended.
    type Seen = (Vec<MediaEvent>, Option<(usize, usize)>);
    /// Collects events.
    #[derive(Clone, Default)]
    struct Collect(Arc<Mutex<Seen>>);
    impl Sink for Collect {
        async fn send(&mut self, e: MediaEvent) -> ugc_core::Result<()> {
            self.0.lock().unwrap().0.push(e);
            Ok(())
        }
    }

    let sink = Collect::default();
    let ladder = Ladder::new(small_ladder()).unwrap();
    pump(
        Paused(capture().into_iter(), sink.clone()),
        ladder,
        sink.clone(),
    )
    .await
    .unwrap();
    let (out, pause) = std::mem::take(&mut *sink.0.lock().unwrap());
    // Output came while no input did: the ladder's threads woke the pump
    // (through Transform::poll_output), not only the flush at the end.
    let (at_pause, after_pause) = pause.unwrap();
    assert!(after_pause > at_pause, "{at_pause} then {after_pause}");
    let mut demux = LadderDemux::new();
    let mut frames: BTreeMap<usize, usize> = BTreeMap::new();
    for e in out {
        for (i, e) in demux.route(e) {
            if let MediaEvent::Frame(_) = e {
                *frames.entry(i).or_default() += 1;
            }
        }
    }
    // Every rendition of the small ladder (240p, 120p, passthrough) has output.
    assert_eq!(frames.len(), 3, "{frames:?}");
    assert!(frames.values().all(|n| *n > 10), "{frames:?}");
}
