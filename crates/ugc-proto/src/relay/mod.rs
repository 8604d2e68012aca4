//! The inter-node relay: a Hub stream as one long-lived fragmented-MP4
//! byte stream, so a publishing, a transcoding and an origin node are the
//! same library with different wiring.
//!
//! * [`RelayWriter`] (sans-IO): [`RelayEvent`]s in, bytes out.
//! * [`RelayReader`] (sans-IO): bytes in any chunking, [`RelayEvent`]s out;
//!   bounded memory ([`ReaderLimits`]), errors with the byte offset.
//! * [`RelayWindow`] (sans-IO): the sender's bounded, sequence-numbered
//!   window of recent events that makes a reconnect resumable.
//! * `server` (feature `tokio`): `GET /relay/v1/...` over a Hub.
//! * `puller` (feature `tokio`): a [`ugc_core::Source`] that pulls a relay
//!   stream over HTTP, reconnecting and resuming.
//! * `push` (feature `tokio`): a [`ugc_core::Sink`] that `POST`s the same
//!   framing to a node that takes it into its Hub (`server` answers it).
//!
//! # Wire format (version 1)
//!
//! ISO-BMFF boxes back to back; the standard ones as in CMAF, so the media
//! is plain fMP4, plus five small private boxes (`ugc?`) that carry what
//! fMP4 has no place for. All integers big-endian.
//!
//! ```text
//! stream   = ftyp ugch (moov | fragment | ugcs | free)*
//! fragment = moof mdat                 one frame per fragment
//! ```
//!
//! | box | content |
//! |---|---|
//! | `ftyp` | major brand `ugcr`, minor version = wire version (1), compatible `iso6`, `ugcr` |
//! | `ugch` | hello, full box v0, flag 1 = resumed; `epoch` u64 (the sender's lease epoch), `window` u64 (id of the sender's window), `start` u64 (sequence of the first window event on this connection), [`timeline` u64 (the id of the stream's timeline, [`ugc_core::Hub::timeline`]; readers take what follows `start` as it when present)] |
//! | `moov` | a track set: `mvhd`, one `trak` per track (`tkhd` track id, `mdhd` timescale = the Hub track's timescale, `stsd` with `avc1`/`avcC`, `hvc1`/`hvcC`, `av01`/`av1C`, `mp4a`/`esds` (the AudioSpecificConfig), `Opus`/`dOps`, each config byte-exact), `mvex`/`trex` |
//! | `trak/ugct` | full box v0, flags 1 = frame rate, 2 = bitrate; kind u8 (0 video: width u32, height u32, [num u32, den u32]; 1 audio: sample rate u32, channels u8, samples per frame u32); [bitrate u32]; codec string (u16 length + UTF-8) |
//! | `moov/ugci` | full box v0, flags 1 = context (the track set in effect where a resumed connection starts: not an event), 2 = made for this connection (no sequence); `seq` u64 |
//! | `moof` | `mfhd` (sequence number: the low 32 bits of the frame's sequence), one `traf`: `tfhd` (track id, default-base-is-moof), `tfdt` v1 (DTS at the track's timescale; a negative DTS as two's complement), `trun` v1 with one sample (data offset, duration = DTS step since the track's previous frame, size, flags: sync = `sample_depends_on` 2, else non-sync, composition offset `pts - dts` as i32) |
//! | `traf/ugcp` | full box v0, `pts` i64; only when `pts - dts` does not fit an i32 (then the `trun` offset is 0) |
//! | `mdat` | the frame's bytes, exactly |
//! | `ugcs` | a signal, full box v0, flag 1 = made for this connection (no sequence); kind u8 (1 discontinuity, 2 end of stream), reason u8 (1 source changed, 2 reader skipped, 3 timestamp jump; unknown reasons read as 1), `seq` u64 |
//! | `free` | keepalive on an idle connection; ignored |
//!
//! Sequence numbers count the events of the sender's window (track sets,
//! frames, discontinuities, the end) and only grow. A reader widens a
//! frame's 32-bit `mfhd` number to the first value at or after the one it
//! expects. Unknown top-level boxes up to 64 KiB are skipped (later
//! versions may add some).
//!
//! # Resume and epoch
//!
//! A puller remembers the window id and the sequence after the last window
//! event it received, and asks again with both. When the window still has
//! that sequence the connection resumes there (hello flag `resumed`, a
//! context `moov`, then the next event: no gap, no duplicate); otherwise it
//! starts at the window's newest keyframe with a new track set, and the
//! puller emits exactly one [`ugc_core::MediaEvent::Discontinuity`]
//! ([`ugc_core::DiscontinuityReason::ReaderSkipped`]). The hello's epoch is
//! the sender's lease epoch; a puller refuses an epoch lower than one it has
//! seen.
//!
//! # Example: a round trip
//!
//! ```
//! use ugc_core::{Frame, MediaEvent, TrackId};
//! use ugc_proto::relay::{Hello, RelayEvent, RelayReader, RelayWriter};
//!
//! let tracks = ugc_core::hub::tests_support::av_tracks();
//! let frame = Frame { track: TrackId(1), dts: 0, pts: 40, keyframe: true, data: bytes::Bytes::from_static(b"idr") };
//! let mut w = RelayWriter::new();
//! w.hello(&Hello { epoch: 7, window: 1, start: 0, resumed: false, timeline: Some(1_700_000_000_000) })?;
//! w.event(Some(0), &MediaEvent::Tracks(tracks.clone()))?;
//! w.event(Some(1), &MediaEvent::Frame(frame.clone()))?;
//! w.event(Some(2), &MediaEvent::End)?;
//!
//! let mut r = RelayReader::default();
//! let mut events = Vec::new();
//! while let Some(chunk) = w.poll_output() {
//!     for byte in chunk.chunks(3) {   // any chunking
//!         r.handle_input(byte);
//!         while let Some(e) = r.poll_event()? {
//!             events.push(e);
//!         }
//!     }
//! }
//! r.finish()?;
//! assert!(matches!(events[0], RelayEvent::Hello(Hello { epoch: 7, .. })));
//! assert_eq!(events[1], RelayEvent::Media { seq: Some(0), event: MediaEvent::Tracks(tracks) });
//! assert_eq!(events[2], RelayEvent::Media { seq: Some(1), event: MediaEvent::Frame(frame) });
//! assert_eq!(events[3], RelayEvent::Media { seq: Some(2), event: MediaEvent::End });
//! # Ok::<(), ugc_proto::Error>(())
//! ```

