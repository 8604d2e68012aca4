//! The MPEG-TS demuxer against real ffmpeg 5.1 captures (see `data/*.txt`).
#![allow(missing_docs)]

use proptest::prelude::*;
use ugc_codec::h264;
use ugc_codec::ts_demux::{AUDIO_TRACK, TsDemuxer, VIDEO_TRACK};
use ugc_core::{Codec, Frame, MediaEvent, Tracks};

const H264_TS: &[u8] = include_bytes!("data/ffmpeg51_libx264_aac_320x240_1s.ts");
const HEVC_TS: &[u8] = include_bytes!("data/ffmpeg51_libx265_aac_352x288_1s.ts");

fn demux_chunks<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> (Vec<MediaEvent>, TsDemuxer) {
    let mut d = TsDemuxer::new();
    let mut out = Vec::new();
    for c in chunks {
        d.push(c);
        while let Some(e) = d.poll_event() {
            out.push(e);
        }
    }
    d.finish();
    while let Some(e) = d.poll_event() {
        out.push(e);
    }
    (out, d)
}

fn demux(data: &[u8]) -> (Vec<MediaEvent>, TsDemuxer) {
    demux_chunks([data])
}

fn frames(events: &[MediaEvent], track: ugc_core::TrackId) -> Vec<&Frame> {
    events
        .iter()
        .filter_map(|e| match e {
            MediaEvent::Frame(f) if f.track == track => Some(f),
            _ => None,
        })
        .collect()
}

fn tracks(events: &[MediaEvent]) -> Vec<&Tracks> {
    events
        .iter()
        .filter_map(|e| match e {
            MediaEvent::Tracks(t) => Some(t),
            _ => None,
        })
        .collect()
}

#[test]
fn ffmpeg_h264_aac_ts_gives_avcc_access_units_and_raw_aac() {
    let (ev, d) = demux(H264_TS);
    let t = tracks(&ev);
    assert_eq!(t.len(), 1, "one track set: {t:?}");
    assert!(matches!(ev[0], MediaEvent::Tracks(_)));
    let v = t[0].video().expect("video");
    assert_eq!(v.codec, Codec::H264);
    assert!(v.codec_string.starts_with("avc1.64"), "{}", v.codec_string);
    assert_eq!(
        (v.video().unwrap().width, v.video().unwrap().height),
        (320, 240)
    );
    let a = t[0].audio().expect("audio");
    assert_eq!(a.codec, Codec::Aac);
    assert_eq!(a.codec_string, "mp4a.40.2");
    assert_eq!(a.timescale.get(), 44_100);
    assert_eq!(a.audio().unwrap().channels, 1);

    let vf = frames(&ev, VIDEO_TRACK);
    let af = frames(&ev, AUDIO_TRACK);
    assert_eq!(vf.len(), 30, "ffprobe counts 30 pictures");
    assert_eq!(af.len(), 45, "ffprobe counts 45 AAC frames");
    assert!(vf[0].keyframe);
    assert_eq!(vf.iter().filter(|f| f.keyframe).count(), 1);
    // B-frames: pts != dts somewhere; dts strictly increasing.
    assert!(vf.iter().any(|f| f.pts != f.dts));
    assert!(vf.windows(2).all(|w| w[0].dts < w[1].dts));
    for f in &vf {
        // Length-prefixed, no parameter sets or delimiters left inside.
        for nal in h264::nal_units(&f.data, 4) {
            let t = h264::nal_type(nal.expect("well framed")).unwrap();
            assert!(!matches!(t, 7..=9), "NAL type {t} in a frame");
        }
    }
    // Audio: consecutive 1024-sample frames, raw (no ADTS syncword).
    assert!(af.windows(2).all(|w| w[1].pts - w[0].pts == 1024));
    assert!(
        af.iter()
            .all(|f| !(f.data[0] == 0xff && f.data[1] & 0xf0 == 0xf0))
    );
    let s = d.stats();
    assert_eq!((s.cc_errors, s.resync_bytes, s.dropped_pes), (0, 0, 0));
    assert_eq!(s.dropped_frames, 0);
}

#[test]
fn ffmpeg_hevc_ts_builds_hvcc_from_parameter_sets() {
    let (ev, _) = demux(HEVC_TS);
    let t = tracks(&ev);
    assert_eq!(t.len(), 1);
    let v = t[0].video().unwrap();
    assert_eq!(v.codec, Codec::H265);
    assert!(v.codec_string.starts_with("hvc1.1."), "{}", v.codec_string);
    assert_eq!(
        (v.video().unwrap().width, v.video().unwrap().height),
        (352, 288)
    );
    // From the SPS's VUI timing info (ffprobe: 25/1), for FRAME-RATE.
    assert_eq!(
        v.video().unwrap().frame_rate,
        Some(ugc_core::Rational::new(25, 1))
    );
    let cfg = ugc_codec::hevc::HevcConfig::parse(&v.config).unwrap();
    assert_eq!(cfg.parameter_sets.len(), 3);
    assert_eq!(t[0].audio().unwrap().timescale.get(), 48_000);
    let vf = frames(&ev, VIDEO_TRACK);
    assert_eq!(vf.len(), 25);
    assert!(vf[0].keyframe);
    assert_eq!(frames(&ev, AUDIO_TRACK).len(), 48);
}

