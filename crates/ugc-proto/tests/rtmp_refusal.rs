//! A refused RTMP publisher over real TCP against `rtmp::server::serve`: it
//! reads the authorizer's reason, the server lingers (half-closed, reading)
//! so the client is not reset, and the linger is bounded. Our own restream
//! client reports a target's reason.
#![allow(missing_docs, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use ugc_core::{Authorizer, Hub, HubConfig, PublishDecision, PublishRequest};
use ugc_proto::rtmp::push::{PushConfig, PushState, spawn_push};
use ugc_proto::rtmp::server::{RtmpServerConfig, serve};
use ugc_proto::rtmp::{ClientConfig, ClientEvent, ClientSession};

/// Refuses every publisher the way the control plane refuses a wrong key.
struct UnknownKeys;

impl Authorizer for UnknownKeys {
    async fn authorize_publish(&self, _req: &PublishRequest) -> PublishDecision {
        PublishDecision::unauthorized("unknown stream key")
    }
}

async fn refusing_server(linger: Duration, max_connections: usize) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = RtmpServerConfig {
        refusal_linger: linger,
        max_connections,
        ..RtmpServerConfig::default()
    };
    tokio::spawn(serve(
        listener,
        Hub::new(HubConfig::default()),
        Arc::new(UnknownKeys),
        config,
    ));
    addr
}

/// Publishes with our client until the server answers; returns the socket
/// and the client's event.
async fn publish_until_answered(addr: std::net::SocketAddr) -> (TcpStream, ClientEvent) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let url = format!("rtmp://{addr}/live/s3cret");
    let mut client = ClientSession::new(ClientConfig::from_url(&url).unwrap());
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        while let Some(out) = client.poll_output() {
            tcp.write_all(&out).await.unwrap();
        }
        let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
            .await
            .expect("an answer within 5 s")
            .unwrap();
        assert!(n > 0, "closed before answering");
        client.handle_input(&buf[..n]).unwrap();
        if let Some(ev) = client.poll_event() {
            return (tcp, ev);
        }
    }
}

#[tokio::test]
async fn a_refused_publisher_reads_the_reason_and_may_still_write_until_the_linger_ends() {
    let linger = Duration::from_millis(600);
    let addr = refusing_server(linger, 8).await;
    let (mut tcp, ev) = publish_until_answered(addr).await;
    let refused_at = Instant::now();
    assert_eq!(
        ev,
        ClientEvent::Rejected {
            code: "NetStream.Publish.Denied".into(),
            description: "unknown stream key".into(),
        }
    );
    // The server half-closed: we read the end of its stream...
    let mut buf = [0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(2), tcp.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, 0, "FIN after the status");
    // ...while it still reads what we send (librtmp sends FCUnpublish and
    // deleteStream here), without a reset, until the linger is over; then
    // it closes and our writes fail. A peer cannot keep it longer.
    let mut failed_after = None;
    while refused_at.elapsed() < Duration::from_secs(5) {
        if tcp.write_all(&[0u8; 1024]).await.is_err() {
            failed_after = Some(refused_at.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let failed_after = failed_after.expect("the server closed after its linger");
    assert!(
        failed_after >= linger - Duration::from_millis(100),
        "reset after {failed_after:?}, before the {linger:?} linger"
    );
    assert!(
        failed_after < linger + Duration::from_millis(1500),
        "still open {failed_after:?} after the refusal"
    );
}

#[tokio::test]
async fn a_refused_publisher_that_closes_at_once_ends_the_linger() {
    // One connection at a time and a long linger: a connection still
    // lingering would make the server close the next one at accept.
    let addr = refusing_server(Duration::from_secs(30), 1).await;
    let (tcp, ev) = publish_until_answered(addr).await;
    assert!(matches!(ev, ClientEvent::Rejected { .. }), "{ev:?}");
    drop(tcp);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_tcp, ev) = publish_until_answered(addr).await;
    assert!(matches!(ev, ClientEvent::Rejected { .. }), "{ev:?}");
}

#[tokio::test]
async fn a_restream_target_that_refuses_reports_its_reason() {
    let addr = refusing_server(Duration::from_millis(500), 8).await;
    let hub = Hub::new(HubConfig::default());
    let push = spawn_push(
        hub,
        ugc_core::StreamPath::parse("live/src").unwrap(),
        format!("rtmp://{addr}/live/wrong-key"),
        PushConfig::default(),
    );
    let mut status = push.status();
    for _ in 0..100 {
        status = push.status();
        if status.last_error.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        status.last_error.as_deref(),
        Some("refused: unknown stream key (NetStream.Publish.Denied)"),
        "{status:?}"
    );
    assert_ne!(status.state, PushState::Live);
}
