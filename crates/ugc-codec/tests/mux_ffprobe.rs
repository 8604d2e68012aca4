//! End to end on a real capture: FLV tags -> FlvIngest -> fMP4 and MPEG-TS ->
//! ffprobe / ffmpeg must decode without a single error.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

mod support {
    pub mod flv_file;
    pub mod scratch;
}

use std::path::PathBuf;
use std::process::Command;

use bytes::Bytes;
use support::flv_file::read_flv;
use ugc_codec::flv::{AUDIO_TRACK, FlvIngest, VIDEO_TRACK};
use ugc_codec::fmp4::{self, Sample, TrackFragment};
use ugc_codec::ts::TsMuxer;
use ugc_core::time::rescale;
use ugc_core::{Frame, MediaEvent, Rational, Tracks};

const CAPTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/ffmpeg51_libx264_aac_320x240_2s.flv"
);

fn ingest_capture() -> (Tracks, Vec<Frame>) {
    let file = Bytes::from(std::fs::read(CAPTURE).unwrap());
    let mut ingest = FlvIngest::new();
    let mut tracks = Vec::new();
    let mut frames = Vec::new();
    let mut drain = |ingest: &mut FlvIngest| {
        while let Some(ev) = ingest.poll_event() {
            match ev {
                MediaEvent::Tracks(t) => tracks.push(t),
                MediaEvent::Frame(f) => frames.push(f),
                other => panic!("unexpected {other:?}"),
            }
        }
    };
    for tag in read_flv(&file) {
        let ts = i64::from(tag.timestamp);
        match tag.tag_type {
            8 => ingest.push_audio(ts, tag.body).unwrap(),
            9 => ingest.push_video(ts, tag.body).unwrap(),
            _ => {}
        }
        drain(&mut ingest);
    }
    ingest.finish();
    drain(&mut ingest);
    assert_eq!(tracks.len(), 1, "one track set");
    assert_eq!(ingest.stats().dropped_before_header, 0);
    (tracks.remove(0), frames)
}

fn tool(name: &str) -> bool {
    let ok = Command::new(name).arg("-version").output().is_ok();
    if !ok {
        eprintln!("NOTICE: {name} not found; skipping the decode check");
    }
    ok
}

fn tmp(name: &str) -> PathBuf {
    support::scratch::scratch("ugc-codec-test", name)
}

/// Decodes `path` fully with ffmpeg; asserts no error output. Returns the
/// ffprobe packet count per stream.
fn decode_clean(path: &PathBuf) -> Vec<(String, u64)> {
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(path)
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && err.trim().is_empty(),
        "ffmpeg: {err}"
    );
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_packets",
            "-show_entries",
            "stream=codec_name,nb_read_packets",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && err.trim().is_empty(),
        "ffprobe: {err}"
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (c, n) = l.split_once(',')?;
            Some((c.to_owned(), n.trim().parse().ok()?))
        })
        // MPEG-TS streams are listed once under their program and once alone.
        .fold(Vec::new(), |mut v, e| {
            if !v.contains(&e) {
                v.push(e);
            }
            v
        })
}

#[test]
fn ffmpeg_flv_capture_gives_tracks() {
    let (tracks, frames) = ingest_capture();
    let v = tracks.video().unwrap();
    assert_eq!(v.id, VIDEO_TRACK);
    assert_eq!(v.codec_string, "avc1.64000d");
    let vp = v.video().unwrap();
    assert_eq!((vp.width, vp.height), (320, 240));
    assert_eq!(vp.frame_rate, Some(Rational::new(30, 1)));
    let a = tracks.audio().unwrap();
    assert_eq!(a.id, AUDIO_TRACK);
    assert_eq!(a.codec_string, "mp4a.40.2");
    assert_eq!(a.audio().unwrap().sample_rate, 44_100);
    let nv = frames.iter().filter(|f| f.track == VIDEO_TRACK).count();
    assert_eq!(nv, 60);
    assert!(
        frames.iter().any(|f| f.pts > f.dts),
        "B-frames have composition offsets"
    );
    assert_eq!(
        frames
            .iter()
            .filter(|f| f.track == VIDEO_TRACK && f.keyframe)
            .count(),
        2
    );
}

/// Splits frames into segments starting at video key frames.
fn segments(frames: &[Frame]) -> Vec<Vec<Frame>> {
    let mut segs: Vec<Vec<Frame>> = Vec::new();
    for f in frames {
        if segs.is_empty() || (f.track == VIDEO_TRACK && f.keyframe) {
            segs.push(Vec::new());
        }
        segs.last_mut().unwrap().push(f.clone());
    }
    segs
}

