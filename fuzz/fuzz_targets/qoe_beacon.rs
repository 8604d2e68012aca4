//! A player's QoE beacon (what anyone may POST to `/<app>/<stream>/qoe`):
//! never panics; what parses is in range and re-parses from its canonical
//! form to the same beacon; adding it to a collector and rendering the
//! metrics never panics, keeps one stream, and counts it once.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use ugc_core::StreamPath;
use ugc_core::metrics::Exposition;
use ugc_core::qoe::{Beacon, MAX_BEACON_BYTES, MAX_DURATION, MAX_STALLS, QoeCollector};

fn render(b: &Beacon) -> String {
    let ms = |d: std::time::Duration| d.as_millis().to_string();
    let mut q = vec![format!("sid={}", b.session)];
    if let Some(s) = b.startup {
        q.push(format!("startup_ms={}", ms(s)));
    }
    if !b.stalls.is_empty() {
        let s: Vec<String> = b.stalls.iter().map(|d| ms(*d)).collect();
        q.push(format!("stalls={}", s.join(",")));
    }
    q.push(format!("played_ms={}", ms(b.played)));
    q.push(format!("switches={}", b.switches));
    for (k, n) in ["err_network", "err_media", "err_other"].iter().zip(b.errors) {
        q.push(format!("{k}={n}"));
    }
    q.push(format!("fatal={}", b.fatal));
    if let Some(l) = b.latency {
        q.push(format!("latency_ms={}", ms(l)));
    }
    q.push(format!("end={}", u8::from(b.end)));
    q.join("&")
}

fuzz_target!(|data: &[u8]| {
    let Ok(b) = Beacon::parse(data) else {
        return;
    };
    assert!(data.len() <= MAX_BEACON_BYTES);
    assert!(b.stalls.len() <= MAX_STALLS);
    assert!(b.stalls.iter().all(|s| *s <= MAX_DURATION));
    assert!(b.played <= MAX_DURATION);
    assert!(b.fatal <= b.errors.iter().sum::<u32>());
    assert_eq!(Beacon::parse(render(&b).as_bytes()), Ok(b.clone()));

    let q = QoeCollector::default();
    let stream = StreamPath::parse("live/fuzz").unwrap();
    let now = Instant::now();
    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    assert!(q.admit(ip, now));
    q.record(&stream, &b, &b.session, ip, now).unwrap();
    assert_eq!(q.sizes(), (1, 1));
    let mut m = Exposition::new();
    q.write_metrics(&mut m, now);
    let text = m.finish();
    assert!(text.contains("ugc_qoe_beacons_total{stream=\"live/fuzz\"} 1\n"));
});
