//! FLV tag bodies and the FlvIngest session: arbitrary push_audio/push_video
//! sequences must never panic, and every emitted frame must belong to an
//! announced track.
//!
//! Amplification (issue #17): the frames' payload bytes stay within the
//! input bytes plus a constant.
//!
//! Input: a sequence of records `[flags][ts_delta][len][body; len]`; flags bit 0
//! picks audio/video, bit 1 finishes the session, bit 2 sets metadata hints.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use ugc_codec::flv::{FlvIngest, FlvMetadata, parse_audio_tag, parse_video_tag};
use ugc_core::MediaEvent;

fuzz_target!(|data: &[u8]| {
    let data = Bytes::copy_from_slice(data);
    // The whole input as one tag body, both ways.
    let _ = parse_video_tag(&data);
    let _ = parse_audio_tag(&data);

    let mut ingest = FlvIngest::new();
    let mut announced: Option<ugc_core::Tracks> = None;
    let mut ts: i64 = 0;
    let mut pos = 0usize;
    let mut payload = 0usize;
    while pos + 3 <= data.len() {
        let flags = data[pos];
        ts += i64::from(data[pos + 1] as i8) * 16;
        let len = usize::from(data[pos + 2]);
        pos += 3;
        let end = (pos + len).min(data.len());
        let body = data.slice(pos..end);
        pos = end;
        if flags & 4 != 0 {
            ingest.set_metadata(FlvMetadata {
                has_audio: Some(flags & 8 != 0),
                has_video: Some(flags & 16 != 0),
                frame_rate_milli: Some(u32::from(flags) * 1000),
                ..Default::default()
            });
        }
        let _ = if flags & 1 != 0 {
            ingest.push_audio(ts, body)
        } else {
            ingest.push_video(ts, body)
        };
        if flags & 2 != 0 {
            ingest.finish();
        }
        while let Some(ev) = ingest.poll_event() {
            match ev {
                MediaEvent::Tracks(t) => announced = Some(t),
                MediaEvent::Frame(f) => {
                    let tracks = announced.as_ref().expect("frame before Tracks");
                    assert!(tracks.get(f.track).is_some(), "frame of unannounced track");
                    assert!(!f.data.is_empty());
                    payload += f.data.len();
                    assert!(
                        payload <= 2 * data.len() + 4096,
                        "{payload} frame bytes from {} input bytes",
                        data.len()
                    );
                }
                _ => {}
            }
        }
    }
});
