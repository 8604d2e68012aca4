use bytes::BytesMut;
use proptest::prelude::*;

use super::*;
use crate::rtmp::chunk::ChunkDecoder;

/// A client side for tests: simple handshake, then chunked messages.
struct Client {
    enc: ChunkEncoder,
    dec: ChunkDecoder,
    /// Server bytes seen (S0S1S2 first).
    seen: usize,
}

impl Client {
    fn new() -> Self {
        Client {
            enc: ChunkEncoder::new(),
            dec: ChunkDecoder::default(),
            seen: 0,
        }
    }

    fn handshake() -> Vec<u8> {
        let mut v = vec![3u8];
        v.extend(std::iter::repeat_n(0u8, 2 * 1536));
        v
    }

    fn msg(&mut self, csid: u32, ts: u32, type_id: u8, stream_id: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = BytesMut::new();
        self.enc
            .write(csid, ts, type_id, stream_id, payload, &mut out);
        out.to_vec()
    }

    fn cmd(&mut self, stream_id: u32, values: &[Amf0Value]) -> Vec<u8> {
        let mut body = BytesMut::new();
        amf0::encode_all(values, &mut body);
        self.msg(3, 0, msg_type::COMMAND_AMF0, stream_id, &body)
    }

    /// Decodes everything the server wrote since the last call.
    fn read(&mut self, s: &mut ServerSession) -> Vec<Message> {
        let mut msgs = Vec::new();
        while let Some(out) = s.poll_output() {
            let skip = (1 + 2 * 1536usize).saturating_sub(self.seen).min(out.len());
            self.seen += out.len();
            self.dec.feed(&out[skip..]).unwrap();
        }
        while let Some(m) = self.dec.poll_message() {
            msgs.push(m);
        }
        msgs
    }
}

fn str_(v: &str) -> Amf0Value {
    Amf0Value::String(v.into())
}

fn num(v: f64) -> Amf0Value {
    Amf0Value::Number(v)
}

fn events(s: &mut ServerSession) -> Vec<ServerEvent> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

/// Name and info object `code` of an AMF0 command message.
fn command_code(m: &Message) -> (String, Option<String>) {
    let v = amf0::decode(&m.payload).unwrap();
    let name = v[0].as_str().unwrap().to_owned();
    let code = v
        .iter()
        .find_map(|x| x.get("code").and_then(Amf0Value::as_str).map(str::to_owned));
    (name, code)
}

/// Handshake + connect + createStream; returns the session and client.
fn connected() -> (ServerSession, Client) {
    let mut s = ServerSession::new(SessionConfig::default());
    let mut c = Client::new();
    s.handle_input(&Client::handshake()).unwrap();
    let connect = c.cmd(
        0,
        &[
            str_("connect"),
            num(1.0),
            Amf0Value::Object(vec![
                ("app".into(), str_("live")),
                ("tcUrl".into(), str_("rtmp://h/live")),
            ]),
        ],
    );
    s.handle_input(&connect).unwrap();
    c.read(&mut s);
    let create = c.cmd(0, &[str_("createStream"), num(2.0), Amf0Value::Null]);
    s.handle_input(&create).unwrap();
    c.read(&mut s);
    (s, c)
}

fn publish(s: &mut ServerSession, c: &mut Client, name: &str) {
    let p = c.cmd(
        1,
        &[
            str_("publish"),
            num(3.0),
            Amf0Value::Null,
            str_(name),
            str_("live"),
        ],
    );
    s.handle_input(&p).unwrap();
}

