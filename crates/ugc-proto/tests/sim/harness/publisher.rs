//! The synthetic publisher: what an encoder produces ([`Plan`]: H.264 and
//! AAC frames as FLV tag bodies, at chosen times) and how its bytes reach
//! the server ([`Plan::send_jitter_ms`], [`Plan::burst`], [`Chunking`]).
//!
//! Tag bodies are written here byte by byte (FLV `VIDEODATA` with an AVC
//! packet, `AUDIODATA` with an AAC packet), independently of the codecs
//! crate's writers, and carried by our RTMP client core
//! ([`ugc_proto::rtmp::ClientSession`]), so the server sees the bytes an
//! encoder would send.

use bytes::{BufMut, Bytes, BytesMut};

/// A real avcC (x264, High@3.1, 1280x720, 4-byte NAL lengths).
pub const AVCC_720P: &[u8] = &[
    0x01, 0x64, 0x00, 0x1f, 0xff, 0xe1, 0x00, 0x1a, 0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40, 0x50,
    0x05, 0xbb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0xc0, 0xf1, 0x83,
    0x19, 0x60, 0x01, 0x00, 0x06, 0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0,
];
/// AudioSpecificConfig: AAC LC, 44.1 kHz, stereo.
pub const ASC_AAC_LC_44K: &[u8] = &[0x12, 0x10];
/// Samples per AAC frame.
pub const AAC_FRAME_SAMPLES: i64 = 1024;
/// The AAC sample rate of [`ASC_AAC_LC_44K`].
pub const AAC_RATE: i64 = 44_100;

/// How the bytes of one instant are cut into the server's reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunking {
    /// Everything sent at one instant in one read.
    Whole,
    /// Reads of this many bytes (the last one shorter).
    Fixed(usize),
    /// Reads of 1..=max bytes, from the plan's seed.
    Random {
        /// The longest read.
        max: usize,
    },
}

/// Which frames are keyframes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Keyframes {
    /// The first frame at or after every multiple of this many ms.
    EveryMs(i64),
    /// The first frame, and the first frame at or after each of these
    /// media times (ms): an encoder with scene cuts or forced keyframes.
    At(Vec<i64>),
}

/// What a synthetic encoder publishes, and how its bytes arrive.
///
/// Media time 0 is the moment the plan is published ([`super::Sim::publish`]);
/// a frame of media time `m` is sent at `m` (plus the send jitter, or at
/// the end of a burst), so the publisher runs in real time on the
/// simulated clock.
#[derive(Debug, Clone)]
pub struct Plan {
    /// RTMP application.
    pub app: String,
    /// Stream key (publish name).
    pub key: String,
    /// Media sent, in ms (frames with media time below it).
    pub duration_ms: i64,
    /// Frame rate `(num, den)`.
    pub fps: (i64, i64),
    /// Keyframe placement.
    pub keyframes: Keyframes,
    /// Whether an AAC track is sent (and announced in `onMetaData`).
    pub audio: bool,
    /// Bytes of a keyframe's picture data.
    pub key_bytes: usize,
    /// Bytes of another frame's picture data.
    pub frame_bytes: usize,
    /// Bytes of an AAC frame.
    pub audio_bytes: usize,
    /// RTMP timestamp of media time 0 (near `u32::MAX` to cross the wrap).
    pub rtmp_start_ts: u32,
    /// RTMP timestamps off their media time by up to +-this many ms (kept
    /// increasing per track), as encoders that round or stamp on arrival.
    pub ts_jitter_ms: i64,
    /// Each tag is sent up to this many ms late (in order).
    pub send_jitter_ms: i64,
    /// `(from, until)` media ms: tags due in between are held and sent
    /// together at `until` (a stalled network, then a burst).
    pub bursts: Vec<(i64, i64)>,
    /// How bytes are cut into reads.
    pub chunking: Chunking,
    /// Media messages with full (type 0) chunk headers, so every message
    /// carries its absolute timestamp, instead of our client's deltas.
    pub absolute_timestamps: bool,
    /// Seed of every random choice.
    pub seed: u64,
}

impl Plan {
    /// `duration_ms` of 30 fps H.264 with 2 s GOPs and AAC, to `live/<key>`.
    pub fn av(key: &str, duration_ms: i64) -> Plan {
        Plan {
            app: "live".into(),
            key: key.into(),
            duration_ms,
            fps: (30, 1),
            keyframes: Keyframes::EveryMs(2000),
            audio: true,
            key_bytes: 4000,
            frame_bytes: 800,
            audio_bytes: 120,
            rtmp_start_ts: 0,
            ts_jitter_ms: 0,
            send_jitter_ms: 0,
            bursts: Vec::new(),
            chunking: Chunking::Whole,
            absolute_timestamps: false,
            seed: 1,
        }
    }

