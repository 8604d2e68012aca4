//! The S3 client: object_store's `AmazonS3` (signing and protocol only)
//! over our own HTTP client: hyper-util, with rustls (aws-lc-rs, the TLS
//! stack the rest of ugc uses) for `https://` endpoints, and RustCrypto
//! for SigV4. No second HTTP or TLS stack.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Settings of an S3 bucket.
#[derive(Debug, Clone, Default)]
pub struct S3Settings {
    /// `http://host:port` or `https://host[:port]`; `None` = AWS
    /// (`https://s3.<region>.amazonaws.com`).
    pub endpoint: Option<String>,
    /// Bucket.
    pub bucket: String,
    /// Region.
    pub region: String,
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
    /// PEM file of CA certificates trusted for `https://` besides the web
    /// PKI's (an S3 service with a private CA).
    pub ca_file: Option<PathBuf>,
}

/// An S3 client for `settings`: path-style requests, `http://` and
/// `https://`, object_store's own retries kept short (the uploader retries
/// for as long as it takes).
pub fn s3_store(settings: &S3Settings) -> Result<object_store::aws::AmazonS3, object_store::Error> {
    let tls =
        tls_config(settings.ca_file.as_deref()).map_err(|e| object_store::Error::Generic {
            store: "S3",
            source: Box::new(e),
        })?;
    let mut b = object_store::aws::AmazonS3Builder::new()
        .with_bucket_name(&settings.bucket)
        .with_region(&settings.region)
        .with_access_key_id(&settings.access_key_id)
        .with_secret_access_key(&settings.secret_access_key)
        .with_virtual_hosted_style_request(false)
        .with_allow_http(true)
        .with_retry(object_store::RetryConfig {
            backoff: object_store::BackoffConfig::default(),
            max_retries: 2,
            retry_timeout: Duration::from_secs(10),
        })
        .with_crypto_provider(Arc::new(crypto::RustCrypto))
        .with_http_connector(http::Http { tls });
    if let Some(e) = &settings.endpoint {
        b = b.with_endpoint(e);
    }
    b.build()
}

/// The web PKI's roots and the certificates of `ca_file`.
fn tls_config(ca_file: Option<&std::path::Path>) -> std::io::Result<Arc<rustls::ClientConfig>> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        let bad = |e: &dyn std::fmt::Display| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("CA file {}: {e}", path.display()),
            )
        };
        let mut n = 0;
        for cert in CertificateDer::pem_file_iter(path).map_err(|e| bad(&e))? {
            roots.add(cert.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
            n += 1;
        }
        if n == 0 {
            return Err(bad(&"no certificate in it"));
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The HTTP connector of [`s3_store`] with the web PKI's roots (for an
/// embedder building its own `AmazonS3`).
pub fn http_connector() -> std::io::Result<impl object_store::client::HttpConnector> {
    Ok(http::Http {
        tls: tls_config(None)?,
    })
}

mod http {
    use std::sync::Arc;

    use http_body_util::BodyExt as _;
    use object_store::client::{
        ClientOptions, HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest,
        HttpResponse, HttpResponseBody, HttpService,
    };

    #[derive(Debug, Clone)]
    pub struct Http {
        pub tls: Arc<rustls::ClientConfig>,
    }

    type Connector =
        hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>;

    #[derive(Debug)]
    struct Service {
        client:
            hyper_util::client::legacy::Client<Connector, object_store::client::HttpRequestBody>,
    }

    impl HttpConnector for Http {
        fn connect(&self, _options: &ClientOptions) -> object_store::Result<HttpClient> {
            let mut tcp = hyper_util::client::legacy::connect::HttpConnector::new();
            tcp.enforce_http(false);
            tcp.set_nodelay(true);
            tcp.set_connect_timeout(Some(std::time::Duration::from_secs(10)));
            let connector = hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config((*self.tls).clone())
                .https_or_http()
                .enable_http1()
                .wrap_connector(tcp);
            let client =
                hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                    .pool_idle_timeout(std::time::Duration::from_secs(30))
                    .build(connector);
            Ok(HttpClient::new(Service { client }))
        }
    }

    #[async_trait::async_trait]
    impl HttpService for Service {
        async fn call(&self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
            let res = tokio::time::timeout(
                std::time::Duration::from_secs(120),
                self.client.request(req),
            )
            .await
            .map_err(|e| HttpError::new(HttpErrorKind::Timeout, e))?
            .map_err(|e| {
                let kind = if e.is_connect() {
                    HttpErrorKind::Connect
                } else {
                    HttpErrorKind::Request
                };
                HttpError::new(kind, e)
            })?;
            let (parts, body) = res.into_parts();
            let body = body.map_err(|e| HttpError::new(HttpErrorKind::Interrupted, e));
            Ok(HttpResponse::from_parts(parts, HttpResponseBody::new(body)))
        }
    }
}

mod crypto {
    use hmac::{KeyInit as _, Mac as _};
    use object_store::client::{
        CryptoProvider, DigestAlgorithm, DigestContext, HmacContext, Signer, SigningAlgorithm,
    };
    use sha2::Digest as _;

    /// SHA-256 and HMAC-SHA-256 from RustCrypto (SigV4 needs nothing else).
    #[derive(Debug)]
    pub struct RustCrypto;

    struct Sha(sha2::Sha256, Vec<u8>);
    struct Hmac(Option<hmac::Hmac<sha2::Sha256>>, Vec<u8>);

    impl DigestContext for Sha {
        fn update(&mut self, data: &[u8]) {
            self.0.update(data);
        }
        fn finish(&mut self) -> object_store::Result<&[u8]> {
            self.1 = std::mem::take(&mut self.0).finalize().to_vec();
            Ok(&self.1)
        }
    }

    impl HmacContext for Hmac {
        fn update(&mut self, data: &[u8]) {
            if let Some(m) = self.0.as_mut() {
                m.update(data);
            }
        }
        fn finish(&mut self) -> object_store::Result<&[u8]> {
            if let Some(m) = self.0.take() {
                self.1 = m.finalize().into_bytes().to_vec();
            }
            Ok(&self.1)
        }
    }

    fn unsupported(what: &str) -> object_store::Error {
        object_store::Error::NotSupported {
            source: format!("{what} is not provided by ugc-dvr's RustCrypto provider").into(),
        }
    }

    impl CryptoProvider for RustCrypto {
        fn digest(
            &self,
            algorithm: DigestAlgorithm,
        ) -> object_store::Result<Box<dyn DigestContext>> {
            match algorithm {
                DigestAlgorithm::Sha256 => Ok(Box::new(Sha(sha2::Sha256::new(), Vec::new()))),
                _ => Err(unsupported("this digest")),
            }
        }
        fn hmac(
            &self,
            algorithm: DigestAlgorithm,
            secret: &[u8],
        ) -> object_store::Result<Box<dyn HmacContext>> {
            match algorithm {
                DigestAlgorithm::Sha256 => {
                    let m = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret)
                        .map_err(|_| unsupported("this HMAC key"))?;
                    Ok(Box::new(Hmac(Some(m), Vec::new())))
                }
                _ => Err(unsupported("this HMAC")),
            }
        }
        fn sign(
            &self,
            _algorithm: SigningAlgorithm,
            _pem: &[u8],
        ) -> object_store::Result<Box<dyn Signer>> {
            Err(unsupported("RSA signing"))
        }
    }
}
