//! Reading what other nodes uploaded to a shared bucket.
//!
//! Origins of a cluster write below their own prefixes (`ugc/<node id>/`)
//! of one bucket, so a recording survives the node that made it: with
//! [`UploadConfig::peers`](super::UploadConfig::peers) set to the prefix
//! above theirs (`ugc/`), an origin lists the index objects (`.mp4.idx`,
//! written only after the object was verified) of every other node below
//! it and puts into its own archive index the parts of each recording it
//! lacks: the same rule as replication between origins
//! ([`replica::plan`](crate::replica::plan): a peer segment is lacking
//! when no local segment covers its midpoint), inside the stream's depth
//! and outside the recordings deleted here. Those segments then play
//! from the peer's object through this node's cache, like its own moved
//! ones; nothing is copied.
//!
//! A local copy replication made of a peer's file (same name and size)
//! becomes a reference to the peer's object once that object holds it,
//! and the local file goes (with `delete_local`, as for this node's own
//! uploads): the shared bucket then holds the recording once, and a
//! restarted node does not upload the copy again below its own prefix.
//!
//! Ownership stays with the writer: retention here never deletes a peer's
//! object (its owner expires it at its own depth); a recording deleted on
//! request here deletes the objects it lives in, whoever wrote them (the
//! user asked for the recording to go; the deleted span is remembered, so
//! it is not read back in).
//!
//! Replication between origins waits for the first listing
//! ([`Uploader::peers_read_once`]): a restarted origin then references
//! what a peer's object holds instead of copying its bytes over HTTP.
//!
//! A listing is read every [`UploadConfig::peer_scan`](super::UploadConfig::peer_scan)
//! (and at start); an index object already read (same key and ETag or
//! size) is not fetched again.

use std::collections::HashSet;
use std::io;
use std::sync::atomic::Ordering;

use futures_util::StreamExt as _;
use object_store::ObjectStoreExt as _;
use object_store::path::Path as ObjectPath;
use ugc_core::StreamPath;

use super::index::{add_remote_entries, parse_index};
use super::queue::{Entry, Uploader};
use crate::archive::names::parse_init_name;
use crate::archive::{Location, SegmentName, TrackIndex, TrackKey};
use crate::replica::{self, PeerFile, Window};

/// Largest index object read (a day of 1 s segments is about 6 MB).
const MAX_INDEX_BYTES: u64 = 32 << 20;

/// The track and session of an index object's key
/// (`<any prefix>/<app>/<stream>/<rendition>/<session>.mp4.idx`).
pub(super) fn track_of_index(key: &str) -> Option<(TrackKey, i64)> {
    let mut it = key.rsplit('/');
    let file = it.next()?;
    let rendition = it.next()?;
    let name = it.next()?;
    let app = it.next()?;
    let session = file.strip_suffix(".mp4.idx")?.parse().ok()?;
    let stream = StreamPath::new(app, name).ok()?;
    Some((TrackKey::rendition(&stream, rendition)?, session))
}

/// The entries of a peer's object this node's index of the track lacks
/// (pure): segments whose midpoint no local segment covers, ending after
/// `from_ms` (the local depth), outside `deleted` spans, and the init
/// segments they need.
pub(super) fn lacking(
    local: Option<&TrackIndex>,
    entries: &[Entry],
    from_ms: i64,
    deleted: &[(i64, i64)],
) -> Vec<Entry> {
    let files: Vec<PeerFile> = entries
        .iter()
        .filter_map(|e| {
            if let Some(name) = SegmentName::parse(&e.file) {
                Some(PeerFile::Segment { name, size: e.size })
            } else {
                parse_init_name(&e.file).map(|(session, n)| PeerFile::Init {
                    session,
                    n,
                    size: e.size,
                })
            }
        })
        .collect();
    let files = replica::without_deleted(files, deleted);
    let window = Window {
        from_ms,
        settle_before_ms: i64::MAX,
        recording: None,
    };
    let plan = replica::plan(local, &files, window, u64::MAX);
    let want: HashSet<String> = plan.fetch.iter().map(PeerFile::file_name).collect();
    entries
        .iter()
        .filter(|e| want.contains(&e.file))
        .cloned()
        .collect()
}

/// The entries of a peer's object this node holds as local files of the
/// same name and size (pure): copies replication made of the peer's
/// files, which the peer's object now holds.
pub(super) fn local_copies(local: Option<&TrackIndex>, entries: &[Entry]) -> Vec<Entry> {
    let Some(local) = local else {
        return Vec::new();
    };
    entries
        .iter()
        .filter(|e| {
            if let Some(name) = SegmentName::parse(&e.file) {
                let at = local.segments.partition_point(|s| s.name < name);
                local.segments.get(at).is_some_and(|s| {
                    s.name == name && s.size == e.size && s.location == Location::Local
                })
            } else if let Some(k) = parse_init_name(&e.file) {
                local
                    .inits
                    .get(&k)
                    .is_some_and(|i| i.size == e.size && i.location == Location::Local)
            } else {
                false
            }
        })
        .cloned()
        .collect()
}

