//! Checksums: SHA-256 of the local files of a job and of the object read
//! back from the store after the upload.

use std::io::{self, Read as _};
use std::path::Path;

use object_store::ObjectStoreExt;
use object_store::path::Path as ObjectPath;
use sha2::Digest as _;

use super::hex;
use super::queue::{Entry, Uploader};

pub(super) fn sha256_of(dir: &Path, entries: &[Entry]) -> io::Result<String> {
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    for e in entries {
        let mut f = std::fs::File::open(dir.join(&e.file))?;
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            h.update(buf.get(..n).unwrap_or_default());
        }
    }
    Ok(hex(&h.finalize()))
}

impl Uploader {
    /// The SHA-256 of the object at `path` as the store serves it (hex).
    pub(super) async fn object_sha256(
        &self,
        path: &ObjectPath,
    ) -> Result<String, object_store::Error> {
        let r = self.store.get(path).await?;
        let mut stream = r.into_stream();
        let mut h = sha2::Sha256::new();
        use futures_util::StreamExt as _;
        while let Some(chunk) = stream.next().await {
            h.update(&chunk?);
        }
        Ok(hex(&h.finalize()))
    }
}
