//! [`Chunks`]: bytes kept as the pieces they were written in.
//!
//! A live segment is the CMAF chunks its parts were made of. Joining them
//! into one buffer copied every byte twice more (chunks into a part, parts
//! into a segment) and allocated segment-sized buffers that the allocator
//! hands back to the kernel and faults in again: most of the packager's page
//! faults. Kept as a list of [`Bytes`], a segment shares the chunks' memory;
//! writers take the pieces in order (`writev`, chained HTTP bodies).

use std::fmt;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

/// An immutable byte sequence stored as a list of [`Bytes`] pieces; cloning
/// is one reference count.
#[derive(Clone, Default)]
pub struct Chunks {
    pieces: Arc<[Bytes]>,
    len: usize,
}

impl Chunks {
    /// The sequence of `pieces`, in order (empty pieces are dropped).
    pub fn new(pieces: Vec<Bytes>) -> Self {
        let pieces: Arc<[Bytes]> = pieces.into_iter().filter(|b| !b.is_empty()).collect();
        let len = pieces.iter().map(Bytes::len).sum();
        Self { pieces, len }
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds no byte.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The pieces, in order; none is empty.
    pub fn pieces(&self) -> &[Bytes] {
        &self.pieces
    }

    /// The bytes in one buffer: the piece itself when there is one, else a
    /// copy.
    pub fn to_bytes(&self) -> Bytes {
        match &*self.pieces {
            [] => Bytes::new(),
            [one] => one.clone(),
            many => {
                let mut buf = BytesMut::with_capacity(self.len);
                for p in many {
                    buf.extend_from_slice(p);
                }
                buf.freeze()
            }
        }
    }

    /// The bytes from `offset` on (empty when `offset >= len`), sharing
    /// memory; from 0 it is `self` (one reference count).
    pub fn tail(&self, offset: usize) -> Chunks {
        if offset == 0 {
            return self.clone();
        }
        Chunks::new(tail(&self.pieces, offset))
    }
}

/// `pieces` from byte `offset` on (the first one sliced), sharing memory.
pub(crate) fn tail(pieces: &[Bytes], offset: usize) -> Vec<Bytes> {
    let mut pos = 0usize;
    let mut out = Vec::new();
    for p in pieces {
        let end = pos.saturating_add(p.len());
        if end > offset {
            out.push(p.slice(offset.saturating_sub(pos).min(p.len())..));
        }
        pos = end;
    }
    out
}

impl From<Bytes> for Chunks {
    fn from(b: Bytes) -> Self {
        Self::new(vec![b])
    }
}

impl FromIterator<Bytes> for Chunks {
    fn from_iter<I: IntoIterator<Item = Bytes>>(iter: I) -> Self {
        Self::new(iter.into_iter().collect())
    }
}

/// Equal when the bytes are, however they are split.
impl PartialEq for Chunks {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len
            && self
                .pieces
                .iter()
                .flat_map(|p| p.iter())
                .eq(other.pieces.iter().flat_map(|p| p.iter()))
    }
}

impl Eq for Chunks {}

impl fmt::Debug for Chunks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chunks")
            .field("len", &self.len)
            .field("pieces", &self.pieces.len())
            .finish()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn split(data: &[u8], cuts: &[usize]) -> Chunks {
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
        cuts.sort_unstable();
        let mut pieces = Vec::new();
        let mut at = 0;
        for c in cuts.into_iter().chain([data.len()]) {
            pieces.push(Bytes::copy_from_slice(&data[at..c]));
            at = c;
        }
        Chunks::new(pieces)
    }

    proptest! {
        #[test]
        fn any_split_keeps_the_bytes(
            data in proptest::collection::vec(any::<u8>(), 0..300),
            cuts in proptest::collection::vec(any::<usize>(), 0..8),
            offset in 0usize..320,
        ) {
            let c = split(&data, &cuts);
            prop_assert_eq!(c.len(), data.len());
            prop_assert_eq!(c.is_empty(), data.is_empty());
            prop_assert!(c.pieces().iter().all(|p| !p.is_empty()));
            prop_assert_eq!(&c.to_bytes()[..], &data[..]);
            prop_assert_eq!(&c, &Chunks::from(Bytes::from(data.clone())));
            let tail = c.tail(offset).to_bytes();
            prop_assert_eq!(&tail[..], &data[offset.min(data.len())..]);
        }
    }

    #[test]
    fn one_piece_is_not_copied() {
        let b = Bytes::from_static(b"abc");
        let c = Chunks::from(b.clone());
        assert_eq!(c.to_bytes().as_ptr(), b.as_ptr());
        assert_ne!(c, Chunks::from(Bytes::from_static(b"abd")));
    }
}
