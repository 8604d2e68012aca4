//! A real libx265 stream (Annex B with AUDs) -> hvcC + length-prefixed
//! frames -> fMP4 (hvc1) and MPEG-TS (stream type 0x24) -> ffmpeg decodes
//! without errors.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

mod support {
    pub mod scratch;
}

use std::process::Command;

use bytes::Bytes;
use ugc_codec::fmp4::{self, Sample, TrackFragment};
use ugc_codec::h264::{annexb_nal_units, annexb_to_avcc};
use ugc_codec::hevc::{self, HevcConfig};
use ugc_codec::ts::TsMuxer;
use ugc_core::{Codec, Frame, Timescale, TrackId, TrackInfo, TrackParams, Tracks, VideoParams};

const CAPTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/ffmpeg51_libx265_aud_352x288_2s.hevc"
);

fn load() -> (Tracks, Vec<Frame>) {
    let data = std::fs::read(CAPTURE).unwrap();
    let nals = annexb_nal_units(&data);
    let of = |t: u8| -> Vec<&[u8]> {
        nals.iter()
            .copied()
            .filter(|n| hevc::nal_type(n) == Some(t))
            .collect()
    };
    let hvcc =
        hevc::build_hvcc(&of(hevc::NAL_VPS), &of(hevc::NAL_SPS), &of(hevc::NAL_PPS)).unwrap();
    let config = Bytes::from(hvcc);
    let c = HevcConfig::parse(&config).unwrap();
    assert_eq!((c.width, c.height), (352, 288));
    assert_eq!(c.codec_string(), "hvc1.1.6.L60.90");
    // ffprobe: r_frame_rate 25/1 (the SPS's VUI timing info).
    assert_eq!(c.frame_rate, Some(ugc_core::Rational::new(25, 1)));
    // Access units: split at each AUD; keep slices only (parameter sets are in hvcC).
    let mut aus: Vec<Vec<u8>> = Vec::new();
    for n in &nals {
        let t = hevc::nal_type(n).unwrap();
        if t == hevc::NAL_AUD {
            aus.push(Vec::new());
        } else if t < 32 {
            let au = aus.last_mut().unwrap();
            au.extend_from_slice(&[0, 0, 0, 1]);
            au.extend_from_slice(n);
        }
    }
    let frames: Vec<Frame> = aus
        .iter()
        .enumerate()
        .map(|(i, au)| {
            let key = annexb_nal_units(au)
                .iter()
                .any(|n| hevc::is_irap_type(hevc::nal_type(n).unwrap()));
            Frame {
                track: TrackId(1),
                dts: i as i64 * 40,
                pts: i as i64 * 40,
                keyframe: key,
                data: Bytes::from(annexb_to_avcc(au, 4).unwrap()),
            }
        })
        .collect();
    let tracks = Tracks::new(vec![TrackInfo {
        id: TrackId(1),
        codec: Codec::H265,
        timescale: Timescale::MILLIS,
        config,
        codec_string: c.codec_string(),
        params: TrackParams::Video(VideoParams {
            width: c.width,
            height: c.height,
            frame_rate: None,
        }),
        bitrate: None,
    }]);
    (tracks, frames)
}

fn ffmpeg_decodes(path: &std::path::Path) -> bool {
    if Command::new("ffmpeg").arg("-version").output().is_err() {
        eprintln!("NOTICE: ffmpeg not found; skipping the decode check");
        return false;
    }
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
    true
}

fn frame_count(path: &std::path::Path) -> u64 {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_frames",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=nb_read_frames",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn tmp(name: &str) -> std::path::PathBuf {
    support::scratch::scratch("ugc-codec-hevc", name)
}

#[test]
fn x265_stream_muxes_to_decodable_cmaf() {
    let (tracks, frames) = load();
    assert_eq!(frames.len(), 50);
    assert_eq!(frames.iter().filter(|f| f.keyframe).count(), 2);
    let mut out = fmp4::init_segment(tracks.as_slice()).unwrap().to_vec();
    for (seq, gop) in frames.chunks(25).enumerate() {
        let samples: Vec<Sample> = gop
            .iter()
            .map(|f| Sample {
                duration: 3600,
                cts_offset: 0,
                keyframe: f.keyframe,
                data: f.data.clone(),
            })
            .collect();
        out.extend_from_slice(&fmp4::styp());
        out.extend_from_slice(
            &fmp4::fragment(
                seq as u32 + 1,
                &[TrackFragment {
                    track: TrackId(1),
                    base_decode_time: seq as u64 * 25 * 3600,
                    samples: &samples,
                }],
            )
            .unwrap(),
        );
    }
    let path = tmp("x265.mp4");
    std::fs::write(&path, &out).unwrap();
    if ffmpeg_decodes(&path) {
        assert_eq!(frame_count(&path), 50);
    }
}

#[test]
fn x265_stream_muxes_to_decodable_ts() {
    let (tracks, frames) = load();
    let mut mux = TsMuxer::new(&tracks).unwrap();
    let mut out = Vec::new();
    for gop in frames.chunks(25) {
        out.extend_from_slice(&mux.write_segment(gop).unwrap());
    }
    assert_eq!(mux.skipped_frames(), 0);
    let path = tmp("x265.ts");
    std::fs::write(&path, &out).unwrap();
    if ffmpeg_decodes(&path) {
        assert_eq!(frame_count(&path), 50);
    }
}
