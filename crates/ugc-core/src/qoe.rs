//! Viewer experience (QoE) from players' beacons, sans IO (every call
//! takes `now`).
//!
//! A player (the watch page's, `web/assets/player.js`) posts a beacon to
//! its stream every few seconds while it plays, and a last one when it
//! stops: what happened since its previous beacon (startup time once,
//! each stall's duration, seconds played, rendition switches, errors, the
//! latency behind live). A [`QoeCollector`] adds them up per stream:
//! histograms of startup time, stall duration and latency, counters of the
//! rest, as `ugc_qoe_*` families for Prometheus. Nothing per viewer is
//! kept, except what the viewer count needs: a beacon names its play
//! session, which counts the viewer on the [`ViewerCounter`] the collector
//! feeds, if any. Beacons are plain HTTP POSTs that a CDN edge passes to
//! the origin uncached, so this count holds behind an edge where counting
//! playlist requests cannot (see `ugc_proto::origin`).
//!
//! The body is a form (`application/x-www-form-urlencoded`, which
//! `navigator.sendBeacon` sends without a CORS preflight), e.g.
//! `sid=4f1c&startup_ms=850&stalls=1200,300&played_ms=9800&switches=1&err_network=0&latency_ms=3100`;
//! see [`Beacon::parse`]. Unknown keys are ignored (newer players), wrong
//! values refuse the whole beacon so garbage cannot skew the figures.
//!
//! Anyone can post beacons, so they are bounded: each client address (an
//! IPv6 /64) has a token bucket of [`QoeConfig::per_address_rate`], all
//! clients together one of [`QoeConfig::total_rate`] (a refused beacon is
//! `429` to the client and counted); the addresses tracked and the streams
//! kept are capped; a stream's figures go when it has had no beacon for
//! [`QoeConfig::stream_idle`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::metrics::{Exposition, Kind};
use crate::name::StreamPath;
use crate::viewers::{ViewerCounter, session_id_is_valid, subscriber};

/// Largest beacon body accepted, in bytes.
pub const MAX_BEACON_BYTES: usize = 2048;
/// Stalls one beacon may report (a player reports each stall once).
pub const MAX_STALLS: usize = 32;
/// Largest duration a beacon may report for anything (startup, a stall,
/// time played since the previous beacon, latency).
pub const MAX_DURATION: Duration = Duration::from_secs(600);
/// Largest count a beacon may report (switches, errors).
pub const MAX_COUNT: u32 = 10_000;

/// Upper bounds (seconds) of the startup time histogram's buckets.
pub const STARTUP_BUCKETS: [f64; 9] = [0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0, 13.0, 20.0];
/// Upper bounds (seconds) of the stall duration histogram's buckets.
pub const STALL_BUCKETS: [f64; 9] = [0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0];
/// Upper bounds (seconds) of the latency (behind live) histogram's buckets.
pub const LATENCY_BUCKETS: [f64; 9] = [0.5, 1.0, 2.0, 3.0, 4.0, 6.0, 10.0, 20.0, 30.0];

/// What one beacon reports; see the [module](self) doc.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Beacon {
    /// The player's session id (`sid`, [`session_id_is_valid`]).
    pub session: String,
    /// Time from the start of loading to the first frame playing
    /// (`startup_ms`; in the first beacon after playback started).
    pub startup: Option<Duration>,
    /// Each stall (rebuffering) since the previous beacon (`stalls`, comma
    /// separated milliseconds).
    pub stalls: Vec<Duration>,
    /// Media time played since the previous beacon (`played_ms`).
    pub played: Duration,
    /// Rendition switches since the previous beacon (`switches`).
    pub switches: u32,
    /// Errors since the previous beacon, by type (`err_network`,
    /// `err_media`, `err_other`), fatal or not.
    pub errors: [u32; 3],
    /// Of those, the fatal ones (`fatal`: the player had to start over).
    pub fatal: u32,
    /// How far behind live the player plays (`latency_ms`).
    pub latency: Option<Duration>,
    /// The player stopped (`end=1`): the session is no viewer any more.
    pub end: bool,
}

/// The error types of [`Beacon::errors`], as the `type` label.
pub const ERROR_TYPES: [&str; 3] = ["network", "media", "other"];

