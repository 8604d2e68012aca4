//! Capacity planning: the bandwidth and storage a platform of the guide's
//! shape needs (publishing, transcoding, origins, a CDN in front), from
//! its inputs. Pure arithmetic; `ugc-server plan` prints it.
//!
//! The guide's example (10 inputs of 1080p 5000 kbps + AAC 192 kbps, the
//! ladder 1080p 4000k + 192k, 720p 2000k + 128k, 360p 1000k + 96k, 100,000
//! viewers of the top rendition, 10 h of DVR for 10 streams):
//! input 51.9 Mbps, ladder output 74.2 Mbps (the guide prints 223 Mbps: it
//! multiplies the per-stream sum by all 30 output renditions, counting
//! each stream's ladder three times), viewers 419 Gbps.
//!
//! Server counts need capacities of the machines (ladders per transcoding
//! server, streams per publishing server, Gbit/s per origin); they are
//! inputs, to be measured on the operator's hardware with `benches/`
//! (`transcode-vs-ffmpeg.sh`, `load-vs-nginx.sh`, `ll-hls-viewers.sh`).

/// One rung of a ladder: its name and bitrates.
#[derive(Debug, Clone, PartialEq)]
pub struct Rung {
    /// `1080p`.
    pub name: String,
    /// Video kbit/s.
    pub video_kbps: f64,
    /// Audio kbit/s.
    pub audio_kbps: f64,
}

impl Rung {
    /// Video plus audio, kbit/s.
    pub fn kbps(&self) -> f64 {
        self.video_kbps + self.audio_kbps
    }
}

/// What the platform carries.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanInput {
    /// Live input streams.
    pub streams: u32,
    /// Each input's video kbit/s.
    pub input_video_kbps: f64,
    /// Each input's audio kbit/s.
    pub input_audio_kbps: f64,
    /// The ladder every input is transcoded to (empty: passed through).
    pub ladder: Vec<Rung>,
    /// Concurrent viewers.
    pub viewers: u64,
    /// Which rung they watch (0: the top one).
    pub viewer_rung: usize,
    /// Share of viewer traffic the CDN serves from its cache (0 to 1); the
    /// rest reaches the origins.
    pub cdn_share: f64,
    /// Origins that each receive every stream (the guide: 2).
    pub origins: u32,
    /// Hours of DVR kept.
    pub dvr_hours: f64,
    /// Streams recorded.
    pub dvr_streams: u32,
    /// Capacities of one server, when known (for server counts).
    pub capacity: Option<Capacity>,
}

/// What one server of each role takes, measured on the operator's
/// hardware.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Capacity {
    /// Input streams one publishing server takes.
    pub streams_per_publish_server: f64,
    /// Ladders one transcoding server runs in real time.
    pub ladders_per_transcode_server: f64,
    /// Gbit/s one origin serves.
    pub gbps_per_origin: f64,
}

/// What one core did in this project's benchmarks, with where each figure
/// comes from: the default capacities of a server of N cores
/// ([`Capacity::measured`]). Measured on a 2-core VM (AMD EPYC, KVM);
/// measure your own hardware with the same scripts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PerCore {
    /// Input streams (1080p30, 4.5 Mbit/s, RTMP) one core ingests and
    /// packages.
    pub streams: f64,
    /// Ladders of the guide's shape (1080p30 in; 1080p, 720p, 360p out,
    /// x264 `veryfast`) one core runs in real time.
    pub ladders: f64,
    /// Gbit/s of LL-HLS one origin core serves to viewers.
    pub origin_gbps: f64,
    /// Where each figure comes from, in the order above.
    pub sources: [&'static str; 3],
}

