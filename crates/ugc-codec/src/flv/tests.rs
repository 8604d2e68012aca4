use super::*;
use crate::h264::tests::X264_AVCC_320X240;
use crate::hevc::tests::X265_HVCC_352X288;
use bytes::Bytes;
use proptest::prelude::*;
use ugc_core::Rational;
use ugc_core::{Codec, Frame, MediaEvent};

const ASC_LC_44K_MONO: &[u8] = &[0x12, 0x08];

fn avc_seq(avcc: &[u8]) -> Bytes {
    let mut b = vec![0x17, 0, 0, 0, 0];
    b.extend_from_slice(avcc);
    Bytes::from(b)
}
fn avc_frame(key: bool, cts: i32, nal: &[u8]) -> Bytes {
    let c = cts.to_be_bytes();
    let mut b = vec![if key { 0x17 } else { 0x27 }, 1, c[1], c[2], c[3]];
    b.extend_from_slice(&(nal.len() as u32).to_be_bytes());
    b.extend_from_slice(nal);
    Bytes::from(b)
}
fn aac_seq() -> Bytes {
    let mut b = vec![0xaf, 0];
    b.extend_from_slice(ASC_LC_44K_MONO);
    Bytes::from(b)
}
fn aac_frame() -> Bytes {
    Bytes::from_static(&[0xaf, 1, 0x21, 0x10, 0x04])
}
pub(super) fn drain(i: &mut FlvIngest) -> Vec<MediaEvent> {
    std::iter::from_fn(|| i.poll_event()).collect()
}

#[test]
fn legacy_avc_tags_parse_with_negative_composition_time() {
    let t = parse_video_tag(&avc_frame(false, -40, &[0x41, 0x9a])).unwrap();
    assert_eq!(t.frame_type, VideoFrameType::Inter);
    assert_eq!(t.codec, VideoCodec::Avc);
    match t.packet {
        VideoPacket::CodedFrames {
            composition_time,
            data,
        } => {
            assert_eq!(composition_time, -40);
            assert_eq!(&data[..], &[0, 0, 0, 2, 0x41, 0x9a]);
        }
        p => panic!("{p:?}"),
    }
}

#[test]
fn frames_before_sequence_header_are_dropped_and_counted() {
    let mut i = FlvIngest::new();
    i.push_video(0, avc_frame(true, 0, &[0x65, 1])).unwrap();
    i.push_audio(0, aac_frame()).unwrap();
    assert!(drain(&mut i).is_empty());
    assert_eq!(i.stats().dropped_before_header, 2);
}

#[test]
fn tracks_wait_for_both_kinds_then_release_buffered_frames() {
    let mut i = FlvIngest::new();
    i.set_metadata(FlvMetadata {
        video_bitrate: Some(2_500_000),
        ..Default::default()
    });
    i.push_video(0, avc_seq(X264_AVCC_320X240)).unwrap();
    i.push_video(0, avc_frame(true, 66, &[0x65, 1])).unwrap();
    assert!(drain(&mut i).is_empty(), "waits for audio");
    i.push_audio(10, aac_seq()).unwrap();
    let ev = drain(&mut i);
    assert_eq!(ev.len(), 2);
    let MediaEvent::Tracks(t) = &ev[0] else {
        panic!("{ev:?}")
    };
    assert_eq!(t.len(), 2);
    assert_eq!(t.video().unwrap().bitrate, Some(2_500_000));
    let MediaEvent::Frame(f) = &ev[1] else {
        panic!("{ev:?}")
    };
    assert_eq!(
        (f.track, f.dts, f.pts, f.keyframe),
        (VIDEO_TRACK, 0, 66, true)
    );
    i.push_audio(20, aac_frame()).unwrap();
    assert!(matches!(&drain(&mut i)[..], [MediaEvent::Frame(f)] if f.track == AUDIO_TRACK));
}

#[test]
fn metadata_without_audio_emits_at_once() {
    let mut i = FlvIngest::new();
    i.set_metadata(FlvMetadata {
        has_audio: Some(false),
        has_video: Some(true),
        ..Default::default()
    });
    i.push_video(0, avc_seq(X264_AVCC_320X240)).unwrap();
    let ev = drain(&mut i);
    assert!(matches!(&ev[..], [MediaEvent::Tracks(t)] if t.len() == 1));
}

#[test]
fn missing_audio_is_given_up_after_two_seconds() {
    let mut i = FlvIngest::new();
    i.push_video(0, avc_seq(X264_AVCC_320X240)).unwrap();
    for n in 0..60 {
        i.push_video(n * 33, avc_frame(n % 30 == 0, 0, &[0x41, 1]))
            .unwrap();
        assert!(drain(&mut i).is_empty(), "frame {n}");
    }
    i.push_video(2000, avc_frame(false, 0, &[0x41, 1])).unwrap();
    let ev = drain(&mut i);
    assert!(matches!(&ev[0], MediaEvent::Tracks(t) if t.len() == 1));
    assert_eq!(ev.len(), 62);
}