#[test]
fn connect_announces_window_bandwidth_chunk_size_before_result() {
    let mut s = ServerSession::new(SessionConfig::default());
    let mut c = Client::new();
    // Handshake and connect in one read, as clients often send C2 + connect together.
    let mut input = Client::handshake();
    input.extend(c.cmd(
        0,
        &[
            str_("connect"),
            num(1.0),
            Amf0Value::Object(vec![("app".into(), str_("live/"))]),
        ],
    ));
    s.handle_input(&input).unwrap();
    let msgs = c.read(&mut s);
    let types: Vec<u8> = msgs.iter().map(|m| m.type_id).collect();
    assert_eq!(types, vec![5, 6, 1, 20]);
    assert_eq!(&msgs[2].payload[..], &4096u32.to_be_bytes());
    assert_eq!(
        command_code(&msgs[3]),
        (
            "_result".into(),
            Some("NetConnection.Connect.Success".into())
        )
    );
}

#[test]
fn publish_is_answered_on_the_publishing_stream_id() {
    let (mut s, mut c) = connected();
    publish(&mut s, &mut c, "key1?token=abc&x=1");
    assert_eq!(
        events(&mut s),
        vec![ServerEvent::PublishRequested {
            app: "live".into(),
            key: "key1".into(),
            query: Some("token=abc&x=1".into()),
            tc_url: Some("rtmp://h/live".into()),
        }]
    );
    assert!(c.read(&mut s).is_empty(), "nothing before the decision");
    s.accept_publish().unwrap();
    let msgs = c.read(&mut s);
    assert_eq!(msgs[0].type_id, msg_type::USER_CONTROL);
    assert_eq!(&msgs[0].payload[..], &[0, 0, 0, 0, 0, 1], "StreamBegin 1");
    assert_eq!(msgs[1].stream_id, 1, "onStatus on the publishing stream");
    assert_eq!(
        command_code(&msgs[1]),
        ("onStatus".into(), Some("NetStream.Publish.Start".into()))
    );
    assert!(s.is_publishing());

    // Metadata, audio, video.
    let mut meta = BytesMut::new();
    amf0::encode_all(
        &[
            str_("@setDataFrame"),
            str_("onMetaData"),
            Amf0Value::EcmaArray(vec![
                ("width".into(), num(1280.0)),
                ("height".into(), num(720.0)),
                ("framerate".into(), num(29.97)),
                ("videodatarate".into(), num(1500.0)),
                ("hasAudio".into(), Amf0Value::Boolean(true)),
            ]),
        ],
        &mut meta,
    );
    let mut input = c.msg(4, 0, msg_type::DATA_AMF0, 1, &meta);
    input.extend(c.msg(4, 0, msg_type::VIDEO, 1, &[0x17, 0, 0, 0, 0, 1, 2]));
    input.extend(c.msg(4, 23, msg_type::AUDIO, 1, &[0xaf, 1, 9]));
    s.handle_input(&input).unwrap();
    let ev = events(&mut s);
    assert_eq!(
        ev[0],
        ServerEvent::Metadata(FlvMetadata {
            width: Some(1280),
            height: Some(720),
            frame_rate_milli: Some(29_970),
            video_bitrate: Some(1_500_000),
            has_audio: Some(true),
            ..FlvMetadata::default()
        })
    );
    assert!(matches!(&ev[1], ServerEvent::Video { timestamp_ms: 0, body } if body[0] == 0x17));
    assert!(
        matches!(&ev[2], ServerEvent::Audio { timestamp_ms: 23, body } if body[..] == [0xaf, 1, 9])
    );

    let unpublish = c.cmd(
        0,
        &[str_("FCUnpublish"), num(5.0), Amf0Value::Null, str_("key1")],
    );
    s.handle_input(&unpublish).unwrap();
    assert_eq!(events(&mut s), vec![ServerEvent::PublishEnded]);
    assert!(!s.is_publishing());
}

