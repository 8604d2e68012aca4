//! Rebuilding the index from a directory listing (the file names are the
//! index), removing leftover `.tmp` files.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

use ugc_core::StreamPath;

use super::TrackKey;
use super::index::{ArchivedInit, ArchivedSegment, Location, TrackIndex};
use super::names::{self, SegmentName};

fn scan_dirs(root: &Path) -> io::Result<Vec<(TrackKey, PathBuf)>> {
    // <root>/<app>/<stream>/<rendition>/
    let mut out = Vec::new();
    for app in read_dir_names(root)? {
        let app_dir = root.join(&app);
        if !app_dir.is_dir() {
            continue;
        }
        for stream in read_dir_names(&app_dir)? {
            let sdir = app_dir.join(&stream);
            if !sdir.is_dir() {
                continue;
            }
            for rendition in read_dir_names(&sdir)? {
                let rdir = sdir.join(&rendition);
                if !rdir.is_dir() {
                    continue;
                }
                let Some(key) = StreamPath::new(&app, &stream)
                    .ok()
                    .and_then(|s| TrackKey::rendition(&s, &rendition))
                else {
                    continue;
                };
                out.push((key, rdir));
            }
        }
    }
    Ok(out)
}

fn read_dir_names(dir: &Path) -> io::Result<Vec<String>> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        if let Ok(name) = e.file_name().into_string() {
            v.push(name);
        }
    }
    Ok(v)
}

fn scan_inner(root: &Path, clean: bool) -> io::Result<HashMap<TrackKey, TrackIndex>> {
    let mut index = HashMap::new();
    if !root.exists() {
        return Ok(index);
    }
    for (key, dir) in scan_dirs(root)? {
        let mut t = TrackIndex::default();
        let mut segs = Vec::new();
        for e in std::fs::read_dir(&dir)? {
            let e = e?;
            let Ok(name) = e.file_name().into_string() else {
                continue;
            };
            if name.ends_with(".tmp") {
                if clean {
                    let _ = std::fs::remove_file(e.path());
                }
                continue;
            }
            let size = e.metadata()?.len();
            if let Some(n) = SegmentName::parse(&name) {
                segs.push(ArchivedSegment {
                    name: n,
                    size,
                    location: Location::Local,
                });
            } else if let Some(k) = names::parse_init_name(&name) {
                t.inits.insert(
                    k,
                    ArchivedInit {
                        size,
                        location: Location::Local,
                    },
                );
            }
        }
        segs.sort_by_key(|s| s.name);
        for s in segs {
            // A segment whose init segment is missing cannot be played.
            if t.inits.contains_key(&(s.name.session, s.name.init)) {
                t.local_bytes = t.local_bytes.saturating_add(s.size);
                t.segments.push_back(s);
            }
        }
        if !t.segments.is_empty() || !t.inits.is_empty() {
            index.insert(key, t);
        }
    }
    Ok(index)
}

pub(super) fn scan(root: &Path) -> io::Result<HashMap<TrackKey, TrackIndex>> {
    scan_inner(root, true)
}

pub(super) fn scan_read_only(root: &Path) -> io::Result<HashMap<TrackKey, TrackIndex>> {
    scan_inner(root, false)
}
