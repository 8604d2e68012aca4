//! The server handshake over arbitrary bytes in arbitrary splits.
//! Invariants: nothing is written before C0C1 is complete; then exactly
//! S0S1S2 (3073 bytes, version 3); a simple-handshake S2 echoes C1; bytes
//! after C2 are left for the chunk layer.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use ugc_proto::rtmp::handshake::{C0C1Outcome, C2Outcome, ExpectC0C1, HandshakeKind, PACKET_SIZE};

fuzz_target!(|data: &[u8]| {
    let Some((&step, data)) = data.split_first() else {
        return;
    };
    let step = usize::from(step).max(1) * 13;
    let mut input = BytesMut::new();
    let mut out = BytesMut::new();
    let mut fed = 0usize;
    let mut hs = ExpectC0C1::new(1, 0);
    let c2 = loop {
        let end = (fed + step).min(data.len());
        input.extend_from_slice(&data[fed..end]);
        fed = end;
        match hs.read(&mut input, &mut out) {
            Err(_) => return,
            Ok(C0C1Outcome::NeedMore(h)) => {
                assert!(out.is_empty());
                if fed == data.len() {
                    return;
                }
                hs = h;
            }
            Ok(C0C1Outcome::Done(c2)) => break c2,
        }
    };
    assert_eq!(out.len(), 1 + 2 * PACKET_SIZE);
    assert_eq!(out[0], 3);
    let mut hs = c2;
    loop {
        match hs.read(&mut input).expect("C2 is never rejected") {
            C2Outcome::NeedMore(h) => {
                if fed == data.len() {
                    return;
                }
                let end = (fed + step).min(data.len());
                input.extend_from_slice(&data[fed..end]);
                fed = end;
                hs = h;
            }
            C2Outcome::Done(conn) => {
                if conn.kind == HandshakeKind::Simple {
                    assert_eq!(&out[1 + PACKET_SIZE..], &data[1..1 + PACKET_SIZE]);
                }
                assert_eq!(input.len() + 1 + 2 * PACKET_SIZE, fed);
                return;
            }
        }
    }
});