#[test]
fn rejected_publish_gets_an_error_status_and_closes() {
    let (mut s, mut c) = connected();
    publish(&mut s, &mut c, "bad");
    // Media the client sends right behind publish must not leak out.
    let v = c.msg(4, 0, msg_type::VIDEO, 1, &[0x17, 1]);
    s.handle_input(&v).unwrap();
    assert!(matches!(
        s.poll_event(),
        Some(ServerEvent::PublishRequested { .. })
    ));
    s.reject_publish(DenyKind::Unauthorized, "unknown stream key")
        .unwrap();
    assert_eq!(s.poll_event(), None);
    let msgs = c.read(&mut s);
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].stream_id, 1);
    assert_eq!(
        command_code(&msgs[0]),
        ("onStatus".into(), Some("NetStream.Publish.Denied".into()))
    );
    assert!(s.is_closed());
    assert!(matches!(s.handle_input(&[0]), Err(Error::Closed)));
    assert!(matches!(s.accept_publish(), Err(Error::InvalidState(_))));
}

/// The `onStatus` info object of a command message, as (name, value) strings.
fn status_info(m: &Message) -> Vec<(String, String)> {
    let v = amf0::decode(&m.payload).unwrap();
    assert_eq!(v[0].as_str(), Some("onStatus"));
    v[3].properties()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("?").to_owned()))
        .collect()
}

/// What a refused publisher reads: an error-level `onStatus` whose code
/// tells the kind of refusal (GStreamer's rtmp2sink calls `BadName` "stream
/// already exists", so a wrong key must not use it) and whose description is
/// the authorizer's reason, never the key.
#[test]
fn refusals_say_their_kind_in_the_code_and_the_reason_in_the_description() {
    for (kind, code, reason) in [
        (
            DenyKind::Unauthorized,
            "NetStream.Publish.Denied",
            "stream key was rotated or deleted",
        ),
        (
            DenyKind::BadName,
            "NetStream.Publish.BadName",
            "name has a disallowed character '!'",
        ),
        (
            DenyKind::Unavailable,
            "NetStream.Failed",
            "stream key lookup failed; try again",
        ),
    ] {
        let (mut s, mut c) = connected();
        publish(&mut s, &mut c, "s3cret-key?token=t0ken");
        let _ = events(&mut s);
        s.reject_publish(kind, reason).unwrap();
        let msgs = c.read(&mut s);
        assert_eq!(msgs.len(), 1, "{kind:?}");
        assert_eq!(msgs[0].type_id, msg_type::COMMAND_AMF0);
        assert_eq!(msgs[0].stream_id, 1, "on the publishing stream");
        let info = status_info(&msgs[0]);
        assert_eq!(
            info,
            vec![
                ("level".to_owned(), "error".to_owned()),
                ("code".to_owned(), code.to_owned()),
                ("description".to_owned(), reason.to_owned()),
            ],
            "{kind:?}"
        );
        let wire = String::from_utf8_lossy(&msgs[0].payload).into_owned();
        assert!(
            !wire.contains("s3cret") && !wire.contains("t0ken"),
            "{wire}"
        );
        assert!(s.is_closed());
    }
}

#[test]
fn refusal_descriptions_are_one_bounded_line() {
    let (mut s, mut c) = connected();
    publish(&mut s, &mut c, "k");
    let _ = events(&mut s);
    // A backend's reason may hold newlines and be long; multi-byte
    // characters are never cut in half.
    let long = format!("refused:\r\nline two\t{}", "é".repeat(400));
    s.reject_publish(DenyKind::Unauthorized, &long).unwrap();
    let msgs = c.read(&mut s);
    let info = status_info(&msgs[0]);
    let desc = &info.iter().find(|(k, _)| k == "description").unwrap().1;
    assert!(desc.starts_with("refused:  line two é"), "{desc:?}");
    assert!(desc.len() <= MAX_DESCRIPTION && desc.len() > MAX_DESCRIPTION - 2);
    assert!(!desc.chars().any(char::is_control), "{desc:?}");
}

#[test]
fn play_is_refused_politely() {
    let (mut s, mut c) = connected();
    let p = c.cmd(1, &[str_("play"), num(4.0), Amf0Value::Null, str_("x")]);
    s.handle_input(&p).unwrap();
    let msgs = c.read(&mut s);
    assert_eq!(
        command_code(&msgs[0]),
        ("onStatus".into(), Some("NetStream.Play.Failed".into()))
    );
    assert_eq!(msgs[0].stream_id, 1);
    assert!(!s.is_closed());
}

