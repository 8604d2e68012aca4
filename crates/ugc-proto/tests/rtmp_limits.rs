//! What one address may hold on `rtmp::server::serve_with_stats`, over
//! real TCP on loopback (`127.0.0.2` is another host to the server): its
//! connections beyond `max_connections_per_ip` are closed at accept and
//! counted, other addresses are served, a freed place is given again, and
//! connections that never finish their handshake are closed and counted.
#![allow(missing_docs, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use ugc_core::{AllowAll, Hub, HubConfig};
use ugc_proto::limits::ExemptIps;
use ugc_proto::rtmp::server::{RtmpServerConfig, RtmpServerStats, serve_with_stats};

async fn connect_from(ip: &str, to: SocketAddr) -> TcpStream {
    let s = TcpSocket::new_v4().unwrap();
    s.bind(format!("{ip}:0").parse().unwrap()).unwrap();
    s.connect(to).await.unwrap()
}

/// Whether the server closed `s` within `within`.
async fn closed(s: &mut TcpStream, within: Duration) -> bool {
    let mut b = [0u8; 64];
    matches!(
        tokio::time::timeout(within, s.read(&mut b)).await,
        Ok(Ok(0) | Err(_))
    )
}

async fn settle(stats: &RtmpServerStats, accepted: u64) {
    for _ in 0..100 {
        let seen =
            stats.accepted.load(Ordering::Relaxed) + stats.refused_ip_cap.load(Ordering::Relaxed);
        if seen >= accepted {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn one_address_is_capped_others_are_served() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stats = Arc::new(RtmpServerStats::default());
    let config = RtmpServerConfig {
        max_connections_per_ip: 3,
        handshake_timeout: Duration::from_secs(30),
        ..RtmpServerConfig::default()
    };
    let hub = Hub::new(HubConfig::default());
    tokio::spawn(serve_with_stats(
        listener,
        hub,
        Arc::new(AllowAll),
        config,
        stats.clone(),
    ));

    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect_from("127.0.0.1", addr).await);
    }
    let mut fourth = connect_from("127.0.0.1", addr).await;
    assert!(closed(&mut fourth, Duration::from_secs(2)).await);
    assert_eq!(stats.refused_ip_cap.load(Ordering::Relaxed), 1);
    // Another address is not affected.
    let mut other = connect_from("127.0.0.2", addr).await;
    settle(&stats, 5).await;
    assert!(!closed(&mut other, Duration::from_millis(200)).await);
    assert_eq!(stats.accepted.load(Ordering::Relaxed), 4);
    // A place freed is given again.
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut again = connect_from("127.0.0.1", addr).await;
    assert!(!closed(&mut again, Duration::from_millis(300)).await);
    assert_eq!(stats.accepted.load(Ordering::Relaxed), 5);
    assert_eq!(stats.refused_ip_cap.load(Ordering::Relaxed), 1);
}

/// An exempt address (a studio behind one NAT address) holds more than
/// `max_connections_per_ip`; another address is still capped.
#[tokio::test]
async fn an_exempt_address_is_not_capped_per_address() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stats = Arc::new(RtmpServerStats::default());
    let studio: std::net::IpAddr = "127.0.0.2".parse().unwrap();
    let config = RtmpServerConfig {
        max_connections_per_ip: 2,
        ip_cap_exempt: Some(ExemptIps::new(move |ip| ip == studio)),
        handshake_timeout: Duration::from_secs(30),
        ..RtmpServerConfig::default()
    };
    tokio::spawn(serve_with_stats(
        listener,
        Hub::new(HubConfig::default()),
        Arc::new(AllowAll),
        config,
        stats.clone(),
    ));
    let mut held = Vec::new();
    for _ in 0..6 {
        held.push(connect_from("127.0.0.2", addr).await);
    }
    settle(&stats, 6).await;
    for s in &mut held {
        assert!(!closed(s, Duration::from_millis(50)).await);
    }
    assert_eq!(stats.accepted.load(Ordering::Relaxed), 6);
    let mut capped = Vec::new();
    for _ in 0..3 {
        capped.push(connect_from("127.0.0.1", addr).await);
    }
    assert!(closed(&mut capped[2], Duration::from_secs(2)).await);
    assert_eq!(stats.accepted.load(Ordering::Relaxed), 8);
    assert_eq!(stats.refused_ip_cap.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn silent_connections_are_closed_at_the_handshake_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stats = Arc::new(RtmpServerStats::default());
    let config = RtmpServerConfig {
        handshake_timeout: Duration::from_millis(300),
        ..RtmpServerConfig::default()
    };
    tokio::spawn(serve_with_stats(
        listener,
        Hub::new(HubConfig::default()),
        Arc::new(AllowAll),
        config,
        stats.clone(),
    ));
    let mut silent = Vec::new();
    for _ in 0..5 {
        silent.push(TcpStream::connect(addr).await.unwrap());
    }
    for s in &mut silent {
        assert!(closed(s, Duration::from_secs(3)).await);
    }
    assert_eq!(stats.timed_out.load(Ordering::Relaxed), 5);
}

/// A peer that completes the handshake and then keeps sending (media
/// before publishing, never a command) is closed at the handshake timeout:
/// the deadline is checked even though its reads never wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_keeps_sending_but_never_publishes_is_closed_at_the_deadline() {
    use tokio::io::AsyncWriteExt;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stats = Arc::new(RtmpServerStats::default());
    // Small reads of large bursts: the server's socket always has data,
    // so its reads complete at once (as under a storm of several peers).
    let config = RtmpServerConfig {
        handshake_timeout: Duration::from_millis(500),
        read_buffer_size: 256,
        ..RtmpServerConfig::default()
    };
    tokio::spawn(serve_with_stats(
        listener,
        Hub::new(HubConfig::default()),
        Arc::new(AllowAll),
        config,
        stats.clone(),
    ));
    let mut s = TcpStream::connect(addr).await.unwrap();
    let started = std::time::Instant::now();
    let mut c0c1 = vec![0u8; 1537];
    c0c1[0] = 3;
    s.write_all(&c0c1).await.unwrap();
    let mut s0s1s2 = vec![0u8; 3073];
    s.read_exact(&mut s0s1s2).await.unwrap();
    s.write_all(&s0s1s2[1..1537]).await.unwrap();
    // Video messages of 100 bytes on message stream 0, one chunk each.
    let mut chunk = vec![0x06, 0, 0, 0, 0, 0, 100, 9, 0, 0, 0, 0];
    chunk.resize(12 + 100, 0x17);
    let burst = chunk.repeat(10_000);
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        while s.write_all(&burst).await.is_ok() {}
    })
    .await;
    assert!(closed.is_ok(), "still open after 5 s of sending");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(stats.timed_out.load(Ordering::Relaxed), 1);
}