fn cmaf(tracks: &Tracks, frames: &[Frame]) -> Vec<u8> {
    let v = tracks.video().unwrap();
    let a = tracks.audio().unwrap();
    let vts = fmp4::track_timescale(v);
    let ats = fmp4::track_timescale(a);
    let spf = a.audio().unwrap().samples_per_frame;
    let mut out = fmp4::init_segment(tracks.as_slice()).unwrap().to_vec();
    let all_video: Vec<&Frame> = frames.iter().filter(|f| f.track == VIDEO_TRACK).collect();
    let mut audio_base: Option<u64> = None;
    for (seq, seg) in segments(frames).iter().enumerate() {
        let mut vs = Vec::new();
        let mut vbase = None;
        for f in seg.iter().filter(|f| f.track == VIDEO_TRACK) {
            let dts = rescale(f.dts, v.timescale, vts);
            vbase.get_or_insert(dts as u64);
            let idx = all_video.iter().position(|g| g.dts == f.dts).unwrap();
            let next = all_video
                .get(idx + 1)
                .map(|g| rescale(g.dts, v.timescale, vts))
                .unwrap_or(dts + 3000);
            vs.push(Sample {
                duration: (next - dts) as u32,
                cts_offset: (rescale(f.pts, v.timescale, vts) - dts) as i32,
                keyframe: f.keyframe,
                data: f.data.clone(),
            });
        }
        let asamples: Vec<Sample> = seg
            .iter()
            .filter(|f| f.track == AUDIO_TRACK)
            .map(|f| {
                audio_base.get_or_insert(rescale(f.dts, a.timescale, ats) as u64);
                Sample {
                    duration: spf,
                    cts_offset: 0,
                    keyframe: true,
                    data: f.data.clone(),
                }
            })
            .collect();
        let abase = audio_base.unwrap_or(0);
        let mut trafs = vec![TrackFragment {
            track: v.id,
            base_decode_time: vbase.unwrap_or(0),
            samples: &vs,
        }];
        if !asamples.is_empty() {
            trafs.push(TrackFragment {
                track: a.id,
                base_decode_time: abase,
                samples: &asamples,
            });
        }
        out.extend_from_slice(&fmp4::styp());
        out.extend_from_slice(&fmp4::fragment(seq as u32 + 1, &trafs).unwrap());
        audio_base = Some(abase + u64::from(spf) * asamples.len() as u64);
    }
    out
}

#[test]
fn cmaf_of_ffmpeg_capture_decodes_without_errors() {
    let (tracks, frames) = ingest_capture();
    let bytes = cmaf(&tracks, &frames);
    if !tool("ffprobe") || !tool("ffmpeg") {
        return;
    }
    let path = tmp("capture.mp4");
    std::fs::write(&path, &bytes).unwrap();
    let counts = decode_clean(&path);
    let na = frames.iter().filter(|f| f.track == AUDIO_TRACK).count() as u64;
    assert_eq!(
        counts,
        vec![("h264".to_owned(), 60), ("aac".to_owned(), na)]
    );
}

#[test]
fn ts_of_ffmpeg_capture_decodes_without_errors() {
    let (tracks, frames) = ingest_capture();
    let mut mux = TsMuxer::new(&tracks).unwrap();
    let mut bytes = Vec::new();
    for seg in segments(&frames) {
        bytes.extend_from_slice(&mux.write_segment(&seg).unwrap());
    }
    assert_eq!(bytes.len() % 188, 0);
    if !tool("ffprobe") || !tool("ffmpeg") {
        return;
    }
    let path = tmp("capture.ts");
    std::fs::write(&path, &bytes).unwrap();
    let counts = decode_clean(&path);
    let na = frames.iter().filter(|f| f.track == AUDIO_TRACK).count() as u64;
    assert_eq!(
        counts,
        vec![("h264".to_owned(), 60), ("aac".to_owned(), na)]
    );
}

/// The Hub's silence (`ugc_core::silence`) is real AAC: ffmpeg decodes a
/// stream of it, mono and stereo, without a word, to samples that are all
/// zero.
#[test]
fn silent_aac_frames_decode_to_silence() {
    use ugc_codec::aac::{Asc, adts_header};
    use ugc_core::{AudioParams, Codec, Timescale, TrackId, TrackInfo, TrackParams};
    if !tool("ffmpeg") {
        return;
    }
    for (asc, channels) in [([0x12u8, 0x08], 1usize), ([0x11, 0x90], 2)] {
        let track = TrackInfo {
            id: TrackId(2),
            codec: Codec::Aac,
            timescale: Timescale::new(44_100).unwrap(),
            config: Bytes::copy_from_slice(&asc),
            codec_string: "mp4a.40.2".into(),
            params: TrackParams::Audio(AudioParams {
                sample_rate: 44_100,
                channels: channels as u8,
                samples_per_frame: 1024,
            }),
            bitrate: None,
        };
        let frame = ugc_core::silence::silent_frame(&track).expect("a silent frame");
        let parsed = Asc::parse(&asc).unwrap();
        let mut adts = Vec::new();
        for _ in 0..20 {
            adts.extend_from_slice(&adts_header(&parsed, frame.len()));
            adts.extend_from_slice(&frame);
        }
        let path = tmp(&format!("silence-{channels}.aac"));
        std::fs::write(&path, &adts).unwrap();
        let out = Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error", "-i"])
            .arg(&path)
            .args(["-f", "s16le", "-"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && err.trim().is_empty(),
            "ffmpeg: {err}"
        );
        assert_eq!(
            out.stdout.len(),
            20 * 1024 * channels * 2,
            "{channels} channels"
        );
        assert!(out.stdout.iter().all(|b| *b == 0), "not silence");
    }
}