mod boxes;
mod init;
mod reader;
mod window;
mod writer;

#[cfg(feature = "tokio")]
pub mod lease;
#[cfg(feature = "tokio")]
pub mod on_demand;
#[cfg(feature = "tokio")]
pub mod puller;
#[cfg(feature = "tokio")]
pub mod push;
#[cfg(feature = "tokio")]
pub mod server;

use ugc_core::{MediaEvent, Tracks};

pub use reader::{ReaderLimits, RelayReader};
pub use window::{Next, RelayWindow, Start, WindowConfig};
pub use writer::RelayWriter;

/// The version of the wire format this module writes and reads.
pub const WIRE_VERSION: u8 = 1;
/// The `ftyp` brand of a relay stream.
pub(crate) const BRAND: &[u8; 4] = b"ugcr";
pub(crate) const HELLO_RESUMED: u32 = 1;
pub(crate) const SIGNAL_SYNTHESIZED: u32 = 1;
pub(crate) const SIGNAL_DISCONTINUITY: u8 = 1;
pub(crate) const SIGNAL_END: u8 = 2;

/// What a sender says first on every connection (`ugch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello {
    /// The sender's lease epoch; a receiver refuses one lower than it saw.
    pub epoch: u64,
    /// Id of the sender's window (a new one whenever the sender starts the
    /// stream's window anew); a resume names it.
    pub window: u64,
    /// Sequence number of the first window event this connection carries.
    pub start: u64,
    /// The connection continues where the puller asked (no gap).
    pub resumed: bool,
    /// The id of the stream's timeline at the sender
    /// ([`ugc_core::Hub::timeline`]), which the receiver's stream takes
    /// ([`ugc_core::Hub::publish_on_timeline`]); absent from older senders.
    pub timeline: Option<u64>,
}

/// One unit of the relay stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayEvent {
    /// The stream header; first, once per connection.
    Hello(Hello),
    /// The track set in effect at `seq` of a resumed connection: context
    /// for the fragments that follow, not an event of the stream.
    Context {
        /// The track set.
        tracks: Tracks,
        /// Where the connection resumes.
        seq: u64,
    },
    /// An event of the stream. `seq` is its sequence in the sender's
    /// window; `None` for an event the sender made for this connection (the
    /// track set a fresh start begins with, a skip's discontinuity).
    Media {
        /// Sequence in the sender's window.
        seq: Option<u64>,
        /// The event.
        event: MediaEvent,
    },
}

#[cfg(test)]
mod tests;
