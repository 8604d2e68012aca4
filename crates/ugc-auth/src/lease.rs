//! Transcode leases: which transcoding node makes a stream's ladder.
//!
//! With no static `transcoders` in the control plane's topology, every
//! live stream whose transcode setting is not `off` is a job, and each job
//! is leased by exactly one live transcoder. The transcoders' heartbeats
//! do the work (one [`Store::lease_round`](crate::store::Store::lease_round)
//! per beat, every [`ControlConfig::lease_ttl`](crate::ControlConfig) / 3):
//! a transcoder renews what it holds, claims what is unheld, expired, held
//! by a node that stopped beating, or held by a node of lower priority,
//! and its beat's answer lists its leases, each with its epoch and the
//! publishing node to pull the stream from. Every claim raises the job's
//! epoch ([`next_epoch`]); the transcoder states it on its relay pushes and
//! origins refuse a lower one than they saw, so a transcoder that comes
//! back from a partition with an old lease feeds nobody. Epochs are at
//! least the database clock in ms at the claim, so the row of a stream
//! gone for an hour can be deleted ([`ControlPlane::prune_leases`]): when
//! the stream comes back its first claim is above every epoch it had.
//!
//! Spread: only the transcoders of the highest live priority claim, each
//! up to its share, `ceil(jobs / those transcoders)` (capped by its
//! capacity), so with N equal transcoders and M jobs none holds more than
//! `ceil(M/N) + 1` while another has room: one holding more than that
//! releases the rest. A lower-priority transcoder (a standby) claims only
//! when no higher one beats; when the main comes back it takes its jobs
//! back (the guide's main/standby pair: `ugc-transcode --priority`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::ControlPlane;
use crate::error::Result;
use crate::registry::{NodeBeat, NodeRole, NodeState, NodeView};
use crate::store::{LeasePlan, LeaseQuery, LeaseRow};

/// Streams a transcoder with no declared capacity is assumed to take.
const DEFAULT_CAPACITY: u32 = 100;

/// How long after its last claim the lease row of a stream that is no job
/// any more is kept ([`ControlPlane::prune_leases`]): the step back of the
/// database clock that epochs survive.
pub const LEASE_ROW_KEEP: Duration = Duration::from_secs(3600);

/// The epoch a claim gives a job whose row had `epoch`, on the database
/// clock `now_ms`: one more, or the clock if that is more (what
/// [`Store::lease_round`](crate::store::Store::lease_round) writes).
pub fn next_epoch(epoch: i64, now_ms: i64) -> i64 {
    if epoch < now_ms { now_ms } else { epoch + 1 }
}

/// What lease rounds read of the registry, shared for 200 ms.
#[derive(Debug)]
pub(crate) struct LeaseView {
    at: Instant,
    nodes: Vec<NodeView>,
    /// Job -> the publishing node carrying it.
    sources: HashMap<String, String>,
    /// How many jobs there are.
    jobs: usize,
}

/// The shared [`LeaseView`] and the jobs known to have a lease row marked
/// live.
#[derive(Debug, Default)]
pub(crate) struct LeaseCache {
    view: Option<Arc<LeaseView>>,
    known: HashSet<String>,
    /// Whether the live flags of the rows were checked against the jobs
    /// since this control plane started (or since a round failed).
    synced: bool,
}

/// What a round changes of the lease rows' live flags.
#[derive(Debug, Default)]
struct JobChanges {
    new: Vec<String>,
    ended: Vec<String>,
    resync: bool,
}

/// One lease as a transcoder's heartbeat answer carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// Hub stream (`live/news`).
    pub stream: String,
    /// The lease's epoch: state it on every relay push of the stream and
    /// its renditions.
    pub epoch: u64,
    /// The publishing node carrying the stream (`http://host:port`): pull
    /// it from there.
    pub source: String,
}

/// A transcoder that takes work, as the planner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// Node id.
    pub id: String,
    /// Higher is preferred.
    pub priority: i32,
    /// Jobs it takes at most.
    pub capacity: u32,
}

