//! HLS viewer counts: the play sessions of each stream seen in the last
//! window (30 s by default), sans IO (every call takes `now`).
//!
//! A session is what identifies one player across its playlist reloads: its
//! play token (private streams), or the viewer session id an origin puts
//! into the variant URIs of the multivariant playlist it answers (public
//! streams: [`ViewerCounter::new_session_id`]; `ugc_proto::origin` uses
//! the `vs` query parameter). The counter lives here, with the Hub, so the
//! control plane's stream answers can read it as the origin fills it.
//! Players reload their media playlist every part or target duration, so a
//! session seen within the window is a player still playing.
//!
//! Nothing per viewer is kept beyond the window, and nothing of what a
//! client sent: sessions are kept as 64-bit keyed hashes (SipHash with this
//! process's random keys), so a client cannot choose colliding ids, and a
//! session string costs 8 bytes however long it was. At most
//! [`ViewerConfig::max_sessions`] are kept over all streams; past it new
//! sessions are not counted (and counted as such) until old ones expire.
//!
//! Session ids are not secrets a client must be given: anyone can send
//! made-up ones. So that one client cannot make a stream look popular,
//! each client address (an IPv6 client's /64, what one subscriber
//! gets) counts at most [`ViewerConfig::max_sessions_per_address`]
//! sessions per stream; more are not counted (and counted as such). The
//! trade: viewers behind one address (an office, carrier-grade NAT) are
//! counted up to that many.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::metrics::{Exposition, Kind};
use crate::name::StreamPath;

/// How a [`ViewerCounter`] counts.
#[derive(Debug, Clone)]
pub struct ViewerConfig {
    /// A session not seen for this long has stopped watching.
    pub window: Duration,
    /// Sessions kept at most, over all streams (about 70 bytes each).
    pub max_sessions: usize,
    /// Sessions counted at most per stream and client address (IPv6: per
    /// /64). Default 200: an office's viewers of one event are counted,
    /// one client inventing session ids adds at most 200.
    pub max_sessions_per_address: usize,
}

impl Default for ViewerConfig {
    fn default() -> Self {
        ViewerConfig {
            window: Duration::from_secs(30),
            max_sessions: 200_000,
            max_sessions_per_address: 200,
        }
    }
}

/// The viewer sessions of every stream; see the [module](self) doc.
#[derive(Debug)]
pub struct ViewerCounter {
    config: ViewerConfig,
    hasher: RandomState,
    state: Mutex<State>,
    /// Sessions not counted because [`ViewerConfig::max_sessions`] were
    /// kept.
    over_cap: AtomicU64,
    /// Sessions not counted because their address had
    /// [`ViewerConfig::max_sessions_per_address`] on the stream.
    over_address: AtomicU64,
    /// Session ids handed out.
    ids: AtomicU64,
}

#[derive(Debug, Default)]
struct State {
    /// Per stream, per session key: last seen, and the key of its stream
    /// and address in `per_address`.
    streams: HashMap<StreamPath, HashMap<u64, (Instant, u64)>>,
    /// Sessions counted per (stream, address) key.
    per_address: HashMap<u64, usize>,
    sessions: usize,
    /// When a full counter last looked for expired sessions.
    expired_at: Option<Instant>,
}

/// How often a full counter looks for expired sessions: the scan walks
/// every session under the lock, so a client sending new ids as fast as
/// it can must not make every playlist request pay for one.
const EXPIRE_AT_CAP_EVERY: Duration = Duration::from_secs(1);

impl State {
    /// Forgets sessions last seen before `now - window`, and streams left
    /// without any.
    fn expire(&mut self, now: Instant, window: Duration) {
        let mut left = 0;
        let per_address = &mut self.per_address;
        self.streams.retain(|_, sessions| {
            sessions.retain(|_, (seen, address)| {
                let keep = now.saturating_duration_since(*seen) <= window;
                if !keep && let Some(n) = per_address.get_mut(address) {
                    *n = n.saturating_sub(1);
                }
                keep
            });
            left += sessions.len();
            !sessions.is_empty()
        });
        per_address.retain(|_, n| *n > 0);
        self.sessions = left;
    }
}

impl Default for ViewerCounter {
    fn default() -> Self {
        ViewerCounter::new(ViewerConfig::default())
    }
}

