//! The sending side of the relay: media events in, fMP4 bytes out.

use std::collections::VecDeque;

use bytes::Bytes;
use ugc_core::{DiscontinuityReason, Frame, MediaEvent, TrackId, Tracks};

use super::boxes::BoxWriter;
use super::init::{INIT_CONTEXT, INIT_SYNTHESIZED, InitMark, write_moov};
use super::{
    BRAND, HELLO_RESUMED, Hello, RelayEvent, SIGNAL_DISCONTINUITY, SIGNAL_END, SIGNAL_SYNTHESIZED,
    WIRE_VERSION,
};
use crate::error::{Error, Result};

const SAMPLE_FLAGS_SYNC: u32 = 0x0200_0000; // sample_depends_on = 2
const SAMPLE_FLAGS_NON_SYNC: u32 = 0x0101_0000; // depends_on = 1, is_non_sync_sample
/// `moof` of one frame without / with the `ugcp` box.
const MOOF_SIZE: u32 = 8 + 16 + (8 + 16 + 20 + 36);
const UGCP_SIZE: u32 = 20;

/// Turns [`RelayEvent`]s into the relay byte stream. Pure: no I/O, no clock.
///
/// Call [`RelayWriter::hello`] first, then [`RelayWriter::write`] (or the
/// shorthands) per event, and drain [`RelayWriter::poll_output`] after each
/// call. Frame payloads come out as their own [`Bytes`] (clones of the
/// frame's handle, never copies), between small header chunks.
#[derive(Debug, Default)]
pub struct RelayWriter {
    out: VecDeque<Bytes>,
    started: bool,
    tracks: Option<Tracks>,
    /// Last decode time per track: the duration written for the next frame.
    last_dts: Vec<(TrackId, i64)>,
}

impl RelayWriter {
    /// A writer at the start of a connection.
    pub fn new() -> Self {
        Self::default()
    }

    /// The stream header: `ftyp` and the `ugch` hello. Must come first, once.
    pub fn hello(&mut self, hello: &Hello) -> Result<()> {
        if self.started {
            return Err(Error::InvalidState("relay: hello written twice"));
        }
        self.started = true;
        let mut w = BoxWriter::with_capacity(64);
        let ftyp = w.open(b"ftyp");
        w.bytes(BRAND);
        w.u32(u32::from(WIRE_VERSION));
        w.bytes(b"iso6");
        w.bytes(BRAND);
        w.close(ftyp)?;
        let h = w.open_full(b"ugch", 0, if hello.resumed { HELLO_RESUMED } else { 0 });
        w.u64(hello.epoch);
        w.u64(hello.window);
        w.u64(hello.start);
        if let Some(t) = hello.timeline {
            w.u64(t);
        }
        w.close(h)?;
        self.out.push_back(Bytes::from(w.buf));
        Ok(())
    }

    /// Writes one event of [`RelayEvent`] (a [`RelayEvent::Hello`] is
    /// [`Self::hello`]).
    pub fn write(&mut self, event: &RelayEvent) -> Result<()> {
        match event {
            RelayEvent::Hello(h) => self.hello(h),
            RelayEvent::Context { tracks, seq } => self.context(tracks, *seq),
            RelayEvent::Media { seq, event } => self.event(*seq, event),
        }
    }

    /// The track set in effect at sequence `seq` of a resumed connection:
    /// an init the reader parses the following fragments with, not an event.
    pub fn context(&mut self, tracks: &Tracks, seq: u64) -> Result<()> {
        self.init(
            tracks,
            InitMark {
                flags: INIT_CONTEXT,
                seq,
            },
        )
    }

    /// One media event; `seq` is its place in the sender's window, `None`
    /// for an event made for this connection (a start's track set, a
    /// skip's discontinuity). Frames need a `seq` and a track of the
    /// current track set.
    pub fn event(&mut self, seq: Option<u64>, event: &MediaEvent) -> Result<()> {
        if !self.started {
            return Err(Error::InvalidState("relay: event before hello"));
        }
        match event {
            MediaEvent::Tracks(tracks) => self.init(
                tracks,
                InitMark {
                    flags: if seq.is_some() { 0 } else { INIT_SYNTHESIZED },
                    seq: seq.unwrap_or(0),
                },
            ),
            MediaEvent::Frame(frame) => {
                let seq = seq.ok_or(Error::InvalidState("relay: frame without a sequence"))?;
                self.frame(seq, frame)
            }
            MediaEvent::Discontinuity(reason) => {
                let code = match reason {
                    DiscontinuityReason::SourceChanged => 1,
                    DiscontinuityReason::ReaderSkipped => 2,
                    DiscontinuityReason::TimestampJump => 3,
                    _ => 0,
                };
                self.signal(SIGNAL_DISCONTINUITY, code, seq);
                Ok(())
            }
            MediaEvent::End => {
                self.signal(SIGNAL_END, 0, seq);
                Ok(())
            }
            _ => Err(Error::InvalidState("relay: media event kind not relayed")),
        }
    }