/// One transcoder's lease round: the planner, a pure function of the
/// registry and the lease rows (the store runs it in its transaction).
#[derive(Debug, Clone)]
pub struct Round {
    /// The transcoder beating.
    pub me: String,
    /// Its priority.
    pub priority: i32,
    /// Its capacity.
    pub capacity: u32,
    /// It is draining: it keeps what it holds until others take it, and
    /// claims nothing.
    pub draining: bool,
    /// Every transcoder that beats and takes work, `me` included unless
    /// draining.
    pub peers: Vec<Peer>,
    /// Transcoders that beat but drain: others take their jobs.
    pub drainers: Vec<String>,
    /// The number of jobs.
    pub jobs: usize,
    /// Leases run at least until then (Unix ms): one lease time after the
    /// control plane started, so the leases that ran out while it was down
    /// (nobody could renew them) go back to their holders' next beat, not
    /// to whichever transcoder beats first: a restart of the control plane
    /// moves no ladder.
    pub leases_run_until_ms: i64,
}

impl Round {
    fn peer(&self, id: &str) -> Option<&Peer> {
        self.peers.iter().find(|p| p.id == id)
    }

    /// The highest priority of a live transcoder.
    fn top(&self) -> Option<i32> {
        self.peers.iter().map(|p| p.priority).max()
    }

    /// How many jobs `me` should hold: its share among the transcoders of
    /// the highest priority, none if it is not one of them.
    pub fn share(&self) -> usize {
        if self.draining || self.top() != Some(self.priority) {
            return 0;
        }
        let top = self.top();
        let tier = self
            .peers
            .iter()
            .filter(|p| Some(p.priority) == top)
            .count();
        let cap = if self.capacity == 0 {
            DEFAULT_CAPACITY
        } else {
            self.capacity
        };
        self.jobs
            .div_ceil(tier.max(1))
            .min(usize::try_from(cap).unwrap_or(usize::MAX))
    }

    /// Whether `me` may claim `row` at `now_ms`: nobody holds it, its lease
    /// ran out, its holder drains, or its holder has a lower priority. (A
    /// holder missing from the registry view still holds its lease until
    /// it runs out: the view may predate the holder's first beat.)
    pub fn claimable(&self, row: &LeaseRow, now_ms: i64) -> bool {
        if row.node_id == self.me || self.draining {
            return false;
        }
        if row.node_id.is_empty() || row.expires_ms.max(self.leases_run_until_ms) <= now_ms {
            return true;
        }
        self.drainers.contains(&row.node_id)
            || self
                .peer(&row.node_id)
                .is_some_and(|holder| holder.priority < self.priority)
    }

    /// The round's plan given the rows `me` holds on jobs (`mine`).
    pub fn plan(&self, _now_ms: i64, mine: &[LeaseRow]) -> LeasePlan {
        let mut mine: Vec<String> = mine
            .iter()
            .filter(|r| r.node_id == self.me)
            .map(|r| r.stream.clone())
            .collect();
        mine.sort();
        let share = self.share();
        let mut release = Vec::new();
        if !self.draining && self.top() == Some(self.priority) && mine.len() > share + 1 {
            release = mine.split_off(share);
        }
        LeasePlan {
            want: share.saturating_sub(mine.len()),
            renew: mine,
            release,
        }
    }

    /// The ids of the peers `me` may take jobs from while their lease
    /// runs: those of a lower priority.
    pub fn lower(&self) -> Vec<String> {
        self.peers
            .iter()
            .filter(|p| p.priority < self.priority)
            .map(|p| p.id.clone())
            .collect()
    }
}

