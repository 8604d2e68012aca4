//! External authorization backends: an HTTP POST of the request as JSON to a
//! configured URL; a 2xx answer allows, anything else denies.
//!
//! Fail-closed: a timeout, a connection error, a redirect (never followed),
//! or a response body over the size cap all deny. Plain `http://` only: the
//! backend is an internal service, and this crate carries no TLS stack (put
//! it on localhost or a private network, or behind a local TLS proxy).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::Uri;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::error::{Error, Result};

/// Where and how to ask an external backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalBackend {
    /// `http://host:port/path`.
    pub url: String,
    /// Whole-request deadline (connect, answer, body). Default 2 s.
    pub timeout: Duration,
    /// Largest response body read; a longer one denies. Default 64 KiB.
    pub max_body: usize,
}

impl ExternalBackend {
    /// A backend at `url` with the default timeout and body cap.
    pub fn new(url: impl Into<String>) -> Self {
        ExternalBackend {
            url: url.into(),
            timeout: Duration::from_secs(2),
            max_body: 64 * 1024,
        }
    }
}

/// A ready client for one backend.
#[derive(Clone, Debug)]
pub(crate) struct BackendClient {
    uri: Uri,
    cfg: ExternalBackend,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl BackendClient {
    pub(crate) fn new(cfg: &ExternalBackend) -> Result<Self> {
        let uri: Uri = cfg
            .url
            .parse()
            .map_err(|e| Error::Config(format!("auth backend URL {:?}: {e}", cfg.url)))?;
        if uri.scheme_str() != Some("http") || uri.host().is_none() {
            return Err(Error::Config(format!(
                "auth backend URL {:?}: only http://host[:port]/path is supported (no TLS stack)",
                cfg.url
            )));
        }
        let mut conn = HttpConnector::new();
        conn.set_connect_timeout(Some(cfg.timeout));
        let client = Client::builder(TokioExecutor::new()).build(conn);
        Ok(BackendClient {
            uri,
            cfg: cfg.clone(),
            client,
        })
    }

    /// POSTs `body` and answers `Ok(())` on 2xx, why not otherwise.
    pub(crate) async fn ask(&self, body: serde_json::Value) -> Result<(), BackendDenial> {
        let fut = async {
            let req = hyper::Request::post(self.uri.clone())
                .header(hyper::header::CONTENT_TYPE, "application/json")
                .body(Full::new(Bytes::from(body.to_string())))
                .map_err(|e| BackendDenial::Failed(format!("request: {e}")))?;
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| BackendDenial::Failed(format!("backend unreachable: {e}")))?;
            let status = resp.status();
            // Read (and bound) the body so the connection can be reused.
            Limited::new(resp.into_body(), self.cfg.max_body)
                .collect()
                .await
                .map_err(|e| BackendDenial::Failed(format!("backend body: {e}")))?;
            if status.is_success() {
                Ok(())
            } else {
                Err(BackendDenial::Refused(status.as_u16()))
            }
        };
        match tokio::time::timeout(self.cfg.timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(BackendDenial::Failed(format!(
                "backend timed out after {:?}",
                self.cfg.timeout
            ))),
        }
    }
}

/// Why a backend did not allow a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BackendDenial {
    /// It answered with this non-2xx HTTP status: a refusal.
    Refused(u16),
    /// No usable answer (unreachable, timed out, body over the cap): the
    /// request is refused all the same (fail closed), but the publisher may
    /// try again later. The text is for our log (it may name the backend).
    Failed(String),
}

impl std::fmt::Display for BackendDenial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BackendDenial::Refused(status) => write!(f, "backend answered {status}"),
            BackendDenial::Failed(why) => f.write_str(why),
        }
    }
}
