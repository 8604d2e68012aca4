//! The RTMP handshake, server side.
//!
//! ```text
//!   client                      server
//!     C0 (1: version 3) + C1 (1536) ──>   ExpectC0C1
//!                      <── S0 + S1 + S2
//!     C2 (1536)                  ──>   ExpectC2
//!                                      Connected (chunk streams follow)
//! ```
//!
//! Two flavours are answered:
//!
//! * **simple** (librtmp/OBS, vMix, GStreamer): C1 has a zero version field or
//!   no valid digest. S1 is random with a zero version, S2 echoes C1.
//! * **digest** (ffmpeg's native client and Flash Player 9+): C1 carries an
//!   HMAC-SHA256 digest keyed with the public Flash Player key at one of two
//!   positions ("schemes"). S1 then carries our digest keyed with the public
//!   Flash Media Server key at the same scheme, and the last 32 bytes of S2
//!   are an HMAC of S2 keyed with an HMAC of the client's digest.
//!
//! C2 is read but not validated (clients disagree on its content).
//!
//! Each phase is a type that consumes itself; input is read from a caller's
//! buffer, so bytes after C2 (often the `connect` command, in the same TCP
//! segment) stay there for the chunk layer.

use bytes::{Buf, BufMut, BytesMut};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::error::{Error, Result, short_hex};

/// Size of C1, C2, S1, S2.
pub const PACKET_SIZE: usize = 1536;
/// The RTMP version in C0/S0.
pub const RTMP_VERSION: u8 = 3;
const DIGEST_LEN: usize = 32;

/// "Genuine Adobe Flash Player 001" followed by the 32 public key bytes:
/// the protocol constant clients key their C1 digest with (first 30 bytes).
const FP_KEY_TEXT: &[u8; 30] = b"Genuine Adobe Flash Player 001";
/// "Genuine Adobe Flash Media Server 001": servers key their S1 digest with it.
const FMS_KEY_TEXT: &[u8; 36] = b"Genuine Adobe Flash Media Server 001";
/// The 32 bytes that complete both keys for the S2 signature.
const KEY_TAIL: [u8; 32] = [
    0xf0, 0xee, 0xc2, 0x4a, 0x80, 0x68, 0xbe, 0xe8, 0x2e, 0x00, 0xd0, 0xd1, 0x02, 0x9e, 0x7e, 0x57,
    0x6e, 0xec, 0x5d, 0x2d, 0x29, 0x80, 0x6f, 0xab, 0x93, 0xb8, 0xe6, 0x36, 0xcf, 0xeb, 0x31, 0xae,
];
/// The version we announce in a digest S1 (an FMS 3.5-like value; clients only
/// check that it is non-zero).
const SERVER_VERSION: [u8; 4] = [4, 5, 0, 1];

type HmacSha256 = Hmac<Sha256>;

fn hmac_parts(key: &[u8], parts: &[&[u8]]) -> [u8; DIGEST_LEN] {
    // HMAC accepts keys of any length.
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// Where a scheme puts its digest inside a 1536-byte packet.
fn digest_offset(packet: &[u8; PACKET_SIZE], scheme: Scheme) -> usize {
    let base = match scheme {
        Scheme::Zero => 8,
        Scheme::One => 772,
    };
    let sum: usize = packet[base..base + 4].iter().map(|&b| usize::from(b)).sum();
    sum % 728 + base + 4
}

/// The digest position scheme of a C1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Digest offset computed from bytes 8..12.
    Zero,
    /// Digest offset computed from bytes 772..776.
    One,
}

/// The digest of `packet` (with the 32 digest bytes at `off` left out).
fn packet_digest(packet: &[u8; PACKET_SIZE], off: usize, key: &[u8]) -> [u8; DIGEST_LEN] {
    hmac_parts(key, &[&packet[..off], &packet[off + DIGEST_LEN..]])
}

/// Finds a valid client digest in C1: `(scheme, digest)`.
pub fn find_client_digest(c1: &[u8; PACKET_SIZE]) -> Option<(Scheme, [u8; DIGEST_LEN])> {
    for scheme in [Scheme::Zero, Scheme::One] {
        let off = digest_offset(c1, scheme);
        let want = packet_digest(c1, off, FP_KEY_TEXT);
        if c1[off..off + DIGEST_LEN] == want {
            return Some((scheme, want));
        }
    }
    None
}

/// A small deterministic generator for the random filler of S1/S2 (not a
/// secret; the caller seeds it so the core reads no clock or OS entropy).
#[derive(Debug, Clone)]
struct XorShift(u64);

