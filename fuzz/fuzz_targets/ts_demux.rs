//! The MPEG-TS demuxer: arbitrary bytes, pushed in pieces whose sizes come
//! from the input, must never panic; every frame must belong to an announced
//! track and be well framed (4-byte length prefixes for video); and pushing
//! the same bytes whole must give the same events when the input is a clean
//! packet stream.
//!
//! Amplification (issue #17): the frames' payload bytes stay within twice
//! the input plus a constant (Annex B start codes become 4-byte lengths),
//! and there is at most one event per four input bytes.
//!
//! Input: `[split seed][TS bytes...]`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ugc_codec::ts_demux::TsDemuxer;
use ugc_core::{Codec, MediaEvent};

fn check(events: &[MediaEvent], input_len: usize) {
    assert!(events.len() <= input_len / 4 + 16, "{} events from {input_len} bytes", events.len());
    let payload: usize = events
        .iter()
        .map(|e| match e {
            MediaEvent::Frame(f) => f.data.len(),
            _ => 0,
        })
        .sum();
    assert!(
        payload <= 2 * input_len + 4096,
        "{payload} frame bytes from {input_len} input bytes"
    );
    let mut tracks: Option<ugc_core::Tracks> = None;
    for e in events {
        match e {
            MediaEvent::Tracks(t) => tracks = Some(t.clone()),
            MediaEvent::Frame(f) => {
                let t = tracks.as_ref().expect("frame before tracks");
                let info = t.get(f.track).expect("frame of an unknown track");
                if matches!(info.codec, Codec::H264 | Codec::H265) {
                    for nal in ugc_codec::h264::nal_units(&f.data, 4) {
                        nal.expect("video frames are well framed");
                    }
                }
                assert!(!f.data.is_empty());
            }
            _ => {}
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, ts)) = data.split_first() else {
        return;
    };
    let mut d = TsDemuxer::new();
    let mut events = Vec::new();
    let step = usize::from(seed).max(1);
    for piece in ts.chunks(step) {
        d.push(piece);
        while let Some(e) = d.poll_event() {
            events.push(e);
        }
    }
    d.finish();
    while let Some(e) = d.poll_event() {
        events.push(e);
    }
    check(&events, ts.len());

    // A clean packet stream (every packet starts with 0x47) demuxes the same
    // whatever the split.
    if ts.len() % 188 == 0 && ts.chunks(188).all(|p| p[0] == 0x47) {
        let mut whole = TsDemuxer::new();
        whole.push(ts);
        whole.finish();
        let mut w = Vec::new();
        while let Some(e) = whole.poll_event() {
            w.push(e);
        }
        assert_eq!(w, events);
    }
});