impl ControlPlane {
    /// Runs the lease round of transcoder `beat` (just recorded) and
    /// answers its leases. Jobs are the streams of live publishing nodes
    /// whose transcode setting is not `off`.
    pub async fn transcode_leases(&self, beat: &NodeBeat) -> Result<Vec<Lease>> {
        let (view, changes) = self.lease_view().await?;
        let ttl = self.inner.lease_ttl;
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let mut peers: Vec<Peer> = view
            .nodes
            .iter()
            .filter(|n| n.role == NodeRole::Transcode && n.state == NodeState::Live)
            .filter(|n| n.age_ms <= ttl_ms && n.id != beat.id)
            .map(|n| Peer {
                id: n.id.clone(),
                priority: n.priority,
                capacity: n.capacity,
            })
            .collect();
        if !beat.draining {
            peers.push(Peer {
                id: beat.id.clone(),
                priority: beat.priority,
                capacity: beat.capacity,
            });
        }
        let drainers = view
            .nodes
            .iter()
            .filter(|n| n.role == NodeRole::Transcode && n.state == NodeState::Draining)
            .map(|n| n.id.clone())
            .collect();
        let round = Round {
            leases_run_until_ms: self.inner.started_ms.saturating_add(ttl_ms),
            drainers,
            me: beat.id.clone(),
            priority: beat.priority,
            capacity: beat.capacity,
            draining: beat.draining,
            peers,
            jobs: view.jobs,
        };
        let lower = round.lower();
        let query = LeaseQuery {
            me: &beat.id,
            is_job: &|s| view.sources.contains_key(s),
            new_jobs: &changes.new,
            ended_jobs: &changes.ended,
            resync: changes.resync,
            draining: &round.drainers,
            lower: &lower,
            ttl_ms,
        };
        // SQLite has one writer: one round at a time. On PostgreSQL rounds
        // run side by side (row locks and epoch-checked claims).
        let one = match self.inner.store.is_sqlite() {
            true => Some(self.inner.lease_lock.lock().await),
            false => None,
        };
        let held = self
            .inner
            .store
            .lease_round(
                &query,
                |now, rows| round.plan(now, rows),
                |row, now| round.claimable(row, now),
            )
            .await;
        drop(one);
        let held = match held {
            Ok(h) => h,
            Err(e) => {
                let c = &changes;
                if !c.new.is_empty() || !c.ended.is_empty() || c.resync {
                    // Their rows may be missing or flagged wrong: check
                    // every row again.
                    let mut cache = self.inner.lease_view.lock().await;
                    cache.known.clear();
                    cache.synced = false;
                }
                return Err(e);
            }
        };
        Ok(held
            .into_iter()
            .filter_map(|(stream, epoch)| {
                let source = view.sources.get(&stream)?.clone();
                Some(Lease {
                    stream,
                    epoch: u64::try_from(epoch).unwrap_or(0),
                    source,
                })
            })
            .collect())
    }

    /// The registry and the jobs for lease rounds, read at most every
    /// 200 ms however many transcoders beat (a round would otherwise read
    /// and parse every node's row and walk every stream), and what changed
    /// of the jobs since the last read (to this round only): those that
    /// may have no lease row marked live yet, those that ended, and on
    /// the first read whether to check every live row.
    async fn lease_view(&self) -> Result<(Arc<LeaseView>, JobChanges)> {
        let mut cache = self.inner.lease_view.lock().await;
        if let Some(v) = cache.view.as_ref()
            && v.at.elapsed() < Duration::from_millis(200)
        {
            return Ok((v.clone(), JobChanges::default()));
        }
        let nodes = self.nodes().await?;
        let sources = self.jobs(&nodes);
        let mut changes = JobChanges {
            new: sources
                .keys()
                .filter(|j| !cache.known.contains(*j))
                .cloned()
                .collect(),
            ended: cache
                .known
                .iter()
                .filter(|j| !sources.contains_key(*j))
                .cloned()
                .collect(),
            resync: !cache.synced,
        };
        changes.ended.sort();
        cache.synced = true;
        cache.known = sources.keys().cloned().collect();
        let view = Arc::new(LeaseView {
            at: Instant::now(),
            nodes,
            jobs: sources.len(),
            sources,
        });
        cache.view = Some(view.clone());
        Ok((view, changes))
    }

