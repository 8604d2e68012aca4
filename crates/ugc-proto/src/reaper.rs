//! Ends Hub streams whose publisher left and did not come back within a
//! grace time, so that their readers (packager, DVR, restream, ladder) see
//! the end: playlists get `EXT-X-ENDLIST`, pushes stop.
//!
//! A publisher that drops (an RTMP or SRT session that ends) only detaches
//! from its stream, so that a reconnect continues it; something has to end
//! the streams nobody returns to. This task does, until the Hub does it by
//! itself.

use std::time::{Duration, Instant};

use ugc_core::Hub;

/// How often [`reap_idle_streams`] looks.
pub const REAP_INTERVAL: Duration = Duration::from_millis(500);

/// Every [`REAP_INTERVAL`], ends the streams of `hub` that have had no
/// publisher for `grace` ([`Hub::reap_idle`]). Runs until dropped.
pub async fn reap_idle_streams(hub: Hub, grace: Duration) {
    let mut tick = tokio::time::interval(REAP_INTERVAL);
    loop {
        tick.tick().await;
        for name in hub.reap_idle(Instant::now(), grace) {
            tracing::info!(stream = %name, "no publisher for {grace:?}: ended");
        }
    }
}
