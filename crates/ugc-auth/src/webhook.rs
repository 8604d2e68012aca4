//! Webhooks: events of the platform POSTed as JSON to the operator's URLs,
//! signed, retried, and never in the way of the media.
//!
//! Today's event is `stream.source_switched` (a failover to a backup
//! publisher or the fallback slate, and back), from
//! [`ugc_core::Hub::source_switches`] through [`forward_source_switches`].
//!
//! A request carries one event:
//! ```text
//! POST <url>
//! Content-Type: application/json
//! X-Ugc-Event: stream.source_switched
//! X-Ugc-Signature: t=1733313600,v1=<hex HMAC-SHA256(secret, "1733313600." + body)>
//!
//! {"id":"<32 hex>","event":"stream.source_switched","at_ms":1733313600123,
//!  "stream":"demo","from":"main","to":"fallback"}
//! ```
//! The signature header is sent when a secret is configured; a receiver
//! checks it with [`verify`] (or its own HMAC), and refuses old timestamps
//! so a captured request cannot be replayed later. `id` is the same on
//! every retry of one event, for receivers that deduplicate.
//!
//! Delivery: each URL has its own bounded queue and task, so a slow or dead
//! receiver delays only itself. A delivery that fails (no 2xx within the
//! timeout) is retried with doubling waits, in order; after the last retry
//! it is dropped and counted. An event that finds its URL's queue full is
//! dropped and counted at once ([`Webhooks::send`] never waits). Plain
//! `http://` only: this crate carries no TLS stack (a receiver on a private
//! network, or a local TLS proxy in front of a remote one).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use http_body_util::{BodyExt, Full, Limited};
use hyper::Uri;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use sha2::Sha256;
use tokio::sync::{broadcast, mpsc};

use crate::error::{Error, Result};

type HmacSha256 = Hmac<Sha256>;

/// The `X-Ugc-Signature` header.
pub const SIGNATURE_HEADER: &str = "x-ugc-signature";
/// The `X-Ugc-Event` header.
pub const EVENT_HEADER: &str = "x-ugc-event";

/// Where and how webhooks are sent.
#[derive(Clone)]
pub struct WebhookConfig {
    /// `http://host[:port]/path` receivers; each gets every event.
    pub urls: Vec<String>,
    /// The HMAC key of `X-Ugc-Signature`; `None` sends no signature.
    pub secret: Option<String>,
    /// Deadline of one attempt (connect, answer, body). Default 5 s.
    pub timeout: Duration,
    /// Retries after a failed attempt. Default 5.
    pub retries: u32,
    /// Wait before the first retry; doubles per retry up to 60 s. Default
    /// 1 s (so 1 + 2 + 4 + 8 + 16 s for the default retries).
    pub first_backoff: Duration,
    /// Events queued per URL; one more is dropped. Default 1,024.
    pub queue: usize,
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("urls", &self.urls)
            .field("secret", &self.secret.as_ref().map(|_| "<set>"))
            .field("timeout", &self.timeout)
            .field("retries", &self.retries)
            .field("first_backoff", &self.first_backoff)
            .field("queue", &self.queue)
            .finish()
    }
}

impl WebhookConfig {
    /// Defaults for `urls`, unsigned.
    pub fn new(urls: Vec<String>) -> Self {
        WebhookConfig {
            urls,
            secret: None,
            timeout: Duration::from_secs(5),
            retries: 5,
            first_backoff: Duration::from_secs(1),
            queue: 1024,
        }
    }
}

/// The longest wait between retries.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// The wait before retry `n` (1-based) after `first`: `first * 2^(n-1)`,
/// at most [`MAX_BACKOFF`].
pub fn backoff(first: Duration, n: u32) -> Duration {
    let factor = 1u32.checked_shl(n.saturating_sub(1)).unwrap_or(u32::MAX);
    first.saturating_mul(factor).min(MAX_BACKOFF)
}

/// The `X-Ugc-Signature` value of `body` sent at `timestamp` (Unix seconds).
pub fn signature(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    let mac = mac_of(secret, timestamp, body).finalize().into_bytes();
    format!("t={timestamp},v1={}", crate::util::hex(&mac))
}

