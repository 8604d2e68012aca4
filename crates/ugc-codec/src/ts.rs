//! MPEG-TS muxer (ISO/IEC 13818-1) for HLS segments: H.264 / H.265 video in
//! Annex B with an access unit delimiter and the parameter sets before every
//! key frame, AAC audio with ADTS headers, PTS/DTS at 90 kHz, PCR on the video
//! PID (audio PID when there is no video).
//!
//! Continuity counters continue across segments: [`TsMuxer::write_segment`]
//! calls on one muxer do that by themselves, and segments muxed lazily by
//! separate muxers (an origin muxes a segment when a player first asks for it)
//! start from a [`Continuity`] that [`TsMuxer::advance_segment`] computed for
//! the segments before, without muxing them: it sizes each PES with the code
//! that writes it (walking NAL units, copying nothing) and takes its packet
//! count from the function that is the packetizer's own loop bound, so the
//! two cannot disagree.
//!
//! The counters also continue across a new track set (an HLS discontinuity);
//! no `discontinuity_indicator` is set. A counter that goes on is valid
//! whatever follows (ISO/IEC 13818-1 2.4.3.3 only asks payload-carrying
//! packets to increment it per PID, and a PID's elementary stream may change
//! with a new PMT), while the indicator on the PCR PID would declare a
//! system time-base discontinuity (2.4.3.5), which our streams do not have
//! at a publisher reconnect (the Hub rebases the timestamps); HLS players
//! learn of discontinuities from `EXT-X-DISCONTINUITY` anyway.

use bytes::Bytes;
use ugc_core::time::rescale;
use ugc_core::{Codec, Frame, Timescale, TrackId, Tracks};

use crate::aac::{Asc, try_adts_header};
use crate::error::{Error, Result};
use crate::h264::{AvcConfig, nal_units};
use crate::hevc::HevcConfig;

/// Size of a TS packet.
pub const PACKET_SIZE: usize = 188;
/// PID of the PMT.
pub const PMT_PID: u16 = 0x1000;
/// PID of the first elementary stream (video when present); the next one is +1.
pub const FIRST_ES_PID: u16 = 0x100;

const STREAM_TYPE_AAC_ADTS: u8 = 0x0f;
const STREAM_TYPE_H264: u8 = 0x1b;
const STREAM_TYPE_H265: u8 = 0x24;

#[derive(Debug)]
enum EsKind {
    /// Annex B parameter sets to put before key frames.
    H264 {
        nls: u8,
        params: Vec<u8>,
    },
    H265 {
        nls: u8,
        params: Vec<u8>,
    },
    Aac(Asc),
}

/// The next `continuity_counter` of each PID a [`TsMuxer`] writes (PAT,
/// PMT, each elementary stream), to start another muxer where it stopped.
/// PIDs never written have 0.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Continuity {
    /// (PID, next counter), sorted by PID.
    next: Vec<(u16, u8)>,
}

impl Continuity {
    /// The counter the next packet with payload on `pid` carries.
    pub fn next(&self, pid: u16) -> u8 {
        self.next
            .binary_search_by_key(&pid, |&(p, _)| p)
            .map_or(0, |i| self.next[i].1)
    }

    fn set(&mut self, pid: u16, cc: u8) {
        match self.next.binary_search_by_key(&pid, |&(p, _)| p) {
            Ok(i) => self.next[i].1 = cc & 0x0f,
            Err(i) => self.next.insert(i, (pid, cc & 0x0f)),
        }
    }
}

#[derive(Debug)]
struct EsStream {
    track: TrackId,
    pid: u16,
    stream_type: u8,
    stream_id: u8,
    timescale: Timescale,
    kind: EsKind,
    cc: u8,
}

/// An MPEG-TS muxer for one track set. Tracks whose codec TS cannot carry
/// here (Opus, AV1) are left out, and their frames are skipped.
#[derive(Debug)]
pub struct TsMuxer {
    streams: Vec<EsStream>,
    pcr_pid: u16,
    cc_pat: u8,
    cc_pmt: u8,
    /// Counters of PIDs this muxer does not write, kept for the next
    /// muxer (a track that comes back after a track set without it).
    carried: Continuity,
    scratch: Vec<u8>,
    skipped: u64,
}

