//! SRT ingest wiring: the UDP listener, the passphrase lookup from the
//! control plane (config overrides as fallback).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

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
/// current-thread runtime on its own OS thread that, while any stream
/// exists, sleeps a tick and then collects every I/O event that arrived
/// meanwhile in one non-blocking poll: one wakeup per tick for all streams,
/// bigger reads, fewer ACKs, at most a tick of added ingest latency (LL-HLS
/// parts are 200 ms). With no stream it waits on events as usual.
pub fn paced_runtime(tick: Option<Duration>, hub: Hub) -> anyhow::Result<tokio::runtime::Handle> {
    let Some(tick) = tick else {
        return Ok(tokio::runtime::Handle::current());
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let handle = rt.handle().clone();
    std::thread::Builder::new()
        .name("ugc-ingest".into())
        .spawn(move || {
            rt.block_on(async move {
                loop {
                    if hub.is_empty() {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                    // Blocking this runtime's only thread on purpose: events
                    // queue up in the kernel meanwhile.
                    std::thread::sleep(tick);
                    // A yielded task resumes after the tasks already queued
                    // and a non-blocking poll of the I/O driver: the first
                    // yield runs the connections with data, the next ones the
                    // packagers they woke (and the hops after), before the
                    // thread sleeps again.
                    for _ in 0..3 {
                        tokio::task::yield_now().await;
                    }
                }
            });
        })?;
    Ok(handle)
}
