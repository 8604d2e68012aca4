//! The S3 tier (feature `s3`): finished recordings move to an
//! S3-compatible bucket through [`object_store`]; ranges that live only
//! there are read back through a size-bounded LRU + TTL cache on local disk.
//!
//! **Upload.** When a recording session ends ([`Archive::set_session_end_hook`](crate::archive::Archive::set_session_end_hook)),
//! a job file is written to `<root>/.s3/queue/` (tmp + fsync + rename) and
//! the [`Uploader`] task uploads the session as one object: its init
//! segments followed by its media segments, i.e. a fragmented MP4 of the
//! whole event (`<prefix><stream>/<rendition>/<session>.mp4`), plus a small
//! text index (`.idx`) of where each file sits in it. The upload is
//! multipart; the upload id and every finished part's ETag are persisted in
//! the job, so a restart resumes where it stopped and no multipart upload is
//! left behind (a job that must start over aborts its old upload first).
//! Every request is retried with exponential backoff (capped) for as long
//! as the server is away. After completion the object is read back and its
//! SHA-256 compared with the local files'; only then the index moves to
//! `<root>/.s3/remote/` and the local files are deleted.
//!
//! **Read back.** [`S3Cache`] implements [`RemoteStore`](crate::archive::RemoteStore): a byte range of
//! an object becomes a file in the cache directory; concurrent requests for
//! the same range fetch it once; the cache evicts least-recently-used files
//! beyond its size and refetches files older than its TTL.
//!
//! **HTTP.** The S3 client is object_store's signing and protocol code
//! over the `hyper-util` client already in the dependency tree, with
//! rustls (aws-lc-rs) for `https://` endpoints (web PKI roots plus
//! [`S3Settings::ca_file`]) and the RustCrypto `hmac`/`sha2` crates for
//! SigV4 ([`s3_store`], [`http_connector`]): plain HTTP for an S3 service
//! on the local network (MinIO, garage, s3s), HTTPS for AWS or a remote
//! one, with no second HTTP or TLS stack.
//!
//! **Expiry.** A recording past its depth leaves the object store too:
//! when retention dropped every segment of an object, the object, its
//! `.idx` and the local copy of the index are deleted (a persisted job,
//! retried while the server is away; logged). Only depth expires objects:
//! the local size bound never deletes what is in S3.
//!
//! One module per job: `queue` (the [`Uploader`] and its jobs on disk),
//! `multipart` (uploading one job), `verify` (checksums of the local files
//! and of the object read back), `index` (where moved files live), `cache`
//! ([`S3Cache`]), `expiry` (deleting expired objects) and `client` (the S3
//! client over HTTP or HTTPS).

mod cache;
mod client;
mod expiry;
mod index;
mod multipart;
mod peers;
mod queue;
mod verify;

use object_store::ObjectStore;
use object_store::multipart::MultipartStore;

pub use cache::{CacheConfig, CacheStats, S3Cache, attach_read_side};
pub use client::{S3Settings, http_connector, s3_store};
pub use index::load_remote_index;
pub use queue::{StreamFilter, UploadConfig, UploadStats, Uploader};

/// An object store with multipart uploads (`AmazonS3`, `InMemory`, ...).
pub trait Store: ObjectStore + MultipartStore {}
impl<T: ObjectStore + MultipartStore> Store for T {}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn is_not_found(e: &object_store::Error) -> bool {
    matches!(e, object_store::Error::NotFound { .. })
}
