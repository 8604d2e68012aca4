//! Arbitrary bytes, in arbitrary splits, into a ServerSession.
//!
//! The first byte chooses the mode: bit 0 prepends a valid simple handshake
//! (so the fuzzer spends its time in the chunk and command layers), bit 1
//! rejects instead of accepting publishes; the second byte is the split step.
//! Invariants after every step: no panic; once an error is returned the
//! session stays closed; media events carry non-empty bodies; everything the
//! session writes after S0S1S2 is a valid chunk stream.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ugc_proto::rtmp::{ChunkDecoder, ServerEvent, ServerSession, SessionConfig};
use ugc_proto::Error;

const HS: usize = 1 + 2 * 1536;

fuzz_target!(|data: &[u8]| {
    let [mode, step, rest @ ..] = data else {
        return;
    };
    let step = usize::from(*step).max(1);
    let mut input = Vec::with_capacity(rest.len() + 2 * 1537);
    if mode & 1 == 1 {
        input.push(3);
        input.extend(std::iter::repeat_n(0u8, 1536 * 2));
    }
    input.extend_from_slice(rest);
    let reject = mode & 2 == 2;

    let mut session = ServerSession::new(SessionConfig::default());
    let mut written = 0usize;
    let mut client = ChunkDecoder::default();
    let mut failed = false;
    for piece in input.chunks(step) {
        let r = session.handle_input(piece);
        if failed {
            assert!(matches!(r, Err(Error::Closed)));
            continue;
        }
        failed = r.is_err() || session.is_closed();
        loop {
            while let Some(out) = session.poll_output() {
                // Skip S0S1S2; the rest must decode as chunks.
                let skip = HS.saturating_sub(written).min(out.len());
                written += out.len();
                client.feed(&out[skip..]).expect("our output is a valid chunk stream");
                while client.poll_message().is_some() {}
            }
            let Some(ev) = session.poll_event() else { break };
            match ev {
                ServerEvent::PublishRequested { .. } if !failed => {
                    if reject {
                        session
                            .reject_publish(ugc_core::DenyKind::Unauthorized, "no")
                            .expect("pending");
                        failed = true;
                    } else if let Err(e) = session.accept_publish() {
                        // Input queued behind `publish` was bad: closed now.
                        assert!(!matches!(e, Error::InvalidState(_)), "{e}");
                        assert!(session.is_closed());
                        failed = true;
                    }
                }
                ServerEvent::Audio { body, .. } | ServerEvent::Video { body, .. } => {
                    assert!(!body.is_empty());
                }
                _ => {}
            }
        }
    }
});
