//! `ugc-server dvr export`: its flags, a progress bar, then the library's
//! range ([`ExportRange`]) and export.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use ugc_dvr::config::DvrConfig;
use ugc_dvr::export_file::{ExportRange, export_to_file};

/// `ugc-server <command>`; without one the server runs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// DVR archive tools.
    Dvr {
        #[command(subcommand)]
        command: DvrCommand,
    },
    /// Bandwidth, storage and servers a platform needs (defaults: the
    /// guide's example).
    Plan(crate::plan::PlanArgs),
}

/// `ugc-server dvr <command>`.
#[derive(Debug, Subcommand)]
pub enum DvrCommand {
    /// Export a range of the archive as a progressive MP4 (no re-encoding).
    Export(ExportArgs),
}

/// `ugc-server dvr export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Stream name (`foo` or `live/foo`).
    #[arg(long)]
    pub stream: String,
    /// Start: unix seconds, or negative seconds relative to now (`-600`).
    #[arg(long, allow_hyphen_values = true)]
    pub from: i64,
    /// Length in seconds.
    #[arg(long)]
    pub duration: u32,
    /// Output file.
    #[arg(short, long)]
    pub output: PathBuf,
}

/// `ugc-server dvr export`: the library's range and export, with a
/// progress bar on a terminal.
pub fn export_command(config: &DvrConfig, args: &ExportArgs) -> anyhow::Result<()> {
    use std::io::IsTerminal as _;
    let now_ms = ugc_dvr::archive::now_unix_ms();
    let range = ExportRange::resolve(&args.stream, args.from, args.duration, now_ms)?;
    let archive = config.open_read_only()?;
    let bar = match std::io::stderr().is_terminal() {
        true => indicatif::ProgressBar::new(0).with_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        ),
        false => indicatif::ProgressBar::hidden(),
    };
    let progress = {
        let bar = bar.clone();
        move |done, total| {
            bar.set_length(total);
            bar.set_position(done);
        }
    };
    let started = std::time::Instant::now();
    let export = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(export_to_file(
            &archive,
            &range.key,
            range.from_ms,
            range.to_ms,
            &args.output,
            progress,
        ))?;
    bar.finish();
    let secs = started.elapsed().as_secs_f64().max(1e-6);
    eprintln!(
        "wrote {} ({} bytes, {:.1} s of media, {} segments) in {:.2} s ({:.0} MB/s)",
        args.output.display(),
        export.bytes,
        export.duration_ms as f64 / 1000.0,
        export.segments,
        secs,
        export.bytes as f64 / secs / 1e6
    );
    Ok(())
}