#[test]
fn unknown_commands_get_error_answers_or_are_ignored() {
    let (mut s, mut c) = connected();
    let p = c.cmd(0, &[str_("getStreamLength"), num(9.0), Amf0Value::Null]);
    s.handle_input(&p).unwrap();
    let msgs = c.read(&mut s);
    assert_eq!(command_code(&msgs[0]).0, "_error");
    let p = c.cmd(0, &[str_("someNotification"), num(0.0)]);
    s.handle_input(&p).unwrap();
    assert!(c.read(&mut s).is_empty());
    assert!(events(&mut s).is_empty());
}

#[test]
fn acknowledges_after_the_peer_window() {
    let (mut s, mut c) = connected();
    let w = c.msg(2, 0, msg_type::WINDOW_ACK_SIZE, 0, &1000u32.to_be_bytes());
    s.handle_input(&w).unwrap();
    publish(&mut s, &mut c, "k");
    s.accept_publish().unwrap();
    c.read(&mut s);
    let a = c.msg(4, 0, msg_type::AUDIO, 1, &[0xaf; 1200]);
    s.handle_input(&a).unwrap();
    let acks: Vec<_> = c
        .read(&mut s)
        .into_iter()
        .filter(|m| m.type_id == msg_type::ACKNOWLEDGEMENT)
        .collect();
    assert_eq!(acks.len(), 1);
    let seq = be_u32(&acks[0].payload).unwrap();
    assert!(seq > 1200, "{seq}");
}

#[test]
fn ping_request_gets_a_response() {
    let (mut s, mut c) = connected();
    let p = c.msg(2, 0, msg_type::USER_CONTROL, 0, &[0, 6, 0, 0, 1, 2]);
    s.handle_input(&p).unwrap();
    let msgs = c.read(&mut s);
    assert_eq!(&msgs[0].payload[..], &[0, 7, 0, 0, 1, 2]);
}

#[test]
fn media_outside_a_publish_is_dropped() {
    let (mut s, mut c) = connected();
    let v = c.msg(4, 0, msg_type::VIDEO, 1, &[0x17, 1]);
    s.handle_input(&v).unwrap();
    assert!(events(&mut s).is_empty());
}

#[test]
fn publish_before_connect_is_an_error() {
    let mut s = ServerSession::new(SessionConfig::default());
    let mut c = Client::new();
    s.handle_input(&Client::handshake()).unwrap();
    let p = c.cmd(1, &[str_("publish"), num(3.0), Amf0Value::Null, str_("k")]);
    assert!(matches!(s.handle_input(&p), Err(Error::Protocol(_))));
    assert!(matches!(s.handle_input(&[1]), Err(Error::Closed)));
}

#[test]
fn aggregate_messages_are_split_into_tags() {
    let (mut s, mut c) = connected();
    publish(&mut s, &mut c, "k");
    s.accept_publish().unwrap();
    events(&mut s);
    let mut agg = Vec::new();
    for (ty, ts, body) in [(9u8, 1000u32, &[0x17u8, 1, 5][..]), (8, 1020, &[0xaf, 1])] {
        agg.push(ty);
        agg.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        agg.extend_from_slice(&ts.to_be_bytes()[1..]);
        agg.push((ts >> 24) as u8);
        agg.extend_from_slice(&[0, 0, 0]);
        agg.extend_from_slice(body);
        agg.extend_from_slice(&(11 + body.len() as u32).to_be_bytes());
    }
    let m = c.msg(4, 500, msg_type::AGGREGATE, 1, &agg);
    s.handle_input(&m).unwrap();
    let ev = events(&mut s);
    assert!(
        matches!(&ev[0], ServerEvent::Video { timestamp_ms: 500, body } if body[..] == [0x17, 1, 5])
    );
    assert!(matches!(
        &ev[1],
        ServerEvent::Audio {
            timestamp_ms: 520,
            ..
        }
    ));
}

