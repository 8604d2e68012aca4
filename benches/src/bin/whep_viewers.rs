//! WHEP viewers as load (issue #18, "100 WHEP viewers of one stream on 2
//! cores"): `VIEWERS` str0m peers, each with its own UDP socket on
//! loopback and its own address there (127.0.1.1, 127.0.1.2, ...: a crowd
//! comes from many addresses, and the server holds each address to a few
//! sessions still connecting), offer to receive video and audio at `URL`,
//! connect, and count
//! the pictures and audio frames they get for `SECONDS` (a picture counts
//! once str0m has depacketized it whole: RTP, SRTP and reassembly are done
//! as a browser would, decoding is not). Then each DELETEs its session.
//!
//! Prints one JSON line: viewers asked for, connected, and that got
//! pictures; pictures per second per viewer (min, p50); stalls (a gap
//! between pictures over 1 s) summed; first picture after the POST (p50,
//! p95, ms); Mbit/s received in all; this client's CPU seconds.
//!
//! Usage: `whep_viewers URL VIEWERS SECONDS [TOKEN]`

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::change::SdpAnswer;
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, RtcConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

#[path = "../percentile.rs"]
mod percentile;
use percentile::pct;

/// The `p` quantile (0..=1) of sorted `v` (nearest rank; 0 for none).
fn quantile(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// What one viewer saw.
#[derive(Debug, Default, Clone)]
struct Seen {
    connected: bool,
    pictures: u64,
    audio: u64,
    bytes: u64,
    stalls: u64,
    first_us: Option<u32>,
    error: Option<String>,
}

/// One HTTP/1.1 request; status, `Location`, body.
async fn http(
    from: std::net::IpAddr,
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> std::io::Result<(u16, Option<String>, String)> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0))?;
    let mut s: TcpStream = socket.connect(addr).await?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(t) = token {
        head.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    if !body.is_empty() {
        head.push_str("Content-Type: application/sdp\r\n");
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    s.write_all(head.as_bytes()).await?;
    s.write_all(body.as_bytes()).await?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let location = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("location")
            .then(|| v.trim().to_owned())
    });
    Ok((status, location, body.to_owned()))
}

async fn view(
    ip: std::net::IpAddr,
    http_addr: SocketAddr,
    path: String,
    token: Option<String>,
    until: Instant,
) -> Seen {
    let mut seen = Seen::default();
    if let Err(e) = run(ip, http_addr, &path, token.as_deref(), until, &mut seen).await {
        seen.error = Some(e);
    }
    seen
}

async fn run(
    ip: std::net::IpAddr,
    http_addr: SocketAddr,
    path: &str,
    token: Option<&str>,
    until: Instant,
    seen: &mut Seen,
) -> Result<(), String> {
    let socket = UdpSocket::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let local = socket.local_addr().map_err(|e| e.to_string())?;
    let mut rtc = RtcConfig::new()
        .set_crypto_provider(Arc::new(str0m::crypto::from_feature_flags()))
        .build(Instant::now());
    rtc.add_local_candidate(Candidate::host(local, "udp").map_err(|e| e.to_string())?);
    let mut change = rtc.sdp_api();
    change.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
    change.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
    let (offer, pending) = change.apply().ok_or("no offer")?;
    let posted = Instant::now();
    let (status, location, answer) =
        http(ip, http_addr, "POST", path, token, &offer.to_sdp_string())
            .await
            .map_err(|e| e.to_string())?;
    if status != 201 {
        return Err(format!("POST {status}: {answer}"));
    }
    let answer = SdpAnswer::from_sdp_string(&answer).map_err(|e| e.to_string())?;
    rtc.sdp_api()
        .accept_answer(pending, answer)
        .map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 2048];
    let mut last_picture: Option<Instant> = None;
    loop {
        let timeout = match rtc.poll_output().map_err(|e| e.to_string())? {
            Output::Timeout(t) => t,
            Output::Transmit(t) => {
                let _ = socket.send_to(&t.contents, t.destination).await;
                continue;
            }
            Output::Event(Event::Connected) => {
                seen.connected = true;
                continue;
            }
            Output::Event(Event::MediaData(md)) => {
                let now = Instant::now();
                seen.bytes += md.data.len() as u64;
                if md.params.spec().codec == Codec::H264 {
                    seen.pictures += 1;
                    seen.first_us.get_or_insert(
                        u32::try_from(now.duration_since(posted).as_micros()).unwrap_or(u32::MAX),
                    );
                    if last_picture.is_some_and(|t| now.duration_since(t) > Duration::from_secs(1))
                    {
                        seen.stalls += 1;
                    }
                    last_picture = Some(now);
                } else {
                    seen.audio += 1;
                }
                continue;
            }
            Output::Event(_) => continue,
        };
        let now = Instant::now();
        if now >= until {
            break;
        }
        let wait = timeout.min(until).saturating_duration_since(now);
        tokio::select! {
            r = socket.recv_from(&mut buf) => {
                if let Ok((n, from)) = r
                    && let Ok(r) = Receive::new(Protocol::Udp, from, local, &buf[..n])
                {
                    let _ = rtc.handle_input(Input::Receive(Instant::now(), r));
                }
            }
            () = tokio::time::sleep(wait) => {
                rtc.handle_input(Input::Timeout(Instant::now())).map_err(|e| e.to_string())?;
            }
        }
    }
    if let Some(l) = location {
        let _ = http(ip, http_addr, "DELETE", &l, None, "").await;
    }
    Ok(())
}

fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<f64> = after
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    // utime and stime are fields 14 and 15 of the line: 12 and 13 after ')'.
    (f.get(11).copied().unwrap_or(0.0) + f.get(12).copied().unwrap_or(0.0)) / 100.0
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: whep_viewers URL VIEWERS SECONDS [TOKEN]");
        std::process::exit(2);
    }
    let url = args[1].strip_prefix("http://").expect("an http:// URL");
    let (host, path) = url.split_once('/').expect("URL with a path");
    let http_addr: SocketAddr = host.parse().expect("URL host as IP:PORT");
    let path = format!("/{path}");
    let viewers: usize = args[2].parse().expect("VIEWERS");
    let seconds: u64 = args[3].parse().expect("SECONDS");
    let token = args.get(4).cloned();
    let start = Instant::now();
    let until = start + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for i in 0..viewers {
        let ip = std::net::Ipv4Addr::new(127, 0, 1 + (i / 250) as u8, 1 + (i % 250) as u8);
        tasks.push(tokio::spawn(view(
            ip.into(),
            http_addr,
            path.clone(),
            token.clone(),
            until,
        )));
        // Viewers arrive over the first seconds, as a crowd does.
        if i % 10 == 9 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let mut all = Vec::new();
    for t in tasks {
        all.push(t.await.unwrap_or_default());
    }
    let connected = all.iter().filter(|s| s.connected).count();
    let playing = all.iter().filter(|s| s.pictures > 0).count();
    let mut rates: Vec<f64> = all
        .iter()
        .map(|s| s.pictures as f64 / seconds as f64)
        .collect();
    rates.sort_by(f64::total_cmp);
    let mut firsts: Vec<u32> = all.iter().filter_map(|s| s.first_us).collect();
    let mut audio: Vec<f64> = all.iter().map(|s| s.audio as f64).collect();
    audio.sort_by(f64::total_cmp);
    let stalls: u64 = all.iter().map(|s| s.stalls).sum();
    let bytes: u64 = all.iter().map(|s| s.bytes).sum();
    let errors: Vec<&str> = all
        .iter()
        .filter_map(|s| s.error.as_deref())
        .take(3)
        .collect();
    println!(
        "{}",
        serde_json::json!({
            "viewers": viewers,
            "connected": connected,
            "playing": playing,
            "fps_min": rates.first().copied().unwrap_or(0.0),
            "fps_p50": quantile(&rates, 0.5),
            "audio_fps_p50": quantile(&audio, 0.5) / seconds as f64,
            "stalls": stalls,
            "first_picture_ms_p50": pct(&mut firsts, 0.5),
            "first_picture_ms_p95": pct(&mut firsts, 0.95),
            "mbit_s": bytes as f64 * 8.0 / 1e6 / seconds as f64,
            "client_cpu_s": cpu_seconds(),
            "errors": errors,
        })
    );
}
