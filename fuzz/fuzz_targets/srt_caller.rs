//! The SRT caller (restream to `srt://`, issue #18): an honest listener
//! ([`SrtListener`]) whose answers may be corrupted, arbitrary datagrams
//! from the listener's address and from strangers, an advancing `now`, and
//! once connected, data to send and arbitrary datagrams into the sending
//! [`SrtConnection`].
//!
//! Panics inside `srt-protocol` are contained by the caller's and the
//! connection's `catch_unwind` (the hook of `common/contained_panics.rs`
//! prints each location once); a panic that escapes them aborts.
//!
//! Invariants: every datagram the caller or its connection sends parses as
//! SRT; a call ends with exactly one event and sends nothing after it but
//! the last handshake answer; the connection sends a bounded number of
//! datagrams per step.
//!
//! Input: ops `[op][args...]`: `op % 6` picks raw datagram from the
//! listener `[len][bytes]` (0), from a stranger (1), an honest listener
//! step `[mutation][value]` (2), time advance `[10 ms units]` (3), data to
//! send `[len]` (4), connection close (5).
#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use srt_protocol::packet::Packet;
use ugc_proto::srt::{
    CallerConfig, CallerEvent, ListenerConfig, ListenerEvent, SrtCaller, SrtConnection,
    SrtListener,
};

#[path = "../common/contained_panics.rs"]
mod contained_panics;
#[path = "../common/input.rs"]
mod input;
use input::Input;

const PASS: &str = "correcthorsebattery";

fn check_sent(data: &[u8]) {
    if let Err(e) = Packet::parse(&mut &data[..], false) {
        panic!("the caller sent an unparsable datagram: {e:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    contained_panics::install();
    let me: SocketAddr = "10.0.0.1:5000".parse().expect("address");
    let server: SocketAddr = "10.0.0.9:9000".parse().expect("address");
    let stranger: SocketAddr = "10.0.0.7:9000".parse().expect("address");
    let mut input = Input(data);
    let config_byte = input.byte().unwrap_or(0);
    let config = CallerConfig {
        stream_id: Some("#!::r=live/key1,m=publish".into()),
        passphrase: (config_byte & 1 == 1).then(|| PASS.to_owned()),
        key_len: [16, 24, 32][usize::from(config_byte >> 1) % 3],
        ..CallerConfig::default()
    };
    let Ok(mut caller) = SrtCaller::new(&config, server, me.ip(), [7, 99]) else {
        return;
    };
    let mut listener = SrtListener::new(ListenerConfig::default());
    let listener_pass = (config_byte & 0x40 == 0).then_some(PASS);
    let mut now = Instant::now();
    let mut to_listener: Vec<Vec<u8>> = Vec::new();
    let mut conn: Option<Box<SrtConnection>> = None;
    let mut events = 0;
    let mut out = Vec::new();
    caller.handle_timeout(now);

    while let Some(op) = input.byte() {
        let mut from_listener: Vec<(SocketAddr, Vec<u8>)> = Vec::new();
        match op % 6 {
            0 | 1 => {
                let len = usize::from(input.byte().unwrap_or(0));
                let d = input.bytes(len);
                from_listener.push((if op % 6 == 0 { server } else { stranger }, d));
            }
            2 => {
                let mutation = input.byte().unwrap_or(0);
                let value = input.byte().unwrap_or(0);
                for d in to_listener.drain(..) {
                    listener.handle_datagram(now, me, &d);
                }
                while let Some(ev) = listener.poll_event() {
                    if let ListenerEvent::AccessRequested { peer, .. } = ev {
                        listener.accept(now, peer, listener_pass);
                    }
                }
                while let Some((d, _)) = listener.poll_transmit() {
                    let mut d = d.to_vec();
                    if mutation & 0x80 != 0 && !d.is_empty() {
                        let at = usize::from(mutation & 0x7f) % d.len();
                        d[at] = value;
                    }
                    from_listener.push((server, d));
                }
            }
            3 => {
                now += Duration::from_millis(10 * u64::from(input.byte().unwrap_or(1)));
                if caller.poll_timeout(now) <= now {
                    caller.handle_timeout(now);
                }
                if let Some(c) = &mut conn
                    && c.poll_timeout(now) <= now
                {
                    c.handle_timeout(now);
                }
            }
            4 => {
                let len = usize::from(input.byte().unwrap_or(0)) * 6;
                if let Some(c) = &mut conn {
                    c.send(now, Bytes::from(vec![0x47; len.min(1316)]));
                }
            }
            _ => {
                if let Some(c) = &mut conn {
                    check_sent(&c.close(now));
                    assert!(c.is_closed());
                }
            }
        }
        for (from, d) in from_listener {
            match &mut conn {
                Some(c) => c.handle_datagram(now, &d),
                None => caller.handle_datagram(now, from, &d),
            }
        }
        let done_before = caller.is_done();
        while let Some(d) = caller.poll_transmit() {
            check_sent(&d);
            to_listener.push(d.to_vec());
        }
        while let Some(ev) = caller.poll_event() {
            events += 1;
            assert!(caller.is_done());
            if let CallerEvent::Connected(c) = ev {
                conn = Some(c);
            }
        }
        assert!(events <= 1, "{events} outcomes of one call");
        if done_before {
            caller.handle_timeout(now + Duration::from_secs(1));
            assert!(caller.poll_transmit().is_none(), "sent after the call ended");
        }
        if let Some(c) = &mut conn {
            let mut sent = 0;
            while c.poll_transmit(now, &mut out) {
                check_sent(&out);
                sent += 1;
                assert!(sent < 10_000, "a connection that never stops sending");
            }
            let _ = c.tx_totals();
        }
        if to_listener.len() > 64 {
            to_listener.drain(..32);
        }
    }
});