impl ViewerCounter {
    /// An empty counter.
    pub fn new(config: ViewerConfig) -> ViewerCounter {
        ViewerCounter {
            config,
            hasher: RandomState::new(),
            state: Mutex::default(),
            over_cap: AtomicU64::new(0),
            over_address: AtomicU64::new(0),
            ids: AtomicU64::new(0),
        }
    }

    /// Its settings.
    pub fn config(&self) -> &ViewerConfig {
        &self.config
    }

    /// Session `session` of `stream`, from client address `client`,
    /// played at `now`.
    pub fn seen(&self, stream: &StreamPath, session: &str, client: IpAddr, now: Instant) {
        let key = self.hasher.hash_one(session);
        let mut st = self.lock();
        if let Some(sessions) = st.streams.get_mut(stream)
            && let Some((at, _)) = sessions.get_mut(&key)
        {
            *at = now;
            return;
        }
        let address = self.hasher.hash_one((stream.as_str(), subscriber(client)));
        let full = |st: &State| {
            st.per_address.get(&address).copied().unwrap_or(0)
                >= self.config.max_sessions_per_address
        };
        if full(&st) {
            // Its old sessions may have expired (at most once a second,
            // as at the cap).
            self.expire_if_due(&mut st, now);
            if full(&st) {
                self.over_address.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        if st.sessions >= self.config.max_sessions {
            self.expire_if_due(&mut st, now);
            if st.sessions >= self.config.max_sessions {
                self.over_cap.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        st.streams
            .entry(stream.clone())
            .or_default()
            .insert(key, (now, address));
        *st.per_address.entry(address).or_default() += 1;
        st.sessions += 1;
    }

    /// Session `session` of `stream` stopped playing (its player said
    /// so): not counted any more, before its window would have run out.
    pub fn left(&self, stream: &StreamPath, session: &str) {
        let key = self.hasher.hash_one(session);
        let mut st = self.lock();
        let Some(sessions) = st.streams.get_mut(stream) else {
            return;
        };
        let Some((_, address)) = sessions.remove(&key) else {
            return;
        };
        if sessions.is_empty() {
            st.streams.remove(stream);
        }
        if let Some(n) = st.per_address.get_mut(&address) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                st.per_address.remove(&address);
            }
        }
        st.sessions = st.sessions.saturating_sub(1);
    }

    /// Viewers of each stream with any at `now`, by name.
    pub fn counts(&self, now: Instant) -> Vec<(StreamPath, usize)> {
        let mut st = self.lock();
        st.expire(now, self.config.window);
        let mut out: Vec<(StreamPath, usize)> = st
            .streams
            .iter()
            .map(|(name, sessions)| (name.clone(), sessions.len()))
            .collect();
        out.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
        out
    }

    /// Viewers of `stream` at `now`.
    pub fn count(&self, stream: &StreamPath, now: Instant) -> usize {
        let st = self.lock();
        st.streams.get(stream).map_or(0, |sessions| {
            sessions
                .values()
                .filter(|(seen, _)| now.saturating_duration_since(*seen) <= self.config.window)
                .count()
        })
    }

    /// A new viewer session id: 16 hexadecimal digits, the keyed hash of a
    /// sequence number, so ids differ from one another and from another
    /// process's (it is no secret: it only counts; no clock is read).
    pub fn new_session_id(&self) -> String {
        let n = self.ids.fetch_add(1, Ordering::Relaxed);
        format!("{:016x}", self.hasher.hash_one(n))
    }

    /// `ugc_stream_viewers{stream}` (streams with viewers; a stream whose
    /// viewers all left drops out),
    /// `ugc_viewer_sessions_over_cap_total` and
    /// `ugc_viewer_sessions_over_address_budget_total`.
    pub fn write_metrics(&self, m: &mut Exposition, now: Instant) {
        m.family(
            "ugc_stream_viewers",
            Kind::Gauge,
            "HLS play sessions of the stream seen in the last window (30 s by default).",
        );
        for (name, n) in self.counts(now) {
            m.sample(&[("stream", name.as_str())], n as f64);
        }
        m.family(
            "ugc_viewer_sessions_over_cap_total",
            Kind::Counter,
            "New viewer sessions not counted because the counter was full.",
        );
        m.sample(&[], self.over_cap.load(Ordering::Relaxed) as f64);
        m.family(
            "ugc_viewer_sessions_over_address_budget_total",
            Kind::Counter,
            "New viewer sessions not counted because their client address had its budget of sessions on the stream.",
        );
        m.sample(&[], self.over_address.load(Ordering::Relaxed) as f64);
    }

    /// Forgets expired sessions, unless that was done less than
    /// [`EXPIRE_AT_CAP_EVERY`] ago: the scan walks every session under the
    /// lock.
    fn expire_if_due(&self, st: &mut State, now: Instant) {
        let due = st
            .expired_at
            .is_none_or(|t| now.saturating_duration_since(t) >= EXPIRE_AT_CAP_EVERY);
        if due {
            st.expired_at = Some(now);
            st.expire(now, self.config.window);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Where a node counts viewers from (`--viewer-count` of the binaries).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CountFrom {
    /// Media playlist requests (a session id in the variant URIs of each
    /// multivariant playlist) and players' QoE beacons, into one count
    /// (`on`): for an origin that viewers reach directly.
    PlaylistsAndBeacons,
    /// Players' QoE beacons only (`beacons`): behind a CDN edge, whose
    /// cache per-viewer playlist URLs would split; players that send no
    /// beacons (not the watch page's) are not counted.
    Beacons,
    /// No count (`off`).
    Off,
}

impl std::str::FromStr for CountFrom {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "on" => Ok(CountFrom::PlaylistsAndBeacons),
            "beacons" => Ok(CountFrom::Beacons),
            "off" => Ok(CountFrom::Off),
            other => Err(format!(
                "viewer count must be \"on\", \"beacons\" or \"off\", not {other:?}"
            )),
        }
    }
}

impl CountFrom {
    /// The counter (unless [`Off`](Self::Off)), and whether the origin
    /// counts playlist requests on it too.
    pub fn counter(self, config: ViewerConfig) -> (Option<std::sync::Arc<ViewerCounter>>, bool) {
        match self {
            CountFrom::Off => (None, false),
            mode => (
                Some(std::sync::Arc::new(ViewerCounter::new(config))),
                mode == CountFrom::PlaylistsAndBeacons,
            ),
        }
    }
}

/// One subscriber's addresses, as a key: an IPv4 address, an IPv6 /64
/// (what one subscriber gets).
pub fn subscriber(client: IpAddr) -> (bool, [u8; 8]) {
    match client {
        IpAddr::V4(a) => (false, u64::from(u32::from(a)).to_be_bytes()),
        IpAddr::V6(a) => {
            let o = a.octets();
            (true, [o[0], o[1], o[2], o[3], o[4], o[5], o[6], o[7]])
        }
    }
}

/// Whether `id` may be a viewer session id in a URL and a count: 1 to 64
/// ASCII letters and digits (ids of [`ViewerCounter::new_session_id`] are
/// 16 hexadecimal digits; a player may keep another form).
pub fn session_id_is_valid(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(s: &str) -> StreamPath {
        StreamPath::parse(s).unwrap()
    }

    /// A distinct client address per session name, so the per-address
    /// budget does not apply.
    fn ip(session: &str) -> IpAddr {
        let h = std::hash::BuildHasherDefault::<std::hash::DefaultHasher>::default()
            .hash_one(session) as u32;
        IpAddr::V4(std::net::Ipv4Addr::from(h))
    }

    #[test]
    fn sessions_count_within_the_window_and_expire_after_it() {
        let c = ViewerCounter::default();
        let t0 = Instant::now();
        let (a, b) = (path("live/a"), path("live/b"));
        for s in ["x", "y", "z"] {
            c.seen(&a, s, ip(s), t0);
        }
        c.seen(&b, "x", ip("x"), t0);
        // Reloads of one session are one viewer.
        for i in 1..10 {
            c.seen(&a, "x", ip("x"), t0 + Duration::from_secs(i));
        }
        assert_eq!(c.count(&a, t0), 3);
        assert_eq!(c.counts(t0), vec![(a.clone(), 3), (b.clone(), 1)]);
        // y and z stop; x goes on reloading.
        let later = t0 + Duration::from_secs(31);
        c.seen(&a, "x", ip("x"), later);
        assert_eq!(c.counts(later), vec![(a.clone(), 1)]);
        assert_eq!(c.count(&b, later), 0);
        // Everyone gone: nothing is kept.
        let gone = later + Duration::from_secs(31);
        assert!(c.counts(gone).is_empty());
        assert_eq!(c.lock().sessions, 0);
    }

    #[test]
    fn the_cap_bounds_what_is_kept_and_expired_room_is_reused() {
        let c = ViewerCounter::new(ViewerConfig {
            window: Duration::from_secs(30),
            max_sessions: 100,
            ..ViewerConfig::default()
        });
        let t0 = Instant::now();
        let a = path("live/a");
        for i in 0..1000 {
            c.seen(
                &a,
                &format!("s{i}"),
                ip(&format!("s{i}")),
                t0 + Duration::from_micros(i),
            );
        }
        assert_eq!(c.count(&a, t0), 100);
        assert_eq!(c.over_cap.load(Ordering::Relaxed), 900);
        // The 900 refused looked for room once (the first, at 100 µs), not
        // at every request.
        assert_eq!(c.lock().expired_at, Some(t0 + Duration::from_micros(100)));
        // A session already counted keeps being counted at the cap.
        c.seen(&a, "s0", ip("s0"), t0 + Duration::from_secs(20));
        // Once the others expire, new ones are counted again.
        let later = t0 + Duration::from_secs(40);
        c.seen(&a, "new", ip("new"), later);
        assert_eq!(c.count(&a, later), 2);
    }

    /// One client inventing session ids counts at most its budget per
    /// stream; other clients (another IPv4 address, another /64) are
    /// counted, the same /64 is one client; expired sessions give the
    /// budget back.
    #[test]
    fn one_address_counts_at_most_its_budget_per_stream() {
        let c = ViewerCounter::new(ViewerConfig {
            max_sessions_per_address: 5,
            ..ViewerConfig::default()
        });
        let t0 = Instant::now();
        let (a, b) = (path("live/a"), path("live/b"));
        let bot: IpAddr = "203.0.113.7".parse().unwrap();
        for i in 0..50 {
            c.seen(&a, &format!("fake{i}"), bot, t0);
        }
        assert_eq!(c.count(&a, t0), 5);
        assert_eq!(c.over_address.load(Ordering::Relaxed), 45);
        // Its budget is per stream, and others have their own.
        for i in 0..3 {
            c.seen(&b, &format!("fake{i}"), bot, t0);
        }
        c.seen(&a, "neighbour", "203.0.113.8".parse().unwrap(), t0);
        assert_eq!((c.count(&a, t0), c.count(&b, t0)), (6, 3));
        // IPv6: one /64 is one subscriber; the next /64 is another.
        for i in 0..10u16 {
            let addr = IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, i));
            c.seen(&a, &format!("v6-{i}"), addr, t0);
        }
        c.seen(&a, "next64", "2001:db8:0:2::1".parse().unwrap(), t0);
        assert_eq!(c.count(&a, t0), 6 + 5 + 1);
        // The bot's sessions expire: its budget is back.
        let later = t0 + Duration::from_secs(31);
        c.seen(&a, "again", bot, later);
        assert_eq!(c.count(&a, later), 1);
        assert!(c.lock().per_address.len() <= 1, "nothing kept for the gone");
    }

    #[test]
    fn session_ids_are_distinct_and_valid() {
        let c = ViewerCounter::default();
        let ids: std::collections::HashSet<String> =
            (0..1000).map(|_| c.new_session_id()).collect();
        assert_eq!(ids.len(), 1000);
        assert!(
            ids.iter()
                .all(|id| session_id_is_valid(id) && id.len() == 16)
        );
        assert!(!session_id_is_valid(""));
        assert!(!session_id_is_valid("a-b"));
        assert!(!session_id_is_valid(&"a".repeat(65)));
    }

    #[test]
    fn the_metrics_name_each_stream_with_viewers() {
        let c = ViewerCounter::default();
        let t0 = Instant::now();
        c.seen(&path("live/a"), "x", ip("x"), t0);
        c.seen(&path("live/a"), "y", ip("y"), t0);
        let mut m = Exposition::new();
        c.write_metrics(&mut m, t0);
        let text = m.finish();
        assert!(
            text.contains("ugc_stream_viewers{stream=\"live/a\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("ugc_viewer_sessions_over_cap_total 0\n"),
            "{text}"
        );
        assert!(
            text.contains("ugc_viewer_sessions_over_address_budget_total 0\n"),
            "{text}"
        );
    }
}
