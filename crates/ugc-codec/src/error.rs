//! The error type of `ugc-codec`.

use std::fmt::Write as _;

/// Errors of the bitstream readers and container writers, classified by blame:
/// the peer's bytes are malformed ([`Error::Truncated`], [`Error::Invalid`]), the
/// peer uses something we do not implement ([`Error::Unsupported`]), or our
/// caller misused a writer ([`Error::InvalidArgument`]).
///
/// Every error is scoped to the one tag, record or call that produced it: a
/// reader or an [`crate::flv::FlvIngest`] stays usable afterwards.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input ends before a field that must be there.
    #[error("{what}: truncated at offset {offset}: need {need} bytes, have {have} [{hex}]")]
    Truncated {
        /// The structure being read (`"avcC"`, `"FLV video tag"`, ...).
        what: &'static str,
        /// Byte offset of the missing field.
        offset: usize,
        /// Bytes the field needs.
        need: usize,
        /// Bytes left at `offset`.
        have: usize,
        /// Short hex dump of the start of the input.
        hex: String,
    },
    /// A field holds a value the format forbids.
    #[error("{what}: invalid at offset {offset}: {reason} [{hex}]")]
    Invalid {
        /// The structure being read.
        what: &'static str,
        /// Byte offset of the offending field.
        offset: usize,
        /// What is wrong.
        reason: String,
        /// Short hex dump of the start of the input.
        hex: String,
    },
    /// Well-formed input that this crate does not implement (a codec, a packet
    /// type, a configuration version).
    #[error("{what}: unsupported: {detail}")]
    Unsupported {
        /// The structure being read.
        what: &'static str,
        /// What is not supported.
        detail: String,
    },
    /// The caller passed arguments a writer cannot encode (a sample too large,
    /// an empty fragment, a track without the configuration a muxer needs).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Up to 16 bytes of `data` as hex, `…` when cut.
pub(crate) fn short_hex(data: &[u8]) -> String {
    let mut s = String::with_capacity(34);
    for b in data.iter().take(16) {
        let _ = write!(s, "{b:02x}");
    }
    if data.len() > 16 {
        s.push('…');
    }
    s
}

impl Error {
    pub(crate) fn truncated(what: &'static str, data: &[u8], offset: usize, need: usize) -> Self {
        Error::Truncated {
            what,
            offset,
            need,
            have: data.len().saturating_sub(offset),
            hex: short_hex(data),
        }
    }

    pub(crate) fn invalid(
        what: &'static str,
        data: &[u8],
        offset: usize,
        reason: impl Into<String>,
    ) -> Self {
        Error::Invalid {
            what,
            offset,
            reason: reason.into(),
            hex: short_hex(data),
        }
    }

    pub(crate) fn unsupported(what: &'static str, detail: impl Into<String>) -> Self {
        Error::Unsupported {
            what,
            detail: detail.into(),
        }
    }
}

/// A bounds-checked cursor over a byte slice; every read names the structure
/// for the error.
pub(crate) struct Reader<'a> {
    what: &'static str,
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(what: &'static str, data: &'a [u8]) -> Self {
        Reader { what, data, pos: 0 }
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .ok_or_else(|| Error::truncated(self.what, self.data, self.pos, n))?;
        let s = self
            .data
            .get(self.pos..end)
            .ok_or_else(|| Error::truncated(self.what, self.data, self.pos, n))?;
        self.pos = end;
        Ok(s)
    }

    pub(crate) fn u8(&mut self) -> Result<u8> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    pub(crate) fn u24(&mut self) -> Result<u32> {
        let [a, b, c] = self.array()?;
        Ok(u32::from_be_bytes([0, a, b, c]))
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let s = self.bytes(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    pub(crate) fn invalid(&self, reason: impl Into<String>) -> Error {
        Error::invalid(self.what, self.data, self.pos, reason)
    }
}

/// An MSB-first bit reader over a byte slice (AudioSpecificConfig, hvcC SPS).
pub(crate) struct BitReader<'a> {
    what: &'static str,
    data: &'a [u8],
    bit: usize,
}

impl<'a> BitReader<'a> {
    pub(crate) fn new(what: &'static str, data: &'a [u8]) -> Self {
        BitReader { what, data, bit: 0 }
    }

    pub(crate) fn bit_pos(&self) -> usize {
        self.bit
    }

    /// An [`Error::Invalid`] at the current byte.
    pub(crate) fn invalid(&self, reason: impl Into<String>) -> Error {
        Error::invalid(self.what, self.data, self.bit / 8, reason)
    }

    /// Reads `n <= 32` bits.
    pub(crate) fn bits(&mut self, n: u32) -> Result<u32> {
        debug_assert!(n <= 32);
        let mut v: u64 = 0;
        for _ in 0..n {
            let byte = self
                .data
                .get(self.bit / 8)
                .ok_or_else(|| Error::truncated(self.what, self.data, self.bit / 8, 1))?;
            let b = (byte >> (7 - (self.bit % 8))) & 1;
            v = (v << 1) | u64::from(b);
            self.bit += 1;
        }
        // n <= 32 so v fits.
        Ok(u32::try_from(v).unwrap_or(u32::MAX))
    }

    pub(crate) fn flag(&mut self) -> Result<bool> {
        Ok(self.bits(1)? == 1)
    }

    pub(crate) fn skip(&mut self, n: usize) -> Result<()> {
        let end = self.bit.saturating_add(n);
        if end > self.data.len().saturating_mul(8) {
            return Err(Error::truncated(
                self.what,
                self.data,
                self.bit / 8,
                n.div_ceil(8),
            ));
        }
        self.bit = end;
        Ok(())
    }

    /// Unsigned Exp-Golomb (`ue(v)`), up to 32 bits of value.
    pub(crate) fn ue(&mut self) -> Result<u32> {
        let mut zeros = 0u32;
        while !self.flag()? {
            zeros += 1;
            if zeros > 31 {
                return Err(Error::invalid(
                    self.what,
                    self.data,
                    self.bit / 8,
                    "exp-Golomb code longer than 32 bits",
                ));
            }
        }
        if zeros == 0 {
            return Ok(0);
        }
        let rest = self.bits(zeros)?;
        // zeros <= 31: (1 << zeros) - 1 + rest <= 2^32 - 2.
        let v = (1u64 << zeros) - 1 + u64::from(rest);
        u32::try_from(v)
            .map_err(|_| Error::invalid(self.what, self.data, self.bit / 8, "exp-Golomb overflow"))
    }
}