/// This project's measured figures; see [`PerCore`].
pub const MEASURED_PER_CORE: PerCore = PerCore {
    // 0.74 % of a core per stream, the worst of 9 rounds (0.29-0.74 %).
    streams: 135.0,
    // 51.0 fps of the whole ladder on 1.93 cores busy: 30 fps needs 1.14.
    ladders: 0.88,
    // 0.12 ms of CPU per Mbit delivered to 1,000 LL-HLS viewers: 8.3.
    origin_gbps: 8.0,
    sources: [
        "benches/relay-hop.sh: RTMP ingest of a 1080p30 4.5 Mbit/s stream took 0.29-0.74 % of \
         a core over 9 rounds; 0.74 % -> 135 streams per core",
        "benches/transcode-vs-ffmpeg.sh: the guide's ladder from 1080p30 (testsrc2 + grain, x264 \
         veryfast) ran at 51.0 fps keeping 1.93 cores busy -> 1.14 cores per 30 fps ladder, 0.88 \
         per core (harder content: 39.2 fps, 0.68 per core)",
        "benches/ll-hls-viewers.sh: 1,000 LL-HLS viewers of one 4 Mbit/s stream (200 ms parts), \
         2.2 Gbit/s delivered for 26-27 % of a core, 0.12 ms of CPU per Mbit in 2 rounds -> 8 \
         Gbit/s per core; over loopback without TLS: a real origin's network interface and TLS \
         bound it first",
    ],
};

impl Capacity {
    /// The capacities of a server with `cores` cores from
    /// [`MEASURED_PER_CORE`], keeping `headroom` (0 to 1) of each free
    /// for peaks and failover.
    pub fn measured(cores: f64, headroom: f64) -> Capacity {
        let use_ = cores.max(0.0) * (1.0 - headroom.clamp(0.0, 0.95));
        let m = MEASURED_PER_CORE;
        Capacity {
            streams_per_publish_server: m.streams * use_,
            ladders_per_transcode_server: m.ladders * use_,
            gbps_per_origin: m.origin_gbps * use_,
        }
    }
}

/// Bandwidth (Mbit/s) and storage (GB) of a [`PlanInput`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plan {
    /// Publishers to publishing servers.
    pub input_mbps: f64,
    /// One stream's ladder output, kbit/s (every rung, audio included).
    pub ladder_kbps_per_stream: f64,
    /// Every stream's ladder output.
    pub ladder_output_mbps: f64,
    /// Between nodes: publishing -> transcoding (the inputs) plus
    /// transcoding -> each origin (the ladders).
    pub inter_node_mbps: f64,
    /// To all viewers.
    pub viewers_mbps: f64,
    /// Of it, what the origins serve (the CDN's misses, or everything
    /// without one), plus the CDN's fill of one copy of every rendition.
    pub origin_egress_mbps: f64,
    /// DVR of every rendition, per origin.
    pub dvr_ladder_gb: f64,
    /// DVR of the top rendition only, per origin.
    pub dvr_top_gb: f64,
    /// Servers, when capacities are given: publishing, transcoding (one
    /// more as standby), origins (at least [`PlanInput::origins`]).
    pub servers: Option<(u32, u32, u32)>,
}

