//! SRT in -> RTMP(S) out: a relay from the ugc crates. Every stream an SRT
//! caller publishes (`srt://HOST:9000?streamid=live/NAME`) is pushed to
//! `TARGET/NAME` (e.g. `rtmp://a.rtmp.youtube.com/live2` + `/KEY`).
//! Run: `embed-srt-relay SRT_ADDR TARGET`.
use std::sync::Arc;

use ugc_core::{AllowAll, Hub, HubConfig};
use ugc_proto::rtmp::push::{PushConfig, spawn_push};
use ugc_proto::srt::server::{PassphraseLookup, SrtServerConfig, serve};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let srt_addr = args.next().unwrap_or_else(|| "0.0.0.0:9000".into());
    let target = args
        .next()
        .expect("usage: embed-srt-relay SRT_ADDR rtmp://TARGET");
    let hub = Hub::new(HubConfig::default());
    let socket = tokio::net::UdpSocket::bind(&srt_addr).await?;
    let no_passphrase: PassphraseLookup = Arc::new(|_| None);
    let ingest = serve(
        socket,
        hub.clone(),
        Arc::new(AllowAll),
        no_passphrase,
        SrtServerConfig::default(),
        Default::default(),
    );
    tokio::spawn(ingest);
    let (mut streams, mut pushes) = (hub.watch(), Vec::new());
    while let Some(stream) = streams.next().await {
        let url = format!("{target}/{}", stream.name());
        pushes.push(spawn_push(hub.clone(), stream, url, PushConfig::default()));
    }
    Ok(())
}
