//! A small test-only FLV *file* reader: 9-byte header, then tags with 11-byte
//! headers, each followed by a 4-byte previous-tag size. Enough to replay a
//! capture through the tag-body layer as an RTMP session would deliver it.

#![allow(dead_code)]

use bytes::Bytes;

/// One tag of an FLV file.
pub struct FileTag {
    /// 8 audio, 9 video, 18 script data.
    pub tag_type: u8,
    /// Milliseconds (24 bits + 8 extended bits).
    pub timestamp: u32,
    /// The tag body (what an RTMP message carries).
    pub body: Bytes,
}

/// All tags of an FLV file; stops at the first incomplete tag.
pub fn read_flv(file: &Bytes) -> Vec<FileTag> {
    let mut tags = Vec::new();
    if file.len() < 13 || &file[..3] != b"FLV" {
        return tags;
    }
    let header_len = u32::from_be_bytes([file[5], file[6], file[7], file[8]]) as usize;
    let mut pos = header_len + 4;
    while pos + 11 <= file.len() {
        let h = &file[pos..pos + 11];
        let size = u32::from_be_bytes([0, h[1], h[2], h[3]]) as usize;
        let timestamp = u32::from_be_bytes([h[7], h[4], h[5], h[6]]);
        let start = pos + 11;
        if start + size > file.len() {
            break;
        }
        tags.push(FileTag {
            tag_type: h[0] & 0x1f,
            timestamp,
            body: file.slice(start..start + size),
        });
        pos = start + size + 4;
    }
    tags
}
