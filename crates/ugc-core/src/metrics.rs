//! A writer of the Prometheus text exposition format (version 0.0.4), for a
//! `/metrics` route that reads the counters the pipeline already keeps
//! (`Hub::stats`, archive, restream, ladder counters) when it is scraped.
//! Each crate renders its own stats with it: [`write_hub`] here, the
//! restream, SRT, ladder and archive registries' `write_metrics` in theirs.
//!
//! ```
//! use ugc_core::metrics::{Exposition, Kind};
//!
//! let mut m = Exposition::new();
//! m.family("ugc_stream_frames_in_total", Kind::Counter, "Frames accepted.");
//! m.sample(&[("stream", "live/a\"b")], 42.0);
//! let text = m.finish();
//! let lines: Vec<&str> = text.lines().collect();
//! assert_eq!(lines[0], "# HELP ugc_stream_frames_in_total Frames accepted.");
//! assert_eq!(lines[1], "# TYPE ugc_stream_frames_in_total counter");
//! assert_eq!(lines[2], r#"ugc_stream_frames_in_total{stream="live/a\"b"} 42"#);
//! ```

use std::fmt::Write as _;

/// The `Content-Type` of [`Exposition::finish`]'s text.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The type of a metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (resets when the process restarts).
    Counter,
    /// Goes up and down.
    Gauge,
    /// Observations counted in buckets: samples with
    /// [`Exposition::histogram`].
    Histogram,
}

/// Builds one exposition: families, each followed by its samples.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
    family: String,
}

impl Exposition {
    /// An empty exposition.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts family `name` (`[a-zA-Z_:][a-zA-Z0-9_:]*`, a constant of
    /// the caller); the samples that follow belong to it. Every family
    /// must be started once: the format wants a family's samples together.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) -> &mut Self {
        debug_assert!(valid_name(name, true), "bad metric name {name:?}");
        self.family.clear();
        self.family.push_str(name);
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        let _ = write!(self.out, "# HELP {name} ");
        for c in help.chars() {
            match c {
                '\\' => self.out.push_str("\\\\"),
                '\n' => self.out.push_str("\\n"),
                c => self.out.push(c),
            }
        }
        let _ = writeln!(self.out, "\n# TYPE {name} {kind}");
        self
    }

    /// One sample of the current family. Label names are constants of the
    /// caller (`[a-zA-Z_][a-zA-Z0-9_]*`); label values are any text (stream
    /// names, URLs) and are escaped. Integral values up to 2^53 print
    /// without a fraction.
    pub fn sample(&mut self, labels: &[(&str, &str)], value: f64) -> &mut Self {
        self.sample_of("", labels, value)
    }

    /// One histogram of the current family (a [`Kind::Histogram`]): its
    /// `_bucket` samples, cumulative, with `le` from `bounds` (ascending
    /// upper bounds) then `+Inf`; `_sum` and `_count`. `counts` holds the
    /// observations per bucket, not cumulative: one per bound and a last
    /// one above every bound.
    ///
    /// ```
    /// use ugc_core::metrics::{Exposition, Kind};
    ///
    /// let mut m = Exposition::new();
    /// m.family("ugc_startup_seconds", Kind::Histogram, "Startup.");
    /// m.histogram(&[("stream", "live/a")], &[1.0, 2.5], &[3, 0, 1], 6.5);
    /// let text = m.finish();
    /// assert!(text.contains("ugc_startup_seconds_bucket{stream=\"live/a\",le=\"2.5\"} 3\n"));
    /// assert!(text.contains("ugc_startup_seconds_bucket{stream=\"live/a\",le=\"+Inf\"} 4\n"));
    /// assert!(text.contains("ugc_startup_seconds_sum{stream=\"live/a\"} 6.5\n"));
    /// assert!(text.contains("ugc_startup_seconds_count{stream=\"live/a\"} 4\n"));
    /// ```
    pub fn histogram(
        &mut self,
        labels: &[(&str, &str)],
        bounds: &[f64],
        counts: &[u64],
        sum: f64,
    ) -> &mut Self {
        debug_assert_eq!(
            counts.len(),
            bounds.len() + 1,
            "one count per bucket and +Inf"
        );
        let mut total = 0u64;
        for (i, n) in counts.iter().enumerate() {
            total = total.saturating_add(*n);
            let mut le = String::new();
            match bounds.get(i) {
                Some(b) => write_value(&mut le, *b),
                None => le.push_str("+Inf"),
            }
            let mut with_le: Vec<(&str, &str)> = Vec::with_capacity(labels.len() + 1);
            with_le.extend_from_slice(labels);
            with_le.push(("le", &le));
            self.sample_of("_bucket", &with_le, total as f64);
        }
        self.sample_of("_sum", labels, sum);
        self.sample_of("_count", labels, total as f64)
    }

    fn sample_of(&mut self, suffix: &str, labels: &[(&str, &str)], value: f64) -> &mut Self {
        debug_assert!(!self.family.is_empty(), "sample before any family");
        self.out.push_str(&self.family);
        self.out.push_str(suffix);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (name, value)) in labels.iter().enumerate() {
                debug_assert!(valid_name(name, false), "bad label name {name:?}");
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push_str(name);
                self.out.push_str("=\"");
                for c in value.chars() {
                    match c {
                        '\\' => self.out.push_str("\\\\"),
                        '"' => self.out.push_str("\\\""),
                        '\n' => self.out.push_str("\\n"),
                        c => self.out.push(c),
                    }
                }
                self.out.push('"');
            }
            self.out.push('}');
        }
        self.out.push(' ');
        write_value(&mut self.out, value);
        self.out.push('\n');
        self
    }

    /// The text.
    pub fn finish(self) -> String {
        self.out
    }
}