/// Where a PES payload goes: the muxer's buffer, or nowhere but counted (to
/// advance continuity counters without muxing).
trait Sink {
    fn put(&mut self, bytes: &[u8]);
    fn reserve(&mut self, _additional: usize) {}
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
    fn reserve(&mut self, additional: usize) {
        Vec::reserve(self, additional);
    }
}

/// Counts the bytes put.
struct Len(usize);

impl Sink for Len {
    fn put(&mut self, bytes: &[u8]) {
        self.0 = self.0.saturating_add(bytes.len());
    }
}

const START: [u8; 4] = [0, 0, 0, 1];

fn annexb_params(sets: &[Bytes]) -> Vec<u8> {
    let mut v = Vec::new();
    for s in sets {
        v.extend_from_slice(&START);
        v.extend_from_slice(s);
    }
    v
}

impl TsMuxer {
    /// A muxer for `tracks` (video first, then audio). Fails when no track can
    /// be carried or a configuration record does not parse.
    pub fn new(tracks: &Tracks) -> Result<TsMuxer> {
        let mut streams = Vec::new();
        let mut ordered: Vec<_> = tracks.iter().collect();
        ordered.sort_by_key(|t| (t.kind() != ugc_core::MediaKind::Video, t.id));
        let mut pid = FIRST_ES_PID;
        let mut video_ids = 0xe0u8;
        let mut audio_ids = 0xc0u8;
        for t in ordered {
            let (stream_type, kind) = match t.codec {
                Codec::H264 => {
                    let c = AvcConfig::parse(&t.config)?;
                    let mut sets = c.sps.clone();
                    sets.extend(c.pps.iter().cloned());
                    (
                        STREAM_TYPE_H264,
                        EsKind::H264 {
                            nls: c.nal_length_size,
                            params: annexb_params(&sets),
                        },
                    )
                }
                Codec::H265 => {
                    let c = HevcConfig::parse(&t.config)?;
                    (
                        STREAM_TYPE_H265,
                        EsKind::H265 {
                            nls: c.nal_length_size,
                            params: annexb_params(&c.parameter_sets),
                        },
                    )
                }
                Codec::Aac => (STREAM_TYPE_AAC_ADTS, EsKind::Aac(Asc::parse(&t.config)?)),
                _ => continue,
            };
            let stream_id = if matches!(kind, EsKind::Aac(_)) {
                let id = audio_ids;
                audio_ids = audio_ids.saturating_add(1).min(0xdf);
                id
            } else {
                let id = video_ids;
                video_ids = video_ids.saturating_add(1).min(0xef);
                id
            };
            streams.push(EsStream {
                track: t.id,
                pid,
                stream_type,
                stream_id,
                timescale: t.timescale,
                kind,
                cc: 0,
            });
            pid += 1;
        }
        let pcr_pid = streams
            .first()
            .map(|s| s.pid)
            .ok_or_else(|| Error::InvalidArgument("no track MPEG-TS can carry".into()))?;
        Ok(TsMuxer {
            streams,
            pcr_pid,
            cc_pat: 0,
            cc_pmt: 0,
            carried: Continuity::default(),
            scratch: Vec::new(),
            skipped: 0,
        })
    }

    /// The PID carrying `track`, if it is muxed.
    pub fn pid(&self, track: TrackId) -> Option<u16> {
        self.streams
            .iter()
            .find(|s| s.track == track)
            .map(|s| s.pid)
    }

    /// The next continuity counter of every PID written so far (and of
    /// those carried over by [`TsMuxer::set_continuity`]).
    pub fn continuity(&self) -> Continuity {
        let mut c = self.carried.clone();
        c.set(0, self.cc_pat);
        c.set(PMT_PID, self.cc_pmt);
        for s in &self.streams {
            c.set(s.pid, s.cc);
        }
        c
    }

    /// Continues the continuity counters of `from` (another muxer's
    /// [`TsMuxer::continuity`], or [`TsMuxer::advance_segment`]'s).
    pub fn set_continuity(&mut self, from: &Continuity) {
        self.cc_pat = from.next(0);
        self.cc_pmt = from.next(PMT_PID);
        for s in &mut self.streams {
            s.cc = from.next(s.pid);
        }
        self.carried = from.clone();
    }

