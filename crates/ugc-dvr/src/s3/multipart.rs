//! Uploading one job: the object's layout, a multipart upload resumed from
//! the persisted parts, completion, the read-back check, then the move.

use std::io::{self, Read as _};
use std::path::Path;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use object_store::multipart::PartId;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutPayload};
use ugc_core::StreamPath;

use super::index::{remote_dir, render_index};
use super::is_not_found;
use super::queue::{Entry, Job, Uploader, load_job, queue_dir, save_job};
use super::verify::sha256_of;
use crate::archive::{TrackKey, names, write_atomic};

impl Uploader {
    pub(super) async fn run_job(&self, name: &str) -> io::Result<()> {
        let dir = queue_dir(&self.archive);
        let mut job = load_job(&dir.join(name))?;
        let key = StreamPath::parse(&job.stream)
            .ok()
            .filter(StreamPath::is_source)
            .and_then(|s| TrackKey::rendition(&s, &job.rendition));
        let Some(key) = key else {
            tracing::error!(job = %name, "malformed job dropped");
            let _ = std::fs::remove_file(dir.join(name));
            return Ok(());
        };
        let path = ObjectPath::from(job.object.as_str());
        // Fix the layout once.
        if job.entries.is_empty() {
            let files = self.archive.session_files(&key, job.session);
            let mut offset = 0u64;
            for (n, size) in files.inits {
                job.entries.push(Entry {
                    file: names::init_file_name(job.session, n),
                    offset,
                    size,
                });
                offset += size;
            }
            for (n, size) in files.segments {
                job.entries.push(Entry {
                    file: n.file_name(),
                    offset,
                    size,
                });
                offset += size;
            }
            if !job.entries.iter().any(|e| e.file.starts_with('s')) {
                // Nothing (left) to upload.
                let _ = std::fs::remove_file(dir.join(name));
                return Ok(());
            }
            save_job(&dir, name, &job)?;
        }
        let local_dir = self.archive.dir(&key);
        let total: u64 = job.entries.iter().map(|e| e.size).sum();
        // Every file must still be there (retention may have removed old
        // ones while the job waited): otherwise start over with a new layout.
        let missing = job
            .entries
            .iter()
            .any(|e| !local_dir.join(&e.file).exists());
        if missing {
            tracing::warn!(job = %name, "files of a queued upload are gone; re-planning");
            self.abort(&path, &mut job).await;
            job.entries.clear();
            job.parts.clear();
            job.sha256 = None;
            save_job(&dir, name, &job)?;
            return Box::pin(self.run_job(name)).await;
        }
        if job.sha256.is_none() {
            let entries = job.entries.clone();
            let ld = local_dir.clone();
            let sum = tokio::task::spawn_blocking(move || sha256_of(&ld, &entries))
                .await
                .map_err(io::Error::other)??;
            job.sha256 = Some(sum);
            save_job(&dir, name, &job)?;
        }
        let upload_id = match &job.upload_id {
            Some(id) => id.clone(),
            None => {
                let id = self
                    .retry(
                        "create multipart",
                        |_| false,
                        || self.store.create_multipart(&path),
                    )
                    .await
                    .map_err(io::Error::other)?;
                job.upload_id = Some(id.clone());
                save_job(&dir, name, &job)?;
                id
            }
        };
        let part_size = job.part_size as u64;
        let n_parts = total.div_ceil(part_size).max(1);
        let sent = |parts: usize| (parts as u64).saturating_mul(part_size).min(total);
        self.set_running(Some((name.to_owned(), sent(job.parts.len()), total)));
        while (job.parts.len() as u64) < n_parts {
            let idx = job.parts.len();
            let start = idx as u64 * part_size;
            let end = (start + part_size).min(total);
            let entries = job.entries.clone();
            let ld = local_dir.clone();
            let data = tokio::task::spawn_blocking(move || read_span(&ld, &entries, start, end))
                .await
                .map_err(io::Error::other)??;
            let res = self
                .retry("upload part", is_not_found, || {
                    self.store
                        .put_part(&path, &upload_id, idx, PutPayload::from(data.clone()))
                })
                .await;
            match res {
                Ok(part) => {
                    self.stats
                        .bytes_uploaded
                        .fetch_add(end - start, Ordering::Relaxed);
                    job.parts.push(part.content_id);
                    save_job(&dir, name, &job)?;
                    self.set_running(Some((name.to_owned(), sent(job.parts.len()), total)));
                }
                Err(e) => {
                    // The server forgot the upload: start over.
                    tracing::warn!(job = %name, error = %e, "multipart upload lost; starting over");
                    self.abort(&path, &mut job).await;
                    job.parts.clear();
                    save_job(&dir, name, &job)?;
                    return Box::pin(self.run_job(name)).await;
                }
            }
        }
        let parts: Vec<PartId> = job
            .parts
            .iter()
            .map(|c| PartId {
                content_id: c.clone(),
            })
            .collect();
        let completed = self
            .retry("complete multipart", is_not_found, || {
                self.store
                    .complete_multipart(&path, &upload_id, parts.clone())
            })
            .await;
        if let Err(e) = completed {
            // NotFound: either an earlier complete succeeded but its answer
            // was lost, or the upload is gone; verification decides.
            tracing::warn!(job = %name, error = %e, "completing the upload");
        }
        // Verify: read the object back and compare its SHA-256.
        let want = job.sha256.clone().unwrap_or_default();
        let got = self
            .retry("verify", |_| false, || self.object_sha256(&path))
            .await;
        match got {
            Ok(sum) if sum == want => {}
            Ok(sum) => {
                tracing::error!(job = %name, %want, %sum, "uploaded object differs; uploading again");
                job.upload_id = None;
                job.parts.clear();
                save_job(&dir, name, &job)?;
                return Err(io::Error::other("checksum mismatch after upload"));
            }
            Err(e) if is_not_found(&e) => {
                job.upload_id = None;
                job.parts.clear();
                save_job(&dir, name, &job)?;
                return Err(io::Error::other("object missing after upload"));
            }
            Err(e) => return Err(io::Error::other(e)),
        }
        // The index object, then the local remote index, then the move.
        let index = render_index(&job.object, &job.entries);
        let idx_path = ObjectPath::from(format!("{}.idx", job.object));
        let idx_bytes = Bytes::from(index.clone());
        self.retry(
            "put index",
            |_| false,
            || {
                self.store
                    .put(&idx_path, PutPayload::from(idx_bytes.clone()))
            },
        )
        .await
        .map_err(io::Error::other)?;
        let rdir = remote_dir(&self.archive, &key);
        write_atomic(&rdir, &format!("{}.idx", job.session), &[index.as_bytes()])?;
        self.apply_remote(&key, &job.object, &job.entries);
        std::fs::remove_file(dir.join(name))?;
        self.set_running(None);
        self.stats.uploaded.fetch_add(1, Ordering::Relaxed);
        tracing::info!(stream = %key.stream, rendition = %key.rendition, session = job.session,
            object = %job.object, bytes = total, "recording moved to S3");
        Ok(())
    }

    async fn abort(&self, path: &ObjectPath, job: &mut Job) {
        if let Some(id) = job.upload_id.take() {
            let r = self
                .retry("abort multipart", is_not_found, || {
                    self.store.abort_multipart(path, &id)
                })
                .await;
            if r.is_ok() {
                self.stats.aborted.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn read_span(dir: &Path, entries: &[Entry], start: u64, end: u64) -> io::Result<Bytes> {
    let mut out = Vec::with_capacity(usize::try_from(end - start).unwrap_or(0));
    for e in entries {
        let (a, b) = (e.offset, e.offset + e.size);
        if b <= start || a >= end {
            continue;
        }
        let from = start.max(a) - a;
        let to = end.min(b) - a;
        let mut f = std::fs::File::open(dir.join(&e.file))?;
        use std::io::Seek as _;
        f.seek(io::SeekFrom::Start(from))?;
        let mut buf = vec![0u8; usize::try_from(to - from).unwrap_or(0)];
        f.read_exact(&mut buf)?;
        out.extend_from_slice(&buf);
    }
    Ok(Bytes::from(out))
}