/// Why a beacon was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BeaconError {
    /// Larger than [`MAX_BEACON_BYTES`].
    #[error("beacon larger than {MAX_BEACON_BYTES} bytes")]
    TooLarge,
    /// Not a form of ASCII text.
    #[error("beacon is not a form")]
    NotForm,
    /// No valid `sid`.
    #[error("beacon without a valid session id (sid)")]
    NoSession,
    /// A key given twice.
    #[error("beacon names {0} twice")]
    Repeated(&'static str),
    /// A value that is not a number in range.
    #[error("beacon value of {0} is not a number in range")]
    BadValue(&'static str),
}

impl Beacon {
    /// Parses a form body; see the [module](self) doc. Percent-encoding is
    /// not decoded: no valid value needs it.
    pub fn parse(body: &[u8]) -> Result<Beacon, BeaconError> {
        if body.len() > MAX_BEACON_BYTES {
            return Err(BeaconError::TooLarge);
        }
        let text = std::str::from_utf8(body).map_err(|_| BeaconError::NotForm)?;
        if !text.is_ascii() {
            return Err(BeaconError::NotForm);
        }
        let mut b = Beacon::default();
        let mut seen = 0u16;
        let mut once = |bit: u16, key: &'static str| {
            if seen & bit != 0 {
                return Err(BeaconError::Repeated(key));
            }
            seen |= bit;
            Ok(())
        };
        for pair in text.trim_end_matches(['\r', '\n']).split('&') {
            if pair.is_empty() {
                continue;
            }
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "sid" => {
                    once(1, "sid")?;
                    if !session_id_is_valid(value) {
                        return Err(BeaconError::NoSession);
                    }
                    b.session = value.to_owned();
                }
                "startup_ms" => {
                    once(2, "startup_ms")?;
                    b.startup = Some(millis(value, "startup_ms")?);
                }
                "stalls" => {
                    once(4, "stalls")?;
                    for ms in value.split(',').filter(|v| !v.is_empty()) {
                        if b.stalls.len() == MAX_STALLS {
                            return Err(BeaconError::BadValue("stalls"));
                        }
                        b.stalls.push(millis(ms, "stalls")?);
                    }
                }
                "played_ms" => {
                    once(8, "played_ms")?;
                    b.played = millis(value, "played_ms")?;
                }
                "switches" => {
                    once(16, "switches")?;
                    b.switches = count(value, "switches")?;
                }
                "err_network" => {
                    once(32, "err_network")?;
                    b.errors[0] = count(value, "err_network")?;
                }
                "err_media" => {
                    once(64, "err_media")?;
                    b.errors[1] = count(value, "err_media")?;
                }
                "err_other" => {
                    once(128, "err_other")?;
                    b.errors[2] = count(value, "err_other")?;
                }
                "fatal" => {
                    once(256, "fatal")?;
                    b.fatal = count(value, "fatal")?;
                }
                "latency_ms" => {
                    once(512, "latency_ms")?;
                    b.latency = Some(millis(value, "latency_ms")?);
                }
                "end" => {
                    once(1024, "end")?;
                    b.end = match value {
                        "1" | "true" => true,
                        "0" | "false" => false,
                        _ => return Err(BeaconError::BadValue("end")),
                    };
                }
                _ => {}
            }
        }
        if b.session.is_empty() {
            return Err(BeaconError::NoSession);
        }
        if b.fatal > b.errors.iter().sum::<u32>() {
            return Err(BeaconError::BadValue("fatal"));
        }
        Ok(b)
    }
}

/// A decimal number of at most 9 digits.
fn number(value: &str) -> Option<u32> {
    if value.is_empty() || value.len() > 9 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}

fn millis(value: &str, key: &'static str) -> Result<Duration, BeaconError> {
    number(value)
        .map(|ms| Duration::from_millis(u64::from(ms)))
        .filter(|d| *d <= MAX_DURATION)
        .ok_or(BeaconError::BadValue(key))
}

fn count(value: &str, key: &'static str) -> Result<u32, BeaconError> {
    number(value)
        .filter(|n| *n <= MAX_COUNT)
        .ok_or(BeaconError::BadValue(key))
}

