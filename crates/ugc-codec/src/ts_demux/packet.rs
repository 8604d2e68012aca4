//! The transport packet layer (ISO/IEC 13818-1 2.4.3): finding packets by
//! their sync byte, resynchronising after garbage, the packet header and
//! adaptation field, and handing payloads to the PSI or PES layer by PID.

use super::{NULL_PID, PAT_PID, SYNC, TsDemuxer};
use crate::ts::PACKET_SIZE;

impl TsDemuxer {
    pub(super) fn scan(&mut self, data: &[u8]) {
        let mut pos = 0usize;
        let len = data.len();
        while pos < len {
            let rest = &data[pos..];
            if rest[0] != SYNC {
                // Resync: the next 0x47 that is followed by another one a
                // packet later (or by the end of the input).
                self.stats.resyncs += 1;
                let mut skip = 1usize;
                loop {
                    match rest
                        .get(skip..)
                        .and_then(|r| r.iter().position(|b| *b == SYNC))
                    {
                        Some(off) => {
                            let cand = skip + off;
                            match rest.get(cand + PACKET_SIZE) {
                                Some(&SYNC) | None => {
                                    skip = cand;
                                    break;
                                }
                                Some(_) => skip = cand + 1,
                            }
                        }
                        None => {
                            skip = rest.len();
                            break;
                        }
                    }
                }
                self.stats.resync_bytes += skip as u64;
                pos += skip;
                continue;
            }
            match rest.get(..PACKET_SIZE) {
                Some(p) => {
                    if let Ok(pkt) = <&[u8; PACKET_SIZE]>::try_from(p) {
                        self.packet(pkt);
                    }
                    pos += PACKET_SIZE;
                }
                None => {
                    self.carry.extend_from_slice(rest);
                    return;
                }
            }
        }
    }

    pub(super) fn packet(&mut self, pkt: &[u8; PACKET_SIZE]) {
        self.stats.packets += 1;
        let tei = pkt[1] & 0x80 != 0;
        let pusi = pkt[1] & 0x40 != 0;
        let pid = (u16::from(pkt[1] & 0x1f) << 8) | u16::from(pkt[2]);
        let afc = (pkt[3] >> 4) & 0x03;
        let cc = pkt[3] & 0x0f;
        if pid == NULL_PID {
            return;
        }
        if tei {
            self.stats.transport_errors += 1;
            return;
        }
        let mut start = 4usize;
        if afc & 0x02 != 0 {
            start += 1 + usize::from(pkt[4]);
        }
        let has_payload = afc & 0x01 != 0;
        let payload: &[u8] = if has_payload {
            match pkt.get(start..) {
                Some(p) => p,
                None => {
                    // Adaptation field longer than the packet.
                    self.stats.transport_errors += 1;
                    return;
                }
            }
        } else {
            &[]
        };
        if pid == PAT_PID {
            if !has_payload || duplicate(&mut self.pat_cc, cc) {
                return;
            }
            self.section(false, pusi, payload);
        } else if Some(pid) == self.pmt_pid {
            if !has_payload || duplicate(&mut self.pmt_cc, cc) {
                return;
            }
            self.section(true, pusi, payload);
        } else if self.video_pes.as_ref().is_some_and(|p| p.pid == pid) {
            if let Some(mut pes) = self.video_pes.take() {
                self.pes_packet(&mut pes, pusi, cc, has_payload, payload);
                self.video_pes = Some(pes);
            }
        } else if self.audio_pes.as_ref().is_some_and(|p| p.pid == pid)
            && let Some(mut pes) = self.audio_pes.take()
        {
            self.pes_packet(&mut pes, pusi, cc, has_payload, payload);
            self.audio_pes = Some(pes);
        }
    }
}

/// Whether a packet repeats the previous continuity counter (a permitted
/// duplicate); updates the counter.
pub(super) fn duplicate(last: &mut Option<u8>, cc: u8) -> bool {
    let dup = *last == Some(cc);
    *last = Some(cc);
    dup
}
