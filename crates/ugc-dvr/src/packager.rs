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
