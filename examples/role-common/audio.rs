//! Audio transcodes of the role binaries: Opus -> AAC before packaging
//! (`--opus-to-aac`: HLS players without Opus, older browsers and set-top
//! players, get AAC), AAC -> Opus on the way to WebRTC viewers
//! (`--aac-to-opus`: WebRTC carries no AAC). The Hub keeps the audio as it
//! came, so each way gets its own.

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

/// The WHEP feeds' transform for `on`: AAC -> Opus at 64 kbit/s (`None`
/// when off, or when this build has no FFmpeg: a stream with AAC plays
/// without sound over WebRTC).
pub fn aac_to_opus(on: bool) -> Option<ugc_proto::whip::server::TransformMaker> {
    #[cfg(feature = "ffmpeg")]
    if on {
        return Some(ugc_proto::whip::server::TransformMaker(
            std::sync::Arc::new(|| {
                Box::new(ugc_codec::transcode::AudioTranscode::new(
                    ugc_core::Codec::Aac,
                    ugc_core::Codec::Opus,
                    64,
                ))
            }),
        ));
    }
    let _ = on;
    None
}
