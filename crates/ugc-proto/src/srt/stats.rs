//! The SRT publishers' (and listener's) statistics as `/metrics` families and JSON rows:
//! [`SrtStatsRegistry::write_metrics`] and `SrtStatsRegistry::json`.

use ugc_core::metrics::{Exposition, Family};

use super::server::{SrtSessionStats, SrtStatsRegistry};

impl SrtStatsRegistry {
    /// The publishers' families for `/metrics`: RTT, receive bitrate and
    /// `ugc_srt_*_total` counters by `stream` and `peer`; then the
    /// listener's (handshakes in progress, `ugc_srt_handshakes_*_total`).
    pub fn write_metrics(&self, m: &mut Exposition) {
        let sessions = self.snapshot();
        let families: &[Family<SrtSessionStats>] = &[
            Family::gauge(
                "ugc_srt_rtt_seconds",
                "Smoothed round-trip time to the publisher.",
                |s| s.connection.rtt_us as f64 / 1e6,
            ),
            Family::gauge(
                "ugc_srt_receive_bitrate_bits_per_second",
                "Receive rate over the last second.",
                |s| s.connection.rx_bitrate as f64,
            ),
            Family::counter("ugc_srt_rx_packets_total", "Data packets received.", |s| {
                s.connection.rx_packets as f64
            }),
            Family::counter("ugc_srt_rx_bytes_total", "Payload bytes received.", |s| {
                s.connection.rx_bytes as f64
            }),
            Family::counter(
                "ugc_srt_rx_lost_total",
                "Packets detected as lost (NAKed).",
                |s| s.connection.rx_lost as f64,
            ),
            Family::counter(
                "ugc_srt_rx_retransmitted_total",
                "Retransmitted packets received.",
                |s| s.connection.rx_retransmitted as f64,
            ),
            Family::counter(
                "ugc_srt_rx_dropped_total",
                "Packets given up on (too late to play).",
                |s| s.connection.rx_dropped as f64,
            ),
            Family::counter(
                "ugc_srt_naks_refused_total",
                "NAKs refused for naming more lost packets than SRT's flow window.",
                |s| s.connection.naks_refused as f64,
            ),
            Family::counter(
                "ugc_srt_ts_cc_errors_total",
                "MPEG-TS continuity counter errors.",
                |s| s.demux.cc_errors as f64,
            ),
        ];
        m.families(families, &sessions, |s| {
            vec![
                ("stream", s.stream.to_string()),
                ("peer", s.peer.to_string()),
            ]
        });
        self.write_listener_metrics(m);
    }

    /// The listener's families for `/metrics`: handshakes in progress and
    /// `ugc_srt_handshakes_*_total` counters (what floods of handshakes
    /// were refused and dropped).
    fn write_listener_metrics(&self, m: &mut Exposition) {
        use ugc_core::metrics::Kind;
        let (s, pending) = self.listener();
        m.family(
            "ugc_srt_handshakes_pending",
            Kind::Gauge,
            "SRT handshakes in progress.",
        )
        .sample(&[], pending as f64);
        let counters: [(&str, &str, u64); 5] = [
            (
                "ugc_srt_handshakes_connected_total",
                "SRT callers connected.",
                s.connected,
            ),
            (
                "ugc_srt_handshakes_rejected_total",
                "SRT callers refused (any reason, including the per-address cap).",
                s.rejected,
            ),
            (
                "ugc_srt_handshakes_timed_out_total",
                "SRT handshakes not completed in time.",
                s.timed_out,
            ),
            (
                "ugc_srt_handshakes_refused_ip_cap_total",
                "SRT callers refused because their address held max_connections_per_ip.",
                s.ip_cap_rejects,
            ),
            (
                "ugc_srt_listener_panics_total",
                "Panics inside srt-protocol caught (handshakes and connections).",
                s.panics,
            ),
        ];
        for (name, help, v) in counters {
            m.family(name, Kind::Counter, help).sample(&[], v as f64);
        }
        m.family(
            "ugc_srt_handshakes_dropped_total",
            Kind::Counter,
            "SRT inductions ignored: too many handshakes in progress in all \
             (reason=\"overload\") or from the caller's address (reason=\"ip_cap\").",
        )
        .sample(&[("reason", "overload")], s.overload_drops as f64)
        .sample(&[("reason", "ip_cap")], s.ip_cap_drops as f64);
    }

    /// One JSON object per publisher, in [`snapshot`](Self::snapshot)
    /// order, as [`json_schema`](Self::json_schema) describes.
    #[cfg(feature = "json")]
    pub fn json(&self) -> Vec<serde_json::Value> {
        self.snapshot()
            .into_iter()
            .map(|s| {
                serde_json::json!({
                    "stream": s.stream.as_str(),
                    "peer": s.peer.to_string(),
                    "rtt_us": s.connection.rtt_us,
                    "latency_ms": s.connection.latency_ms,
                    "rx_packets": s.connection.rx_packets,
                    "rx_lost": s.connection.rx_lost,
                    "rx_retransmitted": s.connection.rx_retransmitted,
                    "rx_dropped": s.connection.rx_dropped,
                    "rx_bytes": s.connection.rx_bytes,
                    "rx_bitrate": s.connection.rx_bitrate,
                    "ts_cc_errors": s.demux.cc_errors,
                    "video_frames": s.demux.video_frames,
                    "audio_frames": s.demux.audio_frames,
                })
            })
            .collect()
    }

    /// The JSON Schema (OpenAPI 3.0 flavour) of one [`json`](Self::json)
    /// object.
    #[cfg(feature = "json")]
    pub fn json_schema() -> serde_json::Value {
        let int = || serde_json::json!({ "type": "integer" });
        let string = || serde_json::json!({ "type": "string" });
        serde_json::json!({ "type": "object", "properties": {
            "stream": string(), "peer": string(), "rtt_us": int(), "latency_ms": int(),
            "rx_packets": int(), "rx_lost": int(), "rx_retransmitted": int(), "rx_dropped": int(),
            "rx_bytes": int(), "rx_bitrate": { "type": "integer", "description": "bits/s" },
            "ts_cc_errors": int(), "video_frames": int(), "audio_frames": int()
        } })
    }
}