    /// Advances the continuity counters exactly as
    /// [`TsMuxer::write_segment`]`(frames)` would, writing nothing: a
    /// segment's counters can be known (for the next one) without muxing
    /// it. Walks the NAL units of video frames, copies no payload.
    pub fn advance_segment(&mut self, frames: &[Frame]) {
        // Two packets, as written.
        let mut tables = Vec::with_capacity(2 * PACKET_SIZE);
        self.write_tables(&mut tables);
        for f in frames {
            // A frame that cannot be converted is skipped by both.
            let _ = self.advance_frame(f);
        }
    }

    /// Frames left out of segments so far because their payload could not be
    /// converted (broken NAL length framing, AAC frame too long for ADTS).
    pub fn skipped_frames(&self) -> u64 {
        self.skipped
    }

    /// One segment: PAT + PMT, then `frames` interleaved by decode time
    /// (stable for equal times). Frames of tracks not muxed are skipped; so
    /// are frames whose payload cannot be converted (counted in
    /// [`TsMuxer::skipped_frames`]): one malformed frame from a publisher does
    /// not cost the whole segment.
    pub fn write_segment(&mut self, frames: &[Frame]) -> Result<Bytes> {
        let payload: usize = frames.iter().map(|f| f.data.len()).sum();
        let mut out =
            Vec::with_capacity(2 * PACKET_SIZE + payload + payload / 20 + frames.len() * 400);
        self.write_tables(&mut out);
        let mut order: Vec<(i64, usize)> = frames
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let ts = self
                    .streams
                    .iter()
                    .find(|s| s.track == f.track)
                    .map_or(f.dts, |s| rescale(f.dts, s.timescale, Timescale::MPEG));
                (ts, i)
            })
            .collect();
        order.sort_by_key(|&(ts, _)| ts);
        for (_, i) in order {
            if self.write_frame(&frames[i], &mut out).is_err() {
                self.skipped += 1;
            }
        }
        Ok(Bytes::from(out))
    }

    /// Appends a PAT and a PMT packet.
    pub fn write_tables(&mut self, out: &mut Vec<u8>) {
        // PAT: program 1 -> PMT_PID.
        let mut sec = vec![0x00, 0xb0, 0, 0x00, 0x01, 0xc1, 0x00, 0x00, 0x00, 0x01];
        sec.extend_from_slice(&(0xe000 | PMT_PID).to_be_bytes());
        finish_section(&mut sec);
        self.cc_pat = write_section(out, 0, self.cc_pat, &sec);

        let mut sec = vec![0x02, 0xb0, 0, 0x00, 0x01, 0xc1, 0x00, 0x00];
        sec.extend_from_slice(&(0xe000 | self.pcr_pid).to_be_bytes());
        sec.extend_from_slice(&[0xf0, 0x00]);
        for s in &self.streams {
            sec.push(s.stream_type);
            sec.extend_from_slice(&(0xe000 | s.pid).to_be_bytes());
            sec.extend_from_slice(&[0xf0, 0x00]);
        }
        finish_section(&mut sec);
        self.cc_pmt = write_section(out, PMT_PID, self.cc_pmt, &sec);
    }

    /// Appends one frame as a PES packet. Frames of tracks not muxed are
    /// skipped. On error nothing is appended.
    pub fn write_frame(&mut self, frame: &Frame, out: &mut Vec<u8>) -> Result<()> {
        let Some(s) = self.streams.iter_mut().find(|s| s.track == frame.track) else {
            return Ok(());
        };
        self.scratch.clear();
        es_payload(&s.kind, frame, &mut self.scratch)?;
        let pes = PesHeader::new(s, self.pcr_pid, frame, self.scratch.len());
        s.cc = packetize(
            out,
            s.pid,
            s.cc,
            pes.pcr,
            pes.random_access,
            pes.bytes(),
            &self.scratch,
        );
        Ok(())
    }

    /// [`TsMuxer::write_frame`] without the bytes: advances the PID's
    /// counter by the number of packets it would write.
    fn advance_frame(&mut self, frame: &Frame) -> Result<()> {
        let Some(s) = self.streams.iter_mut().find(|s| s.track == frame.track) else {
            return Ok(());
        };
        let mut len = Len(0);
        es_payload(&s.kind, frame, &mut len)?;
        let pes = PesHeader::new(s, self.pcr_pid, frame, len.0);
        let first_af = adaptation_len(pes.pcr.is_some(), pes.random_access);
        let packets = packet_count(first_af, pes.bytes().len().saturating_add(len.0));
        // The counter is 4 bits: only the count mod 16 matters.
        s.cc = s.cc.wrapping_add((packets % 16) as u8) & 0x0f;
        Ok(())
    }
}