/// How a [`QoeCollector`] takes beacons.
#[derive(Debug, Clone)]
pub struct QoeConfig {
    /// Beacons per second one client address (IPv6: /64) may post on
    /// average. A player posts one every 20 s by default, so the default
    /// 20 is about 400 players behind one address (an office, a NAT).
    pub per_address_rate: f64,
    /// Beacons one address may post at once after a quiet time.
    pub per_address_burst: f64,
    /// Beacons per second taken from all clients together (the default
    /// 5,000: 100,000 players at one beacon per 20 s).
    pub total_rate: f64,
    /// Beacons taken at once from all clients together.
    pub total_burst: f64,
    /// Client addresses whose rate is tracked at most (about 60 bytes
    /// each); past it, beacons of new addresses are refused until tracked
    /// ones have been quiet long enough to be forgotten.
    pub max_addresses: usize,
    /// Streams whose figures are kept at most (about 1 KB each).
    pub max_streams: usize,
    /// A stream without a beacon for this long drops out of the figures
    /// (its counters start over if beacons come again).
    pub stream_idle: Duration,
    /// How often a playing viewer posts a beacon. The origin tells players
    /// in its multivariant playlists ([`SESSION_DATA_ID`]); the watch
    /// page's player follows (its own default, when a playlist says
    /// nothing, is the same 20 s). The trade: how fresh the figures and
    /// the beacon viewer count are against the origin's CPU
    /// (`benches/qoe-beacons.sh`, 1,000 viewers on this project's 2-core
    /// VM: every 10 s about 1.5 % of a core, every 20 s about 0.75 %).
    /// Between [`MIN_PLAYER_INTERVAL`] and [`MAX_PLAYER_INTERVAL`].
    pub player_interval: Duration,
}

/// The `DATA-ID` of the `#EXT-X-SESSION-DATA` that carries
/// [`QoeConfig::player_interval`] in seconds (RFC 8216 4.4.6.4; hls.js
/// hands it to the player with the manifest).
pub const SESSION_DATA_ID: &str = "com.ugc.qoe-interval";
/// The shortest [`QoeConfig::player_interval`].
pub const MIN_PLAYER_INTERVAL: Duration = Duration::from_secs(5);
/// The longest [`QoeConfig::player_interval`].
pub const MAX_PLAYER_INTERVAL: Duration = Duration::from_secs(300);

impl QoeConfig {
    /// The `#EXT-X-SESSION-DATA` line (with its newline) that tells players
    /// the beacon interval.
    pub fn session_data(&self) -> String {
        format!(
            "#EXT-X-SESSION-DATA:DATA-ID=\"{SESSION_DATA_ID}\",VALUE=\"{}\"\n",
            self.player_interval.as_secs()
        )
    }

    /// How long a viewer counted from beacons stays counted without one:
    /// 30 s (`ugc_stream_viewers`' window), or one and a half beacon
    /// intervals when they are longer than 20 s, so that a viewer whose
    /// beacon is a little late is not dropped between two.
    pub fn viewer_window(&self) -> Duration {
        Duration::from_secs(30).max(self.player_interval * 3 / 2)
    }
}

impl Default for QoeConfig {
    fn default() -> Self {
        QoeConfig {
            per_address_rate: 20.0,
            per_address_burst: 60.0,
            total_rate: 5_000.0,
            total_burst: 10_000.0,
            max_addresses: 100_000,
            max_streams: 10_000,
            stream_idle: Duration::from_secs(600),
            player_interval: Duration::from_secs(20),
        }
    }
}

/// Why a beacon was refused, as counted in
/// `ugc_qoe_beacons_refused_total{reason}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Past its address's or the total rate, or too many addresses
    /// tracked (`rate`).
    Rate,
    /// Not a valid beacon (`malformed`).
    Malformed,
    /// For a stream that is not live here (`unknown_stream`).
    UnknownStream,
    /// For a stream the client may not play (`denied`).
    Denied,
    /// [`QoeConfig::max_streams`] streams kept already (`full`).
    Full,
}

impl Refusal {
    const ALL: [Refusal; 5] = [
        Refusal::Rate,
        Refusal::Malformed,
        Refusal::UnknownStream,
        Refusal::Denied,
        Refusal::Full,
    ];

    /// The `reason` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Rate => "rate",
            Refusal::Malformed => "malformed",
            Refusal::UnknownStream => "unknown_stream",
            Refusal::Denied => "denied",
            Refusal::Full => "full",
        }
    }
}

/// A token bucket.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(burst: f64, now: Instant) -> Bucket {
        Bucket {
            tokens: burst,
            at: now,
        }
    }

    /// Refills for the time since the last call, then takes one token if
    /// there is one.
    fn take(&mut self, rate: f64, burst: f64, now: Instant) -> bool {
        self.refill(rate, burst, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn refill(&mut self, rate: f64, burst: f64, now: Instant) {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + dt * rate).min(burst);
        self.at = self.at.max(now);
    }
}

/// Observations in fixed buckets.
#[derive(Debug, Clone)]
struct Histogram {
    counts: [u64; 10],
    sum: f64,
}

impl Histogram {
    fn new() -> Histogram {
        Histogram {
            counts: [0; 10],
            sum: 0.0,
        }
    }

