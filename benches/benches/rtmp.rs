//! RTMP ingest throughput over a real ffmpeg 5.1 publish capture
//! (`crates/ugc-proto/tests/data/ffmpeg51_publish_720p.bin`), fed in 64 KiB
//! reads as a socket would deliver it:
//!
//! * `ugc_chunk_amf`: the chunk demuxer plus AMF0 decoding of every command
//!   and data message (the parsing work alone).
//! * `ugc_session`: the whole `ServerSession` (handshake, commands, answers,
//!   media events).
//! * `rml_rtmp_session`: the same bytes through `rml_rtmp` 0.8 (handshake +
//!   `ServerSession`, accepting its requests), for the ratio.
#![allow(missing_docs)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use ugc_proto::rtmp::{ChunkDecoder, ServerEvent, ServerSession, SessionConfig, amf0};

const CAPTURE: &[u8] =
    include_bytes!("../../crates/ugc-proto/tests/data/ffmpeg51_publish_720p.bin");
const READ: usize = 64 * 1024;
const HANDSHAKE: usize = 1 + 2 * 1536;

fn ugc_chunk_amf(data: &[u8]) -> usize {
    let mut dec = ChunkDecoder::default();
    let mut n = 0usize;
    for read in data.chunks(READ) {
        dec.feed(read).expect("capture decodes");
        while let Some(m) = dec.poll_message() {
            if matches!(m.type_id, 18 | 20) {
                n += amf0::decode(&m.payload).expect("amf").len();
            }
            n += m.payload.len();
        }
    }
    n
}

fn ugc_session(data: &[u8]) -> usize {
    let mut s = ServerSession::new(SessionConfig::default());
    let mut n = 0usize;
    for read in data.chunks(READ) {
        s.handle_input(read).expect("capture is valid");
        while let Some(out) = s.poll_output() {
            n += out.len();
        }
        while let Some(ev) = s.poll_event() {
            match ev {
                ServerEvent::PublishRequested { .. } => s.accept_publish().expect("pending"),
                ServerEvent::Audio { body, .. } | ServerEvent::Video { body, .. } => {
                    n += body.len()
                }
                _ => {}
            }
        }
    }
    n
}

fn rml_session(data: &[u8]) -> usize {
    use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
    use rml_rtmp::sessions::{
        ServerSession, ServerSessionConfig, ServerSessionEvent, ServerSessionResult,
    };
    let mut hs = Handshake::new(PeerType::Server);
    let mut n = 0usize;
    let (head, tail) = data.split_at(8192.min(data.len()));
    let reads = tail.chunks(READ);
    let mut rest = Vec::new();
    for read in [head] {
        match hs.process_bytes(read).expect("handshake") {
            HandshakeProcessResult::InProgress { response_bytes } => n += response_bytes.len(),
            HandshakeProcessResult::Completed {
                response_bytes,
                remaining_bytes,
            } => {
                n += response_bytes.len();
                rest = remaining_bytes;
                break;
            }
        }
    }
    let (mut session, _) = ServerSession::new(ServerSessionConfig::new()).expect("session");
    let handle = |session: &mut ServerSession, results: Vec<ServerSessionResult>, n: &mut usize| {
        let mut pending: std::collections::VecDeque<_> = results.into();
        while let Some(r) = pending.pop_front() {
            match r {
                ServerSessionResult::OutboundResponse(p) => *n += p.bytes.len(),
                ServerSessionResult::RaisedEvent(ev) => match ev {
                    ServerSessionEvent::ConnectionRequested { request_id, .. }
                    | ServerSessionEvent::PublishStreamRequested { request_id, .. } => {
                        pending.extend(session.accept_request(request_id).expect("accept"));
                    }
                    ServerSessionEvent::AudioDataReceived { data, .. }
                    | ServerSessionEvent::VideoDataReceived { data, .. } => *n += data.len(),
                    _ => {}
                },
                ServerSessionResult::UnhandleableMessageReceived(_) => {}
            }
        }
    };
    // rml_rtmp raises `connect` and `publish` as requests that must be
    // accepted before the next command is processed; a live client waits for
    // the answers, a replay must feed the command phase in small pieces.
    for piece in rest.chunks(16) {
        let r = session.handle_input(piece).expect("rml input");
        handle(&mut session, r, &mut n);
    }
    for read in reads {
        let r = session.handle_input(read).expect("rml input");
        handle(&mut session, r, &mut n);
    }
    n
}

fn bench(c: &mut Criterion) {
    // Sanity: all three see the media.
    let a = ugc_session(CAPTURE);
    let b = rml_session(CAPTURE);
    assert!(
        a > CAPTURE.len() / 2 && b > CAPTURE.len() / 2,
        "ugc {a} rml {b}"
    );

    let mut g = c.benchmark_group("rtmp_ingest");
    g.throughput(Throughput::Bytes(CAPTURE.len() as u64));
    g.bench_function("ugc_chunk_amf", |bch| {
        bch.iter(|| ugc_chunk_amf(black_box(&CAPTURE[HANDSHAKE..])))
    });
    g.bench_function("ugc_session", |bch| {
        bch.iter(|| ugc_session(black_box(CAPTURE)))
    });
    g.bench_function("rml_rtmp_session", |bch| {
        bch.iter(|| rml_session(black_box(CAPTURE)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