#[test]
fn finish_releases_buffered_frames() {
    let mut i = FlvIngest::new();
    i.push_audio(0, aac_seq()).unwrap();
    i.push_audio(0, aac_frame()).unwrap();
    assert!(drain(&mut i).is_empty());
    i.finish();
    assert_eq!(drain(&mut i).len(), 2);
}

#[test]
fn sequence_header_change_emits_tracks_again() {
    let mut i = FlvIngest::new();
    i.set_metadata(FlvMetadata {
        has_audio: Some(false),
        ..Default::default()
    });
    i.push_video(0, avc_seq(X264_AVCC_320X240)).unwrap();
    i.push_video(0, avc_seq(X264_AVCC_320X240)).unwrap(); // repeat: ignored
    i.set_metadata(FlvMetadata {
        video_bitrate: Some(1),
        ..Default::default()
    }); // no re-announce
    assert_eq!(drain(&mut i).len(), 1);
    // avcC of ffmpeg 5.1 / libx264 ultrafast at 1280x720 (Constrained Baseline@3.1).
    let avcc: &[u8] = &[
        0x01, 0x42, 0xc0, 0x1f, 0xff, 0xe1, 0x00, 0x17, 0x67, 0x42, 0xc0, 0x1f, 0xda, 0x01, 0x40,
        0x16, 0xec, 0x04, 0x40, 0x00, 0x00, 0x03, 0x00, 0x40, 0x00, 0x00, 0x0f, 0x03, 0xc6, 0x0c,
        0xa8, 0x01, 0x00, 0x04, 0x68, 0xce, 0x0f, 0xc8,
    ];
    let sps = &avcc[8..31];
    let rebuilt = crate::h264::build_avcc(&[sps], &[&avcc[34..]]).unwrap();
    assert_eq!(&rebuilt[..], avcc);
    i.push_video(40, avc_seq(avcc)).unwrap();
    let ev = drain(&mut i);
    let [MediaEvent::Tracks(t)] = &ev[..] else {
        panic!("{ev:?}")
    };
    let v = t.video().unwrap().video().unwrap();
    assert_eq!((v.width, v.height), (1280, 720));
    assert_eq!(i.stats().tracks_emitted, 2);
}

#[test]
fn enhanced_hevc_sequence_start_and_coded_frames_x() {
    let mut seq = vec![0x90, b'h', b'v', b'c', b'1']; // ExHeader, key, SequenceStart
    seq.extend_from_slice(X265_HVCC_352X288);
    let mut i = FlvIngest::new();
    i.set_metadata(FlvMetadata {
        has_audio: Some(false),
        frame_rate_milli: Some(30_000),
        ..Default::default()
    });
    i.push_video(0, Bytes::from(seq)).unwrap();
    let ev = drain(&mut i);
    let [MediaEvent::Tracks(t)] = &ev[..] else {
        panic!("{ev:?}")
    };
    let v = t.video().unwrap();
    assert_eq!(v.codec, Codec::H265);
    assert_eq!(v.codec_string, "hvc1.1.6.L60.90");
    // The SPS's VUI timing info beats onMetaData's framerate.
    assert_eq!(v.video().unwrap().frame_rate, Some(Rational::new(25, 1)));
    // CodedFramesX: no composition time, pts == dts.
    i.push_video(
        40,
        Bytes::from_static(&[0x93, b'h', b'v', b'c', b'1', 0, 0, 0, 2, 0x26, 0x01]),
    )
    .unwrap();
    // CodedFrames with SI24 composition time 40.
    i.push_video(
        80,
        Bytes::from_static(&[
            0xa1, b'h', b'v', b'c', b'1', 0, 0, 40, 0, 0, 0, 2, 0x02, 0x01,
        ]),
    )
    .unwrap();
    // Empty frame: skipped.
    i.push_video(120, Bytes::from_static(&[0xa3, b'h', b'v', b'c', b'1']))
        .unwrap();
    let ev = drain(&mut i);
    let frames: Vec<_> = ev
        .iter()
        .filter_map(|e| match e {
            MediaEvent::Frame(f) => Some(f),
            _ => None,
        })
        .collect();
    assert_eq!(frames.len(), 2);
    assert_eq!(
        (frames[0].dts, frames[0].pts, frames[0].keyframe),
        (40, 40, true)
    );
    assert_eq!(
        (frames[1].dts, frames[1].pts, frames[1].keyframe),
        (80, 120, false)
    );
    assert_eq!(i.stats().empty_video_frames, 1);
}