/// A metric family whose samples are read from rows of `T`, for
/// [`Exposition::families`].
pub struct Family<T> {
    /// See [`Exposition::family`].
    pub name: &'static str,
    /// See [`Exposition::family`].
    pub kind: Kind,
    /// See [`Exposition::family`].
    pub help: &'static str,
    /// A row's value.
    pub value: fn(&T) -> f64,
}

impl<T> Family<T> {
    /// A counter family.
    pub const fn counter(name: &'static str, help: &'static str, value: fn(&T) -> f64) -> Self {
        Family {
            name,
            kind: Kind::Counter,
            help,
            value,
        }
    }

    /// A gauge family.
    pub const fn gauge(name: &'static str, help: &'static str, value: fn(&T) -> f64) -> Self {
        Family {
            name,
            kind: Kind::Gauge,
            help,
            value,
        }
    }
}

impl Exposition {
    /// Writes each of `families` with one sample per row of `rows`;
    /// `labels` gives a row's labels (the same for every family).
    pub fn families<T>(
        &mut self,
        families: &[Family<T>],
        rows: &[T],
        labels: impl Fn(&T) -> Vec<(&'static str, String)>,
    ) -> &mut Self {
        let labels: Vec<_> = rows.iter().map(labels).collect();
        for f in families {
            self.family(f.name, f.kind, f.help);
            for (row, labels) in rows.iter().zip(&labels) {
                let labels: Vec<(&str, &str)> =
                    labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
                self.sample(&labels, (f.value)(row));
            }
        }
        self
    }
}

/// The Hub's families: `ugc_streams` and, by `stream`, whether it has a
/// publisher, is wanted at low latency at `now`, its readers and its
/// `ugc_stream_*_total` counters ([`Hub::stats`](crate::Hub::stats)).
pub fn write_hub(m: &mut Exposition, hub: &crate::Hub, now: std::time::Instant) {
    let mut names = hub.stream_names();
    names.sort();
    let streams: Vec<_> = names
        .iter()
        .filter_map(|n| hub.stats(n))
        .map(|s| {
            let low_latency = s.low_latency_until.is_some_and(|t| t > now);
            let fallback = s.fallback_time(now).as_secs_f64();
            (s, low_latency, fallback)
        })
        .collect();
    m.family(
        "ugc_streams",
        Kind::Gauge,
        "Streams in the Hub (published, or kept for a returning publisher), renditions included.",
    )
    .sample(&[], streams.len() as f64);
    type Row = (crate::hub::StreamSnapshot, bool, f64);
    let families: &[Family<Row>] = &[
        Family::gauge(
            "ugc_stream_publishing",
            "1 while a publisher is attached.",
            |(s, _, _)| f64::from(u8::from(s.publishing)),
        ),
        Family::gauge(
            "ugc_stream_low_latency",
            "1 while a viewer wants the stream at low latency (LL-HLS blocking reloads or parts \
             in the last 10 s): its RTMP ingest then reads as data arrives instead of batching.",
            |(_, low_latency, _)| f64::from(u8::from(*low_latency)),
        ),
        Family::gauge(
            "ugc_stream_readers",
            "Readers attached (packager, archive, restream, transcoder).",
            |(s, _, _)| s.readers as f64,
        ),
        Family::counter(
            "ugc_stream_frames_in_total",
            "Frames accepted from publishers.",
            |(s, _, _)| s.frames_in as f64,
        ),
        Family::counter(
            "ugc_stream_bytes_in_total",
            "Payload bytes accepted from publishers.",
            |(s, _, _)| s.bytes_in as f64,
        ),
        Family::counter(
            "ugc_stream_reader_skips_total",
            "Times a slow reader skipped to the newest keyframe.",
            |(s, _, _)| s.reader_skips as f64,
        ),
        Family::counter(
            "ugc_stream_timestamp_jumps_total",
            "Times a track's timestamps went back or forward by more than a second between two frames.",
            |(s, _, _)| s.timestamp_jumps as f64,
        ),
        Family::gauge(
            "ugc_stream_keyframe_interval_seconds",
            "The video's last keyframe interval (0 until two keyframes).",
            |(s, _, _)| s.keyframe_interval_ms as f64 / 1000.0,
        ),
        Family::counter(
            "ugc_stream_silent_frames_total",
            "Audio frames of silence that closed a hole at a source switch.",
            |(s, _, _)| s.silent_frames as f64,
        ),
        Family::gauge(
            "ugc_stream_active_source",
            "The source viewers get: 0 main publisher, 1 backup publisher, 2 fallback.",
            |(s, _, _)| s.active_source as u8 as f64,
        ),
        Family::counter(
            "ugc_stream_source_switches_total",
            "Switches between the main, backup and fallback sources.",
            |(s, _, _)| s.source_switches as f64,
        ),
        Family::counter(
            "ugc_stream_fallback_seconds_total",
            "Seconds viewers got the fallback (the slate) instead of a publisher.",
            |(_, _, fallback)| *fallback,
        ),
        Family::counter(
            "ugc_stream_publishers_total",
            "Publisher sessions that took the stream over (the first included).",
            |(s, _, _)| s.publishers as f64,
        ),
    ];
    m.families(families, &streams, |(s, _, _)| {
        vec![("stream", s.name.to_string())]
    });
}

/// The process's own families, as Prometheus' client libraries name them:
/// `process_cpu_seconds_total`, `process_resident_memory_bytes`,
/// `process_open_fds`, `process_start_time_seconds`. Read from
/// `/proc/self` (Linux); nothing elsewhere or when it cannot be read.
pub fn write_process(m: &mut Exposition) {
    let Some(p) = ProcessStats::read() else {
        return;
    };
    m.family(
        "process_cpu_seconds_total",
        Kind::Counter,
        "User and system CPU time of the process, seconds.",
    )
    .sample(&[], p.cpu_seconds);
    m.family(
        "process_resident_memory_bytes",
        Kind::Gauge,
        "Resident memory of the process, bytes.",
    )
    .sample(&[], p.rss_bytes);
    if let Some(fds) = p.open_fds {
        m.family("process_open_fds", Kind::Gauge, "Open file descriptors.")
            .sample(&[], fds);
    }
    if let Some(start) = p.start_time_seconds {
        m.family(
            "process_start_time_seconds",
            Kind::Gauge,
            "Start time of the process, seconds since the Unix epoch.",
        )
        .sample(&[], start);
    }
}

/// What [`write_process`] reports.
#[derive(Debug, Clone, Copy, PartialEq)]
struct ProcessStats {
    cpu_seconds: f64,
    rss_bytes: f64,
    open_fds: Option<f64>,
    start_time_seconds: Option<f64>,
}

/// Clock ticks per second of `/proc` times (`sysconf(_SC_CLK_TCK)`; 100
/// on every Linux this runs on, and not readable without libc).
const CLK_TCK: f64 = 100.0;
/// Page size of `statm` (4 KiB on x86-64 and most arm64 kernels).
const PAGE: f64 = 4096.0;

impl ProcessStats {
    fn read() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
        let fds = std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|d| d.count() as f64);
        let boot = std::fs::read_to_string("/proc/stat").ok();
        Self::parse(&stat, &statm, boot.as_deref(), fds)
    }

    /// From the text of `/proc/self/stat`, `/proc/self/statm` and
    /// `/proc/stat` (for the boot time).
    fn parse(stat: &str, statm: &str, proc_stat: Option<&str>, fds: Option<f64>) -> Option<Self> {
        // The command name may hold spaces and parentheses: fields start
        // after the last ')'. Field 3 (state) is the first after it.
        let rest = &stat[stat.rfind(')')? + 1..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        let num = |i: usize| f.get(i - 3)?.parse::<f64>().ok();
        let cpu_seconds = (num(14)? + num(15)?) / CLK_TCK;
        let rss_pages: f64 = statm.split_whitespace().nth(1)?.parse().ok()?;
        let boot = proc_stat.and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("btime "))
                .and_then(|v| v.trim().parse::<f64>().ok())
        });
        let start_time_seconds = boot.zip(num(22)).map(|(b, t)| b + t / CLK_TCK);
        Some(ProcessStats {
            cpu_seconds,
            rss_bytes: rss_pages * PAGE,
            open_fds: fds,
            start_time_seconds,
        })
    }
}