    fn observe(&mut self, bounds: &[f64; 9], v: Duration) {
        let s = v.as_secs_f64();
        let i = bounds.iter().position(|b| s <= *b).unwrap_or(bounds.len());
        self.counts[i] += 1;
        self.sum += s;
    }
}

/// One stream's figures.
#[derive(Debug, Clone)]
struct StreamQoe {
    beacons: u64,
    startup: Histogram,
    stalls: Histogram,
    latency: Histogram,
    played: Duration,
    switches: u64,
    errors: [u64; 3],
    fatal: u64,
    last: Instant,
}

impl StreamQoe {
    fn new(now: Instant) -> StreamQoe {
        StreamQoe {
            beacons: 0,
            startup: Histogram::new(),
            stalls: Histogram::new(),
            latency: Histogram::new(),
            played: Duration::ZERO,
            switches: 0,
            errors: [0; 3],
            fatal: 0,
            last: now,
        }
    }

    fn add(&mut self, b: &Beacon, now: Instant) {
        self.beacons += 1;
        if let Some(s) = b.startup {
            self.startup.observe(&STARTUP_BUCKETS, s);
        }
        for s in &b.stalls {
            self.stalls.observe(&STALL_BUCKETS, *s);
        }
        if let Some(l) = b.latency {
            self.latency.observe(&LATENCY_BUCKETS, l);
        }
        self.played += b.played;
        self.switches += u64::from(b.switches);
        for (sum, n) in self.errors.iter_mut().zip(b.errors) {
            *sum += u64::from(n);
        }
        self.fatal += u64::from(b.fatal);
        self.last = now;
    }
}

#[derive(Debug, Default)]
struct State {
    total: Option<Bucket>,
    addresses: HashMap<(bool, [u8; 8]), Bucket>,
    /// When a full address table was last swept of quiet addresses.
    swept_at: Option<Instant>,
    streams: HashMap<StreamPath, StreamQoe>,
}

/// How often a full table (addresses, streams) is swept at most: the sweep
/// walks it under the lock, so a flood must not make every beacon pay for
/// one.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// The beacons of every stream; see the [module](self) doc.
#[derive(Debug)]
pub struct QoeCollector {
    config: QoeConfig,
    viewers: Option<Arc<ViewerCounter>>,
    state: Mutex<State>,
    refused: [AtomicU64; 5],
}

impl Default for QoeCollector {
    fn default() -> Self {
        QoeCollector::new(QoeConfig::default(), None)
    }
}

impl QoeCollector {
    /// A collector; beacons count their sessions on `viewers`, if given.
    pub fn new(config: QoeConfig, viewers: Option<Arc<ViewerCounter>>) -> QoeCollector {
        QoeCollector {
            config,
            viewers,
            state: Mutex::default(),
            refused: Default::default(),
        }
    }

    /// Its settings.
    pub fn config(&self) -> &QoeConfig {
        &self.config
    }

    /// Whether a beacon from `client` may be taken at `now` (it takes one
    /// token of the client's and of the total bucket); call it before
    /// reading the body, so a flood costs as little as possible. A `false`
    /// is counted as [`Refusal::Rate`].
    pub fn admit(&self, client: IpAddr, now: Instant) -> bool {
        let c = &self.config;
        let mut st = self.lock();
        let key = subscriber(client);
        if !st.addresses.contains_key(&key) && st.addresses.len() >= c.max_addresses {
            // Addresses whose bucket is full again lose nothing when
            // forgotten: they start full.
            let due = st
                .swept_at
                .is_none_or(|t| now.saturating_duration_since(t) >= SWEEP_EVERY);
            if due {
                st.swept_at = Some(now);
                st.addresses.retain(|_, b| {
                    b.refill(c.per_address_rate, c.per_address_burst, now);
                    b.tokens < c.per_address_burst
                });
            }
            if st.addresses.len() >= c.max_addresses {
                drop(st);
                self.refuse(Refusal::Rate);
                return false;
            }
        }
        let total = st
            .total
            .get_or_insert_with(|| Bucket::full(c.total_burst, now));
        // The total's token is taken only if the address has one too.
        total.refill(c.total_rate, c.total_burst, now);
        let ok = total.tokens >= 1.0
            && st
                .addresses
                .entry(key)
                .or_insert_with(|| Bucket::full(c.per_address_burst, now))
                .take(c.per_address_rate, c.per_address_burst, now);
        if ok && let Some(t) = st.total.as_mut() {
            t.tokens -= 1.0;
        }
        drop(st);
        if !ok {
            self.refuse(Refusal::Rate);
        }
        ok
    }