    /// The jobs (Hub stream names) and the publishing node each is pulled
    /// from: of the nodes carrying it, one that beat in the last
    /// [`STALE_BEAT_MS`](crate::registry::STALE_BEAT_MS) (a node killed a
    /// moment ago reads live with its last streams until it is down), then
    /// the one with its main publisher, else with a backup publisher, else
    /// on its fallback (a publisher that moved leaves its old node looping
    /// the slate for the grace).
    fn jobs(&self, nodes: &[NodeView]) -> HashMap<String, String> {
        let mut best: HashMap<String, ((bool, u8), &str)> = HashMap::new();
        for n in nodes
            .iter()
            .filter(|n| n.role == NodeRole::Publish && n.state != NodeState::Down)
        {
            for s in &n.streams {
                let Some(name) = s.strip_prefix("live/") else {
                    continue;
                };
                if name.contains('/') {
                    continue; // a rendition, not a source
                }
                let rank = n.source_rank(s).unwrap_or((true, u8::MAX));
                if best.get(s).is_some_and(|(r, _)| *r <= rank) {
                    continue;
                }
                if self.settings(name).is_some_and(|st| st.transcode != "off") {
                    best.insert(s.clone(), (rank, &n.url));
                }
            }
        }
        best.into_iter()
            .map(|(s, (_, url))| (s, url.to_owned()))
            .collect()
    }

    /// Every lease row (`GET /api/v1/leases`).
    pub async fn lease_rows(&self) -> Result<Vec<LeaseRow>> {
        self.inner.store.leases().await
    }

