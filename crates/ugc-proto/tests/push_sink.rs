//! `RtmpPush`, the restream sink, over real TCP against our own RTMP server:
//! a pumped source arrives frame for frame as the server's `RtmpPublish`
//! source makes it (from the first video keyframe, timestamps from 0), the
//! source's end unpublishes (and so does a stopped `spawn_push`), a
//! discontinuity restarts at a keyframe, a refusal carries the target's
//! status, and a target that stops reading holds the sink up until the
//! write timeout.
#![allow(missing_docs, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use ugc_core::hub::tests_support::av_tracks;
use ugc_core::{
    AllowAll, Authorizer, Codec, DiscontinuityReason, Frame, Hub, HubConfig, MediaEvent, MediaKind,
    Passthrough, PublishDecision, PublishRequest, Source, StreamPath, TrackId, iter_source, pump,
};
use ugc_proto::Error;
use ugc_proto::rtmp::push::{PushConfig, PushState, RtmpPush, spawn_push};
use ugc_proto::rtmp::server::{RtmpListener, RtmpServerConfig, serve};
use ugc_proto::rtmp::{ServerEvent, ServerSession, SessionConfig};

/// An H.264 frame (one 4-byte-length NAL unit) with a composition offset.
fn video(dts: i64, key: bool) -> Frame {
    let nal_header = if key { 0x65 } else { 0x41 };
    let data = vec![0, 0, 0, 4, nal_header, 0x88, dts as u8, (dts >> 8) as u8];
    Frame {
        track: TrackId(1),
        dts,
        pts: dts + 66,
        keyframe: key,
        data: Bytes::from(data),
    }
}

fn audio(dts: i64) -> Frame {
    Frame {
        track: TrackId(2),
        dts,
        pts: dts,
        keyframe: true,
        data: Bytes::from(vec![0x21, 0x10, dts as u8, (dts >> 8) as u8]),
    }
}

/// The error an `RtmpPush` stage failed with.
fn push_error(e: &ugc_core::Error) -> &Error {
    match e {
        ugc_core::Error::Stage { source, .. } => source.downcast_ref::<Error>().unwrap(),
        e => panic!("not a stage error: {e}"),
    }
}

#[tokio::test]
async fn a_pumped_source_arrives_from_its_first_keyframe_with_timestamps_from_zero() {
    let mut listener = RtmpListener::bind("127.0.0.1:0", RtmpServerConfig::default())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let conn = listener.accept().await.unwrap();
        let mut source = conn.publish(&AllowAll).await.unwrap().expect("a publish");
        assert_eq!(source.stream().to_string(), "live/copy");
        let mut got = Vec::new();
        while let Some(event) = source.next_event().await.unwrap() {
            got.push(event);
        }
        got
    });

    // Joined mid-GOP at 967 ms; 3 s of 30 fps video with a keyframe a
    // second, audio between the pictures.
    let mut sent = vec![
        MediaEvent::Tracks(av_tracks()),
        MediaEvent::Frame(video(967, false)),
        MediaEvent::Frame(audio(980)),
    ];
    for i in 0..90 {
        let dts = 1000 + i * 33;
        sent.push(MediaEvent::Frame(video(dts, i % 30 == 0)));
        sent.push(MediaEvent::Frame(audio(dts + 10)));
    }
    let url = format!("rtmp://{addr}/live/copy");
    let mut push = RtmpPush::connect(&url, &PushConfig::default())
        .await
        .unwrap();
    assert_eq!(push.target(), format!("rtmp://{addr}/live/***"));
    pump(iter_source(sent.clone()), Passthrough, &mut push)
        .await
        .unwrap();
    assert_eq!(push.frames_sent(), 180);

    let got = tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("the server's source ends when the push finishes")
        .unwrap();
    let MediaEvent::Tracks(tracks) = &got[0] else {
        panic!("tracks first: {:?}", got[0]);
    };
    let (v, a) = (tracks.video().unwrap(), tracks.audio().unwrap());
    let ours = av_tracks();
    assert_eq!(
        (v.codec, &v.config),
        (Codec::H264, &ours.video().unwrap().config)
    );
    assert_eq!(
        (v.video().unwrap().width, v.video().unwrap().height),
        (1280, 720)
    );
    assert_eq!(
        (a.codec, &a.config),
        (Codec::Aac, &ours.audio().unwrap().config)
    );
    // Every frame from the first keyframe on, in order, 1000 ms earlier.
    let kind = |f: &Frame, t: &ugc_core::Tracks| t.get(f.track).unwrap().kind();
    let expected: Vec<_> = sent[3..]
        .iter()
        .map(|e| match e {
            MediaEvent::Frame(f) => (
                kind(f, &ours),
                f.dts - 1000,
                f.pts - 1000,
                f.keyframe,
                f.data.clone(),
            ),
            e => panic!("{e:?}"),
        })
        .collect();
    let frames: Vec<_> = got[1..]
        .iter()
        .map(|e| match e {
            MediaEvent::Frame(f) => (kind(f, tracks), f.dts, f.pts, f.keyframe, f.data.clone()),
            e => panic!("only frames after the tracks: {e:?}"),
        })
        .collect();
    assert_eq!(frames.len(), 180);
    assert_eq!(frames, expected);
    assert_eq!(frames[0].0, MediaKind::Video);
}