    /// Frame rate.
    pub fn fps(mut self, num: i64, den: i64) -> Plan {
        self.fps = (num, den);
        self
    }

    /// A keyframe every `ms`.
    pub fn gop_ms(mut self, ms: i64) -> Plan {
        self.keyframes = Keyframes::EveryMs(ms);
        self
    }

    /// Keyframes at these media times (and at 0).
    pub fn keyframes_at(mut self, ms: &[i64]) -> Plan {
        self.keyframes = Keyframes::At(ms.to_vec());
        self
    }

    /// Video only.
    pub fn no_audio(mut self) -> Plan {
        self.audio = false;
        self
    }

    /// RTMP timestamp of media time 0.
    pub fn rtmp_start_ts(mut self, ts: u32) -> Plan {
        self.rtmp_start_ts = ts;
        self
    }

    /// Timestamp jitter.
    pub fn ts_jitter(mut self, ms: i64) -> Plan {
        self.ts_jitter_ms = ms;
        self
    }

    /// Send jitter.
    pub fn send_jitter(mut self, ms: i64) -> Plan {
        self.send_jitter_ms = ms;
        self
    }

    /// Holds what is due in `[from, until)` media ms and sends it at `until`.
    pub fn burst(mut self, from: i64, until: i64) -> Plan {
        self.bursts.push((from, until));
        self
    }

    /// How bytes are cut into reads.
    pub fn chunking(mut self, c: Chunking) -> Plan {
        self.chunking = c;
        self
    }

    /// Type 0 chunk headers (absolute timestamps) on every media message.
    pub fn absolute_timestamps(mut self) -> Plan {
        self.absolute_timestamps = true;
        self
    }

    /// Seed of the random choices.
    pub fn seed(mut self, seed: u64) -> Plan {
        self.seed = seed;
        self
    }

    /// Media time of video frame `i`, ms (rounded, as encoders stamp).
    pub fn frame_ms(&self, i: i64) -> i64 {
        let (num, den) = self.fps;
        (i * 1000 * den + num / 2) / num
    }

    /// The tags of this plan, in sending order.
    pub fn tags(&self) -> Vec<Tag> {
        let mut rng = Rng::new(self.seed);
        let mut tags = Vec::new();
        let mut key_times = match &self.keyframes {
            Keyframes::At(v) => {
                let mut v = v.clone();
                v.sort_unstable();
                v
            }
            Keyframes::EveryMs(_) => Vec::new(),
        }
        .into_iter()
        .peekable();
        let mut next_key = 0;
        let mut last_ts = None;
        for i in 0.. {
            let media_ms = self.frame_ms(i);
            if media_ms >= self.duration_ms {
                break;
            }
            let key = match &self.keyframes {
                Keyframes::EveryMs(g) => {
                    let key = media_ms >= next_key;
                    while next_key <= media_ms {
                        next_key += (*g).max(1);
                    }
                    key
                }
                Keyframes::At(_) => {
                    let mut key = i == 0;
                    while key_times.peek().is_some_and(|&k| k <= media_ms) {
                        key_times.next();
                        key = true;
                    }
                    key
                }
            };
            let ts = self.jittered(&mut rng, media_ms, &mut last_ts, true);
            let size = if key {
                self.key_bytes
            } else {
                self.frame_bytes
            };
            tags.push(Tag {
                at_ms: media_ms,
                media_ms,
                ts_ms: ts,
                kind: TagKind::Video { key },
                body: video_body(key, i as u32, size),
            });
        }
        if self.audio {
            let mut last_ts = None;
            for j in 0.. {
                let media_ms = (j * AAC_FRAME_SAMPLES * 1000 + AAC_RATE / 2) / AAC_RATE;
                if media_ms >= self.duration_ms {
                    break;
                }
                let ts = self.jittered(&mut rng, media_ms, &mut last_ts, false);
                tags.push(Tag {
                    at_ms: media_ms,
                    media_ms,
                    ts_ms: ts,
                    kind: TagKind::Audio,
                    body: audio_body(j as u32, self.audio_bytes),
                });
            }
        }
        // Interleaved by media time, as muxers send (audio first on a tie).
        tags.sort_by_key(|t| (t.media_ms, matches!(t.kind, TagKind::Video { .. })));
        let mut last_at = 0;
        for t in &mut tags {
            let mut at = t.media_ms;
            if self.send_jitter_ms > 0 {
                at += rng.below(self.send_jitter_ms as u64 + 1) as i64;
            }
            if let Some(&(_, until)) = self.bursts.iter().find(|(f, u)| (*f..*u).contains(&at)) {
                at = until;
            }
            // One TCP connection: in order.
            at = at.max(last_at);
            last_at = at;
            t.at_ms = at;
        }
        tags
    }

