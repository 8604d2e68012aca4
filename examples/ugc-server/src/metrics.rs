//! `GET /metrics`: the server's counters in the Prometheus text format, read
//! from the pipeline's own stats when scraped (no second set of counters).
//!
//! It names streams, restream targets (keys redacted) and SRT publisher
//! addresses, so, like `/api/v1/stats/*`, it wants the admin bearer token,
//! except from a loopback client (a Prometheus or an agent on the same
//! host; behind a trusted proxy the forwarded client address counts).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use ugc_auth::ControlPlane;
use ugc_core::Hub;
use ugc_core::metrics::{CONTENT_TYPE, Exposition, Kind};
use ugc_dvr::archive::Archive;
use ugc_dvr::s3::Uploader;
use ugc_proto::origin::ClientIp;
use ugc_proto::rtmp::push::PushState;
use ugc_proto::srt::server::SrtStatsRegistry;

use crate::restream::Restreams;
use crate::transcode::TranscodeStats;

/// What `/metrics` reads.
#[derive(Clone)]
pub struct Sources {
    pub hub: Hub,
    pub control: ControlPlane,
    /// The client's address, as the origin resolves it (trusted proxies).
    pub client_ip: ClientIp,
    pub restreams: Restreams,
    pub srt: SrtStatsRegistry,
    pub transcode: TranscodeStats,
    pub archive: Archive,
    pub uploader: Option<Arc<Uploader>>,
}

/// The `/metrics` route.
pub fn router(sources: Sources) -> axum::Router {
    axum::Router::new()
        .route("/metrics", get(metrics))
        .with_state(sources)
}

async fn metrics(
    State(s): State<Sources>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let local = (s.client_ip)(peer.ip(), &headers).is_loopback();
    if !local && !s.control.is_admin_request(&headers).await {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
        )
            .into_response();
    }
    (
        [
            (header::CONTENT_TYPE, CONTENT_TYPE),
            (header::CACHE_CONTROL, "no-store"),
        ],
        render(&s),
    )
        .into_response()
}

/// The exposition of everything in `s`.
pub fn render(s: &Sources) -> String {
    let mut m = Exposition::new();
    m.family("ugc_info", Kind::Gauge, "Always 1; the version as a label.")
        .sample(&[("version", env!("CARGO_PKG_VERSION"))], 1.0);
    hub(&mut m, &s.hub);
    restream(&mut m, &s.restreams);
    srt(&mut m, &s.srt);
    s.transcode.write_metrics(&mut m);
    dvr(&mut m, &s.archive, s.uploader.as_deref());
    m.finish()
}

fn hub(m: &mut Exposition, hub: &Hub) {
    let mut names = hub.stream_names();
    names.sort();
    let streams: Vec<_> = names.iter().filter_map(|n| hub.stats(n)).collect();
    m.family(
        "ugc_streams",
        Kind::Gauge,
        "Streams in the Hub (published, or kept for a returning publisher), renditions included.",
    )
    .sample(&[], streams.len() as f64);
    type Field = fn(&ugc_core::hub::StreamSnapshot) -> f64;
    let families: [(&str, Kind, &str, Field); 6] = [
        (
            "ugc_stream_publishing",
            Kind::Gauge,
            "1 while a publisher is attached.",
            |s| f64::from(u8::from(s.publishing)),
        ),
        (
            "ugc_stream_readers",
            Kind::Gauge,
            "Readers attached (packager, archive, restream, transcoder).",
            |s| s.readers as f64,
        ),
        (
            "ugc_stream_frames_in_total",
            Kind::Counter,
            "Frames accepted from publishers.",
            |s| s.frames_in as f64,
        ),
        (
            "ugc_stream_bytes_in_total",
            Kind::Counter,
            "Payload bytes accepted from publishers.",
            |s| s.bytes_in as f64,
        ),
        (
            "ugc_stream_reader_skips_total",
            Kind::Counter,
            "Times a slow reader skipped to the newest keyframe.",
            |s| s.reader_skips as f64,
        ),
        (
            "ugc_stream_publishers_total",
            Kind::Counter,
            "Publisher sessions that took the stream over (the first included).",
            |s| s.publishers as f64,
        ),
    ];
    for (name, kind, help, field) in families {
        m.family(name, kind, help);
        for s in &streams {
            m.sample(&[("stream", &s.name)], field(s));
        }
    }
}

fn restream(m: &mut Exposition, restreams: &Restreams) {
    let pushes = restreams.statuses();
    type Field = fn(&ugc_proto::rtmp::push::PushStatus) -> f64;
    let families: [(&str, Kind, &str, Field); 5] = [
        (
            "ugc_restream_up",
            Kind::Gauge,
            "1 while the push to the target is publishing.",
            |p| f64::from(u8::from(p.state == PushState::Live)),
        ),
        (
            "ugc_restream_bytes_sent_total",
            Kind::Counter,
            "Bytes written to the target.",
            |p| p.bytes_sent as f64,
        ),
        (
            "ugc_restream_frames_sent_total",
            Kind::Counter,
            "Frames sent to the target.",
            |p| p.frames_sent as f64,
        ),
        (
            "ugc_restream_skips_total",
            Kind::Counter,
            "Times the push fell behind and skipped to a keyframe.",
            |p| p.skips as f64,
        ),
        (
            "ugc_restream_reconnects_total",
            Kind::Counter,
            "Sessions started after the first.",
            |p| p.reconnects as f64,
        ),
    ];
    let targets = target_labels(&pushes);
    for (name, kind, help, field) in families {
        m.family(name, kind, help);
        for ((stream, p), target) in pushes.iter().zip(&targets) {
            m.sample(&[("stream", stream), ("target", target)], field(p));
        }
    }
}

