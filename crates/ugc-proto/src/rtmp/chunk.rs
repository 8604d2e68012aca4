//! The RTMP chunk stream: messages cut into chunks, interleaved over one
//! connection.
//!
//! A chunk is a basic header (format 0-3 and a 1-, 2- or 3-byte chunk stream
//! id), a message header whose size depends on the format (11, 7, 3 or 0
//! bytes), an optional 4-byte extended timestamp, and at most `chunk size`
//! bytes of message payload.
//!
//! [`ChunkDecoder`] reassembles messages from any split of the input: only a
//! partial chunk *header* (at most 18 bytes) is ever buffered; payload bytes
//! are copied once, straight into the message's own buffer, which becomes
//! the message's `Bytes`. Each chunk stream cuts those buffers from a slab
//! of [`SLAB_SIZE`] bytes (larger messages get their own), so a message costs
//! no allocation of its own and its `Bytes` clones only count references.
//! [`ChunkEncoder`] cuts messages into chunks with header compression.
//!
//! Limits keep memory bounded per connection: a message is at most
//! [`ChunkLimits::max_message_size`], the messages being reassembled at once
//! at most [`ChunkLimits::max_pending_bytes`], and at most
//! [`ChunkLimits::max_chunk_streams`] chunk streams are tracked (each with at
//! most one slab's unused rest).
//!
//! Timestamps are 32-bit on the wire; each chunk stream widens its own with a
//! [`ugc_core::Unwrapper32`], so a stream running past 49.7 days (or starting
//! near the wrap) keeps increasing `i64` timestamps.

use std::collections::VecDeque;

use bytes::{BufMut, Bytes, BytesMut};
use ugc_core::Unwrapper32;

use crate::error::{Error, Result, short_hex};

/// The chunk size both sides start with.
pub const DEFAULT_CHUNK_SIZE: u32 = 128;
/// The largest chunk size we accept from a peer (16 MiB; the spec allows
/// 2^31-1, which would let a peer make us buffer 2 GiB for one chunk).
pub const MAX_CHUNK_SIZE: u32 = 1 << 24;
/// The largest chunk header: 3-byte basic header, 11-byte message header,
/// 4-byte extended timestamp.
pub const MAX_HEADER_LEN: usize = 18;
/// Bytes of the slab a chunk stream cuts its message buffers from; a
/// message of more than a quarter of it gets a buffer of its own.
pub const SLAB_SIZE: usize = 64 << 10;

/// Message type ids of the protocol control messages the chunk layer obeys.
pub mod msg_type {
    /// Set Chunk Size.
    pub const SET_CHUNK_SIZE: u8 = 1;
    /// Abort Message.
    pub const ABORT: u8 = 2;
    /// Acknowledgement.
    pub const ACKNOWLEDGEMENT: u8 = 3;
    /// User Control Message.
    pub const USER_CONTROL: u8 = 4;
    /// Window Acknowledgement Size.
    pub const WINDOW_ACK_SIZE: u8 = 5;
    /// Set Peer Bandwidth.
    pub const SET_PEER_BANDWIDTH: u8 = 6;
    /// Audio (an FLV AUDIODATA body).
    pub const AUDIO: u8 = 8;
    /// Video (an FLV VIDEODATA body).
    pub const VIDEO: u8 = 9;
    /// AMF3 data message.
    pub const DATA_AMF3: u8 = 15;
    /// AMF3 command message.
    pub const COMMAND_AMF3: u8 = 17;
    /// AMF0 data message (`@setDataFrame`, `onMetaData`).
    pub const DATA_AMF0: u8 = 18;
    /// AMF0 command message.
    pub const COMMAND_AMF0: u8 = 20;
    /// Aggregate message (a run of FLV tags).
    pub const AGGREGATE: u8 = 22;
}

/// Chunk stream ids our server and client send on.
pub(crate) mod csid {
    /// Protocol control and user control messages.
    pub const CONTROL: u32 = 2;
    /// Connection-level commands and their answers.
    pub const COMMAND: u32 = 3;
    /// Stream-level messages (`onStatus`, `@setDataFrame`).
    pub const STREAM: u32 = 5;
    /// Audio we publish.
    pub const AUDIO: u32 = 4;
    /// Video we publish.
    pub const VIDEO: u32 = 6;
}

