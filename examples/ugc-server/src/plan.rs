//! `ugc-server plan`: the bandwidth, storage and (with capacities) servers
//! a platform needs, from `ugc_core::plan`. Defaults: the guide's example.

use clap::Args;
use ugc_core::plan::{Capacity, PlanInput, Rung, guide_example, plan};

/// `ugc-server plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Live input streams.
    #[arg(long, default_value_t = 10)]
    streams: u32,
    /// Each input's video kbit/s.
    #[arg(long, default_value_t = 5000.0)]
    input_video_kbps: f64,
    /// Each input's audio kbit/s.
    #[arg(long, default_value_t = 192.0)]
    input_audio_kbps: f64,
    /// The ladder, top rung first: `name:video_kbps:audio_kbps,...`;
    /// `none` for no transcoding.
    #[arg(long, default_value = "1080p:4000:192,720p:2000:128,360p:1000:96")]
    ladder: String,
    /// Concurrent viewers.
    #[arg(long, default_value_t = 100_000)]
    viewers: u64,
    /// The rung they watch, by name (default the top one).
    #[arg(long)]
    viewer_rung: Option<String>,
    /// Share of viewer traffic a CDN serves from its cache, 0 to 1.
    #[arg(long, default_value_t = 0.0)]
    cdn_share: f64,
    /// Origins that each receive every stream.
    #[arg(long, default_value_t = 2)]
    origins: u32,
    /// Hours of DVR kept.
    #[arg(long, default_value_t = 10.0)]
    dvr_hours: f64,
    /// Streams recorded.
    #[arg(long, default_value_t = 10)]
    dvr_streams: u32,
    /// Cores of one server: server counts come from what one core did in
    /// this project's benchmarks (printed with their sources) times this.
    #[arg(long, default_value_t = 16.0)]
    cores: f64,
    /// Share of each server kept free for peaks and failover, 0 to 0.95.
    #[arg(long, default_value_t = 0.25)]
    headroom: f64,
    /// Input streams one publishing server takes, instead of the measured
    /// figure (measure: benches/relay-hop.sh, benches/load-vs-nginx.sh).
    #[arg(long)]
    streams_per_publish_server: Option<f64>,
    /// Ladders one transcoding server runs in real time, instead of the
    /// measured figure (measure: benches/transcode-vs-ffmpeg.sh).
    #[arg(long)]
    ladders_per_transcode_server: Option<f64>,
    /// Gbit/s one origin serves, instead of the measured figure (measure:
    /// benches/ll-hls-viewers.sh).
    #[arg(long)]
    gbps_per_origin: Option<f64>,
}

fn ladder(spec: &str) -> anyhow::Result<Vec<Rung>> {
    if spec == "none" {
        return Ok(Vec::new());
    }
    spec.split(',')
        .map(|r| {
            let mut it = r.split(':');
            let (Some(name), Some(v), Some(a), None) = (it.next(), it.next(), it.next(), it.next())
            else {
                anyhow::bail!("ladder rung {r:?}: name:video_kbps:audio_kbps");
            };
            let num = |s: &str| -> anyhow::Result<f64> {
                s.parse::<f64>()
                    .ok()
                    .filter(|k| k.is_finite() && *k >= 0.0)
                    .ok_or_else(|| anyhow::anyhow!("ladder rung {r:?}: {s:?} is no bitrate"))
            };
            Ok(Rung {
                name: name.to_owned(),
                video_kbps: num(v)?,
                audio_kbps: num(a)?,
            })
        })
        .collect()
}

