//! [`TargetPush`]: the session of a push to any target URL the restream
//! settings allow (`rtmp://`, `rtmps://`, `srt://`), chosen by its scheme.

use ugc_core::{MediaEvent, Sink};

use super::{PushConfig, RtmpPush};
use crate::error::Result;
use crate::srt::push::SrtPush;

/// One push session: RTMP(S) ([`RtmpPush`]) or SRT ([`SrtPush`]).
#[derive(Debug)]
pub enum TargetPush {
    /// `rtmp://` or `rtmps://`.
    Rtmp(Box<RtmpPush>),
    /// `srt://`.
    Srt(SrtPush),
}

impl TargetPush {
    /// Connects to `url` with the session of its scheme.
    pub async fn connect(url: &str, config: &PushConfig) -> Result<TargetPush> {
        if url.starts_with("srt://") {
            Ok(TargetPush::Srt(SrtPush::connect(url, config).await?))
        } else {
            Ok(TargetPush::Rtmp(Box::new(
                RtmpPush::connect(url, config).await?,
            )))
        }
    }

    /// The target, secrets redacted.
    pub fn target(&self) -> &str {
        match self {
            TargetPush::Rtmp(p) => p.target(),
            TargetPush::Srt(p) => p.target(),
        }
    }

    /// Bytes written to the target.
    pub fn bytes_sent(&self) -> u64 {
        match self {
            TargetPush::Rtmp(p) => p.bytes_sent(),
            TargetPush::Srt(p) => p.bytes_sent(),
        }
    }

    /// Frames sent.
    pub fn frames_sent(&self) -> u64 {
        match self {
            TargetPush::Rtmp(p) => p.frames_sent(),
            TargetPush::Srt(p) => p.frames_sent(),
        }
    }
}

impl Sink for TargetPush {
    async fn send(&mut self, event: MediaEvent) -> ugc_core::Result<()> {
        match self {
            TargetPush::Rtmp(p) => p.send(event).await,
            TargetPush::Srt(p) => p.send(event).await,
        }
    }

    async fn finish(&mut self) -> ugc_core::Result<()> {
        match self {
            TargetPush::Rtmp(p) => p.finish().await,
            TargetPush::Srt(p) => p.finish().await,
        }
    }
}