#[test]
fn enhanced_mod_ex_and_multitrack() {
    // ModEx (type 7) with 3 bytes of TimestampOffsetNano, then CodedFramesX.
    let body = Bytes::from_static(&[
        0x97, 2, 0, 0, 1, 0x03, b'a', b'v', b'c', b'1', 0, 0, 0, 1, 0x65,
    ]);
    let t = parse_video_tag(&body).unwrap();
    assert!(matches!(
        t.packet,
        VideoPacket::CodedFrames {
            composition_time: 0,
            ..
        }
    ));
    assert!(parse_video_tag(&Bytes::from_static(&[0x96, 0, b'a', b'v', b'c', b'1'])).is_err());
}

#[test]
fn enhanced_opus_audio() {
    let mut head = b"OpusHead".to_vec();
    head.extend_from_slice(&[1, 2, 0x38, 0x01, 0x80, 0xbb, 0, 0, 0, 0, 0]);
    let mut body = vec![0x90, b'O', b'p', b'u', b's'];
    body.extend_from_slice(&head);
    let mut i = FlvIngest::new();
    i.set_metadata(FlvMetadata {
        has_video: Some(false),
        ..Default::default()
    });
    i.push_audio(0, Bytes::from(body)).unwrap();
    let ev = drain(&mut i);
    let [MediaEvent::Tracks(t)] = &ev[..] else {
        panic!("{ev:?}")
    };
    let a = t.audio().unwrap();
    assert_eq!(a.codec, Codec::Opus);
    assert_eq!(
        &a.config[..],
        &[0, 2, 0x01, 0x38, 0, 0, 0xbb, 0x80, 0, 0, 0]
    );
}

#[test]
fn unsupported_codecs_are_errors_not_state_changes() {
    let mut i = FlvIngest::new();
    assert!(
        i.push_audio(0, Bytes::from_static(&[0x2f, 0xff, 0xfb]))
            .is_err()
    ); // MP3
    assert!(i.push_video(0, Bytes::from_static(&[0x12, 0, 0])).is_err()); // Sorenson
    assert!(drain(&mut i).is_empty());
}

proptest! {
    #[test]
    fn ingest_never_panics_on_arbitrary_tags(tags in proptest::collection::vec(
        (any::<bool>(), -5_000i64..5_000, proptest::collection::vec(any::<u8>(), 0..48)), 0..40)) {
        let mut i = FlvIngest::new();
        i.push_video(0, avc_seq(X264_AVCC_320X240)).unwrap();
        for (audio, ts, body) in tags {
            let body = Bytes::from(body);
            let _ = if audio { i.push_audio(ts, body) } else { i.push_video(ts, body) };
            while let Some(ev) = i.poll_event() {
                if let MediaEvent::Frame(f) = ev {
                    prop_assert!(f.track == VIDEO_TRACK || f.track == AUDIO_TRACK);
                }
            }
        }
        i.finish();
        let _ = drain(&mut i);
    }

    #[test]
    fn valid_tags_cut_anywhere_never_panic(cut in 0usize..60, which in 0usize..4) {
        let bodies = [avc_seq(X264_AVCC_320X240), avc_frame(true, 3, &[0x65, 1, 2]), aac_seq(), aac_frame()];
        let b = &bodies[which];
        let b = b.slice(..cut.min(b.len()));
        let mut i = FlvIngest::new();
        let _ = i.push_video(0, b.clone());
        let _ = i.push_audio(0, b);
        i.finish();
        let _ = drain(&mut i);
    }
}

#[test]
fn written_tags_parse_back() {
    use ugc_core::hub::tests_support::av_tracks;
    let tracks = av_tracks();
    let v = tracks.video().unwrap();
    let hdr = Bytes::from(video_sequence_header(v).unwrap());
    let tag = parse_video_tag(&hdr).unwrap();
    assert!(matches!(tag.packet, VideoPacket::SequenceHeader(c) if c == v.config));
    let f = Frame {
        track: v.id,
        dts: 1000,
        pts: 1066,
        keyframe: true,
        data: Bytes::from_static(&[0, 0, 0, 2, 0x65, 0x88]),
    };
    let mut out = Vec::new();
    write_video_tag(v, &f, &mut out).unwrap();
    let tag = parse_video_tag(&Bytes::from(out)).unwrap();
    assert!(tag.frame_type.is_key());
    match tag.packet {
        VideoPacket::CodedFrames {
            composition_time,
            data,
        } => {
            assert_eq!(composition_time, 66);
            assert_eq!(data, f.data);
        }
        other => panic!("{other:?}"),
    }
    // HEVC goes out as Enhanced RTMP.
    let mut h = v.clone();
    h.codec = Codec::H265;
    let mut out = Vec::new();
    write_video_tag(&h, &f, &mut out).unwrap();
    let tag = parse_video_tag(&Bytes::from(out)).unwrap();
    assert!(matches!(tag.codec, VideoCodec::Hevc));
    let a = tracks.audio().unwrap();
    let hdr = Bytes::from(audio_sequence_header(a).unwrap());
    assert!(
        matches!(parse_audio_tag(&hdr).unwrap().packet, AudioPacket::SequenceHeader(c) if c == a.config)
    );
}