/// The elementary-stream bytes of `frame` on `sink`: Annex B with an access
/// unit delimiter (and the parameter sets before a key frame that lacks
/// them), or an ADTS header and the AAC frame. The same code sizes a frame
/// ([`Len`]) and writes it (`Vec<u8>`).
fn es_payload(kind: &EsKind, frame: &Frame, sink: &mut impl Sink) -> Result<()> {
    match kind {
        EsKind::H264 { nls, params } | EsKind::H265 { nls, params } => {
            let hevc = matches!(kind, EsKind::H265 { .. });
            let (aud, ps_type, aud_type): (&[u8], u8, u8) = if hevc {
                (&[0, 0, 0, 1, 0x46, 0x01, 0x50], 33, 35)
            } else {
                (&[0, 0, 0, 1, 0x09, 0xf0], 7, 9)
            };
            let ty = |n: &[u8]| {
                n.first()
                    .map(|b| if hevc { (b >> 1) & 0x3f } else { b & 0x1f })
            };
            let mut has_ps = false;
            let mut key = frame.keyframe;
            for nal in nal_units(&frame.data, *nls) {
                let t = ty(nal?);
                has_ps |= t == Some(ps_type);
                key |= match t {
                    Some(t) if hevc => (16..=23).contains(&t),
                    Some(t) => t == 5,
                    None => false,
                };
            }
            sink.reserve(frame.data.len() + params.len() + 32);
            sink.put(aud);
            if key && !has_ps {
                sink.put(params);
            }
            for nal in nal_units(&frame.data, *nls) {
                let nal = nal?;
                if ty(nal) == Some(aud_type) || nal.is_empty() {
                    continue;
                }
                sink.put(&START);
                sink.put(nal);
            }
        }
        EsKind::Aac(asc) => {
            sink.put(&try_adts_header(asc, frame.data.len())?);
            sink.put(&frame.data);
        }
    }
    Ok(())
}

/// A PES header and how its first TS packet is flagged.
struct PesHeader {
    buf: [u8; 19],
    len: usize,
    pcr: Option<u64>,
    random_access: bool,
}

