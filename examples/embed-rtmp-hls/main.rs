//! RTMP in -> a transform of your own -> LL-HLS out, assembled from the ugc
//! crates. Run `embed-rtmp-hls [RTMP_ADDR] [HTTP_ADDR]`, publish to
//! `rtmp://HOST:1935/live/demo`, play `http://HOST:8080/live/demo/index.m3u8`.
use std::sync::Arc;

use ugc_core::{AllowAll, Hub, HubConfig, MediaEvent, Result, Transform, pump};
use ugc_dvr::{LiveRegistry, PackagerConfig, package_hub};
use ugc_proto::{origin, rtmp::server::RtmpListener};

/// Your transform: counts keyframes and passes every event on.
struct KeyframeCounter(u64);

impl Transform for KeyframeCounter {
    fn push(&mut self, event: MediaEvent, out: &mut Vec<MediaEvent>) -> Result<()> {
        if matches!(&event, MediaEvent::Frame(f) if f.keyframe) {
            self.0 += 1;
        }
        out.push(event);
        Ok(())
    }
}

/// Publishers on `rtmp_addr`, through the transform, as LL-HLS on `http_addr`.
async fn serve(rtmp_addr: &str, http_addr: &str) -> std::io::Result<()> {
    let hub = Hub::new(HubConfig::default());
    let registry = Arc::new(LiveRegistry::new());
    let packaging = PackagerConfig::default().with_part_target(Some(200));
    tokio::spawn(package_hub(hub.clone(), registry.clone(), packaging));
    let http = ugc_proto::http::bind(http_addr).await?;
    tokio::spawn(origin::serve(http, origin::router(registry)));
    let mut rtmp = RtmpListener::bind(rtmp_addr, Default::default()).await?;
    loop {
        let conn = rtmp.accept().await?;
        let hub = hub.clone();
        tokio::spawn(async move {
            if let Ok(Some(media)) = conn.publish(&AllowAll).await {
                let stream = hub.publish(media.stream());
                let _ = pump(media, KeyframeCounter(0), stream).await;
            }
        });
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or(default.into());
    serve(&arg(1, "0.0.0.0:1935"), &arg(2, "0.0.0.0:8080")).await
}
