//! Packetized elementary streams (ISO/IEC 13818-1 2.4.3.6): PES packets
//! reassembled across TS packets per PID with continuity checks, the PES
//! header's PTS/DTS, and 33-bit timestamps widened across wraps.

use bytes::BytesMut;

use super::psi::EsKind;
use super::{MAX_PES_SIZE, TsDemuxer, WRAP_33};

/// A PES being collected on one PID.
#[derive(Debug)]
pub(super) struct Pes {
    pub(super) pid: u16,
    pub(super) kind: EsKind,
    pub(super) buf: BytesMut,
    /// `PES_packet_length` + 6 when bounded.
    pub(super) expected: Option<usize>,
    pub(super) collecting: bool,
    pub(super) last_cc: Option<u8>,
}

impl TsDemuxer {
    pub(super) fn pes_packet(
        &mut self,
        pes: &mut Pes,
        pusi: bool,
        cc: u8,
        has_payload: bool,
        payload: &[u8],
    ) {
        if !has_payload {
            return;
        }
        match pes.last_cc {
            Some(last) if last == cc => return, // duplicate packet
            Some(last) if (last + 1) & 0x0f != cc => {
                self.stats.cc_errors += 1;
                if pes.collecting && !pusi {
                    pes.collecting = false;
                    pes.buf.clear();
                    self.stats.dropped_pes += 1;
                }
            }
            _ => {}
        }
        pes.last_cc = Some(cc);
        if pusi {
            if pes.collecting {
                self.complete_pes(pes);
            }
            pes.buf.clear();
            pes.collecting = true;
            pes.expected = None;
        }
        if !pes.collecting {
            return;
        }
        if pes.buf.len() + payload.len() > MAX_PES_SIZE {
            pes.collecting = false;
            pes.buf.clear();
            self.stats.dropped_pes += 1;
            return;
        }
        pes.buf.extend_from_slice(payload);
        if pes.expected.is_none() && pes.buf.len() >= 6 {
            let len = usize::from(u16::from_be_bytes([pes.buf[4], pes.buf[5]]));
            pes.expected = Some(if len == 0 { usize::MAX } else { len + 6 });
        }
        if pes.expected.is_some_and(|e| pes.buf.len() >= e) {
            self.complete_pes(pes);
        }
    }

    /// A whole PES is in `pes.buf`: parse its header and hand the payload on.
    pub(super) fn complete_pes(&mut self, pes: &mut Pes) {
        if !pes.collecting {
            return;
        }
        pes.collecting = false;
        let mut buf = std::mem::take(&mut pes.buf);
        if let Some(e) = pes.expected.filter(|e| *e != usize::MAX) {
            buf.truncate(e);
        }
        let Some(h) = parse_pes_header(&buf) else {
            self.stats.dropped_pes += 1;
            buf.clear();
            pes.buf = buf;
            return;
        };
        let pts = h.pts.map(|p| self.widen(p));
        let dts = h.dts.map(|d| self.widen(d));
        match pes.kind {
            EsKind::H264 | EsKind::H265 => {
                // Copied into the access unit: the buffer is reused.
                self.video_pes_data(pes.kind, pts, dts, &buf[h.payload_start..]);
                buf.clear();
                pes.buf = buf;
            }
            EsKind::Aac => {
                // Raw frames are zero-copy slices of the PES.
                let data = buf.split_off(h.payload_start).freeze();
                self.audio_pes_data(pts, &data);
            }
        }
    }

    /// Widens a 33-bit timestamp next to the last one seen (any PID).
    fn widen(&mut self, raw: u64) -> i64 {
        let raw = (raw & ((1 << 33) - 1)) as i64;
        let v = match self.clock {
            None => raw,
            Some((last, last_raw)) => {
                let mut d = raw - last_raw;
                if d > WRAP_33 / 2 {
                    d -= WRAP_33;
                } else if d < -WRAP_33 / 2 {
                    d += WRAP_33;
                }
                last.saturating_add(d)
            }
        };
        self.clock = Some((v, raw));
        v
    }
}

struct PesHeader {
    pts: Option<u64>,
    dts: Option<u64>,
    payload_start: usize,
}

fn parse_pes_header(b: &[u8]) -> Option<PesHeader> {
    if b.get(..3)? != [0, 0, 1] {
        return None;
    }
    let stream_id = *b.get(3)?;
    // Streams without the optional header (padding, private_2, ...).
    if matches!(
        stream_id,
        0xbc | 0xbe | 0xbf | 0xf0 | 0xf1 | 0xff | 0xf2 | 0xf8
    ) {
        return Some(PesHeader {
            pts: None,
            dts: None,
            payload_start: 6.min(b.len()),
        });
    }
    let flags = *b.get(7)?;
    let hdr_len = usize::from(*b.get(8)?);
    let payload_start = 9 + hdr_len;
    if payload_start > b.len() {
        return None;
    }
    let pts_dts = flags >> 6;
    let pts = if pts_dts & 0x02 != 0 {
        Some(read_ts(b.get(9..14)?)?)
    } else {
        None
    };
    let dts = if pts_dts == 0x03 {
        Some(read_ts(b.get(14..19)?)?)
    } else {
        None
    };
    Some(PesHeader {
        pts,
        dts,
        payload_start,
    })
}

fn read_ts(b: &[u8]) -> Option<u64> {
    let b: &[u8; 5] = b.try_into().ok()?;
    Some(
        (u64::from(b[0] >> 1) & 0x07) << 30
            | u64::from(b[1]) << 22
            | (u64::from(b[2]) >> 1) << 15
            | u64::from(b[3]) << 7
            | u64::from(b[4]) >> 1,
    )
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pes_timestamps_read_all_33_bits() {
        // PTS 0x1_2345_6789 with markers.
        let v: u64 = 0x1_2345_6789;
        let b = [
            0x21 | (((v >> 30) as u8 & 0x07) << 1),
            (v >> 22) as u8,
            (((v >> 15) as u8) << 1) | 1,
            (v >> 7) as u8,
            ((v as u8) << 1) | 1,
        ];
        assert_eq!(read_ts(&b), Some(v));
    }

    #[test]
    fn timestamps_widen_across_the_33_bit_wrap() {
        let mut d = TsDemuxer::new();
        let near = (1i64 << 33) - 3000;
        assert_eq!(d.widen(near as u64), near);
        assert_eq!(d.widen(3000), (1 << 33) + 3000);
        // A slightly older timestamp (audio before video) across the wrap.
        assert_eq!(d.widen((1u64 << 33) - 1000), (1 << 33) - 1000);
        assert_eq!(d.widen(6000), (1 << 33) + 6000);
    }
}
