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
use ugc_core::metrics::{CONTENT_TYPE, Exposition, Family, Kind};
use ugc_dvr::archive::{Archive, ArchiveStats};
use ugc_dvr::s3::{UploadStats, Uploader};
use ugc_proto::origin::ClientIp;
use ugc_proto::rtmp::push::{PushState, PushStatus};
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
    let families: &[Family<ugc_core::hub::StreamSnapshot>] = &[
        Family::gauge(
            "ugc_stream_publishing",
            "1 while a publisher is attached.",
            |s| f64::from(u8::from(s.publishing)),
        ),
        Family::gauge(
            "ugc_stream_low_latency",
            "1 while a viewer wants the stream at low latency (LL-HLS blocking reloads or parts \
             in the last 10 s): its RTMP ingest then reads as data arrives instead of batching.",
            |s| {
                let now = std::time::Instant::now();
                f64::from(u8::from(s.low_latency_until.is_some_and(|t| t > now)))
            },
        ),
        Family::gauge(
            "ugc_stream_readers",
            "Readers attached (packager, archive, restream, transcoder).",
            |s| s.readers as f64,
        ),
        Family::counter(
            "ugc_stream_frames_in_total",
            "Frames accepted from publishers.",
            |s| s.frames_in as f64,
        ),
        Family::counter(
            "ugc_stream_bytes_in_total",
            "Payload bytes accepted from publishers.",
            |s| s.bytes_in as f64,
        ),
        Family::counter(
            "ugc_stream_reader_skips_total",
            "Times a slow reader skipped to the newest keyframe.",
            |s| s.reader_skips as f64,
        ),
        Family::counter(
            "ugc_stream_publishers_total",
            "Publisher sessions that took the stream over (the first included).",
            |s| s.publishers as f64,
        ),
    ];
    m.families(families, &streams, |s| vec![("stream", s.name.to_string())]);
}

fn restream(m: &mut Exposition, restreams: &Restreams) {
    let pushes = restreams.statuses();
    let families: &[Family<(String, PushStatus)>] = &[
        Family::gauge(
            "ugc_restream_up",
            "1 while the push to the target is publishing.",
            |(_, p)| f64::from(u8::from(p.state == PushState::Live)),
        ),
        Family::counter(
            "ugc_restream_bytes_sent_total",
            "Bytes written to the target.",
            |(_, p)| p.bytes_sent as f64,
        ),
        Family::counter(
            "ugc_restream_frames_sent_total",
            "Frames sent to the target.",
            |(_, p)| p.frames_sent as f64,
        ),
        Family::counter(
            "ugc_restream_skips_total",
            "Times the push fell behind and skipped to a keyframe.",
            |(_, p)| p.skips as f64,
        ),
        Family::counter(
            "ugc_restream_reconnects_total",
            "Sessions started after the first.",
            |(_, p)| p.reconnects as f64,
        ),
    ];
    let rows: Vec<(String, PushStatus)> = target_labels(&pushes)
        .into_iter()
        .zip(pushes)
        .map(|(target, (stream, p))| (stream, PushStatus { target, ..p }))
        .collect();
    m.families(families, &rows, |(stream, p)| {
        vec![("stream", stream.clone()), ("target", p.target.clone())]
    });
}

/// The `target` label of each push. Targets are shown with their keys
/// redacted, so two pushes of a stream to one server (two channels of one
/// platform) would be the same series, which Prometheus refuses; the
/// second and later get ` #2`, ` #3`, ... in `pushes`' order.
fn target_labels(pushes: &[(String, PushStatus)]) -> Vec<String> {
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
    let families: &[Family<ugc_proto::srt::server::SrtSessionStats>] = &[
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
}

fn dvr(m: &mut Exposition, archive: &Archive, uploader: Option<&Uploader>) {
    use std::sync::atomic::Ordering::Relaxed;
    let archived: &[Family<ArchiveStats>] = &[
        Family::counter(
            "ugc_dvr_segments_written_total",
            "Segments written to the archive.",
            |a| a.segments_written.load(Relaxed) as f64,
        ),
        Family::counter(
            "ugc_dvr_segments_dropped_total",
            "Segments not archived: queue full, paused after an error, or a failed write.",
            |a| a.segments_dropped.load(Relaxed) as f64,
        ),
        Family::counter("ugc_dvr_write_errors_total", "Archive write errors.", |a| {
            a.write_errors.load(Relaxed) as f64
        }),
        Family::counter(
            "ugc_dvr_segments_expired_total",
            "Segments removed by retention.",
            |a| a.segments_expired.load(Relaxed) as f64,
        ),
    ];
    m.families(archived, std::slice::from_ref(archive.stats()), |_| {
        Vec::new()
    });
    if let Some(u) = uploader {
        let uploaded: &[Family<UploadStats>] = &[
            Family::counter(
                "ugc_dvr_s3_sessions_uploaded_total",
                "Recording sessions uploaded to the object store and verified.",
                |u| u.uploaded.load(Relaxed) as f64,
            ),
            Family::counter(
                "ugc_dvr_s3_retries_total",
                "Object store requests retried.",
                |u| u.retries.load(Relaxed) as f64,
            ),
            Family::counter(
                "ugc_dvr_s3_aborted_total",
                "Multipart uploads aborted to start over.",
                |u| u.aborted.load(Relaxed) as f64,
            ),
        ];
        m.families(uploaded, std::slice::from_ref(u.stats()), |_| Vec::new());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
