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
    /// Input streams one publishing server takes (measure:
    /// benches/load-vs-nginx.sh). With the next two: server counts.
    #[arg(long)]
    streams_per_publish_server: Option<f64>,
    /// Ladders one transcoding server runs in real time (measure:
    /// benches/transcode-vs-ffmpeg.sh).
    #[arg(long)]
    ladders_per_transcode_server: Option<f64>,
    /// Gbit/s one origin serves (measure: benches/ll-hls-viewers.sh).
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
    let capacity = match (
        a.streams_per_publish_server,
        a.ladders_per_transcode_server,
        a.gbps_per_origin,
    ) {
        (Some(s), Some(l), Some(g)) => Some(Capacity {
            streams_per_publish_server: s,
            ladders_per_transcode_server: l,
            gbps_per_origin: g,
        }),
        (None, None, None) => None,
        _ => anyhow::bail!("server counts need all three capacities"),
    };
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
    match p.servers {
        Some((publish, transcode, origins)) => println!(
            "servers         {publish} publishing, {transcode} transcoding (1 standby), {origins} origins"
        ),
        None => println!(
            "servers         pass --streams-per-publish-server, --ladders-per-transcode-server and \
             --gbps-per-origin, measured on your hardware with benches/"
        ),
    }
    // The guide's own example, for reference.
    if input == guide_example() {
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
