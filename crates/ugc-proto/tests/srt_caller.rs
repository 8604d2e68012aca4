//! The sans-IO SRT caller against our sans-IO listener, on simulated time:
//! a call connects (plain and encrypted), what it sends arrives whole and
//! in order, a lost handshake packet is sent again, a refusal says the
//! listener's reason, and stray datagrams change nothing.
#![allow(missing_docs, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ugc_proto::srt::{
    CallerConfig, CallerEvent, ListenerConfig, ListenerEvent, RejectCode, SrtCaller, SrtConnection,
    SrtListener,
};

const PASS: &str = "correcthorsebattery";

fn caller_addr() -> SocketAddr {
    "10.0.0.1:5000".parse().unwrap()
}

fn listener_addr() -> SocketAddr {
    "10.0.0.2:9000".parse().unwrap()
}

/// Both ends of a call on simulated time.
struct Net {
    now: Instant,
    caller: SrtCaller,
    listener: SrtListener,
    /// The listener's answer to an access request: `Ok(passphrase)` or a
    /// refusal.
    answer: Result<Option<&'static str>, RejectCode>,
    /// Drop the caller's first `n` datagrams.
    drop_first: usize,
    sent_by_caller: usize,
    outcome: Option<CallerEvent>,
    accepted: Option<Box<SrtConnection>>,
    /// Rewrite the MSS field of the listener's conclusion (a hostile
    /// listener's).
    mss: Option<u32>,
}

impl Net {
    /// A call with `config` (stream id `live/show` unless it has one:
    /// the listener refuses calls without).
    fn new(config: &CallerConfig, answer: Result<Option<&'static str>, RejectCode>) -> Net {
        let mut config = config.clone();
        config.stream_id.get_or_insert_with(|| "live/show".into());
        let config = &config;
        Net {
            now: Instant::now(),
            caller: SrtCaller::new(config, listener_addr(), caller_addr().ip(), [7, 99]).unwrap(),
            listener: SrtListener::new(ListenerConfig::default()),
            answer,
            drop_first: 0,
            sent_by_caller: 0,
            outcome: None,
            accepted: None,
            mss: None,
        }
    }

    /// Runs the handshake for up to `limit` of simulated time, 10 ms steps.
    fn run(&mut self, limit: Duration) {
        let end = self.now + limit;
        while self.now < end && self.outcome.is_none() {
            if self.caller.poll_timeout(self.now) <= self.now {
                self.caller.handle_timeout(self.now);
            }
            while let Some(d) = self.caller.poll_transmit() {
                self.sent_by_caller += 1;
                if self.sent_by_caller > self.drop_first {
                    self.listener.handle_datagram(self.now, caller_addr(), &d);
                }
            }
            while let Some(ev) = self.listener.poll_event() {
                match ev {
                    ListenerEvent::AccessRequested { peer, .. } => match self.answer {
                        Ok(pass) => self.listener.accept(self.now, peer, pass),
                        Err(code) => self.listener.reject(self.now, peer, code),
                    },
                    ListenerEvent::Connected { connection, .. } => {
                        self.accepted = Some(connection);
                    }
                    _ => {}
                }
            }
            while let Some((d, to)) = self.listener.poll_transmit() {
                assert_eq!(to, caller_addr());
                let mut d = d.to_vec();
                // A conclusion handshake (control type 0, handshake type
                // -1 at 36..40): its MSS at 28..32. (Rewriting the
                // induction too would make the caller echo the size in its
                // conclusion, which our listener refuses by itself.)
                if let Some(mss) = self.mss
                    && d.len() >= 40
                    && d[..2] == [0x80, 0]
                    && d[36..40] == [0xff; 4]
                {
                    d[28..32].copy_from_slice(&mss.to_be_bytes());
                }
                self.caller.handle_datagram(self.now, listener_addr(), &d);
            }
            self.outcome = self.caller.poll_event();
            self.now += Duration::from_millis(10);
        }
    }

