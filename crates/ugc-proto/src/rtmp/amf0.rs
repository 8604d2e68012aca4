//! AMF0 (Action Message Format 0): the encoding of RTMP commands and data
//! messages.
//!
//! Supported markers: number (0x00), boolean (0x01), string (0x02), object
//! (0x03), null (0x05), undefined (0x06), ECMA array (0x08), object end
//! (0x09, only inside objects and ECMA arrays), strict array (0x0a), date
//! (0x0b), long string (0x0c). References, typed objects, XML documents and
//! the AVM+ switch are rejected with [`Error::Amf0`].
//!
//! Decoding never panics and never allocates more than the input can back:
//! lengths are checked against the remaining bytes before any allocation,
//! nesting is bounded by [`MAX_DEPTH`], and the decoded values' heap size
//! is bounded by a budget linear in the input ([`decoded_budget`]). Without
//! the budget a strict array of one-byte nulls became a vector of 32-byte
//! values: a 16 MiB RTMP message decoded to 512 MiB.

use bytes::{BufMut, BytesMut};

use crate::error::{Error, Result, short_hex};

/// Deepest nesting of objects and arrays accepted by [`decode`].
pub const MAX_DEPTH: usize = 32;

/// Decoded bytes allowed per input byte by [`decoded_budget`]. Arrays of
/// numbers (9 bytes on the wire, 32 decoded: onMetaData keyframe tables) fit;
/// long runs of nulls, booleans or empty strings do not.
pub const DECODED_BYTES_PER_INPUT_BYTE: usize = 4;

/// Decoded bytes allowed on top of the per-byte share (small commands such
/// as `connect` or `play` decode to a few hundred bytes).
pub const DECODED_BYTES_ALLOWANCE: usize = 64 * 1024;

/// The heap size the values decoded from `input_len` bytes may take, as
/// counted by [`decoded_size`]: [`DECODED_BYTES_PER_INPUT_BYTE`] per byte
/// plus [`DECODED_BYTES_ALLOWANCE`]. [`decode`] and [`Decoder::new`] stop
/// with [`Error::Amf0`] rather than exceed it.
pub fn decoded_budget(input_len: usize) -> usize {
    input_len
        .saturating_mul(DECODED_BYTES_PER_INPUT_BYTE)
        .saturating_add(DECODED_BYTES_ALLOWANCE)
}

/// The heap size of `values` as the decoder counts it against its budget:
/// the slots of every vector (by capacity) and the bytes of every string
/// (by capacity), recursively.
pub fn decoded_size(values: &[Amf0Value]) -> usize {
    fn props(p: &Vec<(String, Amf0Value)>) -> usize {
        p.capacity() * std::mem::size_of::<(String, Amf0Value)>()
            + p.iter()
                .map(|(k, v)| k.capacity() + value(v))
                .sum::<usize>()
    }
    fn value(v: &Amf0Value) -> usize {
        match v {
            Amf0Value::String(s) | Amf0Value::LongString(s) => s.capacity(),
            Amf0Value::Object(p) | Amf0Value::EcmaArray(p) => props(p),
            Amf0Value::StrictArray(v) => {
                v.capacity() * std::mem::size_of::<Amf0Value>() + v.iter().map(value).sum::<usize>()
            }
            Amf0Value::Number(_)
            | Amf0Value::Boolean(_)
            | Amf0Value::Null
            | Amf0Value::Undefined
            | Amf0Value::Date { .. } => 0,
        }
    }
    std::mem::size_of_val(values) + values.iter().map(value).sum::<usize>()
}

const NUMBER: u8 = 0x00;
const BOOLEAN: u8 = 0x01;
const STRING: u8 = 0x02;
const OBJECT: u8 = 0x03;
const NULL: u8 = 0x05;
const UNDEFINED: u8 = 0x06;
const ECMA_ARRAY: u8 = 0x08;
const OBJECT_END: u8 = 0x09;
const STRICT_ARRAY: u8 = 0x0a;
const DATE: u8 = 0x0b;
const LONG_STRING: u8 = 0x0c;