    /// Deletes the lease rows of streams that are no job, held by nobody
    /// and last claimed over [`LEASE_ROW_KEEP`] ago (see
    /// [`Store::prune_leases`](crate::store::Store::prune_leases)): without
    /// it the table keeps a row for every stream that ever had a ladder.
    /// Returns how many went.
    pub async fn prune_leases(&self) -> Result<u64> {
        let keep_ms = i64::try_from(LEASE_ROW_KEEP.as_millis()).unwrap_or(i64::MAX);
        self.inner.store.prune_leases(keep_ms).await
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn peer(id: &str, priority: i32) -> Peer {
        Peer {
            id: id.into(),
            priority,
            capacity: 0,
        }
    }

    fn round(me: &str, priority: i32, peers: &[Peer], jobs: usize) -> Round {
        Round {
            me: me.into(),
            priority,
            capacity: 0,
            draining: false,
            peers: peers.to_vec(),
            drainers: Vec::new(),
            jobs,
            leases_run_until_ms: 0,
        }
    }

    /// A control plane restarted at 5 s (lease time 3 s) finds a lease
    /// that ran out at 1 s, while it was down: another transcoder may not
    /// take it before 8 s (its holder's next beat renews it), and may
    /// after, if the holder never came back.
    #[test]
    fn a_lease_that_ran_out_while_the_control_plane_was_down_stays_a_lease_time() {
        let peers = [peer("t1", 0), peer("t2", 0)];
        let row = LeaseRow {
            stream: "live/a".into(),
            node_id: "t1".into(),
            epoch: 4,
            expires_ms: 1000,
        };
        let t2 = Round {
            leases_run_until_ms: 5000 + 3000,
            ..round("t2", 0, &peers, 1)
        };
        assert!(!t2.claimable(&row, 6000));
        assert!(!t2.claimable(&row, 8000 - 1));
        assert!(t2.claimable(&row, 8000));
        // Without a restart it was claimable as soon as it ran out.
        assert!(round("t2", 0, &peers, 1).claimable(&row, 1000));
    }

    /// A simulated lease table: rounds applied as the store applies them.
    struct Table {
        rows: BTreeMap<String, LeaseRow>,
        ttl: i64,
    }

    impl Table {
        fn new(jobs: usize) -> Table {
            let rows = (0..jobs)
                .map(|i| {
                    let s = format!("live/s{i}");
                    let row = LeaseRow {
                        stream: s.clone(),
                        node_id: String::new(),
                        epoch: 0,
                        expires_ms: 0,
                    };
                    (s, row)
                })
                .collect();
            Table { rows, ttl: 3000 }
        }

        fn run(&mut self, r: &Round, now: i64) {
            let mine: Vec<LeaseRow> = self
                .rows
                .values()
                .filter(|row| row.node_id == r.me)
                .cloned()
                .collect();
            let plan = r.plan(now, &mine);
            // The store's candidates: claimable, free ones first.
            let lower = r.lower();
            let mut candidates: Vec<&LeaseRow> = self
                .rows
                .values()
                .filter(|row| r.claimable(row, now))
                .collect();
            candidates.sort_by_key(|row| {
                let held = lower.contains(&row.node_id) && row.expires_ms > now;
                (held, row.stream.clone())
            });
            let claim: Vec<String> = candidates.iter().map(|row| row.stream.clone()).collect();
            for s in &plan.renew {
                self.rows.get_mut(s).unwrap().expires_ms = now + self.ttl;
            }
            for s in &plan.release {
                let row = self.rows.get_mut(s).unwrap();
                row.node_id.clear();
                row.expires_ms = 0;
            }
            let mut taken = 0;
            for s in &claim {
                if taken == plan.want {
                    break;
                }
                let row = self.rows.get_mut(s).unwrap();
                if r.claimable(row, now) {
                    row.node_id = r.me.clone();
                    row.epoch = next_epoch(row.epoch, now);
                    row.expires_ms = now + self.ttl;
                    taken += 1;
                }
            }
        }

        fn held(&self, id: &str) -> usize {
            self.rows.values().filter(|r| r.node_id == id).count()
        }
    }

    #[test]
    fn jobs_spread_over_equal_transcoders_within_the_bound() {
        for (n, m) in [(3, 6), (3, 7), (2, 5), (4, 1), (3, 20)] {
            let peers: Vec<Peer> = (0..n).map(|i| peer(&format!("t{i}"), 0)).collect();
            let mut t = Table::new(m);
            for beat in 0..5 {
                for p in &peers {
                    t.run(&round(&p.id, 0, &peers, m), beat * 1000);
                }
            }
            let bound = m.div_ceil(n) + 1;
            let held: Vec<usize> = peers.iter().map(|p| t.held(&p.id)).collect();
            assert_eq!(held.iter().sum::<usize>(), m, "{n}x{m}: every job held");
            assert!(held.iter().all(|&h| h <= bound), "{n}x{m}: {held:?}");
        }
    }

    #[test]
    fn a_dead_transcoders_jobs_are_claimed_after_its_lease_with_a_new_epoch() {
        let peers = [peer("a", 0), peer("b", 0)];
        let mut t = Table::new(4);
        t.run(&round("a", 0, &peers, 4), 0);
        t.run(&round("b", 0, &peers, 4), 10);
        assert_eq!((t.held("a"), t.held("b")), (2, 2));
        // `a` stops beating at 0: before its lease ends `b` takes nothing.
        t.run(&round("b", 0, &peers, 4), 2000);
        assert_eq!(t.held("b"), 2);
        // Once it has ended (and `a` counts as gone), `b` takes them all,
        // each with a new epoch.
        let alive = [peer("b", 0)];
        t.run(&round("b", 0, &alive, 4), 3000);
        assert_eq!(t.held("b"), 4);
        // (Claimed at 0 by `a`, 10 by `b`; `a`'s again at 3000: the clock.)
        assert!(t.rows.values().all(|r| r.epoch >= 1));
        assert_eq!(t.rows.values().filter(|r| r.epoch == 3000).count(), 2);
    }

    #[test]
    fn epochs_grow_by_one_or_to_the_clock() {
        assert_eq!(next_epoch(0, 0), 1);
        assert_eq!(next_epoch(0, 5_000), 5_000);
        assert_eq!(next_epoch(5_000, 5_000), 5_001);
        // Claimed twice in one ms, or after the clock stepped back.
        assert_eq!(next_epoch(5_001, 5_000), 5_002);
        assert_eq!(next_epoch(9_000, 4_000), 9_001);
    }

    #[test]
    fn a_stale_holders_lease_is_not_renewed_by_anyone_else() {
        let peers = [peer("a", 0), peer("b", 0)];
        let r = round("b", 0, &peers, 1);
        let row = LeaseRow {
            stream: "live/x".into(),
            node_id: "a".into(),
            epoch: 3,
            expires_ms: 5000,
        };
        assert!(!r.claimable(&row, 4999));
        assert!(r.claimable(&row, 5000));
    }

    #[test]
    fn the_main_holds_the_jobs_and_the_standby_takes_over_and_gives_them_back() {
        let both = [peer("main", 10), peer("standby", 0)];
        let mut t = Table::new(3);
        t.run(&round("standby", 0, &both, 3), 0);
        t.run(&round("main", 10, &both, 3), 0);
        assert_eq!((t.held("main"), t.held("standby")), (3, 0));
        // The main stops beating: the standby alone takes over.
        let standby = [peer("standby", 0)];
        t.run(&round("standby", 0, &standby, 3), 3000);
        assert_eq!(t.held("standby"), 3);
        // The main comes back: it takes its jobs back at its first beat.
        t.run(&round("main", 10, &both, 3), 9000);
        assert_eq!((t.held("main"), t.held("standby")), (3, 0));
        // Claimed three times (at 0, 3000, 9000): each epoch is the clock's.
        assert!(t.rows.values().all(|r| r.epoch == 9000));
    }

    #[test]
    fn a_holder_over_its_share_plus_one_releases_the_rest_for_a_newcomer() {
        let one = [peer("a", 0)];
        let mut t = Table::new(6);
        t.run(&round("a", 0, &one, 6), 0);
        assert_eq!(t.held("a"), 6);
        let three = [peer("a", 0), peer("b", 0), peer("c", 0)];
        t.run(&round("b", 0, &three, 6), 500);
        t.run(&round("c", 0, &three, 6), 600);
        assert_eq!(t.held("b") + t.held("c"), 0, "nothing free yet");
        t.run(&round("a", 0, &three, 6), 1000);
        assert_eq!(t.held("a"), 2);
        t.run(&round("b", 0, &three, 6), 1500);
        t.run(&round("c", 0, &three, 6), 1600);
        assert_eq!((t.held("a"), t.held("b"), t.held("c")), (2, 2, 2));
    }

    #[test]
    fn a_draining_transcoder_claims_nothing_and_its_jobs_move() {
        let peers = [peer("b", 0)]; // `a` drains: not a peer
        let mut t = Table::new(2);
        let mut a = round("a", 0, &peers, 2);
        t.run(&round("a", 0, &[peer("a", 0), peer("b", 0)], 2), 0);
        assert_eq!(t.held("a"), 1);
        a.draining = true;
        t.run(&a, 100);
        assert_eq!(t.held("a"), 1, "it keeps what it holds meanwhile");
        let mut b = round("b", 0, &peers, 2);
        b.drainers = vec!["a".into()];
        t.run(&b, 200);
        assert_eq!((t.held("a"), t.held("b")), (0, 2));
    }

    #[test]
    fn a_holder_missing_from_a_stale_registry_view_keeps_its_lease() {
        // `main` registered after the view `t` plans with was read.
        let mut t = Table::new(1);
        let both = [peer("main", 10), peer("t", 0)];
        t.run(&round("main", 10, &both, 1), 0);
        assert_eq!(t.held("main"), 1);
        t.run(&round("t", 0, &[peer("t", 0)], 1), 100);
        assert_eq!((t.held("main"), t.held("t")), (1, 0));
    }
}