    /// Adds `beacon` to `stream`'s figures at `now` (admitted, for a
    /// stream the client may play); its viewer session is `session` (the
    /// play token of a private stream, else the beacon's own id) from
    /// `client`. `Err` when [`QoeConfig::max_streams`] are kept (counted).
    pub fn record(
        &self,
        stream: &StreamPath,
        beacon: &Beacon,
        session: &str,
        client: IpAddr,
        now: Instant,
    ) -> Result<(), Refusal> {
        let mut st = self.lock();
        if !st.streams.contains_key(stream) {
            let idle = self.config.stream_idle;
            if st.streams.len() >= self.config.max_streams {
                st.streams
                    .retain(|_, s| now.saturating_duration_since(s.last) < idle);
            }
            if st.streams.len() >= self.config.max_streams {
                drop(st);
                self.refuse(Refusal::Full);
                return Err(Refusal::Full);
            }
        }
        st.streams
            .entry(stream.clone())
            .or_insert_with(|| StreamQoe::new(now))
            .add(beacon, now);
        drop(st);
        if let Some(v) = &self.viewers {
            if beacon.end {
                v.left(stream, session);
            } else {
                v.seen(stream, session, client, now);
            }
        }
        Ok(())
    }

    /// Counts a refused beacon.
    pub fn refuse(&self, why: Refusal) {
        self.refused[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Beacons refused for `why` so far.
    pub fn refused(&self, why: Refusal) -> u64 {
        self.refused[why as usize].load(Ordering::Relaxed)
    }

    /// Streams with figures, and client addresses tracked (what the
    /// collector's memory grows with).
    pub fn sizes(&self) -> (usize, usize) {
        let st = self.lock();
        (st.streams.len(), st.addresses.len())
    }

    /// Forgets streams without a beacon for [`QoeConfig::stream_idle`] and
    /// addresses whose bucket is full again; called when scraped.
    fn sweep(&self, st: &mut State, now: Instant) {
        let c = &self.config;
        st.streams
            .retain(|_, s| now.saturating_duration_since(s.last) < c.stream_idle);
        st.addresses.retain(|_, b| {
            b.refill(c.per_address_rate, c.per_address_burst, now);
            b.tokens < c.per_address_burst
        });
    }

    /// The `ugc_qoe_*` families: by `stream`, beacons, startup, stall and
    /// latency histograms, seconds played, rendition switches, player
    /// errors by `type` and fatal errors; refused beacons by `reason`.
    pub fn write_metrics(&self, m: &mut Exposition, now: Instant) {
        let mut rows: Vec<(StreamPath, StreamQoe)> = {
            let mut st = self.lock();
            self.sweep(&mut st, now);
            st.streams
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
        rows.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
        m.family(
            "ugc_qoe_beacons_total",
            Kind::Counter,
            "Player beacons taken (one per beacon interval per playing viewer, one when it stops).",
        );
        for (name, s) in &rows {
            m.sample(&[("stream", name.as_str())], s.beacons as f64);
        }
        type Of = fn(&StreamQoe) -> &Histogram;
        let histograms: [(&str, &str, &[f64; 9], Of); 3] = [
            (
                "ugc_qoe_startup_seconds",
                "Time from a player starting to load to its first frame playing.",
                &STARTUP_BUCKETS,
                |s| &s.startup,
            ),
            (
                "ugc_qoe_stall_seconds",
                "Stalls (rebuffering) of players after startup, by duration.",
                &STALL_BUCKETS,
                |s| &s.stalls,
            ),
            (
                "ugc_qoe_latency_seconds",
                "How far behind live players play, one observation per beacon.",
                &LATENCY_BUCKETS,
                |s| &s.latency,
            ),
        ];
        for (name, help, bounds, of) in histograms {
            m.family(name, Kind::Histogram, help);
            for (stream, s) in &rows {
                let h = of(s);
                m.histogram(&[("stream", stream.as_str())], bounds, &h.counts, h.sum);
            }
        }
        m.family(
            "ugc_qoe_played_seconds_total",
            Kind::Counter,
            "Media seconds players played (the base of a stall ratio).",
        );
        for (name, s) in &rows {
            m.sample(&[("stream", name.as_str())], s.played.as_secs_f64());
        }
        m.family(
            "ugc_qoe_bitrate_switches_total",
            Kind::Counter,
            "Rendition switches of players.",
        );
        for (name, s) in &rows {
            m.sample(&[("stream", name.as_str())], s.switches as f64);
        }
        m.family(
            "ugc_qoe_player_errors_total",
            Kind::Counter,
            "Errors players reported, by type (network, media, other), fatal or not.",
        );
        for (name, s) in &rows {
            for (ty, n) in ERROR_TYPES.iter().zip(s.errors) {
                m.sample(&[("stream", name.as_str()), ("type", ty)], n as f64);
            }
        }
        m.family(
            "ugc_qoe_player_fatal_errors_total",
            Kind::Counter,
            "Errors after which a player had to start over.",
        );
        for (name, s) in &rows {
            m.sample(&[("stream", name.as_str())], s.fatal as f64);
        }
        m.family(
            "ugc_qoe_beacons_refused_total",
            Kind::Counter,
            "Player beacons refused, by reason: rate (429), malformed, unknown_stream, denied, full.",
        );
        for why in Refusal::ALL {
            m.sample(&[("reason", why.as_str())], self.refused(why) as f64);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::viewers::ViewerConfig;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn stream(n: &str) -> StreamPath {
        StreamPath::new("live", n).unwrap()
    }

    fn ip(n: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, n))
    }

    #[test]
    fn the_player_interval_goes_to_players_and_widens_the_viewer_window() {
        let c = QoeConfig::default();
        assert_eq!(
            c.session_data(),
            "#EXT-X-SESSION-DATA:DATA-ID=\"com.ugc.qoe-interval\",VALUE=\"20\"\n"
        );
        assert_eq!(c.viewer_window(), Duration::from_secs(30));
        let slow = QoeConfig {
            player_interval: Duration::from_secs(60),
            ..QoeConfig::default()
        };
        assert_eq!(slow.viewer_window(), Duration::from_secs(90));
    }

    #[test]
    fn a_full_beacon_parses() {
        let b = Beacon::parse(
            b"sid=4f1c&startup_ms=850&stalls=1200,300&played_ms=9800&switches=1&err_network=2&err_media=1&err_other=0&fatal=1&latency_ms=3100&end=0&future=x",
        )
        .unwrap();
        assert_eq!(
            b,
            Beacon {
                session: "4f1c".into(),
                startup: Some(Duration::from_millis(850)),
                stalls: vec![Duration::from_millis(1200), Duration::from_millis(300)],
                played: Duration::from_millis(9800),
                switches: 1,
                errors: [2, 1, 0],
                fatal: 1,
                latency: Some(Duration::from_millis(3100)),
                end: false,
            }
        );
        let end = Beacon::parse(b"sid=a&end=1\n").unwrap();
        assert!(end.end && end.stalls.is_empty() && end.startup.is_none());
    }

    #[test]
    fn wrong_beacons_are_refused_whole() {
        let cases: &[(&[u8], BeaconError)] = &[
            (b"", BeaconError::NoSession),
            (b"played_ms=10", BeaconError::NoSession),
            (b"sid=a b", BeaconError::NoSession),
            (b"sid=a&sid=b", BeaconError::Repeated("sid")),
            (b"sid=a&startup_ms=-1", BeaconError::BadValue("startup_ms")),
            (
                b"sid=a&startup_ms=600001",
                BeaconError::BadValue("startup_ms"),
            ),
            (b"sid=a&played_ms=1e3", BeaconError::BadValue("played_ms")),
            (b"sid=a&switches=10001", BeaconError::BadValue("switches")),
            (
                b"sid=a&err_media=99999999999",
                BeaconError::BadValue("err_media"),
            ),
            (b"sid=a&fatal=1", BeaconError::BadValue("fatal")),
            (b"sid=a&end=yes", BeaconError::BadValue("end")),
            (b"sid=a&latency_ms=", BeaconError::BadValue("latency_ms")),
            (b"sid=\xff", BeaconError::NotForm),
            ("sid=é".as_bytes(), BeaconError::NotForm),
        ];
        for (body, want) in cases {
            assert_eq!(
                Beacon::parse(body),
                Err(*want),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        let many = format!("sid=a&stalls={}", vec!["1"; MAX_STALLS + 1].join(","));
        assert_eq!(
            Beacon::parse(many.as_bytes()),
            Err(BeaconError::BadValue("stalls"))
        );
        let big = format!("sid=a&x={}", "y".repeat(MAX_BEACON_BYTES));
        assert_eq!(Beacon::parse(big.as_bytes()), Err(BeaconError::TooLarge));
    }

    #[test]
    fn beacons_add_up_per_stream_in_histograms_and_counters() {
        let q = QoeCollector::default();
        let now = Instant::now();
        let (a, b) = (stream("a"), stream("b"));
        let first = Beacon::parse(b"sid=s1&startup_ms=700&played_ms=2000&latency_ms=2500").unwrap();
        let later = Beacon::parse(
            b"sid=s1&stalls=300,5000&played_ms=10000&switches=2&err_network=3&fatal=1&latency_ms=4500",
        )
        .unwrap();
        q.record(&a, &first, "s1", ip(1), now).unwrap();
        q.record(&a, &later, "s1", ip(1), now).unwrap();
        q.record(&b, &first, "s2", ip(2), now).unwrap();
        let mut m = Exposition::new();
        q.write_metrics(&mut m, now);
        let text = m.finish();
        for line in [
            r#"ugc_qoe_beacons_total{stream="live/a"} 2"#,
            r#"ugc_qoe_beacons_total{stream="live/b"} 1"#,
            r#"ugc_qoe_startup_seconds_bucket{stream="live/a",le="0.5"} 0"#,
            r#"ugc_qoe_startup_seconds_bucket{stream="live/a",le="1"} 1"#,
            r#"ugc_qoe_startup_seconds_bucket{stream="live/a",le="+Inf"} 1"#,
            r#"ugc_qoe_startup_seconds_sum{stream="live/a"} 0.7"#,
            r#"ugc_qoe_stall_seconds_bucket{stream="live/a",le="0.25"} 0"#,
            r#"ugc_qoe_stall_seconds_bucket{stream="live/a",le="0.5"} 1"#,
            r#"ugc_qoe_stall_seconds_bucket{stream="live/a",le="8"} 2"#,
            r#"ugc_qoe_stall_seconds_count{stream="live/a"} 2"#,
            r#"ugc_qoe_stall_seconds_sum{stream="live/a"} 5.3"#,
            r#"ugc_qoe_latency_seconds_count{stream="live/a"} 2"#,
            r#"ugc_qoe_played_seconds_total{stream="live/a"} 12"#,
            r#"ugc_qoe_bitrate_switches_total{stream="live/a"} 2"#,
            r#"ugc_qoe_player_errors_total{stream="live/a",type="network"} 3"#,
            r#"ugc_qoe_player_errors_total{stream="live/a",type="media"} 0"#,
            r#"ugc_qoe_player_fatal_errors_total{stream="live/a"} 1"#,
            r#"ugc_qoe_beacons_refused_total{reason="rate"} 0"#,
            "# TYPE ugc_qoe_startup_seconds histogram",
        ] {
            assert!(text.contains(&format!("{line}\n")), "{line} in\n{text}");
        }
    }

    #[test]
    fn beacons_count_viewers_and_an_end_beacon_ends_one_at_once() {
        let viewers = Arc::new(ViewerCounter::new(ViewerConfig::default()));
        let q = QoeCollector::new(QoeConfig::default(), Some(viewers.clone()));
        let now = Instant::now();
        let s = stream("a");
        let beat = Beacon::parse(b"sid=x&played_ms=10000").unwrap();
        for session in ["x", "y", "z"] {
            q.record(&s, &beat, session, ip(1), now).unwrap();
        }
        // The same session again, later: still one viewer each.
        q.record(&s, &beat, "x", ip(1), now + Duration::from_secs(10))
            .unwrap();
        assert_eq!(viewers.count(&s, now + Duration::from_secs(10)), 3);
        let end = Beacon::parse(b"sid=x&end=1").unwrap();
        q.record(&s, &end, "y", ip(1), now + Duration::from_secs(11))
            .unwrap();
        assert_eq!(viewers.count(&s, now + Duration::from_secs(11)), 2);
        // The others drop out when their window passes without a beacon.
        assert_eq!(viewers.count(&s, now + Duration::from_secs(35)), 1);
        assert_eq!(viewers.count(&s, now + Duration::from_secs(45)), 0);
    }

    #[test]
    fn each_address_and_all_together_are_rate_limited() {
        let config = QoeConfig {
            per_address_rate: 2.0,
            per_address_burst: 4.0,
            total_rate: 10.0,
            total_burst: 10.0,
            ..QoeConfig::default()
        };
        let q = QoeCollector::new(config, None);
        let t0 = Instant::now();
        // One address: its burst, then nothing until tokens come back.
        let taken = (0..10).filter(|_| q.admit(ip(1), t0)).count();
        assert_eq!(taken, 4);
        assert!(!q.admit(ip(1), t0 + Duration::from_millis(400)));
        assert!(q.admit(ip(1), t0 + Duration::from_millis(500)));
        // Others still get theirs, until the total runs out: it was full
        // again (10), less the one just taken.
        let others = (2..20)
            .filter(|n| q.admit(ip(*n), t0 + Duration::from_millis(500)))
            .count();
        assert_eq!(others, 9);
        assert_eq!(q.refused(Refusal::Rate), 6 + 1 + 9);
        // A second later the total has 10 again.
        let later = t0 + Duration::from_millis(1500);
        assert_eq!((20..40).filter(|n| q.admit(ip(*n), later)).count(), 10);
        // One IPv6 subscriber (a /64) is one address however it varies.
        let v6 = |n: u16| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 1, n, n, n, n));
        let t2 = t0 + Duration::from_secs(10);
        assert_eq!((0..10).filter(|n| q.admit(v6(*n), t2)).count(), 4);
    }

    #[test]
    fn the_address_table_is_capped_and_quiet_addresses_make_room() {
        let config = QoeConfig {
            max_addresses: 3,
            per_address_rate: 1.0,
            per_address_burst: 2.0,
            ..QoeConfig::default()
        };
        let q = QoeCollector::new(config, None);
        let t0 = Instant::now();
        for n in 1..=3 {
            assert!(q.admit(ip(n), t0));
        }
        assert!(!q.admit(ip(4), t0), "table full of busy addresses");
        assert_eq!(q.sizes().1, 3);
        // Their buckets refill in a second (one token at 1/s): forgotten.
        assert!(q.admit(ip(4), t0 + Duration::from_secs(2)));
        assert_eq!(q.sizes().1, 1);
    }

    #[test]
    fn streams_are_capped_and_idle_ones_drop_out() {
        let config = QoeConfig {
            max_streams: 2,
            stream_idle: Duration::from_secs(60),
            ..QoeConfig::default()
        };
        let q = QoeCollector::new(config, None);
        let t0 = Instant::now();
        let b = Beacon::parse(b"sid=x").unwrap();
        q.record(&stream("a"), &b, "x", ip(1), t0).unwrap();
        q.record(&stream("b"), &b, "x", ip(1), t0).unwrap();
        assert_eq!(
            q.record(&stream("c"), &b, "x", ip(1), t0),
            Err(Refusal::Full)
        );
        assert_eq!(q.refused(Refusal::Full), 1);
        q.record(&stream("b"), &b, "x", ip(1), t0 + Duration::from_secs(30))
            .unwrap();
        // "a" has been idle a minute: room for "c".
        let t1 = t0 + Duration::from_secs(61);
        q.record(&stream("c"), &b, "x", ip(1), t1).unwrap();
        let mut m = Exposition::new();
        q.write_metrics(&mut m, t1);
        let text = m.finish();
        assert!(!text.contains("live/a"), "{text}");
        assert!(text.contains(r#"ugc_qoe_beacons_total{stream="live/b"} 2"#));
    }

    proptest! {
        /// Any bytes: an answer, never a panic; what parses is in range.
        #[test]
        fn any_body_parses_or_is_refused(body in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(b) = Beacon::parse(&body) {
                prop_assert!(session_id_is_valid(&b.session));
                prop_assert!(b.stalls.len() <= MAX_STALLS);
                prop_assert!(b.played <= MAX_DURATION);
                prop_assert!(b.fatal <= b.errors.iter().sum::<u32>());
            }
        }

        /// Forms of known keys with arbitrary numbers: in range parses,
        /// out of range is refused, never mis-read.
        #[test]
        fn numbers_parse_exactly(ms in 0u64..2_000_000, n in 0u32..20_000) {
            let body = format!("sid=p&played_ms={ms}&switches={n}");
            let r = Beacon::parse(body.as_bytes());
            if ms <= 600_000 && n <= MAX_COUNT {
                let b = r.unwrap();
                prop_assert_eq!(b.played, Duration::from_millis(ms));
                prop_assert_eq!(b.switches, n);
            } else {
                prop_assert!(r.is_err());
            }
        }

        /// Whatever the order of admits, no address gets more than its
        /// burst plus its rate over the time.
        #[test]
        fn no_address_beats_its_budget(steps in proptest::collection::vec((0u8..4, 0u64..700), 1..200)) {
            let config = QoeConfig { per_address_rate: 2.0, per_address_burst: 3.0, ..QoeConfig::default() };
            let q = QoeCollector::new(config, None);
            let t0 = Instant::now();
            let mut t = t0;
            let mut taken = [0u32; 4];
            for (who, dt) in steps {
                t += Duration::from_millis(dt);
                if q.admit(ip(who), t) {
                    taken[usize::from(who)] += 1;
                }
            }
            let budget = 3.0 + 2.0 * t.duration_since(t0).as_secs_f64();
            for n in taken {
                prop_assert!(f64::from(n) <= budget + 1e-9);
            }
        }
    }
}