    fn connected(mut self) -> (Instant, Box<SrtConnection>, Box<SrtConnection>) {
        self.run(Duration::from_secs(2));
        let Some(CallerEvent::Connected(ours)) = self.outcome else {
            panic!("not connected: {:?}", self.outcome);
        };
        // The listener's side may finish a step after ours.
        let mut theirs = self.accepted;
        for _ in 0..10 {
            if theirs.is_some() {
                break;
            }
            while let Some(d) = self.caller.poll_transmit() {
                self.listener.handle_datagram(self.now, caller_addr(), &d);
            }
            while let Some(ev) = self.listener.poll_event() {
                if let ListenerEvent::Connected { connection, .. } = ev {
                    theirs = Some(connection);
                }
            }
            self.now += Duration::from_millis(10);
        }
        (self.now, ours, theirs.expect("the listener connected too"))
    }
}

/// Sends `messages` from `ours` to `theirs` on simulated time and returns
/// what `theirs` delivered.
fn transfer(
    now: Instant,
    ours: &mut SrtConnection,
    theirs: &mut SrtConnection,
    messages: &[Bytes],
) -> Vec<Bytes> {
    transfer_lossy(now, ours, theirs, messages, 0)
}

/// [`transfer`] losing every `lose_every`th datagram `ours` sends (0: none).
fn transfer_lossy(
    mut now: Instant,
    ours: &mut SrtConnection,
    theirs: &mut SrtConnection,
    messages: &[Bytes],
    lose_every: usize,
) -> Vec<Bytes> {
    let mut got = Vec::new();
    let mut buf = Vec::new();
    let mut next = 0;
    let mut sent = 0usize;
    let end = now + Duration::from_secs(3);
    while now < end {
        if next < messages.len() {
            assert!(ours.send(now, messages[next].clone()));
            next += 1;
        }
        if ours.poll_timeout(now) <= now {
            ours.handle_timeout(now);
        }
        while ours.poll_transmit(now, &mut buf) {
            sent += 1;
            if lose_every == 0 || !sent.is_multiple_of(lose_every) {
                theirs.handle_datagram(now, &buf);
            }
        }
        step(now, theirs, ours, &mut buf);
        while let Some(d) = theirs.poll_data(now) {
            got.push(d);
        }
        now += Duration::from_millis(5);
    }
    got
}

/// Runs `from`'s timers and hands what it sends to `to`.
fn step(now: Instant, from: &mut SrtConnection, to: &mut SrtConnection, buf: &mut Vec<u8>) {
    if from.poll_timeout(now) <= now {
        from.handle_timeout(now);
    }
    while from.poll_transmit(now, buf) {
        to.handle_datagram(now, buf);
    }
}

fn messages(n: usize) -> Vec<Bytes> {
    (0..n)
        .map(|i| Bytes::from(vec![u8::try_from(i % 251).unwrap(); 1316]))
        .collect()
}

#[test]
fn a_call_connects_and_what_it_sends_arrives_in_order() {
    let config = CallerConfig {
        stream_id: Some("#!::r=live/show,m=publish".into()),
        ..CallerConfig::default()
    };
    let (now, mut ours, mut theirs) = Net::new(&config, Ok(None)).connected();
    assert_eq!(theirs.stream_id(), Some("#!::r=live/show,m=publish"));
    let sent = messages(200);
    let got = transfer(now, &mut ours, &mut theirs, &sent);
    assert_eq!(got, sent);
    assert!(ours.tx_totals().0 >= 200 * 1316);
}

/// One datagram in seven lost on the way (10 % and more): the listener's
/// loss reports bring every message, in order, within the latency.
#[test]
fn lost_packets_are_sent_again() {
    let (now, mut ours, mut theirs) = Net::new(&CallerConfig::default(), Ok(None)).connected();
    let sent = messages(300);
    let got = transfer_lossy(now, &mut ours, &mut theirs, &sent, 7);
    assert_eq!(got.len(), sent.len());
    assert_eq!(got, sent);
    assert!(ours.tx_totals().1 >= 300 / 7, "{:?}", ours.tx_totals());
}

#[test]
fn an_encrypted_call_connects_and_decrypts() {
    for key_len in [16, 24, 32] {
        let config = CallerConfig {
            passphrase: Some(PASS.into()),
            key_len,
            ..CallerConfig::default()
        };
        let (now, mut ours, mut theirs) = Net::new(&config, Ok(Some(PASS))).connected();
        let sent = messages(20);
        let got = transfer(now, &mut ours, &mut theirs, &sent);
        assert_eq!(got, sent, "AES-{}", u32::from(key_len) * 8);
    }
}

