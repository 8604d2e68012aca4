//! Opus -> AAC before packaging (`--opus-to-aac`): HLS players without
//! Opus (older browsers, set-top players) get AAC; WebRTC viewers still get
//! the Hub's Opus.

/// Gives every packaged stream an Opus -> AAC audio transcode (a no-op for
/// streams whose audio is not Opus).
pub struct OpusToAac;

#[cfg(feature = "ffmpeg")]
impl ugc_dvr::TransformFactory for OpusToAac {
    fn transform(&self, _stream: &ugc_core::StreamPath) -> Option<Box<dyn ugc_core::Transform>> {
        Some(Box::new(ugc_codec::transcode::AudioTranscode::opus_to_aac()))
    }
}

/// The packager's transform for `on` (`None` when off, or when this build
/// has no FFmpeg: the audio stays Opus).
pub fn opus_to_aac(on: bool) -> Option<std::sync::Arc<dyn ugc_dvr::TransformFactory>> {
    #[cfg(feature = "ffmpeg")]
    if on {
        return Some(std::sync::Arc::new(OpusToAac));
    }
    let _ = on;
    None
}