/// The HMAC of `"<timestamp>." + body`, before finalizing.
fn mac_of(secret: &[u8], timestamp: u64, body: &[u8]) -> HmacSha256 {
    // HMAC takes a key of any length: this cannot fail.
    let mut mac = match HmacSha256::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// Whether `header` (an `X-Ugc-Signature` value) signs `body` with
/// `secret`, at a timestamp within `tolerance` of `now` (Unix seconds).
/// The comparison takes the same time for every wrong signature.
pub fn verify(secret: &[u8], header: &str, body: &[u8], now: u64, tolerance: u64) -> bool {
    let mut timestamp = None;
    let mut given = None;
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<u64>().ok(),
            Some(("v1", v)) => given = crate::util::unhex::<32>(v),
            _ => {}
        }
    }
    let (Some(t), Some(given)) = (timestamp, given) else {
        return false;
    };
    if t.abs_diff(now) > tolerance {
        return false;
    }
    mac_of(secret, t, body).verify_slice(&given).is_ok()
}

/// Counters of a [`Webhooks`] (all URLs together).
#[derive(Debug, Default)]
pub struct WebhookStats {
    /// Events delivered (a 2xx answer).
    pub delivered: AtomicU64,
    /// Attempts that failed and were retried.
    pub retried: AtomicU64,
    /// Events given up after the last retry.
    pub failed: AtomicU64,
    /// Events dropped because their URL's queue was full.
    pub dropped: AtomicU64,
}

impl WebhookStats {
    /// The `ugc_webhook_events_total{result}` family.
    pub fn write_metrics(&self, m: &mut ugc_core::metrics::Exposition) {
        m.family(
            "ugc_webhook_events_total",
            ugc_core::metrics::Kind::Counter,
            "Webhook events by result (per receiver URL): delivered, retried (a failed attempt), \
             failed (given up after the last retry), dropped (the URL's queue was full).",
        );
        for (result, v) in [
            ("delivered", &self.delivered),
            ("retried", &self.retried),
            ("failed", &self.failed),
            ("dropped", &self.dropped),
        ] {
            m.sample(&[("result", result)], v.load(Ordering::Relaxed) as f64);
        }
    }
}

/// One event, serialized once for every URL and attempt.
#[derive(Debug, Clone)]
struct Queued {
    kind: &'static str,
    body: Bytes,
}

/// Sends events to the configured URLs. Cheap to clone; the delivery tasks
/// end when the last clone is dropped and their queues are empty.
#[derive(Clone, Debug)]
pub struct Webhooks {
    queues: Arc<Vec<mpsc::Sender<Queued>>>,
    stats: Arc<WebhookStats>,
}

impl Webhooks {
    /// Checks the URLs and starts one delivery task per URL (on the current
    /// Tokio runtime).
    pub fn start(config: WebhookConfig) -> Result<Self> {
        let stats = Arc::new(WebhookStats::default());
        let mut queues = Vec::new();
        for url in &config.urls {
            let uri: Uri = url
                .parse()
                .map_err(|e| Error::Config(format!("webhook URL {url:?}: {e}")))?;
            if uri.scheme_str() != Some("http") || uri.host().is_none() {
                return Err(Error::Config(format!(
                    "webhook URL {url:?}: only http://host[:port]/path is supported (no TLS stack)"
                )));
            }
            let (tx, rx) = mpsc::channel(config.queue.max(1));
            queues.push(tx);
            tokio::spawn(deliver(uri, config.clone(), rx, stats.clone()));
        }
        Ok(Webhooks {
            queues: Arc::new(queues),
            stats,
        })
    }

