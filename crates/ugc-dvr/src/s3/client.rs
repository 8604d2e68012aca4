//! The S3 client: object_store's `AmazonS3` with plain HTTP through
//! hyper-util and RustCrypto signing, or its reqwest + rustls client with
//! feature `s3-tls`.

use std::sync::Arc;
use std::time::Duration;

/// Settings of an S3 bucket.
#[derive(Debug, Clone)]
pub struct S3Settings {
    /// `http://host:port`; `None` = AWS (needs feature `s3-tls`).
    pub endpoint: Option<String>,
    /// Bucket.
    pub bucket: String,
    /// Region.
    pub region: String,
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
}

/// An S3 client for `settings`: path-style requests, plain HTTP allowed,
/// object_store's own retries kept short (the uploader retries for as long
/// as it takes).
pub fn s3_store(settings: &S3Settings) -> Result<object_store::aws::AmazonS3, object_store::Error> {
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
        .with_crypto_provider(Arc::new(crypto::RustCrypto));
    if let Some(e) = &settings.endpoint {
        b = b.with_endpoint(e);
    }
    #[cfg(not(feature = "s3-tls"))]
    {
        b = b.with_http_connector(plain_http::PlainHttp);
    }
    b.build()
}

/// The plain-HTTP connector for [`s3_store`] without feature `s3-tls`.
#[cfg(not(feature = "s3-tls"))]
pub fn plain_http_store() -> impl object_store::client::HttpConnector {
    plain_http::PlainHttp
}

#[cfg(not(feature = "s3-tls"))]
mod plain_http {
    use http_body_util::BodyExt as _;
    use object_store::client::{
        ClientOptions, HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest,
        HttpResponse, HttpResponseBody, HttpService,
    };

    #[derive(Debug, Clone, Copy)]
    pub struct PlainHttp;

    #[derive(Debug)]
    struct Service {
        client: hyper_util::client::legacy::Client<
            hyper_util::client::legacy::connect::HttpConnector,
            object_store::client::HttpRequestBody,
        >,
    }

    impl HttpConnector for PlainHttp {
        fn connect(&self, _options: &ClientOptions) -> object_store::Result<HttpClient> {
            let client =
                hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                    .pool_idle_timeout(std::time::Duration::from_secs(30))
                    .build_http();
            Ok(HttpClient::new(Service { client }))
        }
    }

    #[async_trait::async_trait]
    impl HttpService for Service {
        async fn call(&self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
            if req.uri().scheme_str() == Some("https") {
                return Err(HttpError::new(
                    HttpErrorKind::Unknown,
                    std::io::Error::other("https needs ugc-dvr's feature s3-tls"),
                ));
            }
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