/// User control event types.
pub(crate) mod user_control {
    /// Stream Begin.
    pub const STREAM_BEGIN: u16 = 0;
    /// Ping Request (the peer wants its timestamp back).
    pub const PING_REQUEST: u16 = 6;
    /// Ping Response.
    pub const PING_RESPONSE: u16 = 7;
}

/// Whether a User Control message body is a Ping Request.
pub(crate) fn is_ping_request(payload: &[u8]) -> bool {
    payload.get(..2) == Some(&user_control::PING_REQUEST.to_be_bytes()[..])
}

/// The Ping Response body to a Ping Request body (its timestamp echoed).
pub(crate) fn ping_response(request: &[u8]) -> [u8; 6] {
    let mut p = [0u8; 6];
    p[..2].copy_from_slice(&user_control::PING_RESPONSE.to_be_bytes());
    if let Some(t) = request.get(2..6) {
        p[2..].copy_from_slice(t);
    }
    p
}

/// Per-connection limits of the chunk layer.
#[derive(Debug, Clone)]
pub struct ChunkLimits {
    /// Largest message (the wire allows 2^24-1).
    pub max_message_size: u32,
    /// Sum of the declared lengths of all messages being reassembled at once.
    pub max_pending_bytes: u64,
    /// Chunk streams tracked at once.
    pub max_chunk_streams: usize,
}

impl Default for ChunkLimits {
    fn default() -> Self {
        ChunkLimits {
            max_message_size: (1 << 24) - 1,
            max_pending_bytes: 32 << 20,
            max_chunk_streams: 64,
        }
    }
}

/// One reassembled message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The chunk stream it arrived on.
    pub csid: u32,
    /// Message type id (see [`msg_type`]).
    pub type_id: u8,
    /// Message stream id (0 for control messages and connection commands).
    pub stream_id: u32,
    /// Timestamp in milliseconds, widened from the 32-bit wire value per chunk stream.
    pub timestamp: i64,
    /// The payload.
    pub payload: Bytes,
}

#[derive(Debug)]
struct ChunkStream {
    csid: u32,
    /// Absolute wire timestamp of the current (or last) message.
    ts_wire: u32,
    /// The last fmt 0-2 header's timestamp field (absolute for fmt 0, delta
    /// otherwise); a fmt 3 header that starts a message adds it again.
    ts_field: u32,
    /// The last fmt 0-2 header had an extended timestamp.
    ext: bool,
    length: u32,
    type_id: u8,
    stream_id: u32,
    /// A message is being reassembled: its bytes so far are `buf`.
    partial: bool,
    /// The message being reassembled, at the front of the rest of a slab
    /// (or of its own buffer) with room for all of it.
    buf: BytesMut,
    timestamp: i64,
    unwrap: Unwrapper32,
}

/// A parsed chunk header, not yet applied.
#[derive(Debug, Clone, Copy)]
struct Header {
    len: usize,
    fmt: u8,
    csid: u32,
    /// Timestamp field (after resolving the extended timestamp), fmt 0-2.
    ts_field: u32,
    ext: bool,
    msg_len: u32,
    type_id: u8,
    stream_id: u32,
}

/// Reassembles messages from chunks.
#[derive(Debug)]
pub struct ChunkDecoder {
    chunk_size: u32,
    limits: ChunkLimits,
    streams: Vec<ChunkStream>,
    /// Bytes of an incomplete chunk header.
    hdr: [u8; MAX_HEADER_LEN],
    hdr_len: usize,
    /// In a chunk's payload: (stream index, payload bytes left in this chunk).
    cur: Option<(usize, u32)>,
    pending_bytes: u64,
    /// Input bytes consumed, for error offsets.
    offset: u64,
    out: VecDeque<Message>,
    /// Payload bytes of the messages in `out`.
    queued: u64,
}

impl Default for ChunkDecoder {
    fn default() -> Self {
        Self::new(ChunkLimits::default())
    }
}

impl ChunkDecoder {
    /// A decoder at the default chunk size of 128.
    pub fn new(limits: ChunkLimits) -> Self {
        ChunkDecoder {
            chunk_size: DEFAULT_CHUNK_SIZE,
            limits,
            streams: Vec::new(),
            hdr: [0; MAX_HEADER_LEN],
            hdr_len: 0,
            cur: None,
            pending_bytes: 0,
            offset: 0,
            out: VecDeque::new(),
            queued: 0,
        }
    }

    /// The peer's current chunk size.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Replaces the limits (a session raises them once its peer is
    /// authorized). Messages being reassembled keep going: a lower limit
    /// applies to headers read from now on.
    pub fn set_limits(&mut self, limits: ChunkLimits) {
        self.limits = limits;
    }