/// A target over the sans-IO server session: accepts the publish, then
/// reads until the client closes (or, with `stall`, stops reading once
/// media came). Returns the video messages it read and whether the
/// publish was ended (`FCUnpublish` / `deleteStream`).
async fn raw_target(listener: TcpListener, stall: bool) -> (usize, bool) {
    let (mut tcp, _) = listener.accept().await.unwrap();
    let mut session = ServerSession::new(SessionConfig::default());
    let mut buf = vec![0u8; 64 * 1024];
    let (mut videos, mut ended) = (0, false);
    loop {
        let n = tcp.read(&mut buf).await.unwrap_or(0);
        if n == 0 {
            return (videos, ended);
        }
        session.handle_input(&buf[..n]).unwrap();
        while let Some(event) = session.poll_event() {
            match event {
                ServerEvent::PublishRequested { .. } => session.accept_publish().unwrap(),
                ServerEvent::Video { .. } => videos += 1,
                ServerEvent::PublishEnded => ended = true,
                _ => {}
            }
        }
        while let Some(out) = session.poll_output() {
            tcp.write_all(&out).await.unwrap();
        }
        if stall && videos > 0 {
            std::future::pending::<()>().await;
        }
    }
}

#[tokio::test]
async fn the_sources_end_unpublishes() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let target = tokio::spawn(raw_target(listener, false));
    let mut events = vec![MediaEvent::Tracks(av_tracks())];
    events.extend((0..10).map(|i| MediaEvent::Frame(video(i * 33, i == 0))));
    let push = RtmpPush::connect(&format!("rtmp://{addr}/live/k"), &PushConfig::default())
        .await
        .unwrap();
    pump(iter_source(events), Passthrough, push).await.unwrap();
    let (videos, ended) = tokio::time::timeout(Duration::from_secs(5), target)
        .await
        .unwrap()
        .unwrap();
    // The sequence header and the ten pictures.
    assert_eq!(videos, 11);
    assert!(ended, "FCUnpublish / deleteStream before the close");
}

#[tokio::test]
async fn a_discontinuity_restarts_the_push_at_the_next_keyframe() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let target = tokio::spawn(raw_target(listener, false));
    let mut events = vec![MediaEvent::Tracks(av_tracks())];
    events.extend((0..3).map(|i| MediaEvent::Frame(video(i * 33, i == 0))));
    // Skipped: from here to the next keyframe.
    events.push(MediaEvent::Discontinuity(
        DiscontinuityReason::ReaderSkipped,
    ));
    events.push(MediaEvent::Frame(video(500, false)));
    events.push(MediaEvent::Frame(audio(510)));
    events.extend((0..2).map(|i| MediaEvent::Frame(video(1000 + i * 33, i == 0))));
    let mut push = RtmpPush::connect(&format!("rtmp://{addr}/live/k"), &PushConfig::default())
        .await
        .unwrap();
    pump(iter_source(events), Passthrough, &mut push)
        .await
        .unwrap();
    assert_eq!(push.frames_sent(), 5);
    let (videos, ended) = tokio::time::timeout(Duration::from_secs(5), target)
        .await
        .unwrap()
        .unwrap();
    // The sequence header, three pictures, then two from the keyframe on.
    assert_eq!(videos, 6);
    assert!(ended);
}