#[test]
fn garbage_between_packets_is_skipped_and_counted() {
    let mut dirty = b"\x00\x01garbage without sync".to_vec();
    for (i, p) in H264_TS.chunks(188).enumerate() {
        dirty.extend_from_slice(p);
        if i == 40 {
            dirty.extend_from_slice(&[0x12; 77]);
        }
    }
    let (ev, d) = demux(&dirty);
    let (clean, _) = demux(H264_TS);
    assert_eq!(ev, clean);
    assert_eq!(d.stats().resync_bytes, 22 + 77);
    assert_eq!(d.stats().resyncs, 2);
}

#[test]
fn a_lost_packet_is_a_counted_continuity_error_and_one_dropped_access_unit() {
    // Drop one packet in the middle of a video PES (PID 0x100, no PUSI).
    let mut lost = Vec::new();
    let mut dropped = false;
    for (i, p) in H264_TS.chunks(188).enumerate() {
        let pid = (u16::from(p[1] & 0x1f) << 8) | u16::from(p[2]);
        if !dropped && i > 100 && pid == 0x100 && p[1] & 0x40 == 0 {
            dropped = true;
            continue;
        }
        lost.extend_from_slice(p);
    }
    let (ev, d) = demux(&lost);
    assert_eq!(d.stats().cc_errors, 1);
    assert_eq!(d.stats().dropped_pes, 1);
    assert_eq!(frames(&ev, VIDEO_TRACK).len(), 29);
    assert_eq!(frames(&ev, AUDIO_TRACK).len(), 45);
}

/// Rewrites every PTS/DTS of `ts` to `(t + offset) mod 2^33`.
fn shift_timestamps(ts: &[u8], offset: u64) -> Vec<u8> {
    let mut out = ts.to_vec();
    for p in out.chunks_mut(188) {
        if p[1] & 0x40 == 0 {
            continue;
        }
        let afc = (p[3] >> 4) & 3;
        let mut s = 4;
        if afc & 2 != 0 {
            s += 1 + p[4] as usize;
        }
        let pes = &mut p[s..];
        if pes.len() < 14 || pes[..3] != [0, 0, 1] || pes[3] == 0 {
            continue;
        }
        let flags = pes[7] >> 6;
        let mut fix = |at: usize| {
            let b = &mut pes[at..at + 5];
            let v = (u64::from(b[0] >> 1) & 7) << 30
                | u64::from(b[1]) << 22
                | (u64::from(b[2]) >> 1) << 15
                | u64::from(b[3]) << 7
                | u64::from(b[4]) >> 1;
            let n = (v + offset) & ((1 << 33) - 1);
            b[0] = (b[0] & 0xf1) | (((n >> 30) as u8 & 7) << 1);
            b[1] = (n >> 22) as u8;
            b[2] = (((n >> 15) as u8) << 1) | 1;
            b[3] = (n >> 7) as u8;
            b[4] = ((n as u8) << 1) | 1;
        };
        if flags & 2 != 0 {
            fix(9);
        }
        if flags == 3 {
            fix(14);
        }
    }
    out
}

#[test]
fn pts_dts_wrap_at_33_bits_stays_monotonic() {
    // Put the wrap half a second into the capture.
    let offset = (1u64 << 33) - 126_000 - 45_000;
    let (ev, _) = demux(&shift_timestamps(H264_TS, offset));
    let vf = frames(&ev, VIDEO_TRACK);
    assert_eq!(vf.len(), 30);
    assert!(
        vf.windows(2)
            .all(|w| w[0].dts < w[1].dts && w[1].dts - w[0].dts < 10_000)
    );
    assert!(vf.last().unwrap().dts > 1 << 33, "crossed the wrap");
    let af = frames(&ev, AUDIO_TRACK);
    assert!(af.windows(2).all(|w| w[1].pts - w[0].pts == 1024));
    // Same frame spacing as without the wrap.
    let (plain, _) = demux(H264_TS);
    let pv = frames(&plain, VIDEO_TRACK);
    for (a, b) in vf.windows(2).zip(pv.windows(2)) {
        assert_eq!(a[1].dts - a[0].dts, b[1].dts - b[0].dts);
        assert_eq!(a[1].data, b[1].data);
    }
}

#[test]
fn arbitrary_bytes_never_panic() {
    let mut rng = 0x1234_5678_9abc_def0u64;
    let mut data = H264_TS.to_vec();
    for _ in 0..2000 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let i = (rng as usize) % data.len();
        data[i] = (rng >> 32) as u8;
    }
    let _ = demux(&data);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any split of the byte stream yields the same events.
    #[test]
    fn any_split_yields_the_same_access_units(cuts in proptest::collection::vec(0usize..H264_TS.len(), 0..40)) {
        let mut cuts = cuts;
        cuts.sort_unstable();
        cuts.dedup();
        let mut chunks = Vec::new();
        let mut prev = 0;
        for c in cuts {
            chunks.push(&H264_TS[prev..c]);
            prev = c;
        }
        chunks.push(&H264_TS[prev..]);
        let (split, _) = demux_chunks(chunks);
        let (whole, _) = demux(H264_TS);
        prop_assert_eq!(split, whole);
    }
}
