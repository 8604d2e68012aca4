//! The receiving side of the relay: bytes in any chunking, events out.

use bytes::{Buf, BytesMut};
use ugc_core::{DiscontinuityReason, Frame, MediaEvent, TrackId, Tracks};

use super::boxes::{Cursor, children, fourcc};
use super::init::{INIT_CONTEXT, INIT_SYNTHESIZED, parse_moov};
use super::{
    BRAND, HELLO_RESUMED, Hello, RelayEvent, SIGNAL_DISCONTINUITY, SIGNAL_END, SIGNAL_SYNTHESIZED,
    WIRE_VERSION,
};
use crate::error::{Error, Result, short_hex};

/// Memory bounds of a [`RelayReader`]: no box larger than these is
/// buffered; a bigger one is an error at its header.
#[derive(Debug, Clone)]
pub struct ReaderLimits {
    /// Largest frame (`mdat` payload). Default 64 MiB.
    pub max_frame: usize,
    /// Largest init segment (`moov`). Default 1 MiB.
    pub max_init: usize,
    /// Most tracks in one init. Default 16.
    pub max_tracks: usize,
}

impl Default for ReaderLimits {
    fn default() -> Self {
        ReaderLimits {
            max_frame: 64 << 20,
            max_init: 1 << 20,
            max_tracks: 16,
        }
    }
}

/// Largest `moof` (ours are 104 or 124 bytes) and largest small box.
const MAX_MOOF: u64 = 64 << 10;
const MAX_SMALL: u64 = 64 << 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Expecting `ftyp`.
    Start,
    /// Expecting `ugch`.
    Hello,
    /// Inits, fragments and signals.
    Body,
    /// After [`MediaEvent::End`]: nothing may follow.
    Ended,
    /// After an error: every call fails.
    Failed,
}

/// Parses the relay byte stream incrementally.
///
/// Feed bytes as they arrive with [`RelayReader::handle_input`] (any
/// chunking: one byte at a time or megabytes), then drain
/// [`RelayReader::poll_event`] until it returns `Ok(None)` ("need more
/// bytes"). At the end of the input [`RelayReader::finish`] says whether it
/// stopped between boxes. Memory is bounded by [`ReaderLimits`] (plus the
/// last chunk fed); malformed input is an [`Error::Relay`] naming the byte
/// offset, never a panic. After an error every call fails with
/// [`Error::Closed`].
///
/// Frame payloads are slices of the reader's buffer: each byte is copied
/// once, into the buffer, and frames share it.
#[derive(Debug)]
pub struct RelayReader {
    buf: BytesMut,
    /// Stream offset of `buf[0]`.
    consumed: u64,
    limits: ReaderLimits,
    phase: Phase,
    hello: Option<Hello>,
    tracks: Option<Tracks>,
    /// Lowest sequence number the next window event may have.
    next_seq: u64,
}

impl Default for RelayReader {
    fn default() -> Self {
        Self::new(ReaderLimits::default())
    }
}

impl RelayReader {
    /// A reader at the start of a stream.
    pub fn new(limits: ReaderLimits) -> Self {
        RelayReader {
            buf: BytesMut::new(),
            consumed: 0,
            limits,
            phase: Phase::Start,
            hello: None,
            tracks: None,
            next_seq: 0,
        }
    }

    /// Appends received bytes.
    pub fn handle_input(&mut self, data: &[u8]) {
        if self.phase != Phase::Failed {
            self.buf.extend_from_slice(data);
        }
    }

    /// The stream's hello, once read.
    pub fn hello(&self) -> Option<&Hello> {
        self.hello.as_ref()
    }

    /// The track set in effect.
    pub fn tracks(&self) -> Option<&Tracks> {
        self.tracks.as_ref()
    }

    /// Whether [`MediaEvent::End`] was read.
    pub fn is_ended(&self) -> bool {
        self.phase == Phase::Ended
    }

    /// Bytes of the stream consumed so far (whole boxes).
    pub fn position(&self) -> u64 {
        self.consumed
    }

