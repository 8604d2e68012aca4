//! The few ISO-BMFF boxes the relay writes and reads: a box writer over a
//! `Vec<u8>` (sizes patched when a box closes) and a bounds-checked cursor
//! for parsing. Nothing here panics on any input.

use crate::error::{Error, Result};

/// Writes boxes into a byte vector.
#[derive(Debug, Default)]
pub(crate) struct BoxWriter {
    pub(crate) buf: Vec<u8>,
}

impl BoxWriter {
    pub(crate) fn with_capacity(n: usize) -> Self {
        BoxWriter {
            buf: Vec::with_capacity(n),
        }
    }

    /// Starts a box; returns its offset for [`Self::close`].
    pub(crate) fn open(&mut self, kind: &[u8; 4]) -> usize {
        let at = self.buf.len();
        self.buf.extend_from_slice(&[0, 0, 0, 0]);
        self.buf.extend_from_slice(kind);
        at
    }

    /// Starts a full box (version and 24-bit flags).
    pub(crate) fn open_full(&mut self, kind: &[u8; 4], version: u8, flags: u32) -> usize {
        let at = self.open(kind);
        self.u32((u32::from(version) << 24) | (flags & 0x00ff_ffff));
        at
    }

    /// Ends the box started at `at` (writes its size).
    pub(crate) fn close(&mut self, at: usize) -> Result<()> {
        let size = u32::try_from(self.buf.len() - at)
            .map_err(|_| Error::InvalidState("relay: box larger than 4 GiB"))?;
        if let Some(slot) = self.buf.get_mut(at..at + 4) {
            slot.copy_from_slice(&size.to_be_bytes());
        }
        Ok(())
    }

    pub(crate) fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    pub(crate) fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub(crate) fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub(crate) fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub(crate) fn bytes(&mut self, v: &[u8]) {
        self.buf.extend_from_slice(v);
    }
    pub(crate) fn zeros(&mut self, n: usize) {
        self.buf.resize(self.buf.len() + n, 0);
    }
}

/// A bounds-checked big-endian reader over a borrowed slice. Every read
/// returns `None` past the end.
#[derive(Debug, Clone)]
pub(crate) struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Cursor { data, pos: 0 }
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn remaining(&self) -> usize {
        self.data.len().saturating_sub(self.pos)
    }

    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.data.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }

    pub(crate) fn rest(&mut self) -> &'a [u8] {
        let s = self.data.get(self.pos..).unwrap_or(&[]);
        self.pos = self.data.len();
        s
    }

    pub(crate) fn skip(&mut self, n: usize) -> Option<()> {
        self.take(n).map(|_| ())
    }

    pub(crate) fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|s| s[0])
    }
    pub(crate) fn u16(&mut self) -> Option<u16> {
        self.array().map(u16::from_be_bytes)
    }
    pub(crate) fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_be_bytes)
    }
    pub(crate) fn u64(&mut self) -> Option<u64> {
        self.array().map(u64::from_be_bytes)
    }
    pub(crate) fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N).and_then(|s| s.try_into().ok())
    }
}

/// One child box of a box body: its type, body and offset (of its header,
/// within the parent body).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Child<'a> {
    pub(crate) kind: [u8; 4],
    pub(crate) body: &'a [u8],
    pub(crate) offset: usize,
}

/// The child boxes of `body`, in order; `Err` with the offset and a reason
/// at the first malformed header. 64-bit sizes are accepted; size 0 ("to the
/// end") is accepted for the last child.
pub(crate) fn children(body: &[u8]) -> impl Iterator<Item = Result<Child<'_>, (usize, String)>> {
    let mut pos = 0usize;
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed || pos >= body.len() {
            return None;
        }
        let at = pos;
        let mut c = Cursor::new(body.get(at..)?);
        let parsed = (|| {
            let size32 = c.u32().ok_or("truncated box header")?;
            let kind: [u8; 4] = c.array().ok_or("truncated box header")?;
            let size = match size32 {
                0 => (body.len() - at) as u64,
                1 => c.u64().ok_or("truncated 64-bit box size")?,
                s => u64::from(s),
            };
            let header = c.pos() as u64;
            if size < header {
                return Err(format!(
                    "box {} of size {size} is smaller than its header",
                    fourcc(&kind)
                ));
            }
            let size = usize::try_from(size).map_err(|_| "box size overflows".to_string())?;
            let end = at.checked_add(size).ok_or("box size overflows")?;
            let b = body.get(at + c.pos()..end).ok_or_else(|| {
                format!("box {} of size {size} overruns its parent", fourcc(&kind))
            })?;
            Ok((kind, b, end))
        })();
        match parsed {
            Ok((kind, b, end)) => {
                pos = end;
                Some(Ok(Child {
                    kind,
                    body: b,
                    offset: at,
                }))
            }
            Err(reason) => {
                failed = true;
                Some(Err((at, reason.to_string())))
            }
        }
    })
}

/// The first child of type `kind`.
pub(crate) fn find<'a>(
    body: &'a [u8],
    kind: &[u8; 4],
) -> Result<Option<Child<'a>>, (usize, String)> {
    for c in children(body) {
        let c = c?;
        if &c.kind == kind {
            return Ok(Some(c));
        }
    }
    Ok(None)
}

/// A four-character code for messages (non-printable bytes escaped).
pub(crate) fn fourcc(kind: &[u8; 4]) -> String {
    kind.iter()
        .flat_map(|b| std::ascii::escape_default(*b))
        .map(char::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_of_nested_boxes() {
        let mut w = BoxWriter::default();
        let a = w.open(b"aaaa");
        w.u32(7);
        w.close(a).unwrap();
        let b = w.open_full(b"bbbb", 1, 2);
        w.close(b).unwrap();
        let kids: Vec<_> = children(&w.buf).collect::<Result<_, _>>().unwrap();
        assert_eq!(kids.len(), 2);
        assert_eq!(&kids[0].kind, b"aaaa");
        assert_eq!(kids[0].body, &[0, 0, 0, 7]);
        assert_eq!(kids[1].body, &[1, 0, 0, 2]);
        assert_eq!(kids[1].offset, 12);
    }

    #[test]
    fn children_reject_overrun_and_tiny_sizes() {
        let bad = [0, 0, 0, 20, b'x', b'x', b'x', b'x', 0];
        let r: Vec<_> = children(&bad).collect();
        assert!(r[0].is_err());
        let tiny = [0, 0, 0, 3, b'x', b'x', b'x', b'x'];
        assert!(children(&tiny).next().unwrap().is_err());
        let large = [
            0, 0, 0, 1, b'x', b'x', b'x', b'x', 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        ];
        assert!(children(&large).next().unwrap().is_err());
    }
}