impl XorShift {
    fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            let b = x.to_le_bytes();
            chunk.copy_from_slice(&b[..chunk.len()]);
        }
    }
}

/// Which kind of handshake the client did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeKind {
    /// Echo handshake (librtmp, OBS, vMix, GStreamer).
    Simple,
    /// Digest handshake (ffmpeg, Flash Player 9+).
    Digest(Scheme),
}

/// The first phase: waiting for C0 and C1.
#[derive(Debug, Clone)]
pub struct ExpectC0C1 {
    rng: XorShift,
    epoch_ms: u32,
}

/// What [`ExpectC0C1::read`] did.
#[derive(Debug)]
pub enum C0C1Outcome {
    /// Not enough bytes yet; call again with more.
    NeedMore(ExpectC0C1),
    /// S0S1S2 were written; wait for C2.
    Done(ExpectC2),
}

impl ExpectC0C1 {
    /// A server handshake. `seed` seeds the random filler of S1/S2;
    /// `epoch_ms` is the time field of S1 (any value; 0 is fine).
    pub fn new(seed: u64, epoch_ms: u32) -> Self {
        ExpectC0C1 {
            // xorshift must not start at zero.
            rng: XorShift(seed | 1),
            epoch_ms,
        }
    }

    /// Reads C0C1 from the front of `input` once complete and appends
    /// S0S1S2 to `out`.
    pub fn read(mut self, input: &mut BytesMut, out: &mut BytesMut) -> Result<C0C1Outcome> {
        if let Some(&v) = input.first()
            && v != RTMP_VERSION
        {
            return Err(Error::UnsupportedVersion {
                version: v,
                hex: short_hex(input),
            });
        }
        if input.len() < 1 + PACKET_SIZE {
            return Ok(C0C1Outcome::NeedMore(self));
        }
        input.advance(1);
        let mut c1 = [0u8; PACKET_SIZE];
        c1.copy_from_slice(&input[..PACKET_SIZE]);
        input.advance(PACKET_SIZE);

        let client_version = [c1[4], c1[5], c1[6], c1[7]];
        let digest = if client_version == [0; 4] {
            None
        } else {
            find_client_digest(&c1)
        };

        let mut s1 = [0u8; PACKET_SIZE];
        self.rng.fill(&mut s1[8..]);
        s1[..4].copy_from_slice(&self.epoch_ms.to_be_bytes());
        let kind = match digest {
            None => {
                // Simple: zero version, S2 = C1.
                out.reserve(1 + 2 * PACKET_SIZE);
                out.put_u8(RTMP_VERSION);
                out.put_slice(&s1);
                out.put_slice(&c1);
                HandshakeKind::Simple
            }
            Some((scheme, client_digest)) => {
                s1[4..8].copy_from_slice(&SERVER_VERSION);
                let off = digest_offset(&s1, scheme);
                let d = packet_digest(&s1, off, FMS_KEY_TEXT);
                s1[off..off + DIGEST_LEN].copy_from_slice(&d);

                let mut s2 = [0u8; PACKET_SIZE];
                self.rng.fill(&mut s2);
                let mut full_key = [0u8; 36 + 32];
                full_key[..36].copy_from_slice(FMS_KEY_TEXT);
                full_key[36..].copy_from_slice(&KEY_TAIL);
                let key = hmac_parts(&full_key, &[&client_digest]);
                let sig = hmac_parts(&key, &[&s2[..PACKET_SIZE - DIGEST_LEN]]);
                s2[PACKET_SIZE - DIGEST_LEN..].copy_from_slice(&sig);

                out.reserve(1 + 2 * PACKET_SIZE);
                out.put_u8(RTMP_VERSION);
                out.put_slice(&s1);
                out.put_slice(&s2);
                HandshakeKind::Digest(scheme)
            }
        };
        Ok(C0C1Outcome::Done(ExpectC2 {
            kind,
            client_version,
        }))
    }
}

/// The second phase: S0S1S2 sent, waiting for C2.
#[derive(Debug, Clone)]
pub struct ExpectC2 {
    kind: HandshakeKind,
    client_version: [u8; 4],
}

/// What [`ExpectC2::read`] did.
#[derive(Debug)]
pub enum C2Outcome {
    /// Not enough bytes yet.
    NeedMore(ExpectC2),
    /// The handshake is complete.
    Done(Connected),
}

