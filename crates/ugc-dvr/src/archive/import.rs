//! Import: files another origin recorded (DVR replication,
//! [`crate::replica`]) enter the archive under their own names, written
//! crash-safely like recorded ones.

use std::io;
use std::sync::atomic::Ordering;

use super::index::{ArchivedInit, ArchivedSegment, Location};
use super::names::{self, SegmentName};
use super::{Archive, TrackKey, write, write_atomic};

impl Archive {
    /// Adds init segment `n` of `session` of `key` with `data` (a no-op when
    /// the index has it). Blocking: call it off the reactor.
    pub fn import_init(&self, key: &TrackKey, session: i64, n: u32, data: &[u8]) -> io::Result<()> {
        if self.init(key, session, n).is_some() {
            return Ok(());
        }
        write_atomic(&self.dir(key), &names::init_file_name(session, n), &[data])?;
        // A session recorded here later gets a greater id than any imported.
        self.inner.last_session.fetch_max(session, Ordering::AcqRel);
        write(&self.inner.index)
            .entry(key.clone())
            .or_default()
            .inits
            .entry((session, n))
            .or_insert(ArchivedInit {
                size: data.len() as u64,
                location: Location::Local,
            });
        Ok(())
    }

    /// Adds segment `name` of `key` with `data`; its init segment must be
    /// in the index already ([`import_init`](Self::import_init) first), so
    /// that nothing in the index lacks what plays it. A no-op when the
    /// index has it. Blocking.
    pub fn import_segment(
        &self,
        key: &TrackKey,
        name: &SegmentName,
        data: &[u8],
    ) -> io::Result<()> {
        if self.segment(key, name).is_some() {
            return Ok(());
        }
        if self.init(key, name.session, name.init).is_none() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "the segment's init segment is not in the archive",
            ));
        }
        let depth = self.depth_hours(&key.stream);
        if depth == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the stream is not recorded here",
            ));
        }
        if name
            .provisional
            .is_some_and(|d| d != names::digest(&[data]))
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "a provisional segment's bytes do not match the digest in its name",
            ));
        }
        if name.is_provisional()
            && self.with_index(key, |i| {
                i.is_some_and(|i| i.keeps_time_against(name, data.len() as u64))
            })
        {
            // A copy of that time here keeps its place (the plan saw
            // otherwise, the recorder wrote since): nothing to do.
            return Ok(());
        }
        write_atomic(&self.dir(key), &name.file_name(), &[data])?;
        let size = data.len() as u64;
        let mut idx = write(&self.inner.index);
        let t = idx.entry(key.clone()).or_default();
        // The peer's copy of these seconds replaces what this origin cut
        // provisionally (in the same step, so that no range lists both).
        let replaced = t.take_replaced(name, size);
        let before = t.segments.len();
        t.insert(ArchivedSegment {
            name: *name,
            size,
            location: Location::Local,
        });
        if t.segments.len() > before {
            self.inner.local_bytes.fetch_add(size, Ordering::Relaxed);
        }
        drop(idx);
        let dir = self.dir(key);
        for old in &replaced {
            self.inner
                .local_bytes
                .fetch_sub(old.size.min(self.local_bytes()), Ordering::Relaxed);
            if let Err(e) = std::fs::remove_file(dir.join(old.name.file_name())) {
                tracing::warn!(stream = %key.stream, file = %old.name.file_name(), error = %e,
                    "removing a replaced provisional segment");
            }
        }
        let stats = &self.inner.stats;
        stats.segments_imported.fetch_add(1, Ordering::Relaxed);
        stats
            .segments_replaced
            .fetch_add(replaced.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::archive::{ArchiveConfig, now_unix_ms};
    use ugc_core::StreamPath;

    #[test]
    fn imported_files_are_indexed_and_survive_a_reopen() {
        let dir = std::env::temp_dir().join(format!("ugc-import-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let key = TrackKey::source(&StreamPath::new("live", "imp").unwrap());
        let session = now_unix_ms() - 60_000;
        let name = SegmentName {
            pdt_ms: session + 1000,
            duration_ms: 2000,
            dts_ms: 1000,
            session,
            msn: 0,
            init: 0,
            discontinuity: true,
            provisional: None,
        };
        {
            let a = Archive::open(ArchiveConfig::new(&dir, 1)).unwrap();
            // No init yet: refused, nothing written.
            assert!(a.import_segment(&key, &name, b"media").is_err());
            assert!(!a.segment_path(&key, &name).exists());
            a.import_init(&key, session, 0, b"init").unwrap();
            a.import_segment(&key, &name, b"media").unwrap();
            a.import_segment(&key, &name, b"media").unwrap();
            assert_eq!(a.range(&key, 0, i64::MAX).len(), 1);
            assert_eq!(a.local_bytes(), 5);
            // A session recorded here now gets a greater id.
            let rec = a
                .recorder(&StreamPath::new("live", "imp").unwrap())
                .unwrap();
            assert!(rec.session() > session);
            assert_eq!(a.stats().segments_imported.load(Ordering::Relaxed), 1);
        }
        let a = Archive::open(ArchiveConfig::new(&dir, 1)).unwrap();
        assert_eq!(a.range(&key, 0, i64::MAX)[0].name, name);
        assert_eq!(
            std::fs::read(a.segment_path(&key, &name)).unwrap(),
            b"media"
        );
        assert_eq!(a.init(&key, session, 0).unwrap().size, 4);
        // Not recorded here (depth 0): refused.
        let b = Archive::open(ArchiveConfig::new(dir.join("b"), 0)).unwrap();
        b.import_init(&key, session, 0, b"init").unwrap();
        assert!(b.import_segment(&key, &name, b"media").is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
