//! `ll_fanout URL CLIENTS SECONDS`: CLIENTS LL-HLS viewers of one media
//! playlist, each on its own keep-alive connection doing what a player does:
//! a blocking reload (`_HLS_msn`/`_HLS_part` of the preload hint), then a GET
//! of the part it announced. Prints JSON: for each delivered part, the time
//! from its availability to each client's answer and to each client's last
//! byte of the part, as percentiles.
//!
//! Availability is the first answer any client got for that part: the
//! server cannot answer before the part exists, and with thousands of
//! clients parked on the blocking reload the first is woken within a
//! scheduler tick of it. So the figures are the fan-out spread, what one
//! more viewer costs, not the packager's own delay (`ll-hls-latency.sh`).
//!
//! One Python process cannot keep 5,000 clients on time, so this is Rust:
//! tokio, a hand-written HTTP/1.1 exchange (requests are three lines; the
//! answers are read by `Content-Length` or chunked).

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

struct Shared {
    /// Part URI -> when the first client's blocking reload announced it.
    first: Mutex<HashMap<String, Instant>>,
    /// Milliseconds from availability to each answer / each part's last byte.
    answer_ms: Mutex<Vec<f64>>,
    part_ms: Mutex<Vec<f64>>,
    bytes: AtomicU64,
    errors: AtomicU64,
    connect_errors: AtomicU64,
}

type Conn = BufReader<TcpStream>;

/// One GET on a keep-alive connection: (status, body).
async fn get(conn: &mut Conn, host: &str, path: &str) -> io::Result<(u16, Vec<u8>)> {
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n");
    conn.get_mut().write_all(req.as_bytes()).await?;
    let mut line = String::new();
    conn.read_line(&mut line).await?;
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::other(format!("bad status line {line:?}")))?;
    let (mut length, mut chunked) = (None, false);
    loop {
        line.clear();
        if conn.read_line(&mut line).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (name, value) = l.split_once(':').unwrap_or((l, ""));
        if name.eq_ignore_ascii_case("content-length") {
            length = value.trim().parse::<usize>().ok();
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().contains("chunked");
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            conn.read_line(&mut line).await?;
            let size = usize::from_str_radix(line.trim(), 16).map_err(io::Error::other)?;
            let start = body.len();
            body.resize(start + size + 2, 0);
            conn.read_exact(&mut body[start..]).await?;
            body.truncate(start + size);
            if size == 0 {
                break;
            }
        }
    } else {
        body.resize(length.unwrap_or(0), 0);
        conn.read_exact(&mut body).await?;
    }
    Ok((status, body))
}

/// The preload hint's URI and the `(msn, part)` it names
/// (`part-<session>-<msn>.<part>.m4s`).
fn hint(playlist: &str) -> Option<(String, u64, u64)> {
    let line = playlist
        .lines()
        .find(|l| l.starts_with("#EXT-X-PRELOAD-HINT:"))?;
    let uri = line.split("URI=\"").nth(1)?.split('"').next()?;
    let stem = uri.strip_prefix("part-")?.strip_suffix(".m4s")?;
    let (seq, part) = stem.rsplit_once('.')?;
    let msn = seq.rsplit('-').next()?;
    Some((uri.to_owned(), msn.parse().ok()?, part.parse().ok()?))
}

fn announces(playlist: &str, uri: &str) -> bool {
    playlist
        .lines()
        .any(|l| l.starts_with("#EXT-X-PART:") && l.contains(&format!("URI=\"{uri}\"")))
}

async fn client(shared: Arc<Shared>, addr: String, path: String, stop: Instant) {
    let Ok(tcp) = TcpStream::connect(&addr).await else {
        shared.connect_errors.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let _ = tcp.set_nodelay(true);
    let mut conn = BufReader::new(tcp);
    let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
    let mut next = None;
    while Instant::now() < stop {
        let Some((uri, msn, part)) = next.take() else {
            match get(&mut conn, &addr, &path).await {
                Ok((200, body)) => next = hint(&String::from_utf8_lossy(&body)),
                Ok(_) => {
                    shared.errors.fetch_add(1, Ordering::Relaxed);
                }
                Err(_) => {
                    shared.errors.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
            if next.is_none() {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            continue;
        };
        let blocking = format!("{path}?_HLS_msn={msn}&_HLS_part={part}");
        let (status, body) = match get(&mut conn, &addr, &blocking).await {
            Ok(r) => r,
            Err(_) => {
                shared.errors.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        let answered = Instant::now();
        let text = String::from_utf8_lossy(&body);
        if status != 200 || !announces(&text, &uri) {
            shared.errors.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        next = hint(&text);
        let first = *shared
            .first
            .lock()
            .unwrap()
            .entry(uri.clone())
            .or_insert(answered);
        let ms = |t: Instant| t.duration_since(first).as_secs_f64() * 1000.0;
        shared.answer_ms.lock().unwrap().push(ms(answered));
        match get(&mut conn, &addr, &format!("{dir}{uri}")).await {
            Ok((200, media)) => {
                shared.part_ms.lock().unwrap().push(ms(Instant::now()));
                shared
                    .bytes
                    .fetch_add((body.len() + media.len()) as u64, Ordering::Relaxed);
            }
            _ => {
                shared.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn percentiles(name: &str, mut v: Vec<f64>) -> String {
    v.sort_by(f64::total_cmp);
    let at = |p: f64| {
        v.get(((v.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    format!(
        "\"{name}\": {{\"n\": {}, \"p50\": {:.1}, \"p95\": {:.1}, \"p99\": {:.1}, \"max\": {:.1}}}",
        v.len(),
        at(0.5),
        at(0.95),
        at(0.99),
        at(1.0)
    )
}

fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, clients, seconds] = &args[..] else {
        eprintln!("usage: ll_fanout http://HOST:PORT/path/mono.m3u8 CLIENTS SECONDS");
        std::process::exit(2);
    };
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| io::Error::other("http:// URLs only"))?;
    let (addr, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let (clients, seconds): (usize, u64) = (
        clients.parse().map_err(io::Error::other)?,
        seconds.parse().map_err(io::Error::other)?,
    );
    let shared = Arc::new(Shared {
        first: Mutex::default(),
        answer_ms: Mutex::default(),
        part_ms: Mutex::default(),
        bytes: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        connect_errors: AtomicU64::new(0),
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let started = Instant::now();
    rt.block_on(async {
        let stop = Instant::now() + Duration::from_secs(seconds);
        let mut tasks = Vec::with_capacity(clients);
        for _ in 0..clients {
            let c = client(shared.clone(), addr.to_owned(), path.to_owned(), stop);
            tasks.push(tokio::spawn(c));
        }
        for t in tasks {
            let _ = t.await;
        }
    });
    let took = started.elapsed().as_secs_f64();
    let answers = std::mem::take(&mut *shared.answer_ms.lock().unwrap());
    let parts = std::mem::take(&mut *shared.part_ms.lock().unwrap());
    println!(
        "{{\"clients\": {clients}, \"seconds\": {took:.1}, \"parts_seen\": {}, \"errors\": {}, \"connect_errors\": {}, \"delivered_mbit\": {:.1}, {}, {}}}",
        shared.first.lock().unwrap().len(),
        shared.errors.load(Ordering::Relaxed),
        shared.connect_errors.load(Ordering::Relaxed),
        shared.bytes.load(Ordering::Relaxed) as f64 * 8.0 / 1e6,
        percentiles("answer_after_available_ms", answers),
        percentiles("part_delivered_after_available_ms", parts),
    );
    Ok(())
}