impl ExpectC2 {
    /// Consumes C2 from the front of `input` once complete.
    pub fn read(self, input: &mut BytesMut) -> Result<C2Outcome> {
        if input.len() < PACKET_SIZE {
            return Ok(C2Outcome::NeedMore(self));
        }
        input.advance(PACKET_SIZE);
        Ok(C2Outcome::Done(Connected {
            kind: self.kind,
            client_version: self.client_version,
        }))
    }
}

/// The completed handshake.
#[derive(Debug, Clone, Copy)]
pub struct Connected {
    /// Simple or digest.
    pub kind: HandshakeKind,
    /// The version field of C1 (Flash Player / librtmp version).
    pub client_version: [u8; 4],
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A digest C1 as ffmpeg builds it (scheme 0, version 9.0.124.2).
    pub(crate) fn digest_c1(scheme: Scheme, seed: u64) -> [u8; PACKET_SIZE] {
        let mut c1 = [0u8; PACKET_SIZE];
        XorShift(seed | 1).fill(&mut c1[8..]);
        c1[4..8].copy_from_slice(&[9, 0, 124, 2]);
        let off = digest_offset(&c1, scheme);
        let d = packet_digest(&c1, off, FP_KEY_TEXT);
        c1[off..off + DIGEST_LEN].copy_from_slice(&d);
        c1
    }

    fn run(c0c1: &[u8]) -> (BytesMut, HandshakeKind) {
        let mut input = BytesMut::from(c0c1);
        let mut out = BytesMut::new();
        let hs = ExpectC0C1::new(7, 0);
        let C0C1Outcome::Done(c2) = hs.read(&mut input, &mut out).unwrap() else {
            panic!("need more");
        };
        input.extend_from_slice(&[0u8; PACKET_SIZE]);
        input.extend_from_slice(b"rest");
        let C2Outcome::Done(conn) = c2.read(&mut input).unwrap() else {
            panic!("need more");
        };
        assert_eq!(&input[..], b"rest");
        (out, conn.kind)
    }

    #[test]
    fn simple_handshake_echoes_c1() {
        let mut c0c1 = vec![3u8];
        c0c1.extend((0..PACKET_SIZE).map(|i| (i * 7) as u8));
        c0c1[5..9].copy_from_slice(&[0; 4]);
        let (out, kind) = run(&c0c1);
        assert_eq!(kind, HandshakeKind::Simple);
        assert_eq!(out.len(), 1 + 2 * PACKET_SIZE);
        assert_eq!(out[0], 3);
        assert_eq!(&out[5..9], &[0; 4]);
        assert_eq!(&out[1 + PACKET_SIZE..], &c0c1[1..]);
    }

    #[test]
    fn digest_handshake_is_verifiable_by_the_client() {
        for scheme in [Scheme::Zero, Scheme::One] {
            let c1 = digest_c1(scheme, 99);
            let client_digest = find_client_digest(&c1).unwrap().1;
            let mut c0c1 = vec![3u8];
            c0c1.extend_from_slice(&c1);
            let (out, kind) = run(&c0c1);
            assert_eq!(kind, HandshakeKind::Digest(scheme));
            let mut s1 = [0u8; PACKET_SIZE];
            s1.copy_from_slice(&out[1..1 + PACKET_SIZE]);
            // What the client checks: S1's digest with the FMS key...
            let off = digest_offset(&s1, scheme);
            assert_eq!(
                s1[off..off + DIGEST_LEN],
                packet_digest(&s1, off, FMS_KEY_TEXT)
            );
            // ... and S2's signature keyed from its own digest.
            let s2 = &out[1 + PACKET_SIZE..];
            let mut full = FMS_KEY_TEXT.to_vec();
            full.extend_from_slice(&KEY_TAIL);
            let key = hmac_parts(&full, &[&client_digest]);
            let sig = hmac_parts(&key, &[&s2[..PACKET_SIZE - DIGEST_LEN]]);
            assert_eq!(&s2[PACKET_SIZE - DIGEST_LEN..], &sig);
        }
    }

    #[test]
    fn truncated_handshake_needs_more_and_wrong_version_fails() {
        let mut input = BytesMut::from(&[3u8; 100][..]);
        let mut out = BytesMut::new();
        assert!(matches!(
            ExpectC0C1::new(1, 0).read(&mut input, &mut out).unwrap(),
            C0C1Outcome::NeedMore(_)
        ));
        assert!(out.is_empty());
        let mut input = BytesMut::from(&b"GET / HTTP/1.1\r\n"[..]);
        let err = ExpectC0C1::new(1, 0)
            .read(&mut input, &mut out)
            .unwrap_err();
        assert!(matches!(
            err,
            Error::UnsupportedVersion { version: b'G', .. }
        ));
    }
}
