//! The paced ingest runtime: RTMP ingest and packaging on a thread of their
//! own whose passes over the sockets begin at least a tick apart, so that
//! under load the thread wakes once per tick for every stream instead of
//! once per RTMP chunk (the mechanism behind the server's CPU figures; see
//! the README). [`rtmp::server::ReadBatcher`](crate::rtmp::server::ReadBatcher)
//! is its per-connection counterpart.
//!
//! ```no_run
//! # fn main() -> ugc_proto::Result<()> {
//! use std::time::Duration;
//! let hub = ugc_core::Hub::new(ugc_core::HubConfig::default());
//! let ingest = ugc_proto::pacing::paced_runtime(
//!     Some(Duration::from_millis(10)),
//!     Some((Duration::from_millis(40), hub.clone())),
//! )?;
//! // ingest.spawn(ugc_proto::rtmp::server::serve(listener, hub, auth, config));
//! # let _ = ingest;
//! # Ok(())
//! # }
//! ```

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ugc_core::Hub;

/// The runtime for RTMP ingest and packaging. Without a tick it is the
/// current one, which wakes for every socket event: one wakeup, `recv` and
/// ACK per RTMP message or chunk (~75 per second for a 1.5 Mbps stream),
/// which was most of the server's CPU per stream. With a tick it is a
/// current-thread runtime on its own OS thread (`ugc-ingest`, running until
/// the process exits) whose passes over the tasks are paced by `Pacer`:
/// events that arrive within a tick are taken together at its end. Under
/// load that is one wakeup per tick for all streams, bigger reads and fewer
/// ACKs, for at most a tick of added ingest latency (LL-HLS parts are
/// 200 ms); a quiet server wakes only for its events, never on a timer.
///
/// `relaxed`: a longer tick for while no stream of the hub is wanted at low
/// latency ([`Hub::low_latency_wanted`]), the RTMP read batching interval.
/// Batching connections then read once per interval anyway, and the longer
/// tick also absorbs the wakeups their unread sockets would cause (the
/// sender's TCP sends on its own delayed-ACK timer).
///
/// Without a tick it must be called inside a tokio runtime. Fails when the
/// runtime or its thread cannot be created ([`crate::Error::Io`]).
pub fn paced_runtime(
    tick: Option<Duration>,
    relaxed: Option<(Duration, Hub)>,
) -> crate::Result<tokio::runtime::Handle> {
    let Some(fast) = tick else {
        return Ok(tokio::runtime::Handle::current());
    };
    let tick_now = Arc::new(move |now: Instant| tick_at(fast, relaxed.as_ref(), now));
    let pacer = Arc::new(Mutex::new(Pacer::default()));
    let (on_park, on_unpark) = (pacer.clone(), pacer);
    let (park_tick, unpark_tick) = (tick_now.clone(), tick_now);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .on_thread_park(move || {
            let now = Instant::now();
            let pause = on_park
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .park(now, park_tick(now));
            pause_thread(pause);
        })
        .on_thread_unpark(move || {
            let now = Instant::now();
            let pause = on_unpark
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .unpark(now, unpark_tick(now));
            pause_thread(pause);
        })
        .build()?;
    let handle = rt.handle().clone();
    std::thread::Builder::new()
        .name("ugc-ingest".into())
        .spawn(move || rt.block_on(std::future::pending::<()>()))?;
    Ok(handle)
}

/// The paced runtime's tick at `now`: `fast`, or the relaxed one while no
/// stream of its hub is wanted at low latency.
fn tick_at(fast: Duration, relaxed: Option<&(Duration, Hub)>, now: Instant) -> Duration {
    match relaxed {
        Some((slow, hub)) if !hub.low_latency_wanted(now) => fast.max(*slow),
        _ => fast,
    }
}

/// Blocks the paced runtime's only thread on purpose: events queue up in
/// the kernel meanwhile.
fn pause_thread(pause: Option<Duration>) {
    if let Some(pause) = pause {
        std::thread::sleep(pause);
    }
}

/// When the paced runtime's thread may run again (see [`paced_runtime`]).
///
/// Ticks: a tick begins with a pass over the tasks that follows a real wait.
/// Within it the thread may wait for I/O once more without sleeping, so
/// that events already queued by the first pass (on loopback, the data a
/// publisher's kernel sends as soon as our reads ACK what it held back)
/// are taken in the same tick. The next wait comes after a sleep to the end
/// of the tick: events that arrive meanwhile are queued when the thread
/// asks for them, and the wait returns without blocking. Under load that is
/// one context switch per tick (the sleep's) instead of two (the wait's,
/// then a sleep after it).
#[derive(Debug, Default)]
struct Pacer {
    /// When the current tick began.
    tick_start: Option<Instant>,
    /// The current tick's wait without a sleep has been used.
    continued: bool,
    /// When the current wait began, and whether a sleep to the end of a
    /// tick came before it.
    wait: Option<(Instant, bool)>,
}

