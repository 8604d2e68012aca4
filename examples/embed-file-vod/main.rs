//! A file -> HLS VOD in a directory, from the ugc crates: an MPEG-TS file
//! (H.264/H.265 + AAC) is demuxed, segmented into fMP4 and written with its
//! playlist. Run: `embed-file-vod INPUT.ts OUTPUT_DIR`, then play
//! `OUTPUT_DIR/index.m3u8`.
use std::sync::Arc;

use ugc_codec::ts_demux::TsDemuxer;
use ugc_core::{Passthrough, StreamPath, iter_source, pump};
use ugc_dvr::vod::{vod_live_config, write_vod};
use ugc_dvr::{HlsPackager, LiveStream, SegmenterConfig};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (input, output) = (
        args.next().ok_or("usage: embed-file-vod IN.ts OUT_DIR")?,
        args.next().ok_or("no OUT_DIR")?,
    );
    let mut demux = TsDemuxer::new();
    demux.push(&std::fs::read(&input)?);
    demux.finish();
    let events = std::iter::from_fn(move || demux.poll_event());
    let live = Arc::new(LiveStream::new(vod_live_config(4000)));
    let segmenter = SegmenterConfig {
        target_duration_ms: 4000,
        ..Default::default()
    };
    let packager = HlsPackager::new(StreamPath::live("vod")?, live.clone(), segmenter);
    pump(iter_source(events), Passthrough, packager).await?;
    let playlist = write_vod(&live, output.as_ref())?;
    println!("{} segments: {}", live.window().len(), playlist.display());
    Ok(())
}