/// The plan of `input`.
pub fn plan(input: &PlanInput) -> Plan {
    let streams = f64::from(input.streams);
    let input_kbps = input.input_video_kbps + input.input_audio_kbps;
    let ladder_kbps: f64 = if input.ladder.is_empty() {
        input_kbps
    } else {
        input.ladder.iter().map(Rung::kbps).sum()
    };
    let viewer_kbps = input
        .ladder
        .get(input.viewer_rung)
        .map_or(input_kbps, Rung::kbps);
    let top_kbps = input.ladder.first().map_or(input_kbps, Rung::kbps);
    let input_mbps = streams * input_kbps / 1000.0;
    let ladder_output_mbps = streams * ladder_kbps / 1000.0;
    let viewers_mbps = input.viewers as f64 * viewer_kbps / 1000.0;
    let cdn = input.cdn_share.clamp(0.0, 1.0);
    let origin_egress_mbps =
        viewers_mbps * (1.0 - cdn) + if cdn > 0.0 { ladder_output_mbps } else { 0.0 };
    // kbit/s over hours -> GB: kbps * 1000 / 8 bytes/s * 3600 s/h / 1e9.
    let gb = |kbps: f64| kbps * 1000.0 / 8.0 * 3600.0 * input.dvr_hours / 1e9;
    let dvr_streams = f64::from(input.dvr_streams);
    let servers = input.capacity.map(|c| {
        let count = |need: f64, per: f64| {
            if per > 0.0 {
                (need / per).ceil().min(f64::from(u32::MAX)) as u32
            } else {
                u32::MAX
            }
        };
        let publish = count(streams, c.streams_per_publish_server).max(1);
        let transcode = if input.ladder.is_empty() {
            0
        } else {
            count(streams, c.ladders_per_transcode_server).saturating_add(1)
        };
        let origins =
            count(origin_egress_mbps / 1000.0, c.gbps_per_origin).max(input.origins.max(1));
        (publish, transcode, origins)
    });
    Plan {
        input_mbps,
        ladder_kbps_per_stream: ladder_kbps,
        ladder_output_mbps,
        inter_node_mbps: input_mbps + ladder_output_mbps * f64::from(input.origins),
        viewers_mbps,
        origin_egress_mbps,
        dvr_ladder_gb: dvr_streams * gb(ladder_kbps),
        dvr_top_gb: dvr_streams * gb(top_kbps),
        servers,
    }
}

/// The guide's ladder: 1080p 4000k + 192k, 720p 2000k + 128k, 360p 1000k +
/// 96k.
pub fn guide_ladder() -> Vec<Rung> {
    [
        ("1080p", 4000.0, 192.0),
        ("720p", 2000.0, 128.0),
        ("360p", 1000.0, 96.0),
    ]
    .into_iter()
    .map(|(name, video_kbps, audio_kbps)| Rung {
        name: name.into(),
        video_kbps,
        audio_kbps,
    })
    .collect()
}