/// Prints the plan.
pub fn plan_command(a: &PlanArgs) -> anyhow::Result<()> {
    let ladder = ladder(&a.ladder)?;
    let viewer_rung = match &a.viewer_rung {
        Some(name) => ladder
            .iter()
            .position(|r| r.name == *name)
            .ok_or_else(|| anyhow::anyhow!("--viewer-rung {name:?} is not in the ladder"))?,
        None => 0,
    };
    anyhow::ensure!((0.0..=1.0).contains(&a.cdn_share), "--cdn-share is 0 to 1");
    anyhow::ensure!(
        a.cores.is_finite() && a.cores > 0.0 && (0.0..=0.95).contains(&a.headroom),
        "--cores is more than 0, --headroom 0 to 0.95"
    );
    let measured = Capacity::measured(a.cores, a.headroom);
    let capacity = Some(Capacity {
        streams_per_publish_server: a
            .streams_per_publish_server
            .unwrap_or(measured.streams_per_publish_server),
        ladders_per_transcode_server: a
            .ladders_per_transcode_server
            .unwrap_or(measured.ladders_per_transcode_server),
        gbps_per_origin: a.gbps_per_origin.unwrap_or(measured.gbps_per_origin),
    });
    let input = PlanInput {
        streams: a.streams,
        input_video_kbps: a.input_video_kbps,
        input_audio_kbps: a.input_audio_kbps,
        ladder,
        viewers: a.viewers,
        viewer_rung,
        cdn_share: a.cdn_share,
        origins: a.origins,
        dvr_hours: a.dvr_hours,
        dvr_streams: a.dvr_streams,
        capacity,
    };
    let p = plan(&input);
    let rungs = input.ladder.len().max(1);
    println!(
        "input           {:>12.1} Mbit/s  ({} x {:.0} kbit/s)",
        p.input_mbps,
        a.streams,
        a.input_video_kbps + a.input_audio_kbps
    );
    println!(
        "ladder output   {:>12.1} Mbit/s  ({} x {:.0} kbit/s, every rung once; not x {} renditions)",
        p.ladder_output_mbps,
        a.streams,
        p.ladder_kbps_per_stream,
        a.streams as usize * rungs
    );
    println!(
        "between nodes   {:>12.1} Mbit/s  (inputs to transcoders, ladders to {} origins)",
        p.inter_node_mbps, a.origins
    );
    println!(
        "to viewers      {:>12.1} Mbit/s  ({} viewers)",
        p.viewers_mbps, a.viewers
    );
    println!(
        "origin egress   {:>12.1} Mbit/s  (CDN share {:.0} %)",
        p.origin_egress_mbps,
        a.cdn_share * 100.0
    );
    println!(
        "DVR, all rungs  {:>12.1} GB per origin ({} streams x {} h)",
        p.dvr_ladder_gb, a.dvr_streams, a.dvr_hours
    );
    println!("DVR, top rung   {:>12.1} GB per origin", p.dvr_top_gb);
    let (publish, transcode, origins) = p.servers.unwrap_or_default();
    let c = input.capacity.unwrap_or(measured);
    println!(
        "servers         {publish} publishing, {transcode} transcoding (1 standby), {origins} origins \
         ({} cores, {:.0} % kept free)",
        a.cores,
        a.headroom * 100.0
    );
    println!(
        "  one server:   {:.0} streams in, {:.1} ladders, {:.1} Gbit/s to viewers",
        c.streams_per_publish_server, c.ladders_per_transcode_server, c.gbps_per_origin
    );
    let m = ugc_core::plan::MEASURED_PER_CORE;
    println!(
        "  one core (this project's benchmarks; measure yours with the same scripts):\n    \
         {} streams: {}\n    {} ladders: {}\n    {} Gbit/s: {}",
        m.streams, m.sources[0], m.ladders, m.sources[1], m.origin_gbps, m.sources[2]
    );
    // The guide's own example, for reference.
    let without_servers = PlanInput {
        capacity: None,
        ..input.clone()
    };
    if without_servers == guide_example() {
        println!(
            "(the guide's example; it prints 223 Mbit/s of ladder output, counting each ladder once per rendition)"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_ladder_is_the_guides_and_bad_ones_are_refused() {
        let spec = PlanArgs::augment_args(clap::Command::new("t"))
            .get_arguments()
            .find(|a| a.get_id() == "ladder")
            .and_then(|a| a.get_default_values().first().cloned())
            .unwrap();
        assert_eq!(
            ladder(spec.to_str().unwrap()).unwrap(),
            ugc_core::plan::guide_ladder()
        );
        assert!(ladder("none").unwrap().is_empty());
        for bad in ["bad", "1080p:4000", "1080p:x:1", "1080p:1:2:3", "a:-1:2"] {
            assert!(ladder(bad).is_err(), "{bad}");
        }
    }
}