    /// Queues event `kind` with `fields` (an object; `id`, `event` and
    /// `at_ms` are added) for every URL, without waiting.
    pub fn send(&self, kind: &'static str, fields: serde_json::Value) {
        let mut body = serde_json::Map::new();
        let id = crate::util::random_bytes::<16>()
            .map(|b| crate::util::hex(&b))
            .unwrap_or_default();
        body.insert("id".into(), id.into());
        body.insert("event".into(), kind.into());
        body.insert("at_ms".into(), unix_ms(SystemTime::now()).into());
        if let serde_json::Value::Object(fields) = fields {
            body.extend(fields);
        }
        let event = Queued {
            kind,
            body: Bytes::from(serde_json::Value::Object(body).to_string()),
        };
        for q in self.queues.iter() {
            if q.try_send(event.clone()).is_err() {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The counters.
    pub fn stats(&self) -> &Arc<WebhookStats> {
        &self.stats
    }
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Delivers `rx`'s events to `uri` in order, each retried until it is
/// answered 2xx or out of retries.
async fn deliver(
    uri: Uri,
    config: WebhookConfig,
    mut rx: mpsc::Receiver<Queued>,
    stats: Arc<WebhookStats>,
) {
    let mut conn = HttpConnector::new();
    conn.set_connect_timeout(Some(config.timeout));
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build(conn);
    while let Some(event) = rx.recv().await {
        let mut attempt = 0;
        loop {
            match post(&client, &uri, &config, &event).await {
                Ok(()) => {
                    stats.delivered.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Err(why) if attempt < config.retries => {
                    attempt += 1;
                    stats.retried.fetch_add(1, Ordering::Relaxed);
                    let wait = backoff(config.first_backoff, attempt);
                    tracing::debug!(%uri, %why, ?wait, "webhook attempt failed, retrying");
                    tokio::time::sleep(wait).await;
                }
                Err(why) => {
                    stats.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%uri, %why, event = event.kind, "webhook given up");
                    break;
                }
            }
        }
    }
}

/// One attempt: `Ok` on a 2xx answer.
async fn post(
    client: &Client<HttpConnector, Full<Bytes>>,
    uri: &Uri,
    config: &WebhookConfig,
    event: &Queued,
) -> std::result::Result<(), String> {
    let attempt = async {
        let mut req = hyper::Request::post(uri.clone())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(EVENT_HEADER, event.kind);
        if let Some(secret) = &config.secret {
            let now = unix_ms(SystemTime::now()) / 1000;
            req = req.header(
                SIGNATURE_HEADER,
                signature(secret.as_bytes(), now, &event.body),
            );
        }
        let req = req
            .body(Full::new(event.body.clone()))
            .map_err(|e| format!("request: {e}"))?;
        let resp = client
            .request(req)
            .await
            .map_err(|e| format!("unreachable: {e}"))?;
        let status = resp.status();
        // Read (a bounded part of) the answer so the connection is reused.
        Limited::new(resp.into_body(), 64 * 1024)
            .collect()
            .await
            .map_err(|e| format!("answer body: {e}"))?;
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("answered {status}"))
        }
    };
    match tokio::time::timeout(config.timeout, attempt).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {:?}", config.timeout)),
    }
}

/// Sends a `stream.source_switched` event for every switch of the hub's
/// streams from now on (`stream`: the stream's name, `rendition` when it is
/// one, `from` / `to`: `main`, `backup` or `fallback`), until the hub is
/// gone. It listens from the call on; the future it returns delivers.
/// Switches missed because it fell behind are logged.
pub fn forward_source_switches(
    hub: &ugc_core::Hub,
    webhooks: Webhooks,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let mut switches = hub.source_switches();
    async move {
        loop {
            match switches.recv().await {
                Ok(s) => {
                    let mut fields = serde_json::json!({
                        "stream": s.stream.name(),
                        "from": s.from.as_str(),
                        "to": s.to.as_str(),
                    });
                    if let Some(r) = s.stream.rendition() {
                        fields["rendition"] = r.into();
                    }
                    webhooks.send("stream.source_switched", fields);
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "webhooks fell behind the hub's source switches");
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_only_with_its_secret_body_and_time() {
        let body = br#"{"event":"stream.source_switched"}"#;
        let h = signature(b"s3cret", 1_000, body);
        assert!(h.starts_with("t=1000,v1=") && h.len() == "t=1000,v1=".len() + 64);
        assert!(verify(b"s3cret", &h, body, 1_000, 300));
        assert!(verify(b"s3cret", &h, body, 1_300, 300));
        assert!(!verify(b"s3cret", &h, body, 1_301, 300), "too old");
        assert!(!verify(b"other", &h, body, 1_000, 300));
        assert!(!verify(b"s3cret", &h, b"{}", 1_000, 300));
        let later = h.replace("t=1000", "t=1001");
        assert!(
            !verify(b"s3cret", &later, body, 1_000, 300),
            "time is signed"
        );
        for bad in ["", "t=1000", "v1=00", "t=x,v1=00", "t=1000,v1=zz"] {
            assert!(!verify(b"s3cret", bad, body, 1_000, 300), "{bad}");
        }
    }

    #[test]
    fn retries_wait_twice_as_long_each_time_up_to_a_minute() {
        let first = Duration::from_secs(1);
        let waits: Vec<u64> = (1..=8).map(|n| backoff(first, n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(backoff(first, u32::MAX), MAX_BACKOFF);
    }

    #[test]
    fn only_plain_http_urls_are_taken() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let _g = rt.enter();
        for url in ["https://x/hook", "x/hook", "ftp://x"] {
            let e = Webhooks::start(WebhookConfig::new(vec![url.into()])).unwrap_err();
            assert!(e.to_string().contains("webhook URL"), "{e}");
        }
    }
}