impl Uploader {
    /// Lists the peers' index objects below
    /// [`UploadConfig::peers`](super::UploadConfig::peers) and adds what
    /// this archive lacks of them to its index. Returns how many peer
    /// objects added segments. Errors are the listing's; an index that
    /// cannot be read is logged and tried again at the next scan.
    pub async fn scan_peers(&self) -> io::Result<usize> {
        let Some(root) = self.config.peers.clone() else {
            return Ok(0);
        };
        let own = self.config.prefix.clone();
        let mut listing = self.store.list(Some(&ObjectPath::from(root.as_str())));
        let mut found = Vec::new();
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(io::Error::other)?;
            let key = meta.location.to_string();
            if !key.ends_with(".mp4.idx") || (!own.is_empty() && key.starts_with(&own)) {
                continue;
            }
            let tag = meta.e_tag.clone().unwrap_or_else(|| meta.size.to_string());
            if self.peer_seen(&key, &tag) || meta.size > MAX_INDEX_BYTES {
                continue;
            }
            found.push((key, tag));
        }
        let mut added = 0;
        for (key, tag) in found {
            match self.read_peer_index(&key).await {
                Ok(n) => {
                    self.lock_peer_seen().insert(key, tag);
                    if n > 0 {
                        added += 1;
                        self.stats.peer_objects.fetch_add(1, Ordering::Relaxed);
                        self.stats
                            .peer_segments
                            .fetch_add(n as u64, Ordering::Relaxed);
                    }
                }
                Err(e) => {
                    tracing::warn!(index = %key, error = %e, "reading a peer's recording index; trying again at the next scan");
                }
            }
        }
        Ok(added)
    }

    /// Reads one peer index object and adds what is lacking; returns the
    /// number of segments added.
    async fn read_peer_index(&self, key: &str) -> io::Result<usize> {
        let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
        let (track, _session) =
            track_of_index(key).ok_or_else(|| invalid("not a recording index key"))?;
        let body = self
            .store
            .get(&ObjectPath::from(key))
            .await
            .map_err(io::Error::other)?
            .bytes()
            .await
            .map_err(io::Error::other)?;
        let text = std::str::from_utf8(&body).map_err(|_| invalid("index is not UTF-8"))?;
        let (object, entries) =
            parse_index(text).ok_or_else(|| invalid("not a recording index"))?;
        if key.strip_suffix(".idx") != Some(object.as_str()) {
            return Err(invalid("index names another object"));
        }
        let depth = self.archive.depth_hours(&track.stream);
        let from_ms = if depth == 0 {
            i64::MIN
        } else {
            crate::archive::now_unix_ms().saturating_sub(i64::from(depth) * 3_600_000)
        };
        let deleted = self.archive.deleted_spans(&track.stream);
        let (chosen, copies) = self.archive.with_index(&track, |local| {
            let copies = if self.config.delete_local {
                local_copies(local, &entries)
            } else {
                Vec::new()
            };
            (lacking(local, &entries, from_ms, &deleted), copies)
        });
        let is_segment = |e: &&Entry| SegmentName::parse(&e.file).is_some();
        let segments = chosen.iter().filter(is_segment).count();
        if segments > 0 {
            add_remote_entries(&self.archive, &track, &object, &chosen);
            tracing::info!(stream = %track.stream, rendition = %track.rendition, %object, segments,
                "a peer's recording read into the archive index");
        }
        let copied = copies.iter().filter(is_segment).count();
        if !copies.is_empty() {
            let object: std::sync::Arc<str> = std::sync::Arc::from(object.as_str());
            let moved = copies
                .iter()
                .map(|e| {
                    let at = Location::Remote {
                        object: object.clone(),
                        offset: e.offset,
                    };
                    (e.file.clone(), at)
                })
                .collect();
            for p in self.archive.relocate(&track, &moved) {
                let _ = std::fs::remove_file(p);
            }
            tracing::info!(stream = %track.stream, rendition = %track.rendition, %object, files = copies.len(),
                "local copies of a peer's files now read from its object");
        }
        Ok(segments + copied)
    }

    fn lock_peer_seen(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, String>> {
        self.peer_seen.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn peer_seen(&self, key: &str, tag: &str) -> bool {
        self.lock_peer_seen().get(key).is_some_and(|t| t == tag)
    }

    /// Scans the peers' uploads every [`UploadConfig::peer_scan`](super::UploadConfig::peer_scan).
    pub(super) async fn run_peer_scans(self: std::sync::Arc<Self>) {
        loop {
            if let Err(e) = self.scan_peers().await {
                tracing::warn!(error = %e, "listing the peers' recordings failed; trying again later");
            }
            self.peers_read.send_replace(true);
            tokio::time::sleep(self.config.peer_scan).await;
        }
    }

    /// Returns once the upload loop ([`Uploader::run`]) listed the peers'
    /// uploads a first time (whether or not the store answered), at once
    /// without [`UploadConfig::peers`](super::UploadConfig::peers). An
    /// origin starts replicating from its peers after it, so that what a
    /// peer's object already holds is referenced, not copied again.
    pub async fn peers_read_once(&self) {
        if self.config.peers.is_none() {
            return;
        }
        let mut rx = self.peers_read.subscribe();
        let _ = rx.wait_for(|read| *read).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::{ArchivedInit, ArchivedSegment};

    fn seg(session: i64, pdt: i64, msn: u64) -> SegmentName {
        SegmentName {
            pdt_ms: pdt,
            duration_ms: 2000,
            dts_ms: pdt - session,
            session,
            msn,
            init: 0,
            discontinuity: msn == 0,
            provisional: None,
        }
    }

    fn entries(session: i64, n: u64) -> Vec<Entry> {
        let mut v = vec![Entry {
            file: crate::archive::names::init_file_name(session, 0),
            offset: 0,
            size: 10,
        }];
        for i in 0..n {
            v.push(Entry {
                file: seg(session, session + i as i64 * 2000, i).file_name(),
                offset: 10 + i * 100,
                size: 100,
            });
        }
        v
    }

    #[test]
    fn index_keys_name_their_track_below_any_prefix() {
        let (k, s) = track_of_index("ugc/node-a/live/cam/src/1700000000000.mp4.idx").unwrap();
        assert_eq!(k.stream.as_str(), "live/cam");
        assert_eq!(k.rendition, "src");
        assert_eq!(s, 1_700_000_000_000);
        let (k, _) = track_of_index("live/cam/720p/5.mp4.idx").unwrap();
        assert_eq!(k.rendition, "720p");
        for bad in [
            "ugc/node-a/live/cam/src/1700000000000.mp4",
            "cam/src/1.mp4.idx",
            "ugc/live/cam/src/x.mp4.idx",
            "ugc/live/c m/src/1.mp4.idx",
        ] {
            assert!(track_of_index(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn only_what_no_local_segment_covers_is_read_in() {
        let peer = entries(1_000_000, 10); // 20 s from 1 000 000
        // Nothing here: all of it, init first.
        let all = lacking(None, &peer, i64::MIN, &[]);
        assert_eq!(all.len(), 11);
        assert!(all[0].file.contains("init") || parse_init_name(&all[0].file).is_some());
        // A local session covering its first 10 s (cut 300 ms later).
        let mut local = TrackIndex::default();
        for i in 0..5u64 {
            local.insert(ArchivedSegment {
                name: seg(1_000_300, 1_000_300 + i as i64 * 2000, i),
                size: 1,
                location: Location::Local,
            });
        }
        let some = lacking(Some(&local), &peer, i64::MIN, &[]);
        let names: Vec<SegmentName> = some
            .iter()
            .filter_map(|e| SegmentName::parse(&e.file))
            .collect();
        assert_eq!(names.len(), 5);
        assert!(names.iter().all(|n| n.msn >= 5));
        assert!(some.iter().any(|e| parse_init_name(&e.file).is_some()));
        // Older than the depth, or deleted here: not read in.
        let recent = lacking(None, &peer, 1_000_000 + 14_000, &[]);
        assert_eq!(
            recent
                .iter()
                .filter(|e| SegmentName::parse(&e.file).is_some())
                .count(),
            3
        );
        let kept = lacking(None, &peer, i64::MIN, &[(1_000_000, 1_010_000)]);
        assert_eq!(
            kept.iter()
                .filter(|e| SegmentName::parse(&e.file).is_some())
                .count(),
            5
        );
        // Once read in, a second scan adds nothing.
        let mut after = TrackIndex::default();
        for e in &all {
            if let Some(n) = SegmentName::parse(&e.file) {
                after.insert(ArchivedSegment {
                    name: n,
                    size: e.size,
                    location: Location::Local,
                });
            }
        }
        assert!(lacking(Some(&after), &peer, i64::MIN, &[]).is_empty());
    }

    #[test]
    fn local_copies_are_files_of_the_same_name_and_size_here() {
        let peer = entries(1_000_000, 4);
        let mut local = TrackIndex::default();
        // Segment 1 copied, segment 2 of another size, segment 3 already
        // read from some object; the init copied.
        for (i, size, location) in [
            (1u64, 100, Location::Local),
            (2, 99, Location::Local),
            (
                3,
                100,
                Location::Remote {
                    object: "o".into(),
                    offset: 0,
                },
            ),
        ] {
            local.insert(ArchivedSegment {
                name: seg(1_000_000, 1_000_000 + i as i64 * 2000, i),
                size,
                location,
            });
        }
        local.inits.insert(
            (1_000_000, 0),
            ArchivedInit {
                size: 10,
                location: Location::Local,
            },
        );
        let copies = local_copies(Some(&local), &peer);
        let files: Vec<&str> = copies.iter().map(|e| e.file.as_str()).collect();
        assert_eq!(files.len(), 2, "{files:?}");
        assert!(parse_init_name(files[0]).is_some());
        assert_eq!(SegmentName::parse(files[1]).map(|n| n.msn), Some(1));
        assert!(local_copies(None, &peer).is_empty());
    }
}
