//! Transcodes an FLV file through the ABR ladder as fast as it can (no
//! drops) and writes one Annex B `.h264` file per rung: the ugc side of
//! `benches/transcode-vs-ffmpeg.sh`.
//!
//! `ladder_file INPUT.flv OUT_DIR PRESET [ENCODER_THREADS]`
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::BTreeMap;
use std::time::Instant;

use bytes::Bytes;
use ugc_codec::flv::FlvIngest;
use ugc_codec::ladder::{LadderConfig, LadderDemux};
use ugc_codec::transcode::Ladder;
use ugc_core::{MediaEvent, Transform};

/// FLV file tags: (type, timestamp ms, body).
fn tags(file: &Bytes) -> Vec<(u8, i64, Bytes)> {
    let mut out = Vec::new();
    let Some(h) = file.get(5..9) else { return out };
    let mut pos = u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as usize + 4;
    while let Some(h) = file.get(pos..pos + 11) {
        let size = u32::from_be_bytes([0, h[1], h[2], h[3]]) as usize;
        let ts = u32::from_be_bytes([h[7], h[4], h[5], h[6]]);
        let Some(body) = file.get(pos + 11..pos + 11 + size) else {
            break;
        };
        out.push((h[0] & 0x1f, i64::from(ts), file.slice_ref(body)));
        pos += 11 + size + 4;
    }
    out
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (input, out_dir, preset) = (&args[1], &args[2], &args[3]);
    let threads: u32 = args.get(4).map_or(0, |t| t.parse().unwrap());
    let file = Bytes::from(std::fs::read(input).unwrap());
    let mut ingest = FlvIngest::new();
    let mut events = Vec::new();
    for (t, ts, body) in tags(&file) {
        match t {
            8 => ingest.push_audio(ts, body).unwrap(),
            9 => ingest.push_video(ts, body).unwrap(),
            _ => {}
        }
        while let Some(e) = ingest.poll_event() {
            events.push(e);
        }
    }
    let source_pictures = events
        .iter()
        .filter(|e| matches!(e, MediaEvent::Frame(f) if f.track.0 == 1))
        .count();
    let config = LadderConfig {
        preset: preset.clone(),
        drop_when_behind: false,
        encoder_threads: threads,
        ..LadderConfig::default()
    };
    let names: Vec<String> = config.renditions.iter().map(|r| r.name.clone()).collect();
    let start = Instant::now();
    let mut ladder = Ladder::new(config).unwrap();
    let mut out = Vec::new();
    for e in events {
        ladder.push(e, &mut out).unwrap();
    }
    ladder.flush(&mut out).unwrap();
    let wall = start.elapsed().as_secs_f64();
    let mut demux = LadderDemux::new();
    let mut files: BTreeMap<usize, Vec<u8>> = BTreeMap::new();
    let mut headers: BTreeMap<usize, Vec<u8>> = BTreeMap::new();
    for e in out {
        for (i, e) in demux.route(e) {
            match e {
                MediaEvent::Tracks(t) => {
                    let v = t.video().unwrap();
                    let cfg = ugc_codec::h264::AvcConfig::parse(&v.config).unwrap();
                    let mut h = Vec::new();
                    for ps in cfg.sps.iter().chain(cfg.pps.iter()) {
                        h.extend_from_slice(&[0, 0, 0, 1]);
                        h.extend_from_slice(ps);
                    }
                    headers.insert(i, h);
                }
                MediaEvent::Frame(f) if f.track.0 == 1 => {
                    let buf = files.entry(i).or_default();
                    if f.keyframe {
                        buf.extend_from_slice(&headers[&i]);
                    }
                    ugc_codec::h264::avcc_to_annexb_into(&f.data, 4, buf).unwrap();
                }
                _ => {}
            }
        }
    }
    for (i, data) in files {
        std::fs::write(format!("{out_dir}/{}.h264", names[i]), data).unwrap();
    }
    let s = ladder.stats();
    println!(
        "ugc ladder: {source_pictures} pictures in {wall:.2} s = {:.1} fps (dropped {})",
        source_pictures as f64 / wall,
        s.pictures_dropped + s.input_dropped
    );
}
