//! GStreamer 1.22 (`gst-launch-1.0`, from `scripts/install-deps.sh`) as a
//! second publisher and player implementation next to ffmpeg and hls.js.

use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use super::Proc;

/// Panics unless every GStreamer element in `names` is installed.
pub fn require_elements(names: &[&str]) {
    for name in names {
        let found = Command::new("gst-inspect-1.0")
            .args(["--exists", name])
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            found,
            "GStreamer element {name} is missing: run scripts/install-deps.sh"
        );
    }
}

/// How a `gst-launch-1.0` run ended.
#[derive(Debug)]
pub struct GstRun {
    /// The exit status of `timeout`, which is gst-launch's own unless it
    /// was stopped.
    pub status: ExitStatus,
    /// stdout, then stderr.
    pub output: String,
    /// It ran until `limit` and was stopped (SIGINT).
    pub timed_out: bool,
}

/// Runs `gst-launch-1.0 args` for at most `limit`: then it gets SIGINT
/// (it stops the pipeline, prints what it has and exits), SIGKILL 5 s
/// later.
pub fn launch(limit: Duration, args: &[&str]) -> GstRun {
    let out = Command::new("timeout")
        .args(["-k", "5", "-s", "INT"])
        .arg(format!("{:.1}", limit.as_secs_f64()))
        .arg("gst-launch-1.0")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run timeout gst-launch-1.0");
    let mut output = String::from_utf8_lossy(&out.stdout).into_owned();
    output.push_str(&String::from_utf8_lossy(&out.stderr));
    GstRun {
        timed_out: out.status.code() == Some(124),
        status: out.status,
        output,
    }
}

/// `gst-launch-1.0 -e args` in the background (a publisher), killed on drop.
pub fn spawn(args: &[String]) -> Proc {
    let child = Command::new("gst-launch-1.0")
        .arg("-e")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start gst-launch-1.0");
    Proc(child)
}

/// gst-launch tokens: a live `width`x`height`@30 test pattern encoded to
/// H.264 by openh264 (an IDR every 2 s, SPS/PPS before each) and a live
/// 48 kHz stereo tone encoded to AAC by libav, both linked into the muxer
/// named `m`, which `mux` (tokens, ending with the sink) must define.
pub fn av_pipeline(width: u32, height: u32, mux: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = [
        "videotestsrc",
        "is-live=true",
        "pattern=ball",
        "!",
        &format!("video/x-raw,format=I420,width={width},height={height},framerate=30/1"),
        "!",
        "openh264enc",
        "gop-size=60",
        "bitrate=1500000",
        "!",
        "h264parse",
        "config-interval=-1",
        "!",
        "queue",
        "!",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.extend(mux.iter().map(|s| s.to_string()));
    v.extend(
        [
            "audiotestsrc",
            "is-live=true",
            "!",
            "audio/x-raw,rate=48000,channels=2",
            "!",
            "audioconvert",
            "!",
            "avenc_aac",
            "!",
            "aacparse",
            "!",
            "queue",
            "!",
            "m.",
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    v
}

/// The buffers a `fakesink name=<sink> silent=false` printed under
/// `gst-launch-1.0 -v`: their PTS in seconds, in order.
pub fn sink_pts(output: &str, sink: &str) -> Vec<f64> {
    let tag = format!("/GstFakeSink:{sink}: last-message = chain");
    output
        .lines()
        .filter(|l| l.contains(&tag))
        .filter_map(|l| {
            let t = l.split("pts: ").nth(1)?.split(',').next()?;
            let mut it = t.trim().split(':');
            let (h, m, s) = (it.next()?, it.next()?, it.next()?);
            Some(
                h.parse::<f64>().ok()? * 3600.0
                    + m.parse::<f64>().ok()? * 60.0
                    + s.parse::<f64>().ok()?,
            )
        })
        .collect()
}