    /// Input bytes consumed so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Reads `input`; complete messages queue up for [`Self::poll_message`].
    /// Set Chunk Size and Abort take effect immediately (they are still
    /// queued, for the session's information). On error, messages completed
    /// before the offending chunk stay queued; the decoder must not be fed
    /// again.
    pub fn feed(&mut self, mut input: &[u8]) -> Result<()> {
        while !input.is_empty() {
            if let Some((idx, left)) = self.cur {
                let n = input.len().min(left as usize);
                let (now, rest) = input.split_at(n);
                input = rest;
                self.offset += n as u64;
                let left = left - n as u32;
                let stream = &mut self.streams[idx];
                // Invariant: `cur` is only set while a message is in progress,
                // and its buffer has room for the whole message.
                debug_assert!(stream.partial && stream.buf.capacity() >= stream.length as usize);
                stream.buf.extend_from_slice(now);
                if left > 0 {
                    self.cur = Some((idx, left));
                    continue;
                }
                self.cur = None;
                if stream.buf.len() as u64 == u64::from(stream.length) {
                    self.complete(idx)?;
                }
                continue;
            }
            if self.hdr_len > 0 {
                let have = self.hdr_len;
                let take = input.len().min(MAX_HEADER_LEN - have);
                let mut tmp = self.hdr;
                tmp[have..have + take].copy_from_slice(&input[..take]);
                match self.parse_header(&tmp[..have + take])? {
                    None => {
                        // A header is at most MAX_HEADER_LEN bytes, so an
                        // incomplete one means the input ran out.
                        self.hdr = tmp;
                        self.hdr_len = have + take;
                        self.offset += take as u64;
                        input = &input[take..];
                    }
                    Some(h) if h.len >= have => {
                        let from_input = h.len - have;
                        input = &input[from_input..];
                        self.offset += from_input as u64;
                        self.hdr_len = 0;
                        self.apply(h)?;
                    }
                    Some(h) => {
                        // The header turned out shorter than what was
                        // buffered (a fmt 3 chunk without the repeated
                        // extended timestamp): the surplus is payload.
                        let mut surplus = [0u8; MAX_HEADER_LEN];
                        let n = have - h.len;
                        surplus[..n].copy_from_slice(&tmp[h.len..have]);
                        self.hdr_len = 0;
                        self.offset -= n as u64;
                        self.apply(h)?;
                        self.feed(&surplus[..n])?;
                    }
                }
            } else {
                match self.parse_header(input)? {
                    None => {
                        self.hdr[..input.len()].copy_from_slice(input);
                        self.hdr_len = input.len();
                        self.offset += input.len() as u64;
                        input = &[];
                    }
                    Some(h) => {
                        input = &input[h.len..];
                        self.offset += h.len as u64;
                        self.apply(h)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// The next complete message.
    pub fn poll_message(&mut self) -> Option<Message> {
        let m = self.out.pop_front()?;
        self.queued -= m.payload.len() as u64;
        Some(m)
    }

    /// Payload bytes of the complete messages not polled yet.
    pub fn queued_bytes(&self) -> u64 {
        self.queued
    }

    fn err(&self, csid: u32, data: &[u8], reason: impl Into<String>) -> Error {
        Error::Chunk {
            offset: self.offset.saturating_sub(self.hdr_len as u64),
            csid,
            reason: reason.into(),
            hex: short_hex(data),
        }
    }

    fn find(&self, csid: u32) -> Option<usize> {
        self.streams.iter().position(|s| s.csid == csid)
    }

    /// Parses the chunk header at the start of `d` without changing state;
    /// `None` when `d` holds only part of it.
    fn parse_header(&self, d: &[u8]) -> Result<Option<Header>> {
        let Some(&b0) = d.first() else {
            return Ok(None);
        };
        let fmt = b0 >> 6;
        let (csid, mut pos) = match b0 & 0x3f {
            0 => match d.get(1) {
                Some(&b) => (64 + u32::from(b), 2),
                None => return Ok(None),
            },
            1 => match (d.get(1), d.get(2)) {
                (Some(&lo), Some(&hi)) => (64 + u32::from(lo) + 256 * u32::from(hi), 3),
                _ => return Ok(None),
            },
            id => (u32::from(id), 1),
        };
        let be24 = |b: &[u8]| u32::from_be_bytes([0, b[0], b[1], b[2]]);
        let prev = self.find(csid).map(|i| &self.streams[i]);
        let mut h = Header {
            len: 0,
            fmt,
            csid,
            ts_field: 0,
            ext: false,
            msg_len: 0,
            type_id: 0,
            stream_id: 0,
        };
        let mh_len = [11usize, 7, 3, 0][usize::from(fmt)];
        let Some(mh) = d.get(pos..pos + mh_len) else {
            return Ok(None);
        };
        pos += mh_len;
        if fmt < 3 {
            h.ts_field = be24(&mh[0..3]);
        }
        match (fmt, prev) {
            (0, _) => {
                h.msg_len = be24(&mh[3..6]);
                h.type_id = mh[6];
                h.stream_id = u32::from_le_bytes([mh[7], mh[8], mh[9], mh[10]]);
            }
            (_, None) => {
                return Err(self.err(
                    csid,
                    d,
                    format!("format {fmt} header on a chunk stream without a previous header"),
                ));
            }
            (1, Some(p)) => {
                h.msg_len = be24(&mh[3..6]);
                h.type_id = mh[6];
                h.stream_id = p.stream_id;
            }
            (_, Some(p)) => {
                h.msg_len = p.length;
                h.type_id = p.type_id;
                h.stream_id = p.stream_id;
            }
        }
        if fmt < 3 {
            if h.ts_field == 0x00ff_ffff {
                let Some(e) = d.get(pos..pos + 4) else {
                    return Ok(None);
                };
                h.ts_field = u32::from_be_bytes([e[0], e[1], e[2], e[3]]);
                h.ext = true;
                pos += 4;
            }
        } else if let Some(p) = prev {
            h.ts_field = p.ts_field;
            h.ext = p.ext;
            if p.ext {
                // Encoders disagree whether a fmt 3 chunk repeats the
                // extended timestamp (FMS, ffmpeg, librtmp do). Take the 4
                // bytes only when they repeat the field or the message's
                // timestamp.
                let Some(e) = d.get(pos..pos + 4) else {
                    return Ok(None);
                };
                let v = u32::from_be_bytes([e[0], e[1], e[2], e[3]]);
                let in_progress = p.partial;
                let next_ts = if in_progress {
                    p.ts_wire
                } else {
                    p.ts_wire.wrapping_add(p.ts_field)
                };
                if v == p.ts_field || v == next_ts {
                    pos += 4;
                }
            }
        }
        h.len = pos;
        Ok(Some(h))
    }

    /// Applies a parsed header: starts or continues a message.
    fn apply(&mut self, h: Header) -> Result<()> {
        let idx = match self.find(h.csid) {
            Some(i) => i,
            None => {
                if self.streams.len() >= self.limits.max_chunk_streams {
                    return Err(Error::TooMany {
                        what: "chunk streams",
                        limit: self.limits.max_chunk_streams,
                    });
                }
                self.streams.push(ChunkStream {
                    csid: h.csid,
                    ts_wire: 0,
                    ts_field: 0,
                    ext: false,
                    length: 0,
                    type_id: 0,
                    stream_id: 0,
                    partial: false,
                    buf: BytesMut::new(),
                    timestamp: 0,
                    unwrap: Unwrapper32::new(),
                });
                self.streams.len() - 1
            }
        };
        let chunk_size = self.chunk_size;
        let s = &mut self.streams[idx];
        if s.partial {
            if h.fmt != 3 {
                let (got, len) = (s.buf.len(), s.length);
                let hdr = self.hdr;
                return Err(self.err(
                    h.csid,
                    &hdr[..0],
                    format!(
                        "format {} header while a message is incomplete ({got} of {len} bytes)",
                        h.fmt
                    ),
                ));
            }
            let left = s.length - s.buf.len() as u32;
            self.cur = Some((idx, left.min(chunk_size)));
            return Ok(());
        }
        // A new message.
        s.ts_wire = match h.fmt {
            0 => h.ts_field,
            _ => s.ts_wire.wrapping_add(h.ts_field),
        };
        s.ts_field = h.ts_field;
        s.ext = h.ext;
        s.length = h.msg_len;
        s.type_id = h.type_id;
        s.stream_id = h.stream_id;
        s.timestamp = s.unwrap.unwrap(s.ts_wire);
        if h.msg_len > self.limits.max_message_size {
            return Err(Error::MessageTooLarge {
                csid: h.csid,
                len: u64::from(h.msg_len),
                max: u64::from(self.limits.max_message_size),
            });
        }
        let pending = self.pending_bytes + u64::from(h.msg_len);
        if pending > self.limits.max_pending_bytes {
            return Err(Error::MessageTooLarge {
                csid: h.csid,
                len: pending,
                max: self.limits.max_pending_bytes,
            });
        }
        self.pending_bytes = pending;
        let len = h.msg_len as usize;
        if s.buf.capacity() < len {
            s.buf = BytesMut::with_capacity(if len > SLAB_SIZE / 4 { len } else { SLAB_SIZE });
        }
        s.partial = true;
        if h.msg_len == 0 {
            return self.complete(idx);
        }
        self.cur = Some((idx, h.msg_len.min(chunk_size)));
        Ok(())
    }

    /// Emits the complete message of stream `idx`; obeys Set Chunk Size and Abort.
    fn complete(&mut self, idx: usize) -> Result<()> {
        let s = &mut self.streams[idx];
        if !std::mem::take(&mut s.partial) {
            return Ok(());
        }
        // The message leaves; the slab's rest stays for the next ones.
        let payload = s.buf.split().freeze();
        self.pending_bytes = self.pending_bytes.saturating_sub(u64::from(s.length));
        let msg = Message {
            csid: s.csid,
            type_id: s.type_id,
            stream_id: s.stream_id,
            timestamp: s.timestamp,
            payload,
        };
        match msg.type_id {
            msg_type::SET_CHUNK_SIZE => {
                let v = be_u32(&msg.payload)
                    .ok_or_else(|| self.err(msg.csid, &msg.payload, "short Set Chunk Size"))?;
                if v == 0 || v > MAX_CHUNK_SIZE {
                    return Err(Error::ChunkSize {
                        size: v,
                        max: MAX_CHUNK_SIZE,
                    });
                }
                self.chunk_size = v;
            }
            msg_type::ABORT => {
                let csid = be_u32(&msg.payload)
                    .ok_or_else(|| self.err(msg.csid, &msg.payload, "short Abort"))?;
                if let Some(i) = self.find(csid)
                    && std::mem::take(&mut self.streams[i].partial)
                {
                    self.streams[i].buf.clear();
                    self.pending_bytes = self
                        .pending_bytes
                        .saturating_sub(u64::from(self.streams[i].length));
                }
            }
            _ => {}
        }
        self.queued += msg.payload.len() as u64;
        self.out.push_back(msg);
        Ok(())
    }
}

/// The first 4 bytes of `b` as a big-endian `u32`.
pub(crate) fn be_u32(b: &[u8]) -> Option<u32> {
    let a: [u8; 4] = b.get(..4)?.try_into().ok()?;
    Some(u32::from_be_bytes(a))
}

#[derive(Debug, Clone, Copy)]
struct PrevOut {
    csid: u32,
    ts: u32,
    ts_field: u32,
    len: u32,
    type_id: u8,
    stream_id: u32,
}

/// Cuts messages into chunks, compressing headers (formats 1-3) when the
/// previous message on the same chunk stream allows it.
#[derive(Debug)]
pub struct ChunkEncoder {
    chunk_size: u32,
    prev: Vec<PrevOut>,
}

impl Default for ChunkEncoder {
    fn default() -> Self {
        ChunkEncoder {
            chunk_size: DEFAULT_CHUNK_SIZE,
            prev: Vec::new(),
        }
    }
}

impl ChunkEncoder {
    /// An encoder at the default chunk size of 128.
    pub fn new() -> Self {
        Self::default()
    }

    /// Our outgoing chunk size. Call after writing the Set Chunk Size message
    /// that announces it; `size` is clamped to `1..=MAX_CHUNK_SIZE`.
    pub fn set_chunk_size(&mut self, size: u32) {
        self.chunk_size = size.clamp(1, MAX_CHUNK_SIZE);
    }

    /// The current outgoing chunk size.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Appends `payload` as one message on chunk stream `csid` (2..=65599;
    /// clamped) to `out`. Payloads longer than 2^24-1 bytes are truncated
    /// (the length field has 24 bits).
    pub fn write(
        &mut self,
        csid: u32,
        timestamp: u32,
        type_id: u8,
        stream_id: u32,
        payload: &[u8],
        out: &mut BytesMut,
    ) {
        let csid = csid.clamp(2, 65599);
        let payload = &payload[..payload.len().min((1 << 24) - 1)];
        let len = payload.len() as u32;
        let slot = self.prev.iter().position(|p| p.csid == csid);
        let (fmt, ts_field) = match slot.map(|i| self.prev[i]) {
            Some(p) if p.stream_id == stream_id => {
                let delta = timestamp.wrapping_sub(p.ts);
                if p.len == len && p.type_id == type_id {
                    if delta == p.ts_field {
                        (3, delta)
                    } else {
                        (2, delta)
                    }
                } else {
                    (1, delta)
                }
            }
            _ => (0, timestamp),
        };
        let entry = PrevOut {
            csid,
            ts: timestamp,
            ts_field,
            len,
            type_id,
            stream_id,
        };
        match slot {
            Some(i) => self.prev[i] = entry,
            None => self.prev.push(entry),
        }
        let ext = ts_field >= 0x00ff_ffff;
        let field24 = ts_field.min(0x00ff_ffff);
        out.reserve(payload.len() + MAX_HEADER_LEN + payload.len() / self.chunk_size as usize * 8);
        put_basic_header(out, fmt, csid);
        if fmt < 3 {
            put_u24(out, field24);
        }
        if fmt < 2 {
            put_u24(out, len);
            out.put_u8(type_id);
        }
        if fmt == 0 {
            out.put_u32_le(stream_id);
        }
        if ext {
            out.put_u32(ts_field);
        }
        let mut chunks = payload.chunks(self.chunk_size as usize);
        if let Some(first) = chunks.next() {
            out.put_slice(first);
        }
        for c in chunks {
            put_basic_header(out, 3, csid);
            if ext {
                out.put_u32(ts_field);
            }
            out.put_slice(c);
        }
    }
}

fn put_u24(out: &mut BytesMut, v: u32) {
    out.put_slice(&v.to_be_bytes()[1..]);
}

fn put_basic_header(out: &mut BytesMut, fmt: u8, csid: u32) {
    let f = fmt << 6;
    if (2..64).contains(&csid) {
        out.put_u8(f | csid as u8);
    } else if (64..320).contains(&csid) {
        out.put_u8(f);
        out.put_u8((csid - 64) as u8);
    } else {
        let v = csid - 64;
        out.put_u8(f | 1);
        out.put_u8((v & 0xff) as u8);
        out.put_u8((v >> 8) as u8);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode_split(data: &[u8], cuts: &[usize]) -> Result<Vec<Message>> {
        let mut d = ChunkDecoder::default();
        let mut out = Vec::new();
        let mut last = 0;
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
        cuts.sort_unstable();
        cuts.push(data.len());
        for c in cuts {
            d.feed(&data[last..c])?;
            last = c;
            while let Some(m) = d.poll_message() {
                out.push(m);
            }
        }
        Ok(out)
    }

    #[derive(Debug, Clone)]
    struct Spec {
        csid: u32,
        step: u32,
        type_id: u8,
        stream_id: u32,
        len: usize,
    }

    fn arb_spec() -> impl Strategy<Value = Spec> {
        (
            prop_oneof![
                Just(3u32),
                Just(4),
                Just(63),
                Just(64),
                Just(319),
                Just(320),
                Just(65599)
            ],
            prop_oneof![Just(0u32), Just(33), 0u32..(1 << 30)],
            prop_oneof![Just(8u8), Just(9), Just(20)],
            0u32..3,
            prop_oneof![Just(0usize), 1usize..300, Just(128), Just(256)],
        )
            .prop_map(|(csid, step, type_id, stream_id, len)| Spec {
                csid,
                step,
                type_id,
                stream_id,
                len,
            })
    }

    /// Encodes the messages (after a Set Chunk Size to `chunk_size`) and
    /// returns the wire bytes and the expected messages.
    fn encode(specs: &[Spec], start: u32, chunk_size: u32) -> (Vec<u8>, Vec<Message>) {
        let mut enc = ChunkEncoder::new();
        let mut out = BytesMut::new();
        let mut expected = Vec::new();
        enc.write(2, 0, 1, 0, &chunk_size.to_be_bytes(), &mut out);
        expected.push(Message {
            csid: 2,
            type_id: 1,
            stream_id: 0,
            timestamp: 0,
            payload: Bytes::copy_from_slice(&chunk_size.to_be_bytes()),
        });
        enc.set_chunk_size(chunk_size);
        let mut clocks: Vec<(u32, i64)> = Vec::new();
        for (i, s) in specs.iter().enumerate() {
            let ts = match clocks.iter_mut().find(|c| c.0 == s.csid) {
                Some(c) => {
                    c.1 += i64::from(s.step);
                    c.1
                }
                None => {
                    clocks.push((s.csid, i64::from(start)));
                    i64::from(start)
                }
            };
            let payload: Vec<u8> = (0..s.len).map(|j| (i * 31 + j) as u8).collect();
            enc.write(
                s.csid,
                ts as u32,
                s.type_id,
                s.stream_id,
                &payload,
                &mut out,
            );
            expected.push(Message {
                csid: s.csid,
                type_id: s.type_id,
                stream_id: s.stream_id,
                timestamp: ts,
                payload: payload.into(),
            });
        }
        (out.to_vec(), expected)
    }

    proptest! {
        #[test]
        fn any_split_yields_the_same_messages(
            specs in prop::collection::vec(arb_spec(), 1..30),
            start in prop_oneof![Just(0u32), Just(0x00ff_fff0), Just(u32::MAX - 100), any::<u32>()],
            chunk_size in prop_oneof![Just(1u32), 2u32..200, Just(128), Just(4096)],
            cuts in prop::collection::vec(any::<usize>(), 0..40),
        ) {
            let (wire, expected) = encode(&specs, start, chunk_size);
            let whole = decode_split(&wire, &[]).unwrap();
            prop_assert_eq!(&whole, &expected);
            let split = decode_split(&wire, &cuts).unwrap();
            prop_assert_eq!(&split, &expected);
            // Byte by byte, the worst split.
            let all: Vec<usize> = (0..wire.len()).collect();
            if wire.len() < 4000 {
                prop_assert_eq!(&decode_split(&wire, &all).unwrap(), &expected);
            }
        }

        /// Timestamps are the peer's to choose (absolute or as deltas,
        /// with or without the extended field): whatever the sequence, the
        /// decoder never panics, each message's timestamp is its wire value
        /// widened (equal modulo 2^32), and consecutive messages of a chunk
        /// stream are at most 2^31 ms apart.
        #[test]
        fn arbitrary_wire_timestamps_widen_sanely(
            wires in prop::collection::vec(
                prop_oneof![any::<u32>(), Just(0u32), Just(0x00ff_ffff), Just(0x0100_0000), Just(u32::MAX)],
                1..40,
            ),
            csids in prop::collection::vec(3u32..6, 40),
        ) {
            let mut enc = ChunkEncoder::new();
            let mut out = BytesMut::new();
            for (i, w) in wires.iter().enumerate() {
                enc.write(csids[i], *w, 8, 1, b"x", &mut out);
            }
            let msgs = decode_split(&out, &[]).unwrap();
            prop_assert_eq!(msgs.len(), wires.len());
            let mut last: Vec<(u32, i64)> = Vec::new();
            for (m, w) in msgs.iter().zip(&wires) {
                prop_assert_eq!(m.timestamp as u32, *w);
                if let Some((_, prev)) = last.iter().find(|(c, _)| *c == m.csid) {
                    let step = i128::from(m.timestamp) - i128::from(*prev);
                    prop_assert!(step.abs() <= 1i128 << 31, "{prev} -> {}", m.timestamp);
                }
                last.retain(|(c, _)| *c != m.csid);
                last.push((m.csid, m.timestamp));
            }
        }

        #[test]
        fn garbage_never_panics(data in prop::collection::vec(any::<u8>(), 0..512), cuts in prop::collection::vec(any::<usize>(), 0..8)) {
            let _ = decode_split(&data, &cuts);
        }
    }

    #[test]
    fn extended_timestamp_on_fmt3_continuation() {
        // chunk size 128, a 300-byte message at 0x01000000: three chunks,
        // each continuation repeating the extended timestamp.
        let mut enc = ChunkEncoder::new();
        let mut out = BytesMut::new();
        let payload = vec![0xabu8; 300];
        enc.write(6, 0x0100_0000, 9, 1, &payload, &mut out);
        assert_eq!(out.len(), 12 + 4 + 128 + (1 + 4 + 128) + (1 + 4 + 44));
        assert_eq!(&out[1..4], &[0xff, 0xff, 0xff]);
        let msgs = decode_split(&out, &[]).unwrap();
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].timestamp, 0x0100_0000);
        assert_eq!(msgs[0].payload.len(), 300);
        assert!(msgs[0].payload.iter().all(|&b| b == 0xab));

        // Without the repeated extended timestamp on continuations (some
        // encoders omit it) the payload still comes out right.
        let mut wire = Vec::new();
        wire.extend_from_slice(&[0x06, 0xff, 0xff, 0xff, 0, 1, 44, 9, 1, 0, 0, 0]);
        wire.extend_from_slice(&0x0100_0000u32.to_be_bytes());
        wire.extend_from_slice(&[0xab; 128]);
        wire.push(0xc6);
        wire.extend_from_slice(&[0xab; 128]);
        wire.push(0xc6);
        wire.extend_from_slice(&[0xab; 44]);
        for cuts in [
            vec![13, 200],
            (0..wire.len()).collect(),
            vec![145],
            vec![146, 147],
        ] {
            let msgs = decode_split(&wire, &cuts).unwrap();
            assert_eq!(msgs[0].payload.len(), 300);
            assert!(msgs[0].payload.iter().all(|&b| b == 0xab));
        }
    }

    #[test]
    fn timestamps_widen_across_the_32_bit_wrap() {
        let mut enc = ChunkEncoder::new();
        let mut out = BytesMut::new();
        let mut expect = Vec::new();
        let mut ts: i64 = i64::from(u32::MAX) - 100;
        for _ in 0..10 {
            enc.write(4, ts as u32, 8, 1, b"aac", &mut out);
            expect.push(ts);
            ts += 33;
        }
        let got: Vec<i64> = decode_split(&out, &[7, 50])
            .unwrap()
            .iter()
            .map(|m| m.timestamp)
            .collect();
        assert_eq!(got, expect);
        assert!(got.last().copied().unwrap() > i64::from(u32::MAX));
    }

    #[test]
    fn chunk_size_zero_and_too_large_are_rejected() {
        for size in [0u32, 1 << 31, MAX_CHUNK_SIZE + 1, u32::MAX] {
            let mut wire = vec![0x02, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0];
            wire.extend_from_slice(&size.to_be_bytes());
            let err = decode_split(&wire, &[]).unwrap_err();
            assert!(
                matches!(err, Error::ChunkSize { size: s, .. } if s == size),
                "{err}"
            );
        }
    }

    #[test]
    fn limits_bound_memory() {
        // Declared 16 MiB-1 messages on three chunk streams exceed 32 MiB pending.
        let mut d = ChunkDecoder::default();
        let mut wire = Vec::new();
        for csid in 3..6u8 {
            wire.extend_from_slice(&[csid, 0, 0, 0, 0xff, 0xff, 0xff, 9, 1, 0, 0, 0]);
            wire.extend_from_slice(&[0; 128]);
        }
        let err = d.feed(&wire).unwrap_err();
        assert!(matches!(err, Error::MessageTooLarge { .. }), "{err}");

        let mut d = ChunkDecoder::new(ChunkLimits {
            max_chunk_streams: 4,
            ..ChunkLimits::default()
        });
        let mut wire = Vec::new();
        for csid in 3..10u8 {
            wire.extend_from_slice(&[csid, 0, 0, 0, 0, 0, 0, 9, 1, 0, 0, 0]);
        }
        assert!(matches!(d.feed(&wire), Err(Error::TooMany { .. })));
    }

    #[test]
    fn continuation_header_on_unknown_stream_is_an_error() {
        let err = decode_split(&[0x43, 0, 0, 0, 0, 0, 1, 9], &[]).unwrap_err();
        assert!(
            err.to_string().contains("without a previous header"),
            "{err}"
        );
    }

    #[test]
    fn abort_discards_the_partial_message() {
        let mut wire = Vec::new();
        // 200-byte message on csid 6: only the first 128 bytes.
        wire.extend_from_slice(&[0x06, 0, 0, 0, 0, 0, 200, 9, 1, 0, 0, 0]);
        wire.extend_from_slice(&[1; 128]);
        // Abort csid 6.
        wire.extend_from_slice(&[0x02, 0, 0, 0, 0, 0, 4, 2, 0, 0, 0, 0, 0, 0, 0, 6]);
        // A new 3-byte message on csid 6 with a full header.
        wire.extend_from_slice(&[0x06, 0, 0, 9, 0, 0, 3, 8, 1, 0, 0, 0, 7, 7, 7]);
        let msgs = decode_split(&wire, &[5]).unwrap();
        assert_eq!(msgs.len(), 2);
        assert_eq!(msgs[1].payload.as_ref(), &[7, 7, 7]);
        assert_eq!(msgs[1].timestamp, 9);
    }
}