    /// The input ended: `Ok` if it ended between boxes, else an error
    /// saying how much of which box arrived.
    pub fn finish(&mut self) -> Result<()> {
        if self.phase == Phase::Failed {
            return Err(Error::Closed);
        }
        if self.buf.is_empty() {
            return Ok(());
        }
        let kind = self
            .buf
            .get(4..8)
            .map(|k| fourcc(&[k[0], k[1], k[2], k[3]]))
            .unwrap_or_else(|| "?".into());
        Err(self.fail(
            0,
            format!(
                "stream truncated: {} bytes of a {kind} box, then the end",
                self.buf.len()
            ),
        ))
    }

    fn fail(&mut self, at: usize, reason: String) -> Error {
        let hex = short_hex(self.buf.get(at..).unwrap_or(&[]));
        self.phase = Phase::Failed;
        Error::Relay {
            offset: self.consumed + at as u64,
            reason,
            hex,
        }
    }

    /// Reads a box header at `at`: `(type, size, header length)`, or `None`
    /// when not all of it has arrived.
    fn header(&self, at: usize) -> Option<([u8; 4], u64, usize)> {
        let mut c = Cursor::new(self.buf.get(at..)?);
        let size = c.u32()?;
        let kind: [u8; 4] = c.array()?;
        match size {
            1 => Some((kind, c.u64()?, 16)),
            s => Some((kind, u64::from(s), 8)),
        }
    }

    /// The next event, `Ok(None)` when more bytes are needed.
    pub fn poll_event(&mut self) -> Result<Option<RelayEvent>> {
        loop {
            match self.phase {
                Phase::Failed => return Err(Error::Closed),
                Phase::Ended if !self.buf.is_empty() => {
                    return Err(self.fail(0, "bytes after the end of the stream".into()));
                }
                _ => {}
            }
            let Some((kind, size, hlen)) = self.header(0) else {
                return Ok(None);
            };
            if size < hlen as u64 {
                return Err(self.fail(
                    0,
                    format!(
                        "box {} of size {size} is smaller than its header",
                        fourcc(&kind)
                    ),
                ));
            }
            match (self.phase, &kind) {
                (Phase::Start, b"ftyp") | (Phase::Hello, b"ugch") => {}
                (Phase::Start, _) => {
                    return Err(self.fail(
                        0,
                        format!("not a ugc relay stream: starts with {} box", fourcc(&kind)),
                    ));
                }
                (Phase::Hello, _) => {
                    return Err(self.fail(0, format!("{} box before the hello", fourcc(&kind))));
                }
                _ => {}
            }
            let max = match &kind {
                b"moov" => self.limits.max_init as u64,
                b"moof" => MAX_MOOF,
                b"mdat" => {
                    return Err(self.fail(0, "mdat without a moof".into()));
                }
                _ => MAX_SMALL,
            };
            if size > max {
                return Err(self.fail(
                    0,
                    format!(
                        "{} box of {size} bytes exceeds the limit of {max}",
                        fourcc(&kind)
                    ),
                ));
            }
            // `size <= max` fits usize on every platform we build for.
            let size = size as usize;
            if kind == *b"moof" {
                match self.fragment(size)? {
                    Some(ev) => return Ok(Some(ev)),
                    None => return Ok(None),
                }
            }
            if self.buf.len() < size {
                self.buf.reserve(size - self.buf.len());
                return Ok(None);
            }
            let whole = self.buf.split_to(size);
            let body = &whole[hlen..];
            let ev = match &kind {
                b"ftyp" => self.ftyp(body),
                b"ugch" => self.hello_box(body),
                b"moov" => self.moov(body),
                b"ugcs" => self.signal(body),
                _ => Ok(None), // free, skip and boxes of later versions
            };
            let ev = match ev {
                Ok(ev) => ev,
                Err(reason) => {
                    // Put the box back for the error's offset and hex dump.
                    let mut restored = BytesMut::from(&whole[..]);
                    restored.extend_from_slice(&self.buf);
                    self.buf = restored;
                    return Err(self.fail(0, reason));
                }
            };
            self.consumed += size as u64;
            if let Some(ev) = ev {
                return Ok(Some(ev));
            }
        }
    }