fn write_value(out: &mut String, v: f64) {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else if v.fract() == 0.0 && v.abs() <= EXACT {
        // Exact: |v| <= 2^53 fits an i64.
        let _ = write!(out, "{}", v as i64);
    } else {
        let _ = write!(out, "{v}");
    }
}

fn valid_name(name: &str, colon: bool) -> bool {
    let ok = |c: char, first: bool| {
        c.is_ascii_alphabetic() || c == '_' || (colon && c == ':') || (!first && c.is_ascii_digit())
    };
    let mut chars = name.chars();
    chars.next().is_some_and(|c| ok(c, true)) && chars.all(|c| ok(c, false))
}

/// The largest value recorded within the last one to two `period`s: a
/// gauge of recent peaks (a queue's wait, a reader's lag) that a scrape
/// reads without resetting, so two scrapers see the same. Sans-IO: the
/// caller passes `now`.
#[derive(Debug, Clone, Copy)]
pub struct RecentMax {
    period: std::time::Duration,
    slot: Option<std::time::Instant>,
    current: f64,
    previous: f64,
}

impl Default for RecentMax {
    /// Peaks kept 10-20 s (a scrape interval or two).
    fn default() -> Self {
        RecentMax::new(std::time::Duration::from_secs(10))
    }
}

impl RecentMax {
    /// Nothing recorded; peaks are kept one to two `period`s.
    pub fn new(period: std::time::Duration) -> Self {
        RecentMax {
            period: period.max(std::time::Duration::from_millis(1)),
            slot: None,
            current: 0.0,
            previous: 0.0,
        }
    }

