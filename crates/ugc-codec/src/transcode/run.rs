//! The thin tokio loop that runs a [`Ladder`] from a Hub stream into one Hub
//! stream per rendition, restarting it when it fails.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};
use ugc_core::{Hub, HubPublisher, MediaEvent, StreamPath, Transform};

use super::{Ladder, LadderReport, LadderRunStats, LadderStatsSnapshot, RenditionReport};
use crate::ladder::{LadderConfig, LadderDemux, RENDITION_VIDEO_TRACK};

/// Drops a ladder off the reactor (dropping joins its threads).
fn retire(ladder: Ladder) {
    tokio::task::spawn_blocking(move || drop(ladder));
}

/// Transcodes Hub stream `source` with `config` into the Hub streams
/// `<source>/<rendition>` until the source ends or `stop` turns true; then
/// ends the rendition streams. A ladder that fails is replaced by a new one
/// that starts at the next keyframe (at most once a second); other streams
/// are not affected. The counters are logged every 10 s when something was
/// dropped.
pub async fn run_ladder(
    hub: Hub,
    source: StreamPath,
    config: LadderConfig,
    stop: watch::Receiver<bool>,
) -> crate::Result<LadderReport> {
    run_ladder_with_stats(hub, source, config, stop, Arc::default()).await
}

/// [`run_ladder`], counting into `stats` as it goes.
pub async fn run_ladder_with_stats(
    hub: Hub,
    source: StreamPath,
    config: LadderConfig,
    mut stop: watch::Receiver<bool>,
    stats: Arc<LadderRunStats>,
) -> crate::Result<LadderReport> {
    let Some(mut reader) = hub.subscribe_existing(&source) else {
        return Ok(stats.report());
    };
    let notify = Arc::new(Notify::new());
    let new_ladder = || {
        let n = notify.clone();
        Ladder::with_stats(
            config.clone(),
            Some(Arc::new(move || n.notify_one())),
            stats.ladder.clone(),
        )
    };
    let mut ladder = new_ladder()?;
    let mut demux = LadderDemux::new();
    let mut publishers: HashMap<usize, HubPublisher> = HashMap::new();
    let mut out = Vec::new();
    let mut last_tracks = None;
    let mut need_key = false;
    let mut last_restart = Instant::now();
    let mut last_log = Instant::now();
    let mut logged = LadderStatsSnapshot::default();
    let mut source_ended = false;
    tracing::info!(stream = %source, "transcoding");
    loop {
        let result = tokio::select! {
            ev = reader.recv() => match ev {
                Some(MediaEvent::End) | None => {
                    source_ended = true;
                    break;
                }
                Some(e) => {
                    if let MediaEvent::Tracks(t) = &e {
                        last_tracks = Some(t.clone());
                    }
                    if need_key {
                        match &e {
                            MediaEvent::Frame(f) if f.keyframe && last_tracks
                                .as_ref()
                                .and_then(|t| t.video())
                                .is_none_or(|v| v.id == f.track) => need_key = false,
                            MediaEvent::Tracks(_) => {}
                            _ => continue,
                        }
                    }
                    ladder.push(e, &mut out)
                }
            },
            _ = notify.notified() => ladder.poll_output(&mut out),
            r = stop.changed() => {
                if r.is_err() || *stop.borrow() {
                    break;
                }
                continue;
            }
        };
        route(
            &hub,
            &source,
            &config,
            &mut demux,
            &mut publishers,
            &mut out,
            &stats,
        );
        if let Err(e) = result {
            let restarts = stats.restarts.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::warn!(stream = %source, error = %e, restarts, "transcode ladder failed; restarting");
            let wait = Duration::from_secs(1).saturating_sub(last_restart.elapsed());
            tokio::time::sleep(wait).await;
            last_restart = Instant::now();
            retire(std::mem::replace(&mut ladder, new_ladder()?));
            need_key = true;
            if let Some(t) = &last_tracks {
                ladder.push(MediaEvent::Tracks(t.clone()), &mut out).ok();
            }
        }
        if last_log.elapsed() >= Duration::from_secs(10) {
            last_log = Instant::now();
            let s = ladder.stats();
            if s.pictures_dropped != logged.pictures_dropped
                || s.input_dropped != logged.input_dropped
            {
                tracing::warn!(stream = %source, ?s, "transcode ladder dropped frames to keep real time");
            }
            logged = s;
        }
    }
    if source_ended {
        // Encode what is queued (blocking: off the reactor).
        let (ladder_back, rest) = tokio::task::spawn_blocking(move || {
            let mut rest = Vec::new();
            let _ = ladder.flush(&mut rest);
            (ladder, rest)
        })
        .await
        .map_err(|e| crate::Error::InvalidArgument(format!("ladder flush: {e}")))?;
        out.extend(rest);
        route(
            &hub,
            &source,
            &config,
            &mut demux,
            &mut publishers,
            &mut out,
            &stats,
        );
        retire(ladder_back);
    } else {
        retire(ladder);
    }
    for (i, _) in publishers.drain() {
        if let Some(path) = config
            .rendition_name(i)
            .and_then(|name| source.with_rendition(name).ok())
        {
            hub.end(&path);
        }
    }
    let report = stats.report();
    tracing::info!(stream = %source, stats = ?report.stats, restarts = report.restarts, "transcoding stopped");
    Ok(report)
}

fn route(
    hub: &Hub,
    source: &StreamPath,
    config: &LadderConfig,
    demux: &mut LadderDemux,
    publishers: &mut HashMap<usize, HubPublisher>,
    out: &mut Vec<MediaEvent>,
    stats: &LadderRunStats,
) {
    if out.is_empty() {
        return;
    }
    let mut counters = stats.lock();
    for e in out.drain(..) {
        for (i, e) in demux.route(e) {
            if matches!(e, MediaEvent::End) {
                continue;
            }
            let Some(name) = config.rendition_name(i) else {
                continue;
            };
            let c = counters.entry(i).or_insert_with(|| RenditionReport {
                name: name.to_owned(),
                ..RenditionReport::default()
            });
            match &e {
                MediaEvent::Frame(f) if f.track == RENDITION_VIDEO_TRACK => c.video_frames += 1,
                MediaEvent::Frame(_) => c.audio_frames += 1,
                MediaEvent::Tracks(t) => {
                    let v = t.video().and_then(|v| v.video());
                    c.width = v.map_or(0, |v| v.width);
                    c.height = v.map_or(0, |v| v.height);
                }
                _ => {}
            }
            let publisher = match publishers.entry(i) {
                std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                std::collections::hash_map::Entry::Vacant(v) => match source.with_rendition(name) {
                    // On the source's timeline: every node names the
                    // rendition's media as it names the source's.
                    Ok(path) => v.insert(hub.publish_on_timeline(
                        &path,
                        ugc_core::SourceRole::Main,
                        hub.timeline(source),
                    )),
                    Err(err) => {
                        tracing::warn!(stream = %source, rendition = name, error = %err, "cannot publish rendition");
                        continue;
                    }
                },
            };
            if let Err(err) = publisher.push(e) {
                tracing::debug!(stream = %source, rendition = name, error = %err, "rendition push");
            }
        }
    }
}
