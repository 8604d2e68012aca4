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

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
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
    /// Sessions kept at most, over all streams (about 50 bytes each).
    pub max_sessions: usize,
}

impl Default for ViewerConfig {
    fn default() -> Self {
        ViewerConfig {
            window: Duration::from_secs(30),
            max_sessions: 200_000,
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
    /// Session ids handed out.
    ids: AtomicU64,
}

#[derive(Debug, Default)]
struct State {
    streams: HashMap<StreamPath, HashMap<u64, Instant>>,
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
        self.streams.retain(|_, sessions| {
            sessions.retain(|_, seen| now.saturating_duration_since(*seen) <= window);
            left += sessions.len();
            !sessions.is_empty()
        });
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
            ids: AtomicU64::new(0),
        }
    }

    /// Its settings.
    pub fn config(&self) -> &ViewerConfig {
        &self.config
    }

    /// Session `session` of `stream` played at `now`.
    pub fn seen(&self, stream: &StreamPath, session: &str, now: Instant) {
        let key = self.hasher.hash_one(session);
        let mut st = self.lock();
        if let Some(sessions) = st.streams.get_mut(stream)
            && let Some(at) = sessions.get_mut(&key)
        {
            *at = now;
            return;
        }
        if st.sessions >= self.config.max_sessions {
            let due = st
                .expired_at
                .is_none_or(|t| now.saturating_duration_since(t) >= EXPIRE_AT_CAP_EVERY);
            if due {
                st.expired_at = Some(now);
                st.expire(now, self.config.window);
            }
            if st.sessions >= self.config.max_sessions {
                self.over_cap.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        st.streams
            .entry(stream.clone())
            .or_default()
            .insert(key, now);
        st.sessions += 1;
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
                .filter(|seen| now.saturating_duration_since(**seen) <= self.config.window)
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
    /// viewers all left drops out) and
    /// `ugc_viewer_sessions_over_cap_total`.
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
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
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

    #[test]
    fn sessions_count_within_the_window_and_expire_after_it() {
        let c = ViewerCounter::default();
        let t0 = Instant::now();
        let (a, b) = (path("live/a"), path("live/b"));
        for s in ["x", "y", "z"] {
            c.seen(&a, s, t0);
        }
        c.seen(&b, "x", t0);
        // Reloads of one session are one viewer.
        for i in 1..10 {
            c.seen(&a, "x", t0 + Duration::from_secs(i));
        }
        assert_eq!(c.count(&a, t0), 3);
        assert_eq!(c.counts(t0), vec![(a.clone(), 3), (b.clone(), 1)]);
        // y and z stop; x goes on reloading.
        let later = t0 + Duration::from_secs(31);
        c.seen(&a, "x", later);
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
        });
        let t0 = Instant::now();
        let a = path("live/a");
        for i in 0..1000 {
            c.seen(&a, &format!("s{i}"), t0 + Duration::from_micros(i));
        }
        assert_eq!(c.count(&a, t0), 100);
        assert_eq!(c.over_cap.load(Ordering::Relaxed), 900);
        // The 900 refused looked for room once (the first, at 100 µs), not
        // at every request.
        assert_eq!(c.lock().expired_at, Some(t0 + Duration::from_micros(100)));
        // A session already counted keeps being counted at the cap.
        c.seen(&a, "s0", t0 + Duration::from_secs(20));
        // Once the others expire, new ones are counted again.
        let later = t0 + Duration::from_secs(40);
        c.seen(&a, "new", later);
        assert_eq!(c.count(&a, later), 2);
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
        c.seen(&path("live/a"), "x", t0);
        c.seen(&path("live/a"), "y", t0);
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
    }
}
