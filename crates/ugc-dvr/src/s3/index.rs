//! Where moved files live: the index object (`<object>.idx`) and its local
//! copy under `<root>/.s3/remote/`, read into the archive index at start.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ugc_core::StreamPath;

use super::queue::{Entry, Uploader};
use crate::archive::{
    Archive, ArchivedInit, ArchivedSegment, Location, SegmentName, TrackKey, names,
};

pub(super) fn remote_dir(archive: &Archive, key: &TrackKey) -> PathBuf {
    archive
        .config()
        .root
        .join(".s3")
        .join("remote")
        .join(key.rel_dir())
}
impl Uploader {
    pub(super) fn load_remote_indexes(&self) -> io::Result<()> {
        for (key, object, entries) in read_remote_indexes(&self.archive)? {
            self.apply_remote(&key, &object, &entries);
        }
        Ok(())
    }

    /// Puts remote locations into the index and deletes local copies.
    pub(super) fn apply_remote(&self, key: &TrackKey, object: &str, entries: &[Entry]) {
        let moved = add_remote_entries(&self.archive, key, object, entries);
        if self.config.delete_local {
            for p in self.archive.relocate(key, &moved) {
                let _ = std::fs::remove_file(p);
            }
        }
    }
}

/// Adds the entries of one remote index to the archive index; returns the
/// new location of every file.
pub(super) fn add_remote_entries(
    archive: &Archive,
    key: &TrackKey,
    object: &str,
    entries: &[Entry],
) -> HashMap<String, Location> {
    let object: Arc<str> = Arc::from(object);
    let mut segs = Vec::new();
    let mut inits = Vec::new();
    let mut moved = HashMap::new();
    for e in entries {
        let loc = Location::Remote {
            object: object.clone(),
            offset: e.offset,
        };
        if let Some(n) = SegmentName::parse(&e.file) {
            segs.push(ArchivedSegment {
                name: n,
                size: e.size,
                location: loc.clone(),
            });
        } else if let Some(k) = names::parse_init_name(&e.file) {
            inits.push((
                k,
                ArchivedInit {
                    size: e.size,
                    location: loc.clone(),
                },
            ));
        }
        moved.insert(e.file.clone(), loc);
    }
    archive.add_remote(key, segs, inits);
    moved
}

/// Reads the remote indexes under `<root>/.s3/remote/`.
fn read_remote_indexes(archive: &Archive) -> io::Result<Vec<(TrackKey, String, Vec<Entry>)>> {
    let mut out = Vec::new();
    let root = archive.config().root.join(".s3").join("remote");
    if !root.exists() {
        return Ok(out);
    }
    for app in std::fs::read_dir(&root)? {
        let app = app?.path();
        for stream in std::fs::read_dir(&app)? {
            let stream = stream?.path();
            for rendition in std::fs::read_dir(&stream)? {
                let rdir = rendition?.path();
                let name = |p: &Path| {
                    p.file_name()
                        .and_then(|s| s.to_str())
                        .unwrap_or("")
                        .to_owned()
                };
                let key = StreamPath::new(&name(&app), &name(&stream))
                    .ok()
                    .and_then(|s| TrackKey::rendition(&s, &name(&rdir)));
                let Some(key) = key else {
                    continue;
                };
                for f in std::fs::read_dir(&rdir)? {
                    let p = f?.path();
                    if p.extension().is_some_and(|e| e == "idx") {
                        let text = std::fs::read_to_string(&p)?;
                        if let Some((object, entries)) = parse_index(&text) {
                            out.push((key.clone(), object, entries));
                        }
                    }
                }
            }
        }
    }
    Ok(out)
}

/// Adds the S3 tier's part of the index to `archive` without touching any
/// file (the read-only CLI export). Blocking.
pub fn load_remote_index(archive: &Archive, _root: &Path) -> io::Result<()> {
    for (key, object, entries) in read_remote_indexes(archive)? {
        add_remote_entries(archive, &key, &object, &entries);
    }
    Ok(())
}
pub(super) fn render_index(object: &str, entries: &[Entry]) -> String {
    let mut s = format!("ugc-dvr-index 1\nobject {object}\n");
    for e in entries {
        s.push_str(&format!("{} {} {}\n", e.file, e.offset, e.size));
    }
    s
}

pub(super) fn parse_index(text: &str) -> Option<(String, Vec<Entry>)> {
    let mut lines = text.lines();
    if lines.next()? != "ugc-dvr-index 1" {
        return None;
    }
    let object = lines.next()?.strip_prefix("object ")?.to_owned();
    let mut entries = Vec::new();
    for l in lines {
        let mut it = l.split(' ');
        let file = it.next()?.to_owned();
        let offset: u64 = it.next()?.parse().ok()?;
        let size: u64 = it.next()?.parse().ok()?;
        // Another node may have written it (a shared bucket): a range
        // that does not fit in u64 refuses the whole index.
        offset.checked_add(size)?;
        entries.push(Entry { file, offset, size });
    }
    Some((object, entries))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_index_whose_range_overflows_is_refused() {
        let ok = "ugc-dvr-index 1\nobject o.mp4\ninit-1-0.mp4 0 10\n";
        assert_eq!(parse_index(ok).map(|(_, e)| e.len()), Some(1));
        let max = u64::MAX;
        let bad = format!("ugc-dvr-index 1\nobject o.mp4\ninit-1-0.mp4 {max} 10\n");
        assert!(parse_index(&bad).is_none());
    }
}