/// One AMF0 value.
#[derive(Debug, Clone, PartialEq)]
pub enum Amf0Value {
    /// IEEE 754 double.
    Number(f64),
    /// Boolean.
    Boolean(bool),
    /// String of at most 65 535 bytes (UTF-8; invalid sequences are replaced on decode).
    String(String),
    /// Anonymous object: ordered key/value pairs.
    Object(Vec<(String, Amf0Value)>),
    /// `null`.
    Null,
    /// `undefined`.
    Undefined,
    /// ECMA (associative) array: ordered key/value pairs.
    EcmaArray(Vec<(String, Amf0Value)>),
    /// Strict (dense) array.
    StrictArray(Vec<Amf0Value>),
    /// Date: milliseconds since the Unix epoch and a (reserved) time zone.
    Date {
        /// Milliseconds since 1970-01-01 UTC.
        millis: f64,
        /// Time zone offset in minutes; should be 0.
        time_zone: i16,
    },
    /// String with a 32-bit length.
    LongString(String),
}

impl Amf0Value {
    /// The string content of a `String` or `LongString`.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Amf0Value::String(s) | Amf0Value::LongString(s) => Some(s),
            _ => None,
        }
    }

    /// The number of a `Number`.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Amf0Value::Number(n) => Some(*n),
            _ => None,
        }
    }

    /// The boolean of a `Boolean`.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Amf0Value::Boolean(b) => Some(*b),
            _ => None,
        }
    }

    /// The properties of an `Object` or `EcmaArray`.
    pub fn properties(&self) -> Option<&[(String, Amf0Value)]> {
        match self {
            Amf0Value::Object(p) | Amf0Value::EcmaArray(p) => Some(p),
            _ => None,
        }
    }

    /// The value of property `key` of an `Object` or `EcmaArray`.
    pub fn get(&self, key: &str) -> Option<&Amf0Value> {
        self.properties()?
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }
}

/// A cursor over AMF0 bytes.
#[derive(Debug, Clone)]
pub struct Decoder<'a> {
    data: &'a [u8],
    pos: usize,
    /// Decoded bytes still allowed (see [`decoded_size`]).
    budget: usize,
}

impl<'a> Decoder<'a> {
    /// A decoder over `data` with the budget [`decoded_budget`] of its
    /// length.
    pub fn new(data: &'a [u8]) -> Self {
        Decoder::with_budget(data, decoded_budget(data.len()))
    }

    /// A decoder over `data` whose values may take at most `budget` bytes
    /// of heap (counted as [`decoded_size`] counts them, for all values it
    /// returns together).
    pub fn with_budget(data: &'a [u8], budget: usize) -> Self {
        Decoder {
            data,
            pos: 0,
            budget,
        }
    }

    /// Decoded bytes still allowed.
    pub fn budget_left(&self) -> usize {
        self.budget
    }

    /// Counts `bytes` of decoded heap against the budget.
    fn charge(&mut self, at: usize, bytes: usize) -> Result<()> {
        match self.budget.checked_sub(bytes) {
            Some(left) => {
                self.budget = left;
                Ok(())
            }
            None => Err(self.err(
                at,
                format!(
                    "decoded size over budget ({bytes} more bytes, {} left)",
                    self.budget
                ),
            )),
        }
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Whether every byte was consumed.
    pub fn is_empty(&self) -> bool {
        self.pos >= self.data.len()
    }

    /// The next value, or `None` at the end of the input.
    pub fn next_value(&mut self) -> Result<Option<Amf0Value>> {
        if self.is_empty() {
            return Ok(None);
        }
        self.value(0).map(Some)
    }

    fn err(&self, at: usize, reason: impl Into<String>) -> Error {
        Error::Amf0 {
            offset: at,
            reason: reason.into(),
            hex: short_hex(self.data.get(at..).unwrap_or_default()),
        }
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n);
        match end.and_then(|e| self.data.get(self.pos..e)) {
            Some(s) => {
                self.pos += n;
                Ok(s)
            }
            None => Err(self.err(
                self.pos,
                format!(
                    "{what} of {n} bytes but only {} left",
                    self.data.len().saturating_sub(self.pos)
                ),
            )),
        }
    }

    fn u8(&mut self, what: &str) -> Result<u8> {
        Ok(self.take(1, what)?[0])
    }