    /// Records `value` at `now`.
    pub fn record(&mut self, value: f64, now: std::time::Instant) {
        match self.slot {
            None => self.slot = Some(now),
            Some(s) => {
                let age = now.saturating_duration_since(s);
                if age >= self.period * 2 {
                    (self.previous, self.current, self.slot) = (0.0, 0.0, Some(now));
                } else if age >= self.period {
                    (self.previous, self.current, self.slot) =
                        (self.current, 0.0, Some(s + self.period));
                }
            }
        }
        if value > self.current {
            self.current = value;
        }
    }

    /// The largest value recorded within the last one to two periods at
    /// `now` (0 when none).
    pub fn get(&self, now: std::time::Instant) -> f64 {
        let Some(s) = self.slot else {
            return 0.0;
        };
        let age = now.saturating_duration_since(s);
        if age >= self.period * 2 {
            0.0
        } else if age >= self.period {
            self.current
        } else {
            self.current.max(self.previous)
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn recent_max_keeps_a_peak_one_to_two_periods() {
        use std::time::{Duration, Instant};
        let t0 = Instant::now();
        let s = |n: u64| t0 + Duration::from_secs(n);
        let mut m = super::RecentMax::new(Duration::from_secs(10));
        assert_eq!(m.get(t0), 0.0);
        m.record(5.0, s(0));
        m.record(2.0, s(3));
        assert_eq!(m.get(s(9)), 5.0);
        // The next period: the peak is still within reach.
        m.record(1.0, s(12));
        assert_eq!(m.get(s(15)), 5.0);
        // Two periods on, only what came since.
        m.record(3.0, s(21));
        assert_eq!(m.get(s(22)), 3.0);
        // Quiet for two periods: nothing.
        assert_eq!(m.get(s(45)), 0.0);
        m.record(0.5, s(50));
        assert_eq!(m.get(s(50)), 0.5);
    }

    use super::*;

    #[test]
    fn process_stats_come_from_proc_text() {
        // A command name with a space and a parenthesis.
        let stat = "4242 (ugc (x) y) S 1 4242 4242 0 -1 4194560 2000 0 0 0 \
                    250 50 0 0 20 0 9 0 123400 900000000 5000 18446744073709551615";
        let p = ProcessStats::parse(
            stat,
            "220000 5000 900 1 0 3000 0",
            Some("cpu 1 2\nbtime 1700000000\n"),
            Some(12.0),
        )
        .unwrap();
        assert_eq!(p.cpu_seconds, 3.0);
        assert_eq!(p.rss_bytes, 5000.0 * 4096.0);
        assert_eq!(p.open_fds, Some(12.0));
        assert_eq!(p.start_time_seconds, Some(1_700_000_000.0 + 1234.0));
        assert_eq!(ProcessStats::parse("garbage", "", None, None), None);
        // This process, on Linux: some CPU, some memory.
        if let Some(me) = ProcessStats::read() {
            assert!(me.rss_bytes > 0.0 && me.cpu_seconds >= 0.0, "{me:?}");
        }
    }

    #[test]
    fn families_samples_and_escaping() {
        let mut m = Exposition::new();
        m.family("ugc_streams", Kind::Gauge, "Streams.\nTwo lines \\ here.")
            .sample(&[], 3.0);
        m.family("ugc_x_total", Kind::Counter, "X.")
            .sample(
                &[("stream", "a\\b\nc"), ("target", "rtmp://h/app/***")],
                1e20,
            )
            .sample(&[("stream", "")], 0.25);
        assert_eq!(
            m.finish(),
            "# HELP ugc_streams Streams.\\nTwo lines \\\\ here.\n\
             # TYPE ugc_streams gauge\n\
             ugc_streams 3\n\
             # HELP ugc_x_total X.\n\
             # TYPE ugc_x_total counter\n\
             ugc_x_total{stream=\"a\\\\b\\nc\",target=\"rtmp://h/app/***\"} 100000000000000000000\n\
             ugc_x_total{stream=\"\"} 0.25\n"
        );
    }

    #[test]
    fn families_of_rows() {
        let rows = [("a", 1u64, 2u64), ("b", 3, 4)];
        let mut m = Exposition::new();
        m.families(
            &[
                Family::counter("x_total", "X.", |r: &(&str, u64, u64)| r.1 as f64),
                Family::gauge("y", "Y.", |r: &(&str, u64, u64)| r.2 as f64),
            ],
            &rows,
            |r| vec![("stream", r.0.to_string())],
        );
        assert_eq!(
            m.finish(),
            "# HELP x_total X.\n# TYPE x_total counter\n\
             x_total{stream=\"a\"} 1\nx_total{stream=\"b\"} 3\n\
             # HELP y Y.\n# TYPE y gauge\n\
             y{stream=\"a\"} 2\ny{stream=\"b\"} 4\n"
        );
    }

    #[test]
    fn hub_families_by_stream() {
        let hub = crate::Hub::new(crate::HubConfig::default());
        let a = crate::StreamPath::live("a").unwrap();
        let _publisher = hub.publish(&a);
        let now = std::time::Instant::now();
        hub.want_low_latency(&a, now + std::time::Duration::from_secs(10));
        let mut m = Exposition::new();
        write_hub(&mut m, &hub, now);
        let text = m.finish();
        assert!(text.contains("\nugc_streams 1\n"), "{text}");
        assert!(text.contains("ugc_stream_publishing{stream=\"live/a\"} 1\n"));
        assert!(text.contains("ugc_stream_low_latency{stream=\"live/a\"} 1\n"));
        let mut later = Exposition::new();
        write_hub(&mut later, &hub, now + std::time::Duration::from_secs(11));
        assert!(
            later
                .finish()
                .contains("ugc_stream_low_latency{stream=\"live/a\"} 0\n")
        );
    }

    #[test]
    fn values() {
        let text = |v: f64| {
            let mut s = String::new();
            write_value(&mut s, v);
            s
        };
        assert_eq!(text(0.0), "0");
        assert_eq!(text(-7.0), "-7");
        assert_eq!(text(9_007_199_254_740_992.0), "9007199254740992");
        assert_eq!(text(0.001), "0.001");
        assert_eq!(text(f64::NAN), "NaN");
        assert_eq!(text(f64::INFINITY), "+Inf");
        assert_eq!(text(f64::NEG_INFINITY), "-Inf");
    }

    #[test]
    fn names() {
        assert!(valid_name("ugc_a:b_total", true));
        assert!(!valid_name("ugc_a:b", false));
        assert!(!valid_name("1abc", true));
        assert!(!valid_name("", true));
        assert!(!valid_name("a-b", true));
        assert!(valid_name("_x9", false));
    }
}
