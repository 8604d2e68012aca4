//! Serving an axum router over TLS (rustls with aws-lc-rs), HTTP/2 and
//! HTTP/1.1 negotiated by ALPN. Safari wants HTTP/2 for LL-HLS; plain-TCP
//! `axum::serve` already speaks HTTP/1.1 and HTTP/2 with prior knowledge
//! (h2c) on the same port.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::http::{self, ConnLimiter, Guarded, ServeConfig, ServeStats};

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A rustls server configuration from a PEM certificate chain and a PEM
/// private key (PKCS#8, PKCS#1 or SEC1), offering `h2` and `http/1.1`.
pub fn server_config(cert_pem: &Path, key_pem: &Path) -> io::Result<Arc<rustls::ServerConfig>> {
    let certs = CertificateDer::pem_file_iter(cert_pem)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| io::Error::other(format!("reading {}: {e}", cert_pem.display())))?;
    if certs.is_empty() {
        return Err(io::Error::other(format!(
            "{}: no certificate",
            cert_pem.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(key_pem)
        .map_err(|e| io::Error::other(format!("reading {}: {e}", key_pem.display())))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| io::Error::other(format!("certificate/key: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// [`server_config`] for RTMPS: no ALPN (RTMP clients send none, and the
/// HTTPS `h2` is not RTMP).
pub fn rtmp_server_config(
    cert_pem: &Path,
    key_pem: &Path,
) -> io::Result<Arc<rustls::ServerConfig>> {
    let mut config = (*server_config(cert_pem, key_pem)?).clone();
    config.alpn_protocols.clear();
    Ok(Arc::new(config))
}

/// Serves `app` on `listener` over TLS until the listener fails, with the
/// limits of [`ServeConfig::default`]. Each request carries
/// `ConnectInfo<SocketAddr>` of its peer, like
/// `into_make_service_with_connect_info`.
pub async fn serve_tls(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
) -> io::Result<()> {
    serve_tls_with(listener, tls, app, ServeConfig::default(), Arc::default()).await
}

/// [`serve_tls`] with `config`'s limits (the same as plain
/// [`http::serve`](crate::http::serve)'s; the ClientHello is the first
/// bytes `header_read_timeout` waits for), counting into `stats`.
pub async fn serve_tls_with(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
    config: ServeConfig,
    stats: Arc<ServeStats>,
) -> io::Result<()> {
    let acceptor = TlsAcceptor::from(tls);
    let builder = Arc::new(http::builder(&config));
    // Never told to stop: the listener runs as long as its task.
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    let limiter = ConnLimiter::of(&config);
    loop {
        let Some((tcp, peer, slot)) = http::accept(&listener, &limiter, &stats).await else {
            continue;
        };
        let io = Guarded::new(tcp, &config, stats.clone());
        let in_flight = io.in_flight();
        let (acceptor, builder, app) = (acceptor.clone(), builder.clone(), app.clone());
        let (stopped, stats) = (stopped.clone(), stats.clone());
        tokio::spawn(async move {
            let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(io));
            let stream = tokio::select! {
                biased;
                () = slot.displaced() => {
                    stats.displaced.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    return;
                }
                h = handshake => match h {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => return,
                },
            };
            http::serve_connection(
                &builder, stream, peer, app, stopped, in_flight, &stats, slot,
            )
            .await;
        });
    }
}