impl PesHeader {
    /// The header of `frame` on `s`, whose elementary-stream bytes are
    /// `es_len` long.
    fn new(s: &EsStream, pcr_pid: u16, frame: &Frame, es_len: usize) -> PesHeader {
        let is_video = !matches!(s.kind, EsKind::Aac(_));
        let dts = rescale(frame.dts, s.timescale, Timescale::MPEG);
        let pts = rescale(frame.pts, s.timescale, Timescale::MPEG);
        let mut buf = [0u8; 19];
        buf[..3].copy_from_slice(&[0, 0, 1]);
        buf[3] = s.stream_id;
        let with_dts = pts != dts;
        let hdr_data_len: usize = if with_dts { 10 } else { 5 };
        let pes_len = 3 + hdr_data_len + es_len;
        let pes_len_field = if is_video {
            0
        } else {
            u16::try_from(pes_len).unwrap_or(0)
        };
        buf[4..6].copy_from_slice(&pes_len_field.to_be_bytes());
        buf[6] = 0x84; // '10', data_alignment_indicator
        buf[7] = if with_dts { 0xc0 } else { 0x80 };
        buf[8] = hdr_data_len as u8;
        write_ts(&mut buf[9..14], if with_dts { 0x3 } else { 0x2 }, pts);
        if with_dts {
            write_ts(&mut buf[14..19], 0x1, dts);
        }
        let rai = is_video && frame.keyframe;
        PesHeader {
            buf,
            len: 9 + hdr_data_len,
            pcr: (s.pid == pcr_pid).then(|| dts.rem_euclid(1 << 33) as u64),
            random_access: rai || !is_video,
        }
    }

    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

fn write_ts(b: &mut [u8], prefix: u8, ts: i64) {
    let v = ts.rem_euclid(1 << 33) as u64;
    b[0] = (prefix << 4) | (((v >> 30) as u8 & 0x07) << 1) | 1;
    b[1] = (v >> 22) as u8;
    b[2] = (((v >> 15) as u8) << 1) | 1;
    b[3] = (v >> 7) as u8;
    b[4] = ((v as u8) << 1) | 1;
}

/// Fills the section length and appends the CRC.
fn finish_section(sec: &mut Vec<u8>) {
    let len = sec.len() - 3 + 4;
    sec[1] = 0xb0 | ((len >> 8) as u8 & 0x0f);
    sec[2] = len as u8;
    let crc = crc32_mpeg2(sec);
    sec.extend_from_slice(&crc.to_be_bytes());
}

fn write_section(out: &mut Vec<u8>, pid: u16, cc: u8, sec: &[u8]) -> u8 {
    let start = out.len();
    out.extend_from_slice(&[
        0x47,
        0x40 | ((pid >> 8) as u8 & 0x1f),
        pid as u8,
        0x10 | (cc & 0x0f),
        0, // pointer_field
    ]);
    out.extend_from_slice(sec);
    out.resize(start + PACKET_SIZE, 0xff);
    (cc + 1) & 0x0f
}

/// CRC-32/MPEG-2 (poly 0x04C11DB7, init all ones, no reflection, no final xor).
pub fn crc32_mpeg2(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= u32::from(b) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04c1_1db7
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// Length of the adaptation field after its length byte in the first
/// packet of a PES: flags, plus a PCR (6 bytes) when there is one; 0 (no
/// adaptation field unless for stuffing) when there is neither.
fn adaptation_len(pcr: bool, random_access: bool) -> usize {
    match (pcr, random_access) {
        (true, _) => 7,
        (false, true) => 1,
        (false, false) => 0,
    }
}

/// How many TS packets [`packetize`] makes of a PES of `total` bytes whose
/// first packet has an adaptation field of `first_af_len` bytes after its
/// length byte: the first packet holds `184 - (1 + first_af_len)` bytes of
/// it (184 without an adaptation field), the others 184 each; the last one
/// is filled up with stuffing. At least one packet, also for 0 bytes.
fn packet_count(first_af_len: usize, total: usize) -> usize {
    let first = 184
        - if first_af_len > 0 {
            1 + first_af_len
        } else {
            0
        };
    1 + total.saturating_sub(first).div_ceil(184)
}

/// Splits `head ++ body` into TS packets on `pid`; returns the next continuity counter.
fn packetize(
    out: &mut Vec<u8>,
    pid: u16,
    mut cc: u8,
    pcr: Option<u64>,
    random_access: bool,
    head: &[u8],
    body: &[u8],
) -> u8 {
    let total = head.len() + body.len();
    let first_af_len = adaptation_len(pcr.is_some(), random_access);
    let packets = packet_count(first_af_len, total);
    let mut written = 0usize;
    out.reserve(packets * PACKET_SIZE);
    for i in 0..packets {
        let first = i == 0;
        let remaining = total - written;
        // Adaptation field content (after its length byte) on the first packet.
        let mut af: [u8; 7] = [0; 7];
        let mut af_len = 0usize; // bytes after the length byte
        if first && first_af_len > 0 {
            af[0] = if random_access { 0x40 } else { 0 };
            if let Some(pcr) = pcr {
                af[0] |= 0x10;
                // PCR base (33 bits), 6 reserved bits, extension 0.
                af[1] = (pcr >> 25) as u8;
                af[2] = (pcr >> 17) as u8;
                af[3] = (pcr >> 9) as u8;
                af[4] = (pcr >> 1) as u8;
                af[5] = (((pcr & 1) as u8) << 7) | 0x7e;
                af[6] = 0;
            }
            af_len = first_af_len;
        }
        let has_af = af_len > 0;
        let mut space = 184 - if has_af { 1 + af_len } else { 0 };
        let mut stuffing = 0usize;
        let mut af_present = has_af;
        if remaining < space {
            let gap = space - remaining;
            if has_af {
                stuffing = gap;
            } else {
                af_present = true;
                // gap == 1: a bare length byte of 0.
                if gap >= 2 {
                    af[0] = 0;
                    af_len = 1;
                    stuffing = gap - 2;
                }
            }
            space = remaining;
        }
        out.push(0x47);
        out.push(if first { 0x40 } else { 0 } | ((pid >> 8) as u8 & 0x1f));
        out.push(pid as u8);
        out.push(if af_present { 0x30 } else { 0x10 } | (cc & 0x0f));
        cc = (cc + 1) & 0x0f;
        if af_present {
            out.push((af_len + stuffing) as u8);
            out.extend_from_slice(&af[..af_len]);
            out.resize(out.len() + stuffing, 0xff);
        }
        // Payload from head then body.
        let mut left = space;
        if written < head.len() {
            let n = left.min(head.len() - written);
            out.extend_from_slice(&head[written..written + n]);
            written += n;
            left -= n;
        }
        if left > 0 {
            let from = written - head.len();
            out.extend_from_slice(&body[from..from + left]);
            written += left;
        }
    }
    debug_assert_eq!(written, total, "packet_count is the packetizer's bound");
    cc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_of_standard_pat() {
        // A PAT section as written by ffmpeg (program 1 -> PID 0x1000).
        let sec = [
            0x00, 0xb0, 0x0d, 0x00, 0x01, 0xc1, 0x00, 0x00, 0x00, 0x01, 0xf0, 0x00,
        ];
        assert_eq!(crc32_mpeg2(&sec), 0x2ab1_04b2);
    }

    #[test]
    fn packets_are_188_bytes_with_sync() {
        let mut out = Vec::new();
        for len in [0usize, 1, 2, 150, 175, 176, 177, 183, 184, 185, 400] {
            out.clear();
            let body = vec![0xabu8; len];
            packetize(
                &mut out,
                0x100,
                0,
                Some(12345),
                true,
                &[0, 0, 1, 0xe0],
                &body,
            );
            assert_eq!(out.len() % PACKET_SIZE, 0, "len {len}");
            for p in out.chunks(PACKET_SIZE) {
                assert_eq!(p[0], 0x47);
            }
            out.clear();
            packetize(&mut out, 0x101, 0, None, false, &[0, 0, 1, 0xc0], &body);
            assert_eq!(out.len() % PACKET_SIZE, 0, "len {len}");
        }
    }

    /// The payload of one TS packet (after the adaptation field).
    fn payload(p: &[u8]) -> &[u8] {
        match p[3] & 0x30 {
            0x10 => &p[4..],
            0x30 => &p[5 + usize::from(p[4])..],
            _ => &[],
        }
    }

    #[test]
    fn packet_count_is_what_packetize_writes_for_every_size() {
        // Every PES size up to five full packets, with every first-packet
        // adaptation field, and a few large ones: the count is exact, the
        // payload round-trips, the counter advances by the count.
        let sizes = (0..=5 * 184 + 20).chain([8191, 65_535, 200_001]);
        let mut out = Vec::new();
        for total in sizes {
            let data: Vec<u8> = (0..total).map(|i| (i * 7 + 3) as u8).collect();
            let split = total.min(14);
            for (pcr, rai) in [
                (None, false),
                (None, true),
                (Some(90_000), false),
                (Some(1), true),
            ] {
                out.clear();
                let cc = packetize(&mut out, 0x100, 9, pcr, rai, &data[..split], &data[split..]);
                let n = packet_count(adaptation_len(pcr.is_some(), rai), total);
                assert_eq!(
                    out.len(),
                    n * PACKET_SIZE,
                    "{total} bytes, pcr {pcr:?}, rai {rai}"
                );
                assert_eq!(usize::from(cc), (9 + n) % 16);
                let joined: Vec<u8> = out.chunks(PACKET_SIZE).flat_map(payload).copied().collect();
                assert_eq!(joined, data, "{total} bytes, pcr {pcr:?}, rai {rai}");
            }
        }
    }

    #[test]
    fn continuity_keeps_pids_it_does_not_write() {
        let tracks = ugc_core::hub::tests_support::av_tracks();
        let mut c = Continuity::default();
        c.set(0x105, 7);
        c.set(0, 3);
        let mut mux = TsMuxer::new(&tracks).unwrap();
        mux.set_continuity(&c);
        mux.advance_segment(&[]);
        let after = mux.continuity();
        assert_eq!(after.next(0), 4);
        assert_eq!(after.next(PMT_PID), 1);
        assert_eq!(after.next(0x100), 0);
        assert_eq!(after.next(0x105), 7);
    }
}