#[test]
fn refusals_carry_the_listeners_reason() {
    // Access control said no.
    let mut net = Net::new(&CallerConfig::default(), Err(RejectCode::UNAUTHORIZED));
    net.run(Duration::from_secs(2));
    assert!(
        matches!(
            net.outcome,
            Some(CallerEvent::Rejected(RejectCode::UNAUTHORIZED))
        ),
        "{:?}",
        net.outcome
    );
    assert!(net.caller.is_done());
    // The wrong passphrase.
    let config = CallerConfig {
        passphrase: Some("not-the-right-one".into()),
        ..CallerConfig::default()
    };
    let mut net = Net::new(&config, Ok(Some(PASS)));
    net.run(Duration::from_secs(2));
    assert!(
        matches!(
            net.outcome,
            Some(CallerEvent::Rejected(RejectCode::BAD_SECRET))
        ),
        "{:?}",
        net.outcome
    );
    // No passphrase to an encrypted stream.
    let mut net = Net::new(&CallerConfig::default(), Ok(Some(PASS)));
    net.run(Duration::from_secs(2));
    assert!(
        matches!(
            net.outcome,
            Some(CallerEvent::Rejected(RejectCode::UNSECURE))
        ),
        "{:?}",
        net.outcome
    );
}

/// A listener whose handshake asks for packets under SRT's minimum (MSS
/// 0 made `srt-protocol` loop for ever in the first send, growing its
/// buffer: found by the fuzz smoke) is refused with that reason; at the
/// minimum the call connects.
#[test]
fn a_listener_asking_for_tiny_packets_is_refused() {
    for mss in [0, 1, 75] {
        let mut net = Net::new(&CallerConfig::default(), Ok(None));
        net.mss = Some(mss);
        net.run(Duration::from_secs(2));
        match &net.outcome {
            Some(CallerEvent::Failed(why)) => {
                assert!(why.contains(&format!("packets of {mss} bytes")), "{why}");
            }
            other => panic!("MSS {mss}: {other:?}"),
        }
        assert!(net.caller.is_done());
    }
    let mut net = Net::new(&CallerConfig::default(), Ok(None));
    net.mss = Some(ugc_proto::srt::MIN_PACKET_SIZE as u32);
    net.run(Duration::from_secs(2));
    assert!(
        matches!(net.outcome, Some(CallerEvent::Connected(_))),
        "at the minimum: {:?}",
        net.outcome
    );
}

#[test]
fn a_lost_handshake_packet_is_sent_again() {
    let mut net = Net::new(&CallerConfig::default(), Ok(None));
    net.drop_first = 2; // the induction and its first resend
    let start = net.now;
    net.run(Duration::from_secs(2));
    assert!(matches!(net.outcome, Some(CallerEvent::Connected(_))));
    // Two resends at 250 ms each before the third induction got through.
    assert!(net.now - start >= Duration::from_millis(500));
    assert!(net.now - start < Duration::from_millis(800));
}

#[test]
fn settings_srt_forbids_fail_before_anything_is_sent() {
    let bad = [
        CallerConfig {
            passphrase: Some("short".into()),
            ..CallerConfig::default()
        },
        CallerConfig {
            passphrase: Some(PASS.into()),
            key_len: 20,
            ..CallerConfig::default()
        },
        CallerConfig {
            stream_id: Some("x".repeat(513)),
            ..CallerConfig::default()
        },
    ];
    for config in bad {
        assert!(SrtCaller::new(&config, listener_addr(), caller_addr().ip(), [1, 2]).is_err());
    }
}

#[test]
fn stray_datagrams_change_nothing() {
    let mut net = Net::new(&CallerConfig::default(), Ok(None));
    let now = net.now;
    net.caller.handle_timeout(now);
    let first = net.caller.poll_transmit().unwrap();
    // Garbage, a truncated packet, and a valid one from someone else.
    net.caller.handle_datagram(now, listener_addr(), b"garbage");
    net.caller
        .handle_datagram(now, listener_addr(), &first[..first.len() / 2]);
    net.caller
        .handle_datagram(now, "10.9.9.9:9000".parse().unwrap(), &first);
    assert!(net.caller.poll_event().is_none());
    assert!(!net.caller.is_done());
    // The call goes on: the next resend is the same induction.
    net.caller.handle_timeout(now + Duration::from_millis(250));
    assert_eq!(net.caller.poll_transmit().unwrap(), first);
}