#[tokio::test]
async fn a_stopped_spawn_push_unpublishes() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let target = tokio::spawn(raw_target(listener, false));
    let hub = Hub::new(HubConfig::default());
    let stream = StreamPath::live("src").unwrap();
    let mut publisher = hub.publish(&stream);
    publisher.push(MediaEvent::Tracks(av_tracks())).unwrap();
    publisher.push(MediaEvent::Frame(video(0, true))).unwrap();
    let push = spawn_push(
        hub.clone(),
        stream,
        format!("rtmp://{addr}/live/k"),
        PushConfig::default(),
    );
    for _ in 0..100 {
        if push.status().frames_sent > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = push.status();
    assert_eq!((status.state, status.frames_sent), (PushState::Live, 1));
    assert!(
        status.bytes_sent > 3073,
        "the handshake and more: {status:?}"
    );
    drop(push);
    let (videos, ended) = tokio::time::timeout(Duration::from_secs(5), target)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(videos, 2);
    assert!(ended, "FCUnpublish / deleteStream when stopped");
}

#[tokio::test]
async fn a_target_that_stops_reading_holds_the_sink_up_until_the_write_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let target = tokio::spawn(raw_target(listener, true));
    let config = PushConfig {
        write_timeout: Duration::from_millis(300),
        ..PushConfig::default()
    };
    let mut push = RtmpPush::connect(&format!("rtmp://{addr}/live/k"), &config)
        .await
        .unwrap();
    // 30 MB: more than the socket buffers on both sides hold.
    let mut picture = vec![0u8; 150_000];
    picture[..4].copy_from_slice(&(150_000u32 - 4).to_be_bytes());
    picture[4] = 0x65;
    let picture = Bytes::from(picture);
    let mut events = vec![MediaEvent::Tracks(av_tracks())];
    events.extend((0..200).map(|i| {
        MediaEvent::Frame(Frame {
            data: picture.clone(),
            ..video(i * 33, i % 30 == 0)
        })
    }));
    let started = tokio::time::Instant::now();
    let e = tokio::time::timeout(
        Duration::from_secs(20),
        pump(iter_source(events), Passthrough, &mut push),
    )
    .await
    .expect("the write timeout ends the pump")
    .unwrap_err();
    assert!(
        matches!(push_error(&e), Error::Timeout(_)),
        "{e}: {:?}",
        push_error(&e)
    );
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(push.frames_sent() < 200, "{}", push.frames_sent());
    target.abort();
}

/// Refuses every publisher the way the control plane refuses a wrong key.
struct UnknownKeys;

impl Authorizer for UnknownKeys {
    async fn authorize_publish(&self, _req: &PublishRequest) -> PublishDecision {
        PublishDecision::unauthorized("unknown stream key")
    }
}

#[tokio::test]
async fn a_refusal_is_the_targets_status_code_and_reason() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(
        listener,
        Hub::new(HubConfig::default()),
        Arc::new(UnknownKeys),
        RtmpServerConfig::default(),
    ));
    let e = RtmpPush::connect(&format!("rtmp://{addr}/live/wrong"), &PushConfig::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::Refused { code, description }
            if code == "NetStream.Publish.Denied" && description == "unknown stream key"),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        "refused: unknown stream key (NetStream.Publish.Denied)"
    );
    for bad in ["http://a/live/k", "rtmp://a/k", "rtmp://:1935/live/k"] {
        let e = RtmpPush::connect(bad, &PushConfig::default())
            .await
            .unwrap_err();
        assert!(matches!(e, Error::BadTarget(_)), "{bad}: {e:?}");
    }
}