    fn ftyp(&mut self, body: &[u8]) -> Result<Option<RelayEvent>, String> {
        let mut c = Cursor::new(body);
        let major: [u8; 4] = c.array().ok_or("ftyp truncated")?;
        let minor = c.u32().ok_or("ftyp truncated")?;
        let mut ours = &major == BRAND;
        while let Some(b) = c.array::<4>() {
            ours |= &b == BRAND;
        }
        if !ours {
            return Err(format!(
                "not a ugc relay stream: ftyp {} without the {} brand",
                fourcc(&major),
                fourcc(BRAND)
            ));
        }
        if minor != u32::from(WIRE_VERSION) {
            return Err(format!(
                "relay wire version {minor} unsupported (this side speaks {WIRE_VERSION})"
            ));
        }
        self.phase = Phase::Hello;
        Ok(None)
    }

    fn hello_box(&mut self, body: &[u8]) -> Result<Option<RelayEvent>, String> {
        let mut c = Cursor::new(body);
        let t = "ugch truncated";
        let vf = c.u32().ok_or(t)?;
        if vf >> 24 != 0 {
            return Err(format!("ugch version {} unknown", vf >> 24));
        }
        let hello = Hello {
            epoch: c.u64().ok_or(t)?,
            window: c.u64().ok_or(t)?,
            start: c.u64().ok_or(t)?,
            resumed: vf & HELLO_RESUMED != 0,
            // Absent from senders before it.
            timeline: c.u64(),
        };
        self.next_seq = hello.start;
        self.hello = Some(hello);
        self.phase = Phase::Body;
        Ok(Some(RelayEvent::Hello(hello)))
    }

    /// Checks an explicit sequence number against the order so far.
    fn take_seq(&mut self, seq: u64) -> Result<u64, String> {
        if seq < self.next_seq {
            return Err(format!(
                "sequence {seq} goes backwards (expected {} or later)",
                self.next_seq
            ));
        }
        self.next_seq = seq.checked_add(1).ok_or("sequence overflows")?;
        Ok(seq)
    }

    fn moov(&mut self, body: &[u8]) -> Result<Option<RelayEvent>, String> {
        let (tracks, mark) = parse_moov(body, self.limits.max_tracks)
            .map_err(|(at, r)| format!("moov (at +{}): {r}", at + 8))?;
        self.tracks = Some(tracks.clone());
        if mark.flags & INIT_CONTEXT != 0 {
            return Ok(Some(RelayEvent::Context {
                tracks,
                seq: mark.seq,
            }));
        }
        let seq = if mark.flags & INIT_SYNTHESIZED != 0 {
            None
        } else {
            Some(self.take_seq(mark.seq)?)
        };
        Ok(Some(RelayEvent::Media {
            seq,
            event: MediaEvent::Tracks(tracks),
        }))
    }

    fn signal(&mut self, body: &[u8]) -> Result<Option<RelayEvent>, String> {
        let mut c = Cursor::new(body);
        let t = "ugcs truncated";
        let vf = c.u32().ok_or(t)?;
        if vf >> 24 != 0 {
            return Err(format!("ugcs version {} unknown", vf >> 24));
        }
        let kind = c.u8().ok_or(t)?;
        let code = c.u8().ok_or(t)?;
        let seq = c.u64().ok_or(t)?;
        let seq = if vf & SIGNAL_SYNTHESIZED != 0 {
            None
        } else {
            Some(self.take_seq(seq)?)
        };
        let event = match kind {
            SIGNAL_DISCONTINUITY => MediaEvent::Discontinuity(match code {
                2 => DiscontinuityReason::ReaderSkipped,
                3 => DiscontinuityReason::TimestampJump,
                // 1, and reasons of later versions
                _ => DiscontinuityReason::SourceChanged,
            }),
            SIGNAL_END => {
                self.phase = Phase::Ended;
                MediaEvent::End
            }
            k => return Err(format!("ugcs signal kind {k} unknown")),
        };
        Ok(Some(RelayEvent::Media { seq, event }))
    }