/// Messages queued faster than they go out, as a whole keyframe is (300
/// messages: 395 KB, a 1080p keyframe at 8 Mbit/s), at the start and in
/// the middle of a stream: every one arrives, in order. With
/// `srt-protocol`'s default send buffer (32 packets, dropping the oldest,
/// sent or not, to make room) a burst of 33 lost its first packets before
/// they were sent, and the receiver delivered nothing more: at the start
/// nothing at all, in the middle nothing after the 100 messages paced
/// before it.
#[test]
fn a_keyframes_burst_of_messages_arrives_whole() {
    for at_start in [true, false] {
        let (mut now, mut ours, mut theirs) =
            Net::new(&CallerConfig::default(), Ok(None)).connected();
        let sent = messages(500);
        let (paced_before, burst) = if at_start { (0, 300) } else { (100, 300) };
        let mut got = Vec::new();
        let mut buf = Vec::new();
        let mut next = 0;
        let end = now + Duration::from_secs(5);
        while now < end {
            if next == paced_before {
                for m in &sent[next..next + burst] {
                    assert!(ours.send(now, m.clone()));
                }
                next += burst;
            } else if next < sent.len() {
                assert!(ours.send(now, sent[next].clone()));
                next += 1;
            }
            step(now, &mut ours, &mut theirs, &mut buf);
            step(now, &mut theirs, &mut ours, &mut buf);
            while let Some(d) = theirs.poll_data(now) {
                got.push(d);
            }
            now += Duration::from_millis(5);
        }
        assert_eq!(got.len(), sent.len(), "burst at the start: {at_start}");
        assert!(got == sent, "in order (burst at the start: {at_start})");
    }
}

/// The path goes dark both ways for 0.5, 1.5 and 3 s in the middle of a
/// stream (120 ms latency): what fell in the outage is lost, neither end
/// gives up, and everything sent from half a second after it arrives, in
/// order.
#[test]
fn after_an_outage_the_stream_goes_on() {
    for outage_ms in [500u64, 1500, 3000] {
        let (mut now, mut ours, mut theirs) =
            Net::new(&CallerConfig::default(), Ok(None)).connected();
        let start = now;
        let mut buf = Vec::new();
        let (cut, back) = (
            Duration::from_millis(1000),
            Duration::from_millis(1000 + outage_ms),
        );
        let settled = back + Duration::from_millis(500);
        // Message ids (the tick each was sent in): those sent from
        // `settled` on, and all that arrived.
        let (mut sent_after, mut got, mut tick) = (Vec::new(), Vec::new(), 0u32);
        while now < start + back + Duration::from_secs(3) {
            let t = now - start;
            tick += 1;
            if tick % 2 == 0 {
                let mut m = vec![0u8; 1316];
                m[..4].copy_from_slice(&tick.to_be_bytes());
                if t >= settled {
                    sent_after.push(tick);
                }
                assert!(ours.send(now, Bytes::from(m)));
            }
            let down = t >= cut && t < back;
            for dir in 0..2 {
                let (a, b) = if dir == 0 {
                    (&mut ours, &mut theirs)
                } else {
                    (&mut theirs, &mut ours)
                };
                if a.poll_timeout(now) <= now {
                    a.handle_timeout(now);
                }
                while a.poll_transmit(now, &mut buf) {
                    if !down {
                        b.handle_datagram(now, &buf);
                    }
                }
            }
            while let Some(d) = theirs.poll_data(now) {
                got.push(u32::from_be_bytes(d[..4].try_into().unwrap()));
            }
            now += Duration::from_millis(5);
        }
        assert!(!ours.is_closed() && !theirs.is_closed(), "{outage_ms} ms");
        let got_after: Vec<u32> = got.into_iter().filter(|i| *i >= sent_after[0]).collect();
        // The last latency's worth may still be on its way.
        let due = sent_after.len() - 30;
        assert!(
            got_after.len() >= due,
            "{outage_ms} ms: {} of {due}",
            got_after.len()
        );
        assert_eq!(got_after[..due], sent_after[..due], "{outage_ms} ms");
    }
}
