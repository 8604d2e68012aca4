//! The error type of `ugc-proto`.

use std::fmt::Write as _;

/// Errors of the wire protocols, classified by who is to blame: the peer
/// misbehaved ([`Error::Handshake`], [`Error::Chunk`], [`Error::Amf0`],
/// [`Error::Protocol`], limits), the peer said no ([`Error::Refused`],
/// [`Error::EndedByPeer`]), the peer is incompatible
/// ([`Error::UnsupportedVersion`], [`Error::Unsupported`]), or our caller
/// misused the API ([`Error::InvalidState`], [`Error::BadTarget`]). Every
/// peer error closes only its session.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// C0 asked for an RTMP version we do not speak (only 3 is; 6 is RTMPE).
    #[error("rtmp handshake: unsupported version {version:#04x} in C0 (bytes: {hex})")]
    UnsupportedVersion {
        /// The C0 byte.
        version: u8,
        /// The start of C0C1.
        hex: String,
    },
    /// The handshake was malformed.
    #[error("rtmp handshake: {0}")]
    Handshake(String),
    /// A chunk was malformed or broke the chunk stream rules.
    #[error("rtmp chunk at input offset {offset}, chunk stream {csid}: {reason} (bytes: {hex})")]
    Chunk {
        /// Offset of the chunk's first byte in the connection's input (after the handshake).
        offset: u64,
        /// Chunk stream id.
        csid: u32,
        /// What is wrong.
        reason: String,
        /// A short hex dump from the chunk's first byte.
        hex: String,
    },
    /// Set Chunk Size outside `1..=max`.
    #[error("rtmp: peer set chunk size {size}, allowed 1..={max}")]
    ChunkSize {
        /// The size the peer asked for.
        size: u32,
        /// Our limit.
        max: u32,
    },
    /// A message longer than the per-message limit, or more in-flight message
    /// bytes than the per-connection limit.
    #[error("rtmp: message of {len} bytes on chunk stream {csid} exceeds the limit of {max}")]
    MessageTooLarge {
        /// Chunk stream id.
        csid: u32,
        /// Declared length (or in-flight total).
        len: u64,
        /// The limit.
        max: u64,
    },
    /// The peer opened more chunk streams (or message streams) than allowed.
    #[error("rtmp: more than {limit} {what}")]
    TooMany {
        /// What (`"chunk streams"`, `"message streams"`).
        what: &'static str,
        /// The limit.
        limit: usize,
    },
    /// Malformed AMF0.
    #[error("amf0 at offset {offset}: {reason} (bytes: {hex})")]
    Amf0 {
        /// Offset within the AMF0 payload.
        offset: usize,
        /// What is wrong.
        reason: String,
        /// A short hex dump from the offending byte.
        hex: String,
    },
    /// A well-formed message that breaks the RTMP command rules.
    #[error("rtmp protocol: {0}")]
    Protocol(String),
    /// The caller used the API in the wrong state (e.g. `accept_publish`
    /// without a pending publish).
    #[error("invalid state: {0}")]
    InvalidState(&'static str),
    /// The session was closed (after an error or a rejection); no more input.
    #[error("session closed")]
    Closed,
    /// Socket I/O failed (adapters only).
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The peer was silent for too long (adapters only).
    #[error("timeout: {0}")]
    Timeout(&'static str),
    /// The Hub refused the stream or its media (adapters only); `Closed`
    /// means the publisher was taken over or disconnected.
    #[error("hub: {0}")]
    Hub(#[from] ugc_core::Error),
    /// The media assembler rejected a tag (adapters only).
    #[error("media: {0}")]
    Media(String),
    /// The server we publish to refused the publish (`_error`, an error
    /// `onStatus`): its status code and its reason, as the client reported
    /// them ([`crate::rtmp::ClientEvent::Rejected`]).
    #[error("refused: {}", status_text(code, description))]
    Refused {
        /// The status code (`NetStream.Publish.Denied`, ...).
        code: String,
        /// The server's description (empty if it gave none).
        description: String,
    },
    /// The server we publish to ended the publish
    /// ([`crate::rtmp::ClientEvent::Ended`]).
    #[error("ended by target: {}", status_text(code, description))]
    EndedByPeer {
        /// The status code (`NetStream.Unpublish.Success`, ...).
        code: String,
        /// The server's description (empty if it gave none).
        description: String,
    },
    /// A push target we cannot use: a malformed URL or host, unusable TLS
    /// settings (the caller's to fix).
    #[error("bad target: {0}")]
    BadTarget(String),
    /// The stream has media the peer's protocol cannot carry (a codec FLV
    /// has no id for).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The relay byte stream is malformed (or not a relay stream at all).
    #[error("relay at byte {offset}: {reason} (bytes: {hex})")]
    Relay {
        /// Offset in the connection's byte stream of the offending box.
        offset: u64,
        /// What is wrong.
        reason: String,
        /// A short hex dump from the offending box.
        hex: String,
    },
    /// A relay sender stated a lease epoch lower than one already seen: a
    /// node that lost its lease still sends (fencing).
    #[error("relay: stale epoch {got}, already saw {seen}")]
    StaleEpoch {
        /// The highest epoch seen.
        seen: u64,
        /// The epoch the sender stated.
        got: u64,
    },
    /// An HTTP peer answered with a status that retrying will not change
    /// (401 wrong node token, 404 unknown stream).
    #[error("{url}: HTTP {status}")]
    HttpStatus {
        /// The status code.
        status: u16,
        /// The URL asked.
        url: String,
    },
    /// A relay puller gave up reaching its sender.
    #[error("relay: {url}: {reason}")]
    Unreachable {
        /// The URL asked.
        url: String,
        /// The last failure.
        reason: String,
    },
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Up to 16 bytes of `data` as lowercase hex, for error context.
pub(crate) fn short_hex(data: &[u8]) -> String {
    let mut s = String::with_capacity(40);
    for (i, b) in data.iter().take(16).enumerate() {
        if i > 0 {
            s.push(' ');
        }
        let _ = write!(s, "{b:02x}");
    }
    if data.len() > 16 {
        s.push_str(" ..");
    }
    s
}

/// A peer's status for an error message: `unknown stream key
/// (NetStream.Publish.Denied)`. The description is cut to 200 characters
/// with control characters blanked (it is the peer's text).
fn status_text(code: &str, description: &str) -> String {
    let description: String = description
        .chars()
        .take(200)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let description = description.trim();
    if description.is_empty() {
        code.to_owned()
    } else {
        format!("{description} ({code})")
    }
}