    fn u16(&mut self, what: &str) -> Result<u16> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn f64(&mut self, what: &str) -> Result<f64> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(f64::from_be_bytes(a))
    }

    fn utf8(&mut self, n: usize, what: &str) -> Result<String> {
        let at = self.pos;
        let b = self.take(n, what)?;
        let s = match std::str::from_utf8(b) {
            Ok(s) => s.to_owned(),
            // Replacement characters can make this up to 3x the input.
            Err(_) => String::from_utf8_lossy(b).into_owned(),
        };
        self.charge(at, s.capacity())?;
        Ok(s)
    }

    fn short_string(&mut self) -> Result<String> {
        let n = self.u16("string length")?;
        self.utf8(usize::from(n), "string")
    }

    fn value(&mut self, depth: usize) -> Result<Amf0Value> {
        let at = self.pos;
        let marker = self.u8("type marker")?;
        Ok(match marker {
            NUMBER => Amf0Value::Number(self.f64("number")?),
            BOOLEAN => Amf0Value::Boolean(self.u8("boolean")? != 0),
            STRING => Amf0Value::String(self.short_string()?),
            OBJECT => Amf0Value::Object(self.properties(depth, at)?),
            NULL => Amf0Value::Null,
            UNDEFINED => Amf0Value::Undefined,
            ECMA_ARRAY => {
                // The count is advisory (encoders get it wrong); the object
                // end marker terminates.
                let _count = self.u32("ecma array count")?;
                Amf0Value::EcmaArray(self.properties(depth, at)?)
            }
            STRICT_ARRAY => {
                if depth >= MAX_DEPTH {
                    return Err(self.err(at, format!("nesting deeper than {MAX_DEPTH}")));
                }
                let count = self.u32("strict array count")?;
                // Each element takes at least one byte: bound the allocation
                // by what is left.
                let left = self.data.len().saturating_sub(self.pos);
                let count = usize::try_from(count).unwrap_or(usize::MAX);
                if count > left {
                    return Err(self.err(
                        at,
                        format!("strict array of {count} elements but only {left} bytes left"),
                    ));
                }
                self.charge(at, count.saturating_mul(std::mem::size_of::<Amf0Value>()))?;
                let mut v = Vec::with_capacity(count);
                for _ in 0..count {
                    v.push(self.value(depth + 1)?);
                }
                Amf0Value::StrictArray(v)
            }
            DATE => {
                let millis = self.f64("date")?;
                let tz = self.u16("date time zone")?;
                Amf0Value::Date {
                    millis,
                    time_zone: tz as i16,
                }
            }
            LONG_STRING => {
                let n = self.u32("long string length")?;
                let n = usize::try_from(n).unwrap_or(usize::MAX);
                Amf0Value::LongString(self.utf8(n, "long string")?)
            }
            OBJECT_END => return Err(self.err(at, "object end marker outside an object")),
            other => return Err(self.err(at, format!("unsupported type marker {other:#04x}"))),
        })
    }

    /// Pushes `item`, charging a growth of `v` against the budget before
    /// it is allocated: charging after `push` let one doubling allocate up
    /// to the whole budget again past it (fuzzing found 3 KiB of empty-key
    /// properties peaking at 168 KiB, over twice the 81 KiB budget).
    fn push_charged<T>(&mut self, v: &mut Vec<T>, item: T, at: usize) -> Result<()> {
        if v.len() == v.capacity() {
            let cap = v.capacity();
            // The growth `Vec::push` would choose.
            let new_cap = (cap * 2).max(4);
            self.charge(at, (new_cap - cap) * std::mem::size_of::<T>())?;
            v.reserve_exact(new_cap - v.len());
        }
        v.push(item);
        Ok(())
    }

    /// Key/value pairs up to the empty key + object end marker.
    fn properties(&mut self, depth: usize, at: usize) -> Result<Vec<(String, Amf0Value)>> {
        if depth >= MAX_DEPTH {
            return Err(self.err(at, format!("nesting deeper than {MAX_DEPTH}")));
        }
        let mut props = Vec::new();
        loop {
            let key = self.short_string()?;
            if key.is_empty() && self.data.get(self.pos) == Some(&OBJECT_END) {
                self.pos += 1;
                return Ok(props);
            }
            let v = self.value(depth + 1)?;
            self.push_charged(&mut props, (key, v), at)?;
        }
    }
}

/// Decodes every value in `data`, within [`decoded_budget`] of its length.
pub fn decode(data: &[u8]) -> Result<Vec<Amf0Value>> {
    let mut d = Decoder::new(data);
    let mut out = Vec::new();
    loop {
        let at = d.position();
        let Some(v) = d.next_value()? else {
            return Ok(out);
        };
        d.push_charged(&mut out, v, at)?;
    }
}

