//! SRT in -> RTMP(S) out: a relay from the ugc crates. Every stream an SRT
//! caller publishes (`srt://HOST:9000?streamid=live/NAME`) is pumped, an
//! `SrtPublish` source into an `RtmpPush` sink, to `TARGET/NAME` (e.g.
//! `rtmp://a.rtmp.youtube.com/live2` + `/KEY`). No Hub in between: a slow
//! target slows the relay, and a target that fails ends it. For retries,
//! a status and several targets per stream, publish into a `Hub` and push
//! with `ugc_proto::rtmp::push::spawn_push`.
//! Run: `embed-srt-relay SRT_ADDR TARGET`.
use std::sync::Arc;

use ugc_core::{AllowAll, Passthrough, pump};
use ugc_proto::rtmp::push::{PushConfig, RtmpPush, redact};
use ugc_proto::srt::server::{PassphraseLookup, SrtPublish, SrtServerConfig, serve_with};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let srt_addr = args.next().unwrap_or_else(|| "0.0.0.0:9000".into());
    let target = args
        .next()
        .expect("usage: embed-srt-relay SRT_ADDR rtmp://TARGET");
    let relay = move |source: SrtPublish| {
        let url = format!("{target}/{}", source.stream().name());
        async move {
            let relayed = match RtmpPush::connect(&url, &PushConfig::default()).await {
                Ok(push) => pump(source, Passthrough, push)
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            if let Err(e) = relayed {
                eprintln!("relay to {}: {e}", redact(&url));
            }
        }
    };
    let socket = tokio::net::UdpSocket::bind(&srt_addr).await?;
    let no_passphrase: PassphraseLookup = Arc::new(|_| None);
    let (config, stats) = (SrtServerConfig::default(), Default::default());
    serve_with(
        socket,
        Arc::new(AllowAll),
        no_passphrase,
        config,
        stats,
        relay,
    )
    .await
}