    /// A `free` box: keeps an idle connection alive; readers skip it.
    pub fn keepalive(&mut self) {
        self.out
            .push_back(Bytes::from_static(&[0, 0, 0, 8, b'f', b'r', b'e', b'e']));
    }

    /// The next chunk of the byte stream, in order.
    pub fn poll_output(&mut self) -> Option<Bytes> {
        self.out.pop_front()
    }

    fn init(&mut self, tracks: &Tracks, mark: InitMark) -> Result<()> {
        if !self.started {
            return Err(Error::InvalidState("relay: init before hello"));
        }
        let mut w = BoxWriter::with_capacity(1024);
        write_moov(&mut w, tracks, mark)?;
        self.out.push_back(Bytes::from(w.buf));
        self.tracks = Some(tracks.clone());
        self.last_dts.retain(|(id, _)| tracks.get(*id).is_some());
        Ok(())
    }

    fn signal(&mut self, kind: u8, code: u8, seq: Option<u64>) {
        let mut w = BoxWriter::with_capacity(24);
        let b = w.open_full(
            b"ugcs",
            0,
            if seq.is_some() { 0 } else { SIGNAL_SYNTHESIZED },
        );
        w.u8(kind);
        w.u8(code);
        w.u64(seq.unwrap_or(0));
        // A 24-byte box cannot overflow its size.
        let _ = w.close(b);
        self.out.push_back(Bytes::from(w.buf));
    }

    fn frame(&mut self, seq: u64, f: &Frame) -> Result<()> {
        if self.tracks.as_ref().and_then(|t| t.get(f.track)).is_none() {
            return Err(Error::InvalidState(
                "relay: frame of a track not in the current track set",
            ));
        }
        let duration = match self.last_dts.iter_mut().find(|(id, _)| *id == f.track) {
            Some((_, last)) => {
                let d = f.dts.checked_sub(*last).unwrap_or(0);
                *last = f.dts;
                u32::try_from(d).unwrap_or(0)
            }
            None => {
                self.last_dts.push((f.track, f.dts));
                0
            }
        };
        let cts = f.pts.checked_sub(f.dts).and_then(|d| i32::try_from(d).ok());
        let moof_size = MOOF_SIZE + if cts.is_none() { UGCP_SIZE } else { 0 };
        let payload = f.data.len() as u64;
        let large = payload + 8 > u64::from(u32::MAX);
        let mdat_header: u32 = if large { 16 } else { 8 };
        let size = u32::try_from(payload)
            .map_err(|_| Error::InvalidState("relay: frame larger than 4 GiB"))?;

        let mut w = BoxWriter::with_capacity(moof_size as usize + 16);
        w.u32(moof_size);
        w.bytes(b"moof");
        w.u32(16);
        w.bytes(b"mfhd");
        w.u32(0);
        w.u32(seq as u32); // the low 32 bits; readers widen them
        w.u32(moof_size - 24);
        w.bytes(b"traf");
        w.u32(16);
        w.bytes(b"tfhd");
        w.u32(0x0002_0000); // default-base-is-moof
        w.u32(f.track.0);
        w.u32(20);
        w.bytes(b"tfdt");
        w.u32(0x0100_0000); // version 1
        w.u64(f.dts as u64); // two's complement for a negative dts
        w.u32(36);
        w.bytes(b"trun");
        // version 1; data offset, duration, size, flags, composition offset
        w.u32(0x0100_0f01);
        w.u32(1);
        w.u32(moof_size + mdat_header);
        w.u32(duration);
        w.u32(size);
        w.u32(if f.keyframe {
            SAMPLE_FLAGS_SYNC
        } else {
            SAMPLE_FLAGS_NON_SYNC
        });
        w.u32(cts.unwrap_or(0) as u32);
        if cts.is_none() {
            w.u32(UGCP_SIZE);
            w.bytes(b"ugcp");
            w.u32(0);
            w.u64(f.pts as u64);
        }
        if large {
            w.u32(1);
            w.bytes(b"mdat");
            w.u64(payload + 16);
        } else {
            w.u32(size + 8);
            w.bytes(b"mdat");
        }
        self.out.push_back(Bytes::from(w.buf));
        if !f.data.is_empty() {
            self.out.push_back(f.data.clone());
        }
        Ok(())
    }
}
