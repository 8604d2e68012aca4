//! SRT ingest wiring: the UDP listener, the passphrase lookup from the
//! control plane (config overrides as fallback).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Deserialize;
use ugc_auth::{ControlAuthorizer, ControlPlane};
use ugc_core::Hub;
use ugc_proto::srt::server::{PassphraseLookup, SrtServerConfig, SrtStatsRegistry};

use crate::config::Config;

/// `[streams.<name>]` in the config file: per-stream settings that apply
/// when the control plane has none for that field.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamOverrides {
    /// SRT passphrase (10..=79 characters).
    pub srt_passphrase: Option<String>,
    /// Restream targets (`rtmp://` / `rtmps://` URLs with the key).
    #[serde(default)]
    pub restream: Vec<String>,
}

/// `live/<name>` -> `<name>`.
pub fn stream_name(hub_stream: &str) -> Option<&str> {
    hub_stream
        .strip_prefix("live/")
        .filter(|n| !n.contains('/'))
}

/// The passphrase of a Hub stream: the control plane's, else the config's.
pub fn passphrase_lookup(
    control: ControlPlane,
    overrides: BTreeMap<String, StreamOverrides>,
) -> PassphraseLookup {
    Arc::new(move |stream: &str| {
        let name = stream_name(stream)?;
        control
            .settings(name)
            .and_then(|s| s.srt_passphrase)
            .or_else(|| overrides.get(name).and_then(|o| o.srt_passphrase.clone()))
    })
}

/// Binds the SRT port; the returned future serves it.
pub async fn bind_srt(
    config: &Config,
    hub: Hub,
    auth: Arc<ControlAuthorizer>,
    control: ControlPlane,
    stats: SrtStatsRegistry,
) -> anyhow::Result<(
    std::net::SocketAddr,
    impl std::future::Future<Output = std::io::Result<()>> + use<>,
)> {
    let socket = tokio::net::UdpSocket::bind(config.srt)
        .await
        .with_context(|| format!("binding SRT on {}", config.srt))?;
    let addr = socket.local_addr()?;
    let mut c = SrtServerConfig::default();
    c.listener.latency = Duration::from_millis(config.srt_latency_ms);
    let lookup = passphrase_lookup(control, config.streams.clone());
    Ok((
        addr,
        ugc_proto::srt::server::serve(socket, hub, auth, lookup, c, stats),
    ))
}

/// The runtime for RTMP ingest and packaging. Without a tick it is the
/// current one, which wakes for every socket event: one wakeup, `recv` and
/// ACK per RTMP message or chunk (~75 per second for a 1.5 Mbps stream),
/// which was most of the server's CPU per stream. With a tick it is a
/// current-thread runtime on its own OS thread whose wakeups are at least a
/// tick apart: when a wait for I/O ends less than a tick after the previous
/// one did, the thread sleeps out the rest of the tick before it runs the
/// tasks, and the events that arrive meanwhile are taken in the same pass.
/// Under load that is one wakeup per tick for all streams, bigger reads and
/// fewer ACKs, for at most a tick of added ingest latency (LL-HLS parts are
/// 200 ms); a quiet server wakes only for its events, never on a timer.
pub fn paced_runtime(tick: Option<Duration>) -> anyhow::Result<tokio::runtime::Handle> {
    let Some(tick) = tick else {
        return Ok(tokio::runtime::Handle::current());
    };
    let pacer = Arc::new(Mutex::new(Pacer::default()));
    let (on_park, on_unpark) = (pacer.clone(), pacer);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .on_thread_park(move || {
            on_park
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .park(Instant::now());
        })
        .on_thread_unpark(move || {
            let pause = on_unpark
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .unpark(Instant::now(), tick);
            if let Some(pause) = pause {
                // Blocking this runtime's only thread on purpose: events
                // queue up in the kernel meanwhile.
                std::thread::sleep(pause);
            }
        })
        .build()?;
    let handle = rt.handle().clone();
    std::thread::Builder::new()
        .name("ugc-ingest".into())
        .spawn(move || rt.block_on(std::future::pending::<()>()))?;
    Ok(handle)
}

/// When the paced runtime's thread may run again (see [`paced_runtime`]).
#[derive(Debug, Default)]
struct Pacer {
    /// When the thread went to wait for I/O.
    parked: Option<Instant>,
    /// When a pass that followed a real wait began.
    last_pass: Option<Instant>,
}

/// A wait shorter than this found events already queued: the thread did
/// not sleep, so the pass continues the current one.
const IMMEDIATE_WAKE: Duration = Duration::from_micros(200);

impl Pacer {
    /// The thread goes to wait for I/O at `now`.
    fn park(&mut self, now: Instant) {
        self.parked = Some(now);
    }

    /// The pause before the tasks run, after a wait that ended at `now`.
    fn unpark(&mut self, now: Instant, tick: Duration) -> Option<Duration> {
        let waited = self.parked.take().map(|p| now.saturating_duration_since(p));
        if waited.is_some_and(|w| w < IMMEDIATE_WAKE) {
            return None;
        }
        let pause = self
            .last_pass
            .map(|last| (last + tick).saturating_duration_since(now))
            .filter(|p| !p.is_zero());
        self.last_pass = Some(now + pause.unwrap_or_default());
        pause
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TICK: Duration = Duration::from_millis(10);

    fn wake(p: &mut Pacer, parked: Instant, now: Instant) -> Option<Duration> {
        p.park(parked);
        p.unpark(now, TICK)
    }

    #[test]
    fn wakeups_are_at_least_a_tick_apart_and_a_quiet_server_never_waits() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut p = Pacer::default();
        // The first event runs at once.
        assert_eq!(wake(&mut p, t0, ms(5)), None);
        // The next one, 2 ms later, waits for the tick to end (at 15 ms).
        assert_eq!(wake(&mut p, ms(6), ms(7)), Some(Duration::from_millis(8)));
        // Events already queued after that pass (a wait of ~0) continue it.
        assert_eq!(wake(&mut p, ms(16), ms(16)), None);
        // An event 1 ms after the tick runs at once: no timer, no extra wait.
        assert_eq!(wake(&mut p, ms(17), ms(26)), None);
        // A long quiet spell: at once again.
        assert_eq!(wake(&mut p, ms(27), ms(5000)), None);
        assert_eq!(
            wake(&mut p, ms(5001), ms(5003)),
            Some(Duration::from_millis(7))
        );
    }
}