    /// The RTMP-relative timestamp of a frame of `media_ms`, jittered and
    /// kept increasing (video strictly, audio not decreasing).
    fn jittered(&self, rng: &mut Rng, media_ms: i64, last: &mut Option<i64>, strict: bool) -> i64 {
        let mut ts = media_ms;
        if self.ts_jitter_ms > 0 {
            let span = 2 * self.ts_jitter_ms as u64 + 1;
            ts += rng.below(span) as i64 - self.ts_jitter_ms;
        }
        ts = ts.max(0);
        if let Some(l) = *last {
            ts = ts.max(if strict { l + 1 } else { l });
        }
        *last = Some(ts);
        ts
    }

    /// `onMetaData` properties of this plan.
    pub fn metadata(&self) -> Vec<(String, ugc_proto::rtmp::Amf0Value)> {
        use ugc_proto::rtmp::Amf0Value::{Boolean, Number};
        let (num, den) = self.fps;
        vec![
            ("width".into(), Number(1280.0)),
            ("height".into(), Number(720.0)),
            ("framerate".into(), Number(num as f64 / den as f64)),
            ("videocodecid".into(), Number(7.0)),
            ("hasVideo".into(), Boolean(true)),
            ("hasAudio".into(), Boolean(self.audio)),
            ("audiocodecid".into(), Number(10.0)),
        ]
    }
}

/// One FLV tag of a plan.
#[derive(Debug, Clone)]
pub struct Tag {
    /// When it is sent, ms after the plan was published.
    pub at_ms: i64,
    /// Its media time (before timestamp jitter), ms.
    pub media_ms: i64,
    /// Its timestamp relative to [`Plan::rtmp_start_ts`] (jittered), ms.
    pub ts_ms: i64,
    /// What it is.
    pub kind: TagKind,
    /// The FLV tag body.
    pub body: Bytes,
}

/// What a [`Tag`] carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagKind {
    /// An H.264 access unit.
    Video {
        /// An IDR picture.
        key: bool,
    },
    /// An AAC frame.
    Audio,
}

/// FLV video tag body: AVC sequence header.
pub fn video_sequence_header() -> Bytes {
    let mut b = BytesMut::new();
    b.put_slice(&[0x17, 0x00, 0, 0, 0]);
    b.put_slice(AVCC_720P);
    b.freeze()
}

/// FLV audio tag body: AAC sequence header.
pub fn audio_sequence_header() -> Bytes {
    let mut b = BytesMut::new();
    b.put_slice(&[0xaf, 0x00]);
    b.put_slice(ASC_AAC_LC_44K);
    b.freeze()
}

/// FLV video tag body of one access unit: one NAL unit (IDR or non-IDR
/// slice) of `size` bytes, 4-byte length prefixed, composition time 0.
pub fn video_body(key: bool, n: u32, size: usize) -> Bytes {
    let size = size.max(2);
    let mut b = BytesMut::with_capacity(size + 9);
    b.put_slice(&[if key { 0x17 } else { 0x27 }, 0x01, 0, 0, 0]);
    b.put_u32(size as u32);
    b.put_u8(if key { 0x65 } else { 0x41 });
    fill(&mut b, n, size - 1);
    b.freeze()
}

/// FLV audio tag body of one raw AAC frame of `size` bytes.
pub fn audio_body(n: u32, size: usize) -> Bytes {
    let mut b = BytesMut::with_capacity(size + 2);
    b.put_slice(&[0xaf, 0x01]);
    fill(&mut b, n, size.max(1));
    b.freeze()
}

/// Payload bytes that differ from frame to frame (never a start code).
fn fill(b: &mut BytesMut, n: u32, len: usize) {
    let mut x = n.wrapping_mul(2_654_435_761) | 1;
    for _ in 0..len {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        b.put_u8((x as u8) | 0x80);
    }
}

/// splitmix64: small, seedable, good enough for test schedules.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}