/// The `target` label of each push. Targets are shown with their keys
/// redacted, so two pushes of a stream to one server (two channels of one
/// platform) would be the same series, which Prometheus refuses; the
/// second and later get ` #2`, ` #3`, ... in `pushes`' order.
fn target_labels(pushes: &[(String, ugc_proto::rtmp::push::PushStatus)]) -> Vec<String> {
    let mut seen: std::collections::HashMap<(&str, &str), usize> = Default::default();
    pushes
        .iter()
        .map(|(stream, p)| {
            let n = seen.entry((stream, &p.target)).or_default();
            *n += 1;
            if *n == 1 {
                p.target.clone()
            } else {
                format!("{} #{n}", p.target)
            }
        })
        .collect()
}

fn srt(m: &mut Exposition, registry: &SrtStatsRegistry) {
    let sessions = registry.snapshot();
    type Field = fn(&ugc_proto::srt::server::SrtSessionStats) -> f64;
    let families: [(&str, Kind, &str, Field); 8] = [
        (
            "ugc_srt_rtt_seconds",
            Kind::Gauge,
            "Smoothed round-trip time to the publisher.",
            |s| s.connection.rtt_us as f64 / 1e6,
        ),
        (
            "ugc_srt_receive_bitrate_bits_per_second",
            Kind::Gauge,
            "Receive rate over the last second.",
            |s| s.connection.rx_bitrate as f64,
        ),
        (
            "ugc_srt_rx_packets_total",
            Kind::Counter,
            "Data packets received.",
            |s| s.connection.rx_packets as f64,
        ),
        (
            "ugc_srt_rx_bytes_total",
            Kind::Counter,
            "Payload bytes received.",
            |s| s.connection.rx_bytes as f64,
        ),
        (
            "ugc_srt_rx_lost_total",
            Kind::Counter,
            "Packets detected as lost (NAKed).",
            |s| s.connection.rx_lost as f64,
        ),
        (
            "ugc_srt_rx_retransmitted_total",
            Kind::Counter,
            "Retransmitted packets received.",
            |s| s.connection.rx_retransmitted as f64,
        ),
        (
            "ugc_srt_rx_dropped_total",
            Kind::Counter,
            "Packets given up on (too late to play).",
            |s| s.connection.rx_dropped as f64,
        ),
        (
            "ugc_srt_ts_cc_errors_total",
            Kind::Counter,
            "MPEG-TS continuity counter errors.",
            |s| s.demux.cc_errors as f64,
        ),
    ];
    for (name, kind, help, field) in families {
        m.family(name, kind, help);
        for s in &sessions {
            let peer = s.peer.to_string();
            m.sample(&[("stream", &s.stream), ("peer", &peer)], field(s));
        }
    }
}

fn dvr(m: &mut Exposition, archive: &Archive, uploader: Option<&Uploader>) {
    use std::sync::atomic::Ordering::Relaxed;
    let a = archive.stats();
    for (name, help, v) in [
        (
            "ugc_dvr_segments_written_total",
            "Segments written to the archive.",
            &a.segments_written,
        ),
        (
            "ugc_dvr_segments_dropped_total",
            "Segments not archived: queue full, paused after an error, or a failed write.",
            &a.segments_dropped,
        ),
        (
            "ugc_dvr_write_errors_total",
            "Archive write errors.",
            &a.write_errors,
        ),
        (
            "ugc_dvr_segments_expired_total",
            "Segments removed by retention.",
            &a.segments_expired,
        ),
    ] {
        m.family(name, Kind::Counter, help)
            .sample(&[], v.load(Relaxed) as f64);
    }
    if let Some(u) = uploader {
        let u = u.stats();
        for (name, help, v) in [
            (
                "ugc_dvr_s3_sessions_uploaded_total",
                "Recording sessions uploaded to the object store and verified.",
                &u.uploaded,
            ),
            (
                "ugc_dvr_s3_retries_total",
                "Object store requests retried.",
                &u.retries,
            ),
            (
                "ugc_dvr_s3_aborted_total",
                "Multipart uploads aborted to start over.",
                &u.aborted,
            ),
        ] {
            m.family(name, Kind::Counter, help)
                .sample(&[], v.load(Relaxed) as f64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ugc_proto::rtmp::push::PushStatus;

    fn push(stream: &str, target: &str) -> (String, PushStatus) {
        let status = PushStatus {
            target: target.into(),
            state: PushState::Live,
            last_error: None,
            bytes_sent: 0,
            frames_sent: 0,
            skips: 0,
            reconnects: 0,
        };
        (stream.into(), status)
    }

    #[test]
    fn pushes_with_one_redacted_target_stay_distinct_series() {
        let yt = "rtmp://a.rtmp.youtube.com/live2/***";
        let pushes = [
            push("live/a", yt),
            push("live/a", yt),
            push("live/a", "rtmp://live.twitch.tv/app/***"),
            push("live/a", yt),
            push("live/b", yt),
        ];
        assert_eq!(
            target_labels(&pushes),
            [
                yt.to_string(),
                format!("{yt} #2"),
                "rtmp://live.twitch.tv/app/***".into(),
                format!("{yt} #3"),
                yt.into(),
            ]
        );
    }
}
