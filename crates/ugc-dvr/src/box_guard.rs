//! A check of untrusted ISO BMFF bytes before `mp4-atom` decodes them.
//!
//! `mp4-atom` 0.17 decodes a sample group description (`sgpd`) by looping
//! over its 32-bit `entry_count`, and an entry of an unknown grouping type
//! may take no bytes: a 28-byte box makes it push billions of entries
//! (found by the `dvr_export` fuzz target: 8 GB from 349 bytes). Our own
//! muxer never writes `sgpd`, so files with one are foreign: this walk of
//! the box tree finds any `sgpd` in the containers where it may be (and
//! malformed box sizes) without decoding anything, and callers refuse
//! such input before handing it to `mp4-atom`.

/// Containers whose children are boxes (the places an `sgpd` may hide in
/// an init segment or a fragment).
const CONTAINERS: [&[u8; 4]; 11] = [
    b"moov", b"trak", b"mdia", b"minf", b"stbl", b"mvex", b"edts", b"dinf", b"moof", b"traf",
    b"udta",
];

/// How deep containers may nest (ours nest 5 deep).
const MAX_DEPTH: usize = 16;

/// `Err` with a reason when `bytes` (a sequence of boxes) holds an `sgpd`
/// anywhere in [`CONTAINERS`], or a box whose size runs past its parent.
pub fn check(bytes: &[u8]) -> Result<(), &'static str> {
    walk(bytes, 0)
}

fn walk(mut bytes: &[u8], depth: usize) -> Result<(), &'static str> {
    if depth > MAX_DEPTH {
        return Err("boxes nested too deep");
    }
    while !bytes.is_empty() {
        if bytes.len() < 8 {
            return Err("truncated box header");
        }
        let size32 = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        let kind: [u8; 4] = [bytes[4], bytes[5], bytes[6], bytes[7]];
        let (header, size) = match size32 {
            0 => (8usize, bytes.len() as u64),
            1 => {
                let Some(large) = bytes.get(8..16) else {
                    return Err("truncated box header");
                };
                let mut b = [0u8; 8];
                b.copy_from_slice(large);
                (16usize, u64::from_be_bytes(b))
            }
            n => (8usize, u64::from(n)),
        };
        if size < header as u64 || size > bytes.len() as u64 {
            return Err("box size runs past its parent");
        }
        let size = size as usize;
        if &kind == b"sgpd" {
            return Err("sample group descriptions (sgpd) are not supported");
        }
        if CONTAINERS.iter().any(|c| **c == kind) {
            walk(&bytes[header..size], depth + 1)?;
        }
        bytes = &bytes[size..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boxed(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut b = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        b.extend_from_slice(kind);
        b.extend_from_slice(body);
        b
    }

    #[test]
    fn an_sgpd_anywhere_in_the_containers_is_refused() {
        let sgpd = boxed(
            b"sgpd",
            &[
                1, 0, 0, 0, b'x', b'x', b'x', b'x', 0, 0, 0, 4, 255, 255, 255, 255,
            ],
        );
        let stbl = boxed(b"stbl", &sgpd);
        let moov = boxed(
            b"moov",
            &boxed(b"trak", &boxed(b"mdia", &boxed(b"minf", &stbl))),
        );
        assert!(check(&moov).is_err());
        assert!(check(&sgpd).is_err(), "at the top");
        let moof = boxed(b"moof", &boxed(b"traf", &sgpd));
        assert!(check(&moof).is_err());
        // The same bytes inside a leaf box are data, not a box.
        let ok = boxed(b"moov", &boxed(b"mvhd", &sgpd));
        assert_eq!(check(&ok), Ok(()));
    }

    #[test]
    fn sizes_past_the_parent_are_refused_and_none_panics() {
        assert!(check(&[0, 0, 0, 9, b'f', b't', b'y', b'p']).is_err());
        assert!(check(&[0, 0, 0, 1, b'm', b'o', b'o', b'v', 0, 0]).is_err());
        assert!(check(&[0, 0, 0, 4, b'm', b'o', b'o', b'v']).is_err());
        assert_eq!(check(&[0, 0, 0, 0, b'm', b'd', b'a', b't', 1, 2]), Ok(()));
        assert_eq!(check(&[]), Ok(()));
        // Nesting past the limit.
        let mut b = boxed(b"free", &[]);
        for _ in 0..20 {
            b = boxed(b"moov", &b);
        }
        assert!(check(&b).is_err());
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_answer(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let _ = check(&bytes);
        }
    }
}
