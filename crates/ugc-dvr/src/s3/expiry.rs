//! Deleting recordings past their depth from the object store: retention
//! ([`Archive::set_object_expired_hook`]) hands over each object it dropped
//! from the index; a delete job is persisted under `<root>/.s3/delete/`
//! (so a crash or an unreachable server only delays it) and the upload
//! loop deletes the object, its `.idx` and the local copy of the index,
//! then the job. A crash before the job is written leaves the local index,
//! whose entries come back at the next start and expire again.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use object_store::ObjectStoreExt as _;
use object_store::path::Path as ObjectPath;
use serde::{Deserialize, Serialize};

use super::index::remote_dir;
use super::queue::Uploader;
use super::{Store, is_not_found};
use crate::archive::{Archive, TrackKey, write_atomic};

/// A persisted delete job.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct DeleteJob {
    object: String,
    /// The local copy of the object's index (none for a peer's object).
    #[serde(default)]
    local_index: Option<PathBuf>,
}

pub(super) fn delete_dir(archive: &Archive) -> PathBuf {
    archive.config().root.join(".s3").join("delete")
}

impl Uploader {
    /// Hooks retention's expired objects (called by [`Uploader::new`]).
    pub(super) fn hook_expiry(self: &Arc<Self>) -> io::Result<()> {
        std::fs::create_dir_all(delete_dir(&self.archive))?;
        let weak = Arc::downgrade(self);
        self.archive
            .set_object_expired_hook(Arc::new(move |archive, key, session, object, expired| {
                if let Some(up) = weak.upgrade() {
                    let own = object.starts_with(&up.config.prefix);
                    if expired && !own {
                        // Its owner expires it at its own depth.
                        tracing::debug!(%object, "a peer's recording left the index past its depth; its object is the peer's to delete");
                        return;
                    }
                    if let Err(e) = enqueue_delete(archive, key, session, object, own) {
                        tracing::error!(%object, error = %e, "queueing the deletion of an expired recording");
                    }
                    up.wake.notify_one();
                }
            }));
        Ok(())
    }

    /// Runs every delete job (retrying while the server is away). Returns
    /// how many objects were deleted.
    pub(super) async fn run_deletes(&self) -> io::Result<usize> {
        let dir = delete_dir(&self.archive);
        let jobs = {
            let dir = dir.clone();
            tokio::task::spawn_blocking(move || list_jobs(&dir))
                .await
                .map_err(io::Error::other)??
        };
        let mut n = 0;
        for name in jobs {
            let path = dir.join(&name);
            let job: DeleteJob = match std::fs::read(&path)
                .and_then(|t| serde_json::from_slice(&t).map_err(io::Error::other))
            {
                Ok(j) => j,
                Err(e) => {
                    tracing::error!(job = %name, error = %e, "unreadable delete job; dropped");
                    let _ = std::fs::remove_file(&path);
                    continue;
                }
            };
            for object in [job.object.clone(), format!("{}.idx", job.object)] {
                let store: &dyn Store = &*self.store;
                let at = ObjectPath::from(object.as_str());
                let done = self
                    .retry("S3 delete", is_not_found, || store.delete(&at))
                    .await;
                if let Err(e) = done
                    && !is_not_found(&e)
                {
                    return Err(io::Error::other(e));
                }
            }
            if let Some(local) = &job.local_index {
                match std::fs::remove_file(local) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
            std::fs::remove_file(&path)?;
            self.stats.deleted.fetch_add(1, Ordering::Relaxed);
            tracing::info!(object = %job.object, "expired recording deleted from the object store");
            n += 1;
        }
        Ok(n)
    }
}

fn enqueue_delete(
    archive: &Archive,
    key: &TrackKey,
    session: i64,
    object: &str,
    own: bool,
) -> io::Result<()> {
    let job = DeleteJob {
        object: object.to_owned(),
        local_index: own.then(|| remote_dir(archive, key).join(format!("{session}.idx"))),
    };
    // A peer's object of the same track and session gets its own job.
    let peer = if own {
        String::new()
    } else {
        use sha2::Digest as _;
        format!(
            "_{}",
            &super::hex(&sha2::Sha256::digest(object.as_bytes()))[..16]
        )
    };
    let name = format!(
        "{}_{}_{session}{peer}.del",
        key.stream.as_str().replace('/', "~"),
        key.rendition
    );
    let text = serde_json::to_vec(&job).map_err(io::Error::other)?;
    write_atomic(&delete_dir(archive), &name, &[&text])
}

fn list_jobs(dir: &Path) -> io::Result<Vec<String>> {
    let mut v: Vec<String> = std::fs::read_dir(dir)?
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.ends_with(".del"))
        .collect();
    v.sort();
    Ok(v)
}
