//! AV1 and Opus, the codecs an Enhanced RTMP or WHIP publisher may send:
//! the samples and decoder records of a real FFmpeg file (read with
//! mp4-atom) -> fMP4 (`av01`/`av1C`, `Opus`/`dOps`) -> ffmpeg decodes every
//! sample without an error.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

mod support {
    pub mod scratch;
}

use std::process::Command;

use bytes::Bytes;
use mp4_atom::{Any, Atom, DecodeMaybe as _, Moov, StszSamples, Trak};
use ugc_codec::fmp4::{self, Sample, TrackFragment};
use ugc_core::{AudioParams, Codec, Timescale, TrackId, TrackInfo, TrackParams, VideoParams};

const CAPTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/ffmpeg51_libaom_opus_320x240_1s.mp4"
);

/// The samples of a progressive MP4 track: (dts, duration, sync, bytes).
fn samples(file: &[u8], trak: &Trak) -> Vec<(u64, u32, bool, Bytes)> {
    let stbl = &trak.mdia.minf.stbl;
    let StszSamples::Different { sizes } = &stbl.stsz.samples else {
        panic!("constant sample size")
    };
    let offsets = &stbl.stco.as_ref().unwrap().entries;
    let mut deltas = stbl
        .stts
        .entries
        .iter()
        .flat_map(|e| std::iter::repeat_n(e.sample_delta, e.sample_count as usize));
    let sync = stbl.stss.as_ref().map(|s| &s.entries);
    let mut out = Vec::new();
    let (mut n, mut dts) = (0usize, 0u64);
    for (c, &offset) in offsets.iter().enumerate() {
        let chunk = c as u32 + 1;
        let per_chunk = stbl
            .stsc
            .entries
            .iter()
            .rev()
            .find(|e| e.first_chunk <= chunk)
            .unwrap()
            .samples_per_chunk;
        let mut at = offset as usize;
        for _ in 0..per_chunk {
            let size = sizes[n] as usize;
            let d = deltas.next().unwrap();
            let key = sync.is_none_or(|s| s.contains(&(n as u32 + 1)));
            out.push((dts, d, key, Bytes::copy_from_slice(&file[at..at + size])));
            at += size;
            dts += u64::from(d);
            n += 1;
        }
    }
    assert_eq!(n, sizes.len());
    out
}

fn record<A: Atom>(a: &A) -> Bytes {
    let mut b = Vec::new();
    a.encode_body(&mut b).unwrap();
    Bytes::from(b)
}

#[test]
fn av1_and_opus_from_ffmpeg_decode_from_our_fmp4() {
    let file = std::fs::read(CAPTURE).unwrap();
    let mut buf = &file[..];
    let mut moov = None;
    while let Some(atom) = Any::decode_maybe(&mut buf).unwrap() {
        if let Any::Moov(m) = atom {
            moov = Some(m);
        }
    }
    let moov: Moov = moov.unwrap();
    let mut tracks = Vec::new();
    let mut media = Vec::new();
    for trak in &moov.trak {
        let id = TrackId(trak.tkhd.track_id);
        let ts = trak.mdia.mdhd.timescale;
        let info = match &trak.mdia.minf.stbl.stsd.codecs[0] {
            mp4_atom::Codec::Av01(av01) => TrackInfo {
                id,
                codec: Codec::Av1,
                timescale: Timescale::MILLIS,
                config: record(&av01.av1c),
                codec_string: "av01.0.00M.08".into(),
                params: TrackParams::Video(VideoParams {
                    width: u32::from(av01.visual.width),
                    height: u32::from(av01.visual.height),
                    frame_rate: None,
                }),
                bitrate: None,
            },
            mp4_atom::Codec::Opus(opus) => {
                assert_eq!(ts, 48_000);
                TrackInfo {
                    id,
                    codec: Codec::Opus,
                    timescale: Timescale::MILLIS,
                    config: record(&opus.dops),
                    codec_string: "opus".into(),
                    params: TrackParams::Audio(AudioParams {
                        sample_rate: 48_000,
                        channels: opus.dops.output_channel_count,
                        samples_per_frame: 960,
                    }),
                    bitrate: None,
                }
            }
            other => panic!("{other:?}"),
        };
        let out_ts = u64::from(fmp4::track_timescale(&info).get());
        let rescale = |t: u64| t * out_ts / u64::from(ts);
        let s: Vec<Sample> = samples(&file, trak)
            .into_iter()
            .map(|(dts, d, keyframe, data)| Sample {
                duration: (rescale(dts + u64::from(d)) - rescale(dts)) as u32,
                cts_offset: 0,
                keyframe,
                data,
            })
            .collect();
        tracks.push(info);
        media.push((id, s));
    }
    assert_eq!(tracks.len(), 2);
    assert_eq!(media[0].1.len(), 30);
    assert_eq!(media[1].1.len(), 51);

    let mut out = fmp4::init_segment(&tracks).unwrap().to_vec();
    // Two fragments: the first 15 video frames with the audio of that half
    // second, then the rest.
    let split = |s: &[Sample], at: usize| -> (Vec<Sample>, Vec<Sample>) {
        (s[..at].to_vec(), s[at..].to_vec())
    };
    let (v0, v1) = split(&media[0].1, 15);
    let (a0, a1) = split(&media[1].1, 25);
    let vd = |s: &[Sample]| s.iter().map(|s| u64::from(s.duration)).sum::<u64>();
    for (seq, (v, a, vbase, abase)) in [(&v0, &a0, 0, 0), (&v1, &a1, vd(&v0), vd(&a0))]
        .into_iter()
        .enumerate()
    {
        out.extend_from_slice(&fmp4::styp());
        let f = fmp4::fragment(
            seq as u32 + 1,
            &[
                TrackFragment {
                    track: media[0].0,
                    base_decode_time: vbase,
                    samples: v,
                },
                TrackFragment {
                    track: media[1].0,
                    base_decode_time: abase,
                    samples: a,
                },
            ],
        )
        .unwrap();
        out.extend_from_slice(&f);
    }
    if Command::new("ffmpeg").arg("-version").output().is_err() {
        eprintln!("NOTICE: ffmpeg not found; skipping the decode check");
        return;
    }
    let path = support::scratch::scratch("ugc-codec-test", "av1_opus.mp4");
    std::fs::write(&path, &out).unwrap();
    let run = |args: &[&str]| {
        let o = Command::new(args[0])
            .args(&args[1..])
            .arg(&path)
            .args(if args[0] == "ffmpeg" {
                &["-f", "null", "-"][..]
            } else {
                &[][..]
            })
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(
            o.status.success() && err.trim().is_empty(),
            "{args:?}: {err}"
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    run(&["ffmpeg", "-nostdin", "-v", "error", "-i"]);
    let probed = run(&[
        "ffprobe",
        "-v",
        "error",
        "-count_frames",
        "-show_entries",
        "stream=codec_name,width,height,channels,nb_read_frames",
        "-of",
        "csv=p=0",
    ]);
    let lines: Vec<&str> = probed.lines().collect();
    assert_eq!(lines, ["av1,320,240,30", "opus,2,51"], "{probed}");
}