    /// A `moof` of `moof_size` bytes at the buffer's start and its `mdat`.
    fn fragment(&mut self, moof_size: usize) -> Result<Option<RelayEvent>> {
        let Some((kind, mdat_size, mdat_hlen)) = self.header(moof_size) else {
            let want = moof_size + 16;
            if self.buf.len() < want {
                self.buf.reserve(want - self.buf.len());
            }
            return Ok(None);
        };
        if &kind != b"mdat" {
            return Err(self.fail(
                moof_size,
                format!("moof followed by {} instead of mdat", fourcc(&kind)),
            ));
        }
        if mdat_size < mdat_hlen as u64 {
            return Err(self.fail(
                moof_size,
                format!("mdat of size {mdat_size} is smaller than its header"),
            ));
        }
        let payload = mdat_size - mdat_hlen as u64;
        if payload > self.limits.max_frame as u64 {
            return Err(self.fail(
                moof_size,
                format!(
                    "frame of {payload} bytes exceeds the limit of {}",
                    self.limits.max_frame
                ),
            ));
        }
        // payload <= max_frame (a usize), moof_size <= 64 KiB.
        let total = moof_size + mdat_hlen + payload as usize;
        if self.buf.len() < total {
            self.buf.reserve(total - self.buf.len());
            return Ok(None);
        }
        let parsed = parse_moof(&self.buf[8..moof_size], moof_size, mdat_hlen, payload);
        let p = match parsed {
            Ok(p) => p,
            Err((at, reason)) => return Err(self.fail(8 + at, format!("moof: {reason}"))),
        };
        let Some(tracks) = self.tracks.as_ref() else {
            return Err(self.fail(0, "fragment before any init".into()));
        };
        if tracks.get(p.track).is_none() {
            return Err(self.fail(
                0,
                format!("fragment of {:?}, not in the track set", p.track),
            ));
        }
        // Widen the 32-bit mfhd sequence: the first value at or after the
        // expected one with these low bits.
        let base = self.next_seq;
        let mut seq = (base & !0xffff_ffff) | u64::from(p.seq32);
        if seq < base {
            seq = match seq.checked_add(1 << 32) {
                Some(s) => s,
                None => return Err(self.fail(0, "sequence overflows".into())),
            };
        }
        let Some(next) = seq.checked_add(1) else {
            return Err(self.fail(0, "sequence overflows".into()));
        };
        self.next_seq = next;
        let mut whole = self.buf.split_to(total);
        whole.advance(moof_size + mdat_hlen);
        self.consumed += total as u64;
        Ok(Some(RelayEvent::Media {
            seq: Some(seq),
            event: MediaEvent::Frame(Frame {
                track: p.track,
                dts: p.dts,
                pts: p.pts,
                keyframe: p.keyframe,
                data: whole.freeze(),
            }),
        }))
    }
}

struct Fragment {
    seq32: u32,
    track: TrackId,
    dts: i64,
    pts: i64,
    keyframe: bool,
}