/// A wait shorter than this found events already queued: the thread did
/// not block.
const IMMEDIATE_WAKE: Duration = Duration::from_micros(200);

impl Pacer {
    /// The pause before the thread, at `now`, waits for I/O.
    fn park(&mut self, now: Instant, tick: Duration) -> Option<Duration> {
        let end = self
            .tick_start
            .map(|start| start + tick)
            .filter(|&end| end > now);
        match end {
            Some(end) if self.continued => {
                self.wait = Some((end, true));
                Some(end - now)
            }
            _ => {
                self.continued = true;
                self.wait = Some((now, false));
                None
            }
        }
    }

    /// The pause before the tasks run, after a wait that ended at `now`.
    fn unpark(&mut self, now: Instant, tick: Duration) -> Option<Duration> {
        let (began, after_sleep) = self.wait.take()?;
        if !after_sleep && now.saturating_duration_since(began) < IMMEDIATE_WAKE {
            // Events were already queued: the pass continues the tick.
            return None;
        }
        // A new tick: the sleep ended the last one, or the wait blocked
        // until an event came, which waits for the last tick to end.
        let pause = if after_sleep {
            None
        } else {
            self.tick_start
                .map(|start| (start + tick).saturating_duration_since(now))
                .filter(|p| !p.is_zero())
        };
        self.tick_start = Some(now + pause.unwrap_or_default());
        self.continued = false;
        pause
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tick_relaxes_while_no_stream_is_wanted_at_low_latency() {
        use ugc_core::HubConfig;
        let (fast, slow) = (Duration::from_millis(10), Duration::from_millis(40));
        let hub = Hub::new(HubConfig::default());
        let a = ugc_core::StreamPath::live("a").unwrap();
        let _p = hub.publish(&a);
        let now = Instant::now();
        assert_eq!(tick_at(fast, None, now), fast);
        let relaxed = (slow, hub.clone());
        assert_eq!(tick_at(fast, Some(&relaxed), now), slow);
        // Never faster than the tick itself.
        assert_eq!(
            tick_at(fast, Some(&(Duration::from_millis(5), hub.clone())), now),
            fast
        );
        hub.want_low_latency(&a, now + Duration::from_secs(10));
        assert_eq!(tick_at(fast, Some(&relaxed), now), fast);
        assert_eq!(
            tick_at(fast, Some(&relaxed), now + Duration::from_secs(11)),
            slow
        );
    }

    const TICK: Duration = Duration::from_millis(10);
    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn passes_are_paced_by_ticks_and_a_quiet_server_never_waits() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut p = Pacer::default();
        // Idle: the thread waits at once, and the first event runs at once.
        assert_eq!(p.park(t0, TICK), None);
        assert_eq!(p.unpark(ms(5), TICK), None);
        // Under load. The tick's first pass ends at 6 ms; the thread waits
        // without a sleep and finds events queued: the same tick goes on.
        assert_eq!(p.park(ms(6), TICK), None);
        assert_eq!(p.unpark(ms(6), TICK), None);
        // That pass ends at 7 ms: sleep to the tick's end (15 ms), then
        // the wait returns what came meanwhile, a new tick.
        assert_eq!(p.park(ms(7), TICK), Some(8 * MS));
        assert_eq!(p.unpark(ms(15), TICK), None);
        assert_eq!(p.park(ms(16), TICK), None);
        assert_eq!(p.unpark(ms(16), TICK), None);
        assert_eq!(p.park(ms(17), TICK), Some(8 * MS));
        // Light load: after the sleep nothing is queued, the wait blocks
        // until an event at 30 ms, which runs at once (a new tick).
        assert_eq!(p.unpark(ms(30), TICK), None);
        // Its wait without a sleep blocks too; an event 2 ms later waits
        // for the tick to end (40 ms).
        assert_eq!(p.park(ms(31), TICK), None);
        assert_eq!(p.unpark(ms(32), TICK), Some(8 * MS));
        // A pass longer than a tick waits at once; a long quiet spell
        // wakes at once.
        assert_eq!(p.park(ms(55), TICK), None);
        assert_eq!(p.unpark(ms(5000), TICK), None);
    }
}
