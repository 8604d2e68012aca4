//! The output's sample tables, collected per track while the segments
//! are read, and the `stsd` entries a track change adds.

use mp4_atom::Codec;

use super::init::{InitInfo, sample_entries};

#[derive(Debug, Default, Clone)]
pub(super) struct TrackTables {
    pub(super) id: u32,
    pub(super) timescale: u32,
    /// stts runs (count, delta).
    pub(super) stts: Vec<(u32, u32)>,
    /// ctts runs (count, offset).
    pub(super) ctts: Vec<(u32, i32)>,
    pub(super) any_cts: bool,
    /// 1-based sync sample numbers.
    pub(super) stss: Vec<u32>,
    pub(super) all_sync: bool,
    pub(super) sizes: Vec<u32>,
    /// (output-relative mdat offset, samples) per chunk.
    pub(super) chunks: Vec<(u64, u32)>,
    /// 1-based `stsd` entry of each chunk (parallel to `chunks`).
    pub(super) chunk_sdi: Vec<u32>,
    /// Distinct sample entries in first-use order; more than one when the
    /// export spans a track change.
    pub(super) entries: Vec<Codec>,
    pub(super) duration: u64,
    pub(super) first_dts: Option<u64>,
    pub(super) first_cts: Option<i32>,
}

impl TrackTables {
    pub(super) fn push_sample(&mut self, duration: u32, size: u32, cts: i32, sync: bool) {
        match self.stts.last_mut() {
            Some((n, d)) if *d == duration => *n += 1,
            _ => self.stts.push((1, duration)),
        }
        match self.ctts.last_mut() {
            Some((n, c)) if *c == cts => *n += 1,
            _ => self.ctts.push((1, cts)),
        }
        if cts != 0 {
            self.any_cts = true;
        }
        self.sizes.push(size);
        let number = u32::try_from(self.sizes.len()).unwrap_or(u32::MAX);
        if sync {
            self.stss.push(number);
        } else {
            self.all_sync = false;
        }
        if self.first_cts.is_none() {
            self.first_cts = Some(cts);
        }
        self.duration = self.duration.saturating_add(u64::from(duration));
    }
}
/// The `stsd` entry numbers (1-based, per table) of segments made with
/// init `other`, adding its sample entries to `tables` where they differ
/// from those seen so far; `None` when `other` has other tracks or
/// timescales than `first` (the export cannot continue across it).
pub(super) fn switch_entries(
    first: &InitInfo,
    other: &InitInfo,
    tables: &mut [TrackTables],
) -> Option<Vec<u32>> {
    if other.tracks != first.tracks {
        return None;
    }
    let entries = sample_entries(other);
    let mut sdi = Vec::with_capacity(tables.len());
    for t in tables.iter_mut() {
        let (_, e) = entries.iter().find(|(id, _)| *id == t.id)?;
        // Only the same kind of sample entry (avc1 after avc1, ...).
        let first = t.entries.first()?;
        if std::mem::discriminant(first) != std::mem::discriminant(e) {
            return None;
        }
        let at = match t.entries.iter().position(|x| x == e) {
            Some(i) => i,
            None => {
                t.entries.push(e.clone());
                t.entries.len() - 1
            }
        };
        sdi.push(u32::try_from(at + 1).ok()?);
    }
    Some(sdi)
}