const CAPTURE: &[u8] = include_bytes!("../../../tests/data/ffmpeg51_publish_720p.bin");

fn run_capture(splits: &[usize]) -> Vec<ServerEvent> {
    let mut s = ServerSession::new(SessionConfig::default());
    let mut ev = Vec::new();
    let mut pos = 0;
    let mut i = 0;
    while pos < CAPTURE.len() {
        let n = splits[i % splits.len()].max(1);
        i += 1;
        let end = (pos + n).min(CAPTURE.len());
        s.handle_input(&CAPTURE[pos..end]).unwrap();
        pos = end;
        while s.poll_output().is_some() {}
        while let Some(e) = s.poll_event() {
            if matches!(e, ServerEvent::PublishRequested { .. }) {
                s.accept_publish().unwrap();
            }
            ev.push(e);
        }
    }
    ev
}

#[test]
fn ffmpeg51_capture_replays_to_publish_media_and_end() {
    let ev = run_capture(&[65536]);
    assert!(matches!(&ev[0], ServerEvent::PublishRequested { key, .. } if key == "bench"));
    let video = ev
        .iter()
        .filter(|e| matches!(e, ServerEvent::Video { .. }))
        .count();
    assert!(
        (240..=250).contains(&video),
        "{video} video messages in 8 s at 30 fps"
    );
    assert!(matches!(ev.last(), Some(ServerEvent::PublishEnded)));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8))]
    #[test]
    fn ffmpeg51_capture_any_split_same_events(splits in prop::collection::vec(1usize..5000, 1..20)) {
        let whole = run_capture(&[CAPTURE.len()]);
        prop_assert_eq!(run_capture(&splits), whole);
    }
}

/// Issue #17: a client that completed the handshake could send a 16 MiB
/// command before `connect` (an AMF0 strict array of one-byte nulls decodes
/// into many times its size): four such connections took a fresh server
/// from 30 MB to 612 MB. Until a publish is accepted, messages over 64 KiB
/// are refused; after it, media messages as large as the stream needs pass.
#[test]
fn unauthorized_peers_cannot_send_large_messages() {
    // Before connect: a 1 MiB command is refused with a clear error.
    let mut s = ServerSession::new(SessionConfig::default());
    let mut c = Client::new();
    s.handle_input(&Client::handshake()).unwrap();
    let mut huge = BytesMut::new();
    huge.extend_from_slice(&[0x0a, 0, 0x10, 0, 0]); // strict array of 1 Mi entries
    huge.extend(std::iter::repeat_n(0x05u8, 1 << 20)); // nulls
    let bomb = c.msg(3, 0, msg_type::COMMAND_AMF0, 0, &huge);
    let err = s.handle_input(&bomb).unwrap_err();
    assert!(err.to_string().contains("65536"), "{err}");

    // Connected and publishing: a 1 MiB keyframe is fine.
    let (mut s, mut c) = connected();
    publish(&mut s, &mut c, "k");
    // Before the publish is accepted it would still be refused.
    let frame = {
        let mut body = vec![0x17u8, 1, 0, 0, 0];
        body.extend(std::iter::repeat_n(0u8, 1 << 20));
        body
    };
    let mut pending = ServerSession::new(SessionConfig::default());
    let mut pc = Client::new();
    pending.handle_input(&Client::handshake()).unwrap();
    let early = pc.msg(6, 0, msg_type::VIDEO, 1, &frame);
    assert!(pending.handle_input(&early).is_err());
    // Accepted: it passes.
    events(&mut s);
    s.accept_publish().unwrap();
    let video = c.msg(6, 40, msg_type::VIDEO, 1, &frame);
    s.handle_input(&video).unwrap();
    assert!(
        events(&mut s)
            .iter()
            .any(|e| matches!(e, ServerEvent::Video { body, .. } if body.len() == frame.len())),
    );
}