/// Appends the encoding of `value` to `out`. Strings longer than 65 535 bytes
/// in a [`Amf0Value::String`] are written as long strings; keys longer than
/// 65 535 bytes are truncated at a character boundary.
pub fn encode(value: &Amf0Value, out: &mut BytesMut) {
    match value {
        Amf0Value::Number(n) => {
            out.put_u8(NUMBER);
            out.put_f64(*n);
        }
        Amf0Value::Boolean(b) => {
            out.put_u8(BOOLEAN);
            out.put_u8(u8::from(*b));
        }
        Amf0Value::String(s) => match u16::try_from(s.len()) {
            Ok(n) => {
                out.put_u8(STRING);
                out.put_u16(n);
                out.put_slice(s.as_bytes());
            }
            Err(_) => encode_long_string(s, out),
        },
        Amf0Value::Object(p) => {
            out.put_u8(OBJECT);
            encode_properties(p, out);
        }
        Amf0Value::Null => out.put_u8(NULL),
        Amf0Value::Undefined => out.put_u8(UNDEFINED),
        Amf0Value::EcmaArray(p) => {
            out.put_u8(ECMA_ARRAY);
            out.put_u32(u32::try_from(p.len()).unwrap_or(u32::MAX));
            encode_properties(p, out);
        }
        Amf0Value::StrictArray(v) => {
            out.put_u8(STRICT_ARRAY);
            out.put_u32(u32::try_from(v.len()).unwrap_or(u32::MAX));
            for e in v {
                encode(e, out);
            }
        }
        Amf0Value::Date { millis, time_zone } => {
            out.put_u8(DATE);
            out.put_f64(*millis);
            out.put_i16(*time_zone);
        }
        Amf0Value::LongString(s) => encode_long_string(s, out),
    }
}

fn encode_long_string(s: &str, out: &mut BytesMut) {
    // A string longer than 4 GiB cannot exist in a message; truncate.
    let bytes = &s.as_bytes()[..s.len().min(u32::MAX as usize)];
    out.put_u8(LONG_STRING);
    out.put_u32(bytes.len() as u32);
    out.put_slice(bytes);
}

fn encode_key(k: &str, out: &mut BytesMut) {
    let mut end = k.len().min(usize::from(u16::MAX));
    while !k.is_char_boundary(end) {
        end -= 1;
    }
    out.put_u16(end as u16);
    out.put_slice(&k.as_bytes()[..end]);
}

fn encode_properties(p: &[(String, Amf0Value)], out: &mut BytesMut) {
    for (k, v) in p {
        encode_key(k, out);
        encode(v, out);
    }
    out.put_u16(0);
    out.put_u8(OBJECT_END);
}

