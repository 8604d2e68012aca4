//! The thin tokio loop that drives a [`Segmenter`] from a Hub reader into a
//! [`LiveStream`]. The only place in this crate that reads the wall clock.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ugc_core::{HubReader, MediaEvent};

use crate::live::LiveStream;
use crate::segmenter::{Segmenter, SegmenterConfig};

fn now_unix_ms() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

fn drain(segmenter: &mut Segmenter, stream: &LiveStream) {
    while let Some(out) = segmenter.poll() {
        stream.apply(out);
    }
}

/// Packages the Hub stream `reader` into `stream` until the stream ends.
///
/// When no event arrives for twice the target duration the open segment is
/// flushed (the publisher went idle), so players get what was sent.
pub async fn run_packager(mut reader: HubReader, stream: Arc<LiveStream>, config: SegmenterConfig) {
    let idle = Duration::from_millis(u64::from(config.target_duration_ms.max(1)) * 2);
    let mut segmenter = Segmenter::new(config);
    loop {
        match tokio::time::timeout(idle, reader.recv()).await {
            Ok(Some(event)) => {
                let end = matches!(event, MediaEvent::End);
                if let Err(e) = segmenter.push(event, now_unix_ms()) {
                    tracing::warn!(stream = reader.stream(), error = %e, "segmenter rejected an event");
                }
                drain(&mut segmenter, &stream);
                if end {
                    stream.set_ended();
                    return;
                }
            }
            Ok(None) => {
                if let Err(e) = segmenter.push(MediaEvent::End, now_unix_ms()) {
                    tracing::warn!(stream = reader.stream(), error = %e, "closing the segmenter");
                }
                drain(&mut segmenter, &stream);
                stream.set_ended();
                return;
            }
            Err(_idle) => {
                if let Err(e) = segmenter.flush(now_unix_ms()) {
                    tracing::warn!(stream = reader.stream(), error = %e, "flushing an idle stream");
                }
                drain(&mut segmenter, &stream);
            }
        }
    }
}

/// Settings of [`package_hub`].
#[derive(Debug, Clone)]
pub struct PackagerConfig {
    /// How segments are cut.
    pub segmenter: SegmenterConfig,
    /// The live window of each stream.
    pub live: crate::live::LiveConfig,
    /// How long an ended stream's playlist stays served (players fetch the
    /// `EXT-X-ENDLIST` and the last segments) before it is forgotten.
    pub linger: Duration,
}

impl PackagerConfig {
    /// Sets the LL-HLS part target of the segmenter and the live window
    /// together (`None`: classic HLS, one part per segment).
    pub fn with_part_target(mut self, part_target_ms: Option<u32>) -> Self {
        self.segmenter.part_target_ms = part_target_ms;
        self.live.part_target_ms = part_target_ms;
        self
    }
}

impl Default for PackagerConfig {
    fn default() -> Self {
        PackagerConfig {
            segmenter: SegmenterConfig::default(),
            live: crate::live::LiveConfig::default(),
            linger: Duration::from_secs(60),
        }
    }
}

/// Packages every stream of `hub` (present and future) into `registry`: one
/// task per stream runs [`run_packager`]; an ended stream stays in the
/// registry for [`PackagerConfig::linger`] unless a new stream of the same
/// name replaced it. Returns when the hub is dropped.
pub async fn package_hub(
    hub: ugc_core::Hub,
    registry: Arc<crate::live::LiveRegistry>,
    config: PackagerConfig,
) {
    let mut watch = hub.watch();
    // Streams created before the watcher started.
    let mut pending = hub.stream_names();
    loop {
        let name = match pending.pop() {
            Some(n) => n,
            None => match watch.next().await {
                Some(n) => n,
                None => return,
            },
        };
        let Some(reader) = hub.subscribe_existing(&name) else {
            continue;
        };
        let live = Arc::new(LiveStream::new(config.live.clone()));
        registry.insert(&name, live.clone());
        tracing::info!(stream = %name, "packaging");
        let registry = registry.clone();
        let config = config.clone();
        tokio::spawn(async move {
            run_packager(reader, live.clone(), config.segmenter).await;
            tracing::info!(stream = %name, "stream ended");
            tokio::time::sleep(config.linger).await;
            registry.remove_if_same(&name, &live);
        });
    }
}
