//! The relay reader (bytes from another node): arbitrary bytes, pushed in
//! pieces whose sizes come from the input, must never panic; the events
//! must not depend on the split; every frame must belong to the track set
//! in effect; and what was read, written again by `RelayWriter`, must read
//! back the same (decode(encode(decode(x))) == decode(x)).
//!
//! Input: `[split seed][relay bytes...]`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ugc_core::{MediaEvent, Tracks};
use ugc_proto::relay::{ReaderLimits, RelayEvent, RelayReader, RelayWriter};

fn limits() -> ReaderLimits {
    ReaderLimits {
        max_frame: 1 << 20,
        max_init: 1 << 16,
        max_tracks: 8,
    }
}

/// Events until the end of the input or the first error (and whether one came).
fn read(data: &[u8], step: usize) -> (Vec<RelayEvent>, bool) {
    let mut r = RelayReader::new(limits());
    let mut out = Vec::new();
    for piece in data.chunks(step.max(1)) {
        r.handle_input(piece);
        loop {
            match r.poll_event() {
                Ok(Some(e)) => out.push(e),
                Ok(None) => break,
                Err(_) => return (out, true),
            }
        }
    }
    (out, r.finish().is_err())
}

fn check(events: &[RelayEvent]) {
    let mut tracks: Option<Tracks> = None;
    for e in events {
        match e {
            RelayEvent::Context { tracks: t, .. }
            | RelayEvent::Media {
                event: MediaEvent::Tracks(t),
                ..
            } => tracks = Some(t.clone()),
            RelayEvent::Media {
                event: MediaEvent::Frame(f),
                ..
            } => {
                let t = tracks.as_ref().expect("frame before a track set");
                assert!(t.get(f.track).is_some(), "frame of an unknown track");
            }
            _ => {}
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, bytes)) = data.split_first() else {
        return;
    };
    let (pieces, failed) = read(bytes, usize::from(seed));
    let (whole, whole_failed) = read(bytes, bytes.len());
    assert_eq!(pieces, whole, "events depend on the split");
    assert_eq!(failed, whole_failed);
    check(&pieces);

    // Re-encode what was read; it must read back the same.
    let mut w = RelayWriter::new();
    let mut again = Vec::new();
    for e in &pieces {
        if w.write(e).is_err() {
            return; // e.g. a frame the writer would not have sent
        }
        while let Some(b) = w.poll_output() {
            again.extend_from_slice(&b);
        }
    }
    let (reread, _) = read(&again, 7);
    assert_eq!(reread, pieces, "re-encoded stream reads back differently");
});