/// Parses a `moof` body (one `traf`, one sample whose data is the whole
/// `mdat` payload).
fn parse_moof(
    body: &[u8],
    moof_size: usize,
    mdat_hlen: usize,
    payload: u64,
) -> Result<Fragment, (usize, String)> {
    let mut seq32 = None;
    let mut traf = None;
    for c in children(body) {
        let c = c?;
        match &c.kind {
            b"mfhd" => {
                let mut cur = Cursor::new(c.body);
                cur.skip(4);
                seq32 = Some(cur.u32().ok_or((c.offset, "mfhd truncated".to_string()))?);
            }
            b"traf" => {
                if traf.is_some() {
                    return Err((c.offset, "more than one traf".into()));
                }
                traf = Some(c);
            }
            _ => {}
        }
    }
    let seq32 = seq32.ok_or((0, "no mfhd".to_string()))?;
    let traf = traf.ok_or((0, "no traf".to_string()))?;
    let at = traf.offset + 8;
    let e = |off: usize, r: &str| (at + off, r.to_string());
    let mut track = None;
    let mut default_flags = None;
    let mut dts = None;
    let mut pts = None;
    let mut sample = None;
    for c in children(traf.body) {
        let c = c.map_err(|(o, r)| (at + o, r))?;
        let mut cur = Cursor::new(c.body);
        let t = |what: &str| e(c.offset, &format!("{what} truncated"));
        match &c.kind {
            b"tfhd" => {
                let vf = cur.u32().ok_or_else(|| t("tfhd"))?;
                track = Some(TrackId(cur.u32().ok_or_else(|| t("tfhd"))?));
                if vf & 0x01 != 0 {
                    return Err(e(c.offset, "tfhd base-data-offset unsupported"));
                }
                if vf & 0x02 != 0 {
                    cur.skip(4).ok_or_else(|| t("tfhd"))?;
                }
                if vf & 0x08 != 0 {
                    cur.skip(4).ok_or_else(|| t("tfhd"))?;
                }
                if vf & 0x10 != 0 {
                    cur.skip(4).ok_or_else(|| t("tfhd"))?;
                }
                if vf & 0x20 != 0 {
                    default_flags = Some(cur.u32().ok_or_else(|| t("tfhd"))?);
                }
            }
            b"tfdt" => {
                let vf = cur.u32().ok_or_else(|| t("tfdt"))?;
                dts = Some(if vf >> 24 == 1 {
                    cur.u64().ok_or_else(|| t("tfdt"))? as i64
                } else {
                    i64::from(cur.u32().ok_or_else(|| t("tfdt"))?)
                });
            }
            b"trun" => {
                let vf = cur.u32().ok_or_else(|| t("trun"))?;
                let count = cur.u32().ok_or_else(|| t("trun"))?;
                if count != 1 {
                    return Err(e(c.offset, &format!("trun with {count} samples, want 1")));
                }
                let offset = if vf & 0x01 != 0 {
                    Some(cur.u32().ok_or_else(|| t("trun"))? as i32)
                } else {
                    None
                };
                let first_flags = if vf & 0x04 != 0 {
                    Some(cur.u32().ok_or_else(|| t("trun"))?)
                } else {
                    None
                };
                if vf & 0x100 != 0 {
                    cur.skip(4).ok_or_else(|| t("trun"))?;
                }
                let size = if vf & 0x200 != 0 {
                    Some(cur.u32().ok_or_else(|| t("trun"))?)
                } else {
                    None
                };
                let flags = if vf & 0x400 != 0 {
                    Some(cur.u32().ok_or_else(|| t("trun"))?)
                } else {
                    first_flags
                };
                let cts = if vf & 0x800 != 0 {
                    let raw = cur.u32().ok_or_else(|| t("trun"))?;
                    if vf >> 24 == 0 {
                        i64::from(raw)
                    } else {
                        i64::from(raw as i32)
                    }
                } else {
                    0
                };
                let expect = moof_size + mdat_hlen;
                if offset.is_some_and(|o| usize::try_from(o).ok() != Some(expect)) {
                    return Err(e(
                        c.offset,
                        "trun data offset does not point at the mdat payload",
                    ));
                }
                if size.is_some_and(|s| u64::from(s) != payload) {
                    return Err(e(
                        c.offset,
                        "trun sample size differs from the mdat payload",
                    ));
                }
                sample = Some((flags, cts));
            }
            b"ugcp" => {
                cur.skip(4).ok_or_else(|| t("ugcp"))?;
                pts = Some(cur.u64().ok_or_else(|| t("ugcp"))? as i64);
            }
            _ => {}
        }
    }
    let track = track.ok_or(e(0, "no tfhd"))?;
    let dts = dts.ok_or(e(0, "no tfdt"))?;
    let (flags, cts) = sample.ok_or(e(0, "no trun"))?;
    let flags = flags.or(default_flags);
    let keyframe = flags.is_none_or(|f| f & 0x0001_0000 == 0);
    let pts = match pts {
        Some(p) => p,
        None => dts
            .checked_add(cts)
            .ok_or(e(0, "composition time overflows"))?,
    };
    Ok(Fragment {
        seq32,
        track,
        dts,
        pts,
        keyframe,
    })
}
