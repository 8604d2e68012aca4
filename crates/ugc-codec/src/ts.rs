//! MPEG-TS muxer.
//!
//! placeholder until wt-b lands: emits 188-byte packets that are not a real
//! transport stream; only the signatures are the contract.

use bytes::{BufMut, Bytes, BytesMut};
use ugc_core::{Frame, Tracks};

use crate::error::Error;

/// Muxes frames into MPEG-TS segments.
#[derive(Debug)]
pub struct TsMuxer {
    // placeholder until wt-b lands
    tracks: usize,
}

impl TsMuxer {
    /// A muxer for `tracks`.
    pub fn new(tracks: &Tracks) -> Self {
        // placeholder until wt-b lands
        TsMuxer {
            tracks: tracks.len(),
        }
    }

    /// One segment: PAT/PMT, then the frames (in dts order, each track's
    /// timestamps in its own timescale).
    pub fn segment(&mut self, frames: &[Frame]) -> Result<Bytes, Error> {
        // placeholder until wt-b lands
        let mut out = BytesMut::new();
        let mut packet = |pid: u16, payload: &[u8]| {
            let mut p = [0xffu8; 188];
            p[0] = 0x47;
            p[1..3].copy_from_slice(&pid.to_be_bytes());
            p[3] = 0x10;
            let n = payload.len().min(184);
            p[4..4 + n].copy_from_slice(&payload[..n]);
            out.put_slice(&p);
        };
        packet(0, &[0]);
        packet(0x1000, &[u8::try_from(self.tracks).unwrap_or(u8::MAX)]);
        for f in frames {
            for chunk in f.data.chunks(184) {
                packet(0x100, chunk);
            }
        }
        Ok(out.freeze())
    }
}
