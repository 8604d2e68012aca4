//! Program specific information (ISO/IEC 13818-1 2.4.4): PAT and PMT
//! sections (spanning packets, CRC-32 checked), the elementary streams of
//! the first program and their `stream_type`s.

use bytes::BytesMut;
use ugc_core::MediaKind;

use super::adts::AudioState;
use super::annexb::VideoState;
use super::pes::Pes;
use super::{MAX_SECTION, STREAM_TYPE_AAC_ADTS, STREAM_TYPE_H264, STREAM_TYPE_H265, TsDemuxer};
use crate::ts::crc32_mpeg2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum EsKind {
    H264,
    H265,
    Aac,
}

impl EsKind {
    fn from_stream_type(t: u8) -> Option<EsKind> {
        match t {
            STREAM_TYPE_H264 => Some(EsKind::H264),
            STREAM_TYPE_H265 => Some(EsKind::H265),
            STREAM_TYPE_AAC_ADTS => Some(EsKind::Aac),
            _ => None,
        }
    }

    pub(super) fn media(self) -> MediaKind {
        match self {
            EsKind::H264 | EsKind::H265 => MediaKind::Video,
            EsKind::Aac => MediaKind::Audio,
        }
    }
}

/// A PSI section being collected.
#[derive(Debug, Default)]
pub(super) struct Section {
    buf: Vec<u8>,
    active: bool,
}

impl TsDemuxer {
    pub(super) fn section(&mut self, pmt: bool, pusi: bool, payload: &[u8]) {
        let mut data = payload;
        if pusi {
            let Some((&pointer, rest)) = data.split_first() else {
                self.stats.bad_sections += 1;
                return;
            };
            let p = usize::from(pointer);
            // The bytes before the pointer end the previous section.
            if let Some(tail) = rest.get(..p) {
                self.section_bytes(pmt, tail);
            }
            let sec = if pmt { &mut self.pmt } else { &mut self.pat };
            sec.buf.clear();
            sec.active = true;
            data = match rest.get(p..) {
                Some(d) => d,
                None => {
                    self.stats.bad_sections += 1;
                    sec.active = false;
                    return;
                }
            };
        }
        self.section_bytes(pmt, data);
    }

    fn section_bytes(&mut self, pmt: bool, data: &[u8]) {
        let sec = if pmt { &mut self.pmt } else { &mut self.pat };
        if !sec.active {
            return;
        }
        sec.buf.extend_from_slice(data);
        if sec.buf.len() < 3 {
            return;
        }
        if sec.buf[0] == 0xff {
            // Stuffing.
            sec.active = false;
            return;
        }
        let section_length = (usize::from(sec.buf[1] & 0x0f) << 8) | usize::from(sec.buf[2]);
        let total = 3 + section_length;
        if total > MAX_SECTION {
            sec.active = false;
            self.stats.bad_sections += 1;
            return;
        }
        if sec.buf.len() < total {
            return;
        }
        sec.active = false;
        let section = std::mem::take(&mut sec.buf);
        let body = &section[..total];
        if total < 12 || crc32_mpeg2(body) != 0 {
            self.stats.bad_sections += 1;
        } else if pmt {
            self.parse_pmt(body);
        } else {
            self.parse_pat(body);
        }
        let sec = if pmt { &mut self.pmt } else { &mut self.pat };
        sec.buf = section;
        sec.buf.clear();
    }

    fn parse_pat(&mut self, s: &[u8]) {
        if s[0] != 0x00 {
            self.stats.bad_sections += 1;
            return;
        }
        // Header 8 bytes, CRC 4 bytes, 4 bytes per program.
        let programs = &s[8..s.len() - 4];
        for p in programs.chunks_exact(4) {
            let number = u16::from_be_bytes([p[0], p[1]]);
            let pid = (u16::from(p[2] & 0x1f) << 8) | u16::from(p[3]);
            if number != 0 {
                if self.pmt_pid != Some(pid) {
                    self.pmt_pid = Some(pid);
                    self.pmt_cc = None;
                    self.pmt_version = None;
                    self.pmt = Section::default();
                }
                return;
            }
        }
    }

    fn parse_pmt(&mut self, s: &[u8]) {
        if s[0] != 0x02 {
            self.stats.bad_sections += 1;
            return;
        }
        let version = (s[5] >> 1) & 0x1f;
        if self.pmt_version == Some(version) {
            return;
        }
        let info_len = (usize::from(s[10] & 0x0f) << 8) | usize::from(s[11]);
        let end = s.len() - 4;
        let mut pos = 12usize.saturating_add(info_len);
        let mut video: Option<(u16, EsKind)> = None;
        let mut audio: Option<(u16, EsKind)> = None;
        while let Some(es) = s.get(pos..pos + 5).filter(|_| pos + 5 <= end) {
            let stream_type = es[0];
            let pid = (u16::from(es[1] & 0x1f) << 8) | u16::from(es[2]);
            let es_info = (usize::from(es[3] & 0x0f) << 8) | usize::from(es[4]);
            pos = pos + 5 + es_info;
            match EsKind::from_stream_type(stream_type) {
                Some(k) if k.media() == MediaKind::Video && video.is_none() => {
                    video = Some((pid, k));
                }
                Some(k) if k.media() == MediaKind::Audio && audio.is_none() => {
                    audio = Some((pid, k));
                }
                Some(_) => {}
                None => self.stats.unsupported_streams += 1,
            }
        }
        self.pmt_version = Some(version);
        self.set_es(MediaKind::Video, video);
        self.set_es(MediaKind::Audio, audio);
    }

    fn set_es(&mut self, kind: MediaKind, es: Option<(u16, EsKind)>) {
        let slot = match kind {
            MediaKind::Video => &mut self.video_pes,
            MediaKind::Audio => &mut self.audio_pes,
        };
        let same = match (&*slot, es) {
            (Some(p), Some((pid, k))) => p.pid == pid && p.kind == k,
            (None, None) => true,
            _ => false,
        };
        if same {
            return;
        }
        match kind {
            MediaKind::Video => self.expect_video = es.is_some(),
            MediaKind::Audio => self.expect_audio = es.is_some(),
        }
        let slot = match kind {
            MediaKind::Video => &mut self.video_pes,
            MediaKind::Audio => &mut self.audio_pes,
        };
        let old = slot.take();
        *slot = es.map(|(pid, kind)| Pes {
            pid,
            kind,
            buf: BytesMut::new(),
            expected: None,
            collecting: false,
            last_cc: None,
        });
        if let Some(mut p) = old {
            self.complete_pes(&mut p);
        }
        match kind {
            MediaKind::Video => {
                self.flush_au();
                self.video = VideoState::default();
                if es.is_none() && self.video_track.take().is_some() {
                    self.announce();
                }
            }
            MediaKind::Audio => {
                self.audio = AudioState::default();
                if es.is_none() && self.audio_track.take().is_some() {
                    self.announce();
                }
            }
        }
    }
}