/// The guide's example (see the module doc).
pub fn guide_example() -> PlanInput {
    PlanInput {
        streams: 10,
        input_video_kbps: 5000.0,
        input_audio_kbps: 192.0,
        ladder: guide_ladder(),
        viewers: 100_000,
        viewer_rung: 0,
        cdn_share: 0.0,
        origins: 2,
        dvr_hours: 10.0,
        dvr_streams: 10,
        capacity: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-6 * b.abs().max(1.0)
    }

    #[test]
    fn the_guides_example() {
        let p = plan(&guide_example());
        assert!(close(p.input_mbps, 51.92), "{p:?}");
        assert!(close(p.ladder_kbps_per_stream, 7416.0));
        assert!(close(p.ladder_output_mbps, 74.16));
        assert!(close(p.viewers_mbps, 419_200.0));
        // Publish -> transcode, then both origins get every ladder.
        assert!(close(p.inter_node_mbps, 51.92 + 2.0 * 74.16));
        assert!(close(p.origin_egress_mbps, 419_200.0), "no CDN");
        // 7416 kbit/s for 10 h = 33.372 GB a stream; 4192 kbit/s = 18.864.
        assert!(close(p.dvr_ladder_gb, 333.72), "{}", p.dvr_ladder_gb);
        assert!(close(p.dvr_top_gb, 188.64), "{}", p.dvr_top_gb);
        // The guide's 223 Mbps is the per-stream sum times 30 renditions.
        assert!(close(7.416 * 30.0, 222.48));
        assert_eq!(p.servers, None);
    }

    #[test]
    fn a_cdn_takes_the_viewers_and_capacities_give_server_counts() {
        let p = plan(&PlanInput {
            cdn_share: 0.95,
            capacity: Some(Capacity {
                streams_per_publish_server: 4.0,
                ladders_per_transcode_server: 1.0,
                gbps_per_origin: 10.0,
            }),
            ..guide_example()
        });
        // 5 % of 419.2 Gbps plus one fill of every rendition.
        assert!(close(p.origin_egress_mbps, 20_960.0 + 74.16));
        // 10 / 4 -> 3; 10 ladders + 1 standby; 21.03 Gbps / 10 -> 3.
        assert_eq!(p.servers, Some((3, 11, 3)));
    }

    #[test]
    fn measured_capacities_scale_with_cores_and_headroom() {
        let c = Capacity::measured(16.0, 0.25);
        assert!(close(c.streams_per_publish_server, 135.0 * 12.0));
        assert!(close(c.ladders_per_transcode_server, 0.88 * 12.0));
        assert!(close(c.gbps_per_origin, 8.0 * 12.0));
        // The guide's example on 16-core servers, a quarter kept free:
        // 10 streams on one publishing server; 10 ladders / 10.56 -> 1,
        // plus a standby; 419.2 Gbit/s / 96 -> 5 origins.
        let p = plan(&PlanInput {
            capacity: Some(c),
            ..guide_example()
        });
        assert_eq!(p.servers, Some((1, 2, 5)));
        assert!(
            MEASURED_PER_CORE
                .sources
                .iter()
                .all(|s| s.starts_with("benches/"))
        );
    }

    fn input() -> impl Strategy<Value = PlanInput> {
        (
            (1u32..1000, 100.0..20_000.0f64, 0.0..512.0f64),
            (0u64..10_000_000, 0.0..1.0f64, 1u32..4),
            (0.0..1000.0f64, 0u32..1000),
        )
            .prop_map(
                |((s, v, a), (viewers, cdn, origins), (hours, dvr))| PlanInput {
                    streams: s,
                    input_video_kbps: v,
                    input_audio_kbps: a,
                    viewers,
                    cdn_share: cdn,
                    origins,
                    dvr_hours: hours,
                    dvr_streams: dvr,
                    capacity: Some(Capacity {
                        streams_per_publish_server: 8.0,
                        ladders_per_transcode_server: 2.0,
                        gbps_per_origin: 10.0,
                    }),
                    ..guide_example()
                },
            )
    }

    /// Every figure, to compare two plans.
    fn figures(p: &Plan) -> Vec<f64> {
        let (a, b, c) = p.servers.unwrap_or_default();
        vec![
            p.input_mbps,
            p.ladder_output_mbps,
            p.inter_node_mbps,
            p.viewers_mbps,
            p.dvr_ladder_gb,
            p.dvr_top_gb,
            f64::from(a),
            f64::from(b),
            f64::from(c),
        ]
    }

    proptest! {
        /// More of any input never needs less of anything (the CDN share
        /// aside, which moves traffic off the origins).
        #[test]
        fn more_input_never_needs_less(base in input(), which in 0usize..7, more in 1.0..10.0f64) {
            let mut bigger = base.clone();
            match which {
                0 => bigger.streams = bigger.streams.saturating_add(more as u32),
                1 => bigger.input_video_kbps += more,
                2 => bigger.input_audio_kbps += more,
                3 => bigger.viewers += more as u64,
                4 => bigger.origins += 1,
                5 => bigger.dvr_hours += more,
                _ => bigger.dvr_streams += more as u32,
            }
            let (a, b) = (plan(&base), plan(&bigger));
            for (x, y) in figures(&a).iter().zip(figures(&b)) {
                prop_assert!(y >= *x - 1e-9, "{x} -> {y} ({which})");
            }
            prop_assert!(b.origin_egress_mbps >= a.origin_egress_mbps - 1e-9);
            // A bigger CDN share never sends more to the origins.
            let mut cached = base.clone();
            cached.cdn_share = (base.cdn_share + 0.01).min(1.0);
            if base.cdn_share > 0.0 {
                prop_assert!(plan(&cached).origin_egress_mbps <= a.origin_egress_mbps + 1e-9);
            }
        }
    }
}
