//! Relocation: files the S3 tier moved get their remote location in the
//! index (and the local copies are returned for deletion).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;

use super::index::{ArchivedInit, ArchivedSegment, Location};
use super::{Archive, TrackKey, names, write};

impl Archive {
    /// Replaces the location of archived files (the S3 tier moved them):
    /// `moved` maps file names to their new location. Returns the local
    /// bytes released from the index (the caller deletes the files).
    pub fn relocate(&self, key: &TrackKey, moved: &HashMap<String, Location>) -> Vec<PathBuf> {
        let mut released = Vec::new();
        let mut idx = write(&self.inner.index);
        let Some(t) = idx.get_mut(key) else {
            return released;
        };
        for s in t.segments.iter_mut() {
            if s.location == Location::Local
                && let Some(loc) = moved.get(&s.name.file_name())
            {
                s.location = loc.clone();
                t.local_bytes = t.local_bytes.saturating_sub(s.size);
                self.inner.local_bytes.fetch_sub(
                    s.size.min(self.inner.local_bytes.load(Ordering::Relaxed)),
                    Ordering::Relaxed,
                );
                released.push(self.dir(key).join(s.name.file_name()));
            }
        }
        for (&(session, n), init) in t.inits.iter_mut() {
            let file = names::init_file_name(session, n);
            if init.location == Location::Local
                && let Some(loc) = moved.get(&file)
            {
                init.location = loc.clone();
                released.push(self.dir(key).join(file));
            }
        }
        released
    }

    /// Adds remote entries to the index (rebuilding the S3 tier's part of
    /// the index on start).
    pub fn add_remote(
        &self,
        key: &TrackKey,
        segments: Vec<ArchivedSegment>,
        inits: Vec<((i64, u32), ArchivedInit)>,
    ) {
        let mut idx = write(&self.inner.index);
        let t = idx.entry(key.clone()).or_default();
        for s in segments {
            // A local copy (not yet deleted) wins.
            t.insert(s);
        }
        for (k, i) in inits {
            t.inits.entry(k).or_insert(i);
        }
    }
}