/// Encodes every value of `values`.
pub fn encode_all(values: &[Amf0Value], out: &mut BytesMut) {
    for v in values {
        encode(v, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_value() -> impl Strategy<Value = Amf0Value> {
        let leaf = prop_oneof![
            any::<f64>()
                .prop_filter("NaN is not equal to itself", |f| !f.is_nan())
                .prop_map(Amf0Value::Number),
            any::<bool>().prop_map(Amf0Value::Boolean),
            ".{0,20}".prop_map(Amf0Value::String),
            ".{0,20}".prop_map(Amf0Value::LongString),
            Just(Amf0Value::Null),
            Just(Amf0Value::Undefined),
            (-1e12f64..1e12, any::<i16>())
                .prop_map(|(millis, time_zone)| Amf0Value::Date { millis, time_zone }),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            // Empty keys would read as the end marker; AMF0 cannot carry them.
            let props = prop::collection::vec(("[a-zA-Z0-9@_]{1,12}", inner.clone()), 0..6);
            prop_oneof![
                props.clone().prop_map(Amf0Value::Object),
                props.prop_map(Amf0Value::EcmaArray),
                prop::collection::vec(inner, 0..6).prop_map(Amf0Value::StrictArray),
            ]
        })
    }

    proptest! {
        #[test]
        fn round_trip(values in prop::collection::vec(arb_value(), 0..5)) {
            let mut buf = BytesMut::new();
            encode_all(&values, &mut buf);
            let back = decode(&buf).unwrap();
            prop_assert_eq!(back, values);
        }

        #[test]
        fn decode_never_panics(data in prop::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(v) = decode(&data) {
                prop_assert!(decoded_size(&v) <= decoded_budget(data.len()));
            }
        }
    }

    #[test]
    fn decodes_ffmpeg_connect_object() {
        let mut buf = BytesMut::new();
        encode_all(
            &[
                Amf0Value::String("connect".into()),
                Amf0Value::Number(1.0),
                Amf0Value::Object(vec![
                    ("app".into(), Amf0Value::String("live".into())),
                    ("type".into(), Amf0Value::String("nonprivate".into())),
                ]),
            ],
            &mut buf,
        );
        let v = decode(&buf).unwrap();
        assert_eq!(v[0].as_str(), Some("connect"));
        assert_eq!(v[2].get("app").and_then(Amf0Value::as_str), Some("live"));
    }

    #[test]
    fn string_longer_than_input_is_an_error() {
        // String marker, length 0xffff, 3 bytes of content.
        let err = decode(&[0x02, 0xff, 0xff, b'a', b'b', b'c']).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("string of 65535 bytes but only 3 left"),
            "{msg}"
        );
        let err = decode(&[0x0c, 0xff, 0xff, 0xff, 0xff, b'a']).unwrap_err();
        assert!(matches!(err, Error::Amf0 { offset: 5, .. }), "{err}");
    }

    #[test]
    fn deep_nesting_is_bounded() {
        let mut data = Vec::new();
        for _ in 0..10_000 {
            data.extend_from_slice(&[STRICT_ARRAY, 0, 0, 0, 1]);
        }
        data.push(NULL);
        let err = decode(&data).unwrap_err();
        assert!(err.to_string().contains("nesting deeper"), "{err}");
        let mut data = Vec::new();
        for _ in 0..10_000 {
            data.extend_from_slice(&[OBJECT, 0, 1, b'a']);
        }
        assert!(decode(&data).is_err());
    }

    /// The amplification reported in issue #17: a strict array of one-byte
    /// nulls decoded to 32 bytes per input byte.
    #[test]
    fn strict_array_of_nulls_is_over_budget() {
        let n = 1 << 20;
        let mut data = vec![STRICT_ARRAY];
        data.extend_from_slice(&(n as u32).to_be_bytes());
        data.resize(5 + n, NULL);
        let err = decode(&data).unwrap_err();
        assert!(err.to_string().contains("over budget"), "{err}");
        // Small arrays of nulls are fine.
        assert_eq!(
            decode(&[STRICT_ARRAY, 0, 0, 0, 3, NULL, NULL, NULL]).unwrap(),
            vec![Amf0Value::StrictArray(vec![Amf0Value::Null; 3])]
        );
    }

    #[test]
    fn properties_of_booleans_are_over_budget() {
        // Empty keys with one-byte booleans: 4 input bytes, 56 decoded.
        let mut data = vec![OBJECT];
        for _ in 0..100_000 {
            data.extend_from_slice(&[0, 0, BOOLEAN, 1]);
        }
        data.extend_from_slice(&[0, 0, OBJECT_END]);
        let err = decode(&data).unwrap_err();
        assert!(err.to_string().contains("over budget"), "{err}");
    }

    #[test]
    fn metadata_keyframe_tables_fit_the_budget() {
        // onMetaData with 100 000 keyframe times: numbers decode to 32 of
        // their 9 bytes, under the budget.
        let times = Amf0Value::StrictArray(
            (0..100_000)
                .map(|i| Amf0Value::Number(f64::from(i)))
                .collect(),
        );
        let meta = Amf0Value::EcmaArray(vec![(
            "keyframes".into(),
            Amf0Value::Object(vec![("times".into(), times)]),
        )]);
        let mut buf = BytesMut::new();
        encode_all(&[Amf0Value::String("onMetaData".into()), meta], &mut buf);
        let v = decode(&buf).unwrap();
        assert!(decoded_size(&v) <= decoded_budget(buf.len()));
    }

    #[test]
    fn huge_strict_array_count_does_not_allocate() {
        let err = decode(&[STRICT_ARRAY, 0xff, 0xff, 0xff, 0xff, NULL]).unwrap_err();
        assert!(err.to_string().contains("elements"), "{err}");
    }

    #[test]
    fn unsupported_markers_are_errors() {
        for m in [0x04u8, 0x07, 0x0d, 0x0e, 0x0f, 0x10, 0x11, 0xff, OBJECT_END] {
            assert!(decode(&[m, 0, 0, 0, 0]).is_err(), "{m:#x}");
        }
    }
}
