//! The database: creators, streams and play sessions, in SQLite (embedded,
//! the default) or PostgreSQL (by URL), through one sqlx `Any` code path
//! with runtime-checked `query()` calls and the same migrations.
//!
//! The schema uses only `TEXT` and `BIGINT` columns (booleans as 0/1, times
//! as unix seconds, lists as JSON text) so both backends decode alike.

use std::borrow::Cow;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, Row};

use crate::error::{Error, Result, db};

/// A creator's or the admin's identity, from a bearer token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Creator id (`admin` for the admin).
    pub id: String,
    /// The admin sees and changes every stream and creates creators.
    pub admin: bool,
}

/// The id of the admin principal.
pub const ADMIN_ID: &str = "admin";

/// One stream as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRecord {
    /// Stream name (`[a-z0-9_-]{1,64}`); the Hub stream is `live/<name>`.
    pub name: String,
    /// Creator id of the owner.
    pub owner: String,
    /// Free-text title.
    pub title: String,
    /// Private streams need a play token.
    pub private: bool,
    /// The current stream key.
    pub key: String,
    /// `off`, `default` or a named profile.
    pub transcode: String,
    /// Archive depth in hours (0 = off).
    pub dvr_hours: u32,
    /// `rtmp://` / `rtmps://` push targets.
    pub restream: Vec<String>,
    /// SRT passphrase, if the SRT ingest must be encrypted.
    pub srt_passphrase: Option<String>,
    /// What stands in while no publisher is there: `None` for the media
    /// node's own fallback, else `slate`, `off`, an `http(s)://` URL of a
    /// video or a file name in the node's fallback directory.
    pub fallback: Option<String>,
    /// How long the live source may send nothing before a backup or the
    /// fallback takes over, in ms; 0 for the node's default.
    pub source_timeout_ms: u32,
    /// Creation time, unix seconds.
    pub created_at: i64,
}

/// One play session as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// Session id (32 hex digits).
    pub id: String,
    /// Stream name.
    pub stream: String,
    /// Expiry, unix seconds.
    pub expires_at: i64,
    /// Client address the token is bound to.
    pub bind_ip: Option<String>,
    /// Revoked sessions' tokens are refused.
    pub revoked: bool,
}

/// The schema migrations, embedded.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "init", include_str!("../migrations/0001_init.sql")),
    (2, "nodes", include_str!("../migrations/0002_nodes.sql")),
    (
        3,
        "failover",
        include_str!("../migrations/0003_failover.sql"),
    ),
    (4, "leases", include_str!("../migrations/0004_leases.sql")),
    (
        5,
        "lease_live",
        include_str!("../migrations/0005_lease_live.sql"),
    ),
];

/// One media node as stored: its last heartbeat and when the database saw
/// it, by the database's clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRow {
    /// Node id.
    pub id: String,
    /// `publish`, `transcode`, `origin` or `all`.
    pub role: String,
    /// Its HTTP base URL.
    pub url: String,
    /// Its last heartbeat, JSON.
    pub info: String,
    /// First registration, unix seconds.
    pub registered_at: i64,
    /// Last heartbeat, unix milliseconds of the database clock.
    pub last_seen_ms: i64,
}

/// One row of the transcode lease table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRow {
    /// Hub stream (`live/news`).
    pub stream: String,
    /// The holder's node id; empty when none holds it.
    pub node_id: String,
    /// Grows on every claim.
    pub epoch: i64,
    /// The lease ends then (unix ms, database clock) unless renewed.
    pub expires_ms: i64,
}

/// What a transcoder's lease round does ([`Store::lease_round`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeasePlan {
    /// Its leases to extend.
    pub renew: Vec<String>,
    /// Its leases to give up (it holds more than its share).
    pub release: Vec<String>,
    /// How many more to claim at most.
    pub want: usize,
}

/// Who runs a lease round and what the registry says
/// ([`Store::lease_round`]).
#[derive(Clone, Copy)]
pub struct LeaseQuery<'a> {
    /// The transcoder's node id.
    pub me: &'a str,
    /// Whether a stream is a job (a Hub stream name).
    pub is_job: &'a (dyn Fn(&str) -> bool + Sync),
    /// Jobs that may have no row yet, or a row not marked live.
    pub new_jobs: &'a [String],
    /// Streams that were jobs and are no more: their rows are marked not
    /// live.
    pub ended_jobs: &'a [String],
    /// Whether to check every row marked live against `is_job` (a control
    /// plane's first round, when it does not know what ended while it was
    /// away).
    pub resync: bool,
    /// Transcoders that drain: their leases may be taken.
    pub draining: &'a [String],
    /// Transcoders with a lower priority than `me`: their leases may be
    /// taken.
    pub lower: &'a [String],
    /// A lease's length in ms.
    pub ttl_ms: i64,
}

/// A connection pool to the control-plane database.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    sqlite: bool,
}

const STREAM_COLS: &str = "name, owner, title, private, stream_key, transcode, dvr_hours, restream, srt_passphrase, fallback, source_timeout_ms, created_at";

impl Store {
    /// Connects to `url` (`sqlite://PATH?mode=rwc` or
    /// `postgres://user@host:port/db`) and applies the migrations.
    pub async fn open(url: &str) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let sqlite = url.starts_with("sqlite:");
        let pool = AnyPoolOptions::new()
            .max_connections(if sqlite { 4 } else { 16 })
            .connect(url)
            .await
            .map_err(db("connect"))?;
        if sqlite {
            // Readers do not block the writer; persistent in the file.
            sqlx::query("PRAGMA journal_mode=WAL")
                .execute(&pool)
                .await
                .map_err(db("set WAL mode"))?;
        }
        let migrations = MIGRATIONS
            .iter()
            .map(|(v, d, sql)| {
                Migration::new(
                    *v,
                    Cow::Borrowed(*d),
                    MigrationType::Simple,
                    sqlx::SqlSafeStr::into_sql_str(*sql),
                    false,
                )
            })
            .collect();
        Migrator::with_migrations(migrations).run(&pool).await?;
        Ok(Store { pool, sqlite })
    }

    /// Whether the database is SQLite (one writer).
    pub fn is_sqlite(&self) -> bool {
        self.sqlite
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    // ---- creators -------------------------------------------------------

    /// Adds a creator whose token hashes to `token_sha256` (hex).
    pub async fn insert_creator(
        &self,
        id: &str,
        name: &str,
        token_sha256: &str,
        admin: bool,
        now: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO creators (id, name, token_sha256, is_admin, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id)
        .bind(name)
        .bind(token_sha256)
        .bind(i64::from(admin))
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(|e| conflict_or(e, "creator", id, "insert creator"))?;
        Ok(())
    }

    /// Sets the admin token hash (creating the admin row if needed).
    pub async fn set_admin_token(&self, token_sha256: &str, now: i64) -> Result<()> {
        let n = sqlx::query("UPDATE creators SET token_sha256 = $1 WHERE id = $2")
            .bind(token_sha256)
            .bind(ADMIN_ID)
            .execute(&self.pool)
            .await
            .map_err(db("update admin"))?
            .rows_affected();
        if n == 0 {
            self.insert_creator(ADMIN_ID, "admin", token_sha256, true, now)
                .await?;
        }
        Ok(())
    }

    /// Whether the admin row exists.
    pub async fn admin_exists(&self) -> Result<bool> {
        let row = sqlx::query("SELECT id FROM creators WHERE id = $1")
            .bind(ADMIN_ID)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("find admin"))?;
        Ok(row.is_some())
    }

    /// The principal whose token hashes to `token_sha256`.
    pub async fn principal_by_token_hash(&self, token_sha256: &str) -> Result<Option<Principal>> {
        let row = sqlx::query("SELECT id, is_admin FROM creators WHERE token_sha256 = $1")
            .bind(token_sha256)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("find creator"))?;
        row.map(|r| {
            Ok(Principal {
                id: get(&r, "creators", "id")?,
                admin: get::<i64>(&r, "creators", "is_admin")? != 0,
            })
        })
        .transpose()
    }

    // ---- streams --------------------------------------------------------

    /// Adds a stream; [`Error::Conflict`] if the name (or key) exists.
    pub async fn insert_stream(&self, s: &StreamRecord) -> Result<()> {
        let restream = restream_json(&s.restream);
        sqlx::query(
            "INSERT INTO streams (name, owner, title, private, stream_key, transcode, dvr_hours, restream, srt_passphrase, \
             fallback, source_timeout_ms, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(&s.name)
        .bind(&s.owner)
        .bind(&s.title)
        .bind(i64::from(s.private))
        .bind(&s.key)
        .bind(&s.transcode)
        .bind(i64::from(s.dvr_hours))
        .bind(restream)
        .bind(s.srt_passphrase.clone())
        .bind(s.fallback.clone())
        .bind(i64::from(s.source_timeout_ms))
        .bind(s.created_at)
        .execute(&self.pool)
        .await
        .map_err(|e| conflict_or(e, "stream", &s.name, "insert stream"))?;
        Ok(())
    }

    /// One stream.
    pub async fn stream(&self, name: &str) -> Result<Option<StreamRecord>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {STREAM_COLS} FROM streams WHERE name = $1"
        )))
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .map_err(db("get stream"))?;
        row.map(|r| stream_row(&r)).transpose()
    }

    /// All streams, or those of one owner, by name.
    pub async fn streams(&self, owner: Option<&str>) -> Result<Vec<StreamRecord>> {
        let rows = match owner {
            Some(o) => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {STREAM_COLS} FROM streams WHERE owner = $1 ORDER BY name"
                )))
                .bind(o)
                .fetch_all(&self.pool)
                .await
            }
            None => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {STREAM_COLS} FROM streams ORDER BY name"
                )))
                .fetch_all(&self.pool)
                .await
            }
        }
        .map_err(db("list streams"))?;
        rows.iter().map(stream_row).collect()
    }

    /// Writes every field of `s` except name, owner and created_at.
    pub async fn update_stream(&self, s: &StreamRecord) -> Result<()> {
        let n = sqlx::query(
            "UPDATE streams SET title = $1, private = $2, stream_key = $3, transcode = $4, dvr_hours = $5, \
             restream = $6, srt_passphrase = $7, fallback = $8, source_timeout_ms = $9 WHERE name = $10",
        )
        .bind(&s.title)
        .bind(i64::from(s.private))
        .bind(&s.key)
        .bind(&s.transcode)
        .bind(i64::from(s.dvr_hours))
        .bind(restream_json(&s.restream))
        .bind(s.srt_passphrase.clone())
        .bind(s.fallback.clone())
        .bind(i64::from(s.source_timeout_ms))
        .bind(&s.name)
        .execute(&self.pool)
        .await
        .map_err(|e| conflict_or(e, "stream key", "", "update stream"))?
        .rows_affected();
        if n == 0 {
            return Err(Error::NotFound {
                what: "stream",
                id: s.name.clone(),
            });
        }
        Ok(())
    }

    /// Deletes a stream and its play sessions; false if it did not exist.
    pub async fn delete_stream(&self, name: &str) -> Result<bool> {
        let n = sqlx::query("DELETE FROM streams WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(db("delete stream"))?
            .rows_affected();
        sqlx::query("DELETE FROM play_sessions WHERE stream = $1")
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(db("delete sessions"))?;
        Ok(n > 0)
    }

    /// The stream whose current key is `key`.
    pub async fn stream_name_by_key(&self, key: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT name FROM streams WHERE stream_key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("find key"))?;
        row.map(|r| get(&r, "streams", "name")).transpose()
    }

    // ---- play sessions --------------------------------------------------

    /// Adds a play session.
    pub async fn insert_session(&self, s: &SessionRecord, now: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO play_sessions (id, stream, expires_at, bind_ip, revoked, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&s.id)
        .bind(&s.stream)
        .bind(s.expires_at)
        .bind(s.bind_ip.clone())
        .bind(i64::from(s.revoked))
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(|e| conflict_or(e, "session", &s.id, "insert session"))?;
        Ok(())
    }

    /// One play session.
    pub async fn session(&self, id: &str) -> Result<Option<SessionRecord>> {
        let row = sqlx::query(
            "SELECT id, stream, expires_at, bind_ip, revoked FROM play_sessions WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db("get session"))?;
        row.map(|r| {
            Ok(SessionRecord {
                id: get(&r, "play_sessions", "id")?,
                stream: get(&r, "play_sessions", "stream")?,
                expires_at: get(&r, "play_sessions", "expires_at")?,
                bind_ip: get(&r, "play_sessions", "bind_ip")?,
                revoked: get::<i64>(&r, "play_sessions", "revoked")? != 0,
            })
        })
        .transpose()
    }

    /// Marks a session revoked.
    pub async fn revoke_session(&self, id: &str) -> Result<()> {
        sqlx::query("UPDATE play_sessions SET revoked = 1 WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(db("revoke session"))?;
        Ok(())
    }

    /// Ids of revoked sessions that have not expired at `now`.
    pub async fn revoked_sessions(&self, now: i64) -> Result<Vec<String>> {
        let rows =
            sqlx::query("SELECT id FROM play_sessions WHERE revoked = 1 AND expires_at > $1")
                .bind(now)
                .fetch_all(&self.pool)
                .await
                .map_err(db("list revoked"))?;
        rows.iter().map(|r| get(r, "play_sessions", "id")).collect()
    }

    // ---- nodes ----------------------------------------------------------

    /// The database clock in unix milliseconds, as SQL: node liveness is
    /// judged on this one clock, whichever process asks.
    fn now_ms_sql(&self) -> &'static str {
        if self.sqlite {
            "CAST((julianday('now') - 2440587.5) * 86400000.0 AS BIGINT)"
        } else {
            "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)"
        }
    }

    /// Registers node `id` or renews it: one upsert per heartbeat, stamped
    /// with the database clock.
    pub async fn node_beat(
        &self,
        id: &str,
        role: &str,
        url: &str,
        info: &str,
        now: i64,
    ) -> Result<()> {
        let sql = format!(
            "INSERT INTO nodes (id, role, url, info, registered_at, last_seen_ms) \
             VALUES ($1, $2, $3, $4, $5, {now_ms}) \
             ON CONFLICT (id) DO UPDATE SET role = excluded.role, url = excluded.url, \
             info = excluded.info, last_seen_ms = excluded.last_seen_ms",
            now_ms = self.now_ms_sql()
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .bind(role)
            .bind(url)
            .bind(info)
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(db("node heartbeat"))?;
        Ok(())
    }

    /// Every node, by id, and the database clock (unix ms) they are to be
    /// judged by.
    pub async fn nodes(&self) -> Result<(i64, Vec<NodeRow>)> {
        let sql = format!(
            "SELECT {now_ms} AS now_ms, n.id, n.role, n.url, n.info, n.registered_at, \
             n.last_seen_ms FROM (SELECT 1 AS one) AS clock LEFT JOIN nodes AS n ON 1 = 1 \
             ORDER BY n.id",
            now_ms = self.now_ms_sql()
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await
            .map_err(db("list nodes"))?;
        const T: &str = "nodes";
        let mut now = 0;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            now = get(r, T, "now_ms")?;
            let Some(id) = get::<Option<String>>(r, T, "id")? else {
                continue;
            };
            out.push(NodeRow {
                id,
                role: get(r, T, "role")?,
                url: get(r, T, "url")?,
                info: get(r, T, "info")?,
                registered_at: get(r, T, "registered_at")?,
                last_seen_ms: get(r, T, "last_seen_ms")?,
            });
        }
        Ok((now, out))
    }

    /// Forgets node `id`; false if there was none.
    pub async fn delete_node(&self, id: &str) -> Result<bool> {
        Ok(sqlx::query("DELETE FROM nodes WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(db("delete node"))?
            .rows_affected()
            > 0)
    }

    /// One transcoder's round of the lease table, in one transaction.
    /// First keeps the rows' live flags: makes a row for each of
    /// `q.new_jobs` that has none and marks theirs live, marks those of
    /// `q.ended_jobs` (and, with `q.resync`, every live row that is no job)
    /// not live. Then reads the rows `q.me` holds and asks `plan` (given
    /// them, on jobs, and the database clock in unix ms) which to renew and
    /// release and how many more to claim; renews, releases (and lets go of
    /// rows of streams that are no job any more); then claims up to
    /// [`LeasePlan::want`] live rows that are claimable (unheld, expired,
    /// held by a node in `q.draining` or in `q.lower`), free ones first,
    /// locked `FOR UPDATE SKIP LOCKED` on PostgreSQL (control planes
    /// sharing the database never wait on each other's candidates nor claim
    /// one twice; SQLite has one writer) and checked again with `is_job`
    /// and `claimable`. Every claim raises the row's epoch (to one more, or
    /// to the database clock in ms if that is more). Reads only
    /// the node's own rows and, when it wants more, as many candidates as
    /// it wants, and names no job it does not write: a round costs the
    /// same with 10 jobs or 10,000. Answers the leases `q.me` holds on
    /// jobs (stream, epoch).
    pub async fn lease_round(
        &self,
        q: &LeaseQuery<'_>,
        plan: impl FnOnce(i64, &[LeaseRow]) -> LeasePlan,
        claimable: impl Fn(&LeaseRow, i64) -> bool,
    ) -> Result<Vec<(String, i64)>> {
        let ctx = "transcode leases";
        self.mark_jobs(q).await?;
        let now_ms = self.now_ms_sql();
        let ttl_ms = q.ttl_ms;
        let mut tx = self.pool.begin().await.map_err(db(ctx))?;
        if self.sqlite {
            // Take the write lock first: a WAL transaction that read and
            // then writes fails at once if another writer came between.
            sqlx::query("UPDATE transcode_leases SET epoch = epoch WHERE stream = ''")
                .execute(&mut *tx)
                .await
                .map_err(db(ctx))?;
        }
        let sql = format!(
            "SELECT {now_ms} AS now_ms, l.stream, l.node_id, l.epoch, l.expires_ms \
             FROM (SELECT 1 AS one) AS clock LEFT JOIN transcode_leases AS l \
             ON l.node_id = $1"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(q.me)
            .fetch_all(&mut *tx)
            .await
            .map_err(db(ctx))?;
        let mut now = 0;
        let (mut mine, mut gone) = (Vec::new(), Vec::new());
        for r in &rows {
            now = get(r, "transcode_leases", "now_ms")?;
            if get::<Option<String>>(r, "transcode_leases", "stream")?.is_none() {
                continue;
            }
            let row = lease_row(r)?;
            if (q.is_job)(&row.stream) {
                mine.push(row);
            } else {
                gone.push(row.stream);
            }
        }
        let plan = plan(now, &mine);
        let mut release = plan.release.clone();
        release.extend(gone);
        for (list, set) in [
            (&plan.renew, format!("expires_ms = {now_ms} + {ttl_ms}")),
            (&release, "node_id = '', expires_ms = 0".to_owned()),
        ] {
            for chunk in list.chunks(1000) {
                let sql = format!(
                    "UPDATE transcode_leases SET {set} WHERE node_id = $1 AND stream IN ({})",
                    placeholders(2, chunk.len())
                );
                let mut b = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(q.me);
                for s in chunk {
                    b = b.bind(s.as_str());
                }
                b.execute(&mut *tx).await.map_err(db(ctx))?;
            }
        }
        let mut taken = 0;
        let lock = if self.sqlite {
            ""
        } else {
            " FOR UPDATE SKIP LOCKED"
        };
        // Free rows first (unheld rows have `expires_ms` 0, so "unheld or
        // expired" is one range of the (live, expires_ms) index), then
        // those held by a draining or a lower-priority node (the node_id
        // index): neither query reads or sorts the held rows of others.
        let takers: Vec<&String> = q.draining.iter().chain(q.lower).collect();
        for free in [true, false] {
            if taken >= plan.want || (!free && takers.is_empty()) {
                continue;
            }
            let which = if free {
                format!("expires_ms <= {now_ms} AND node_id <> $1 ORDER BY expires_ms, stream")
            } else {
                format!(
                    "node_id IN ({}) ORDER BY stream",
                    placeholders(1, takers.len())
                )
            };
            let sql = format!(
                "SELECT {now_ms} AS now_ms, stream, node_id, epoch, expires_ms \
                 FROM transcode_leases WHERE live = 1 AND {which} LIMIT {limit}{lock}",
                limit = plan.want - taken,
            );
            let mut b = sqlx::query(sqlx::AssertSqlSafe(sql));
            if free {
                b = b.bind(q.me);
            } else {
                for p in &takers {
                    b = b.bind(p.as_str());
                }
            }
            let candidates = b.fetch_all(&mut *tx).await.map_err(db(ctx))?;
            for r in &candidates {
                if taken >= plan.want {
                    break;
                }
                now = get(r, "transcode_leases", "now_ms")?;
                let row = lease_row(r)?;
                // A row another control plane marked live a moment before
                // this one's registry view has it is left for the next round.
                if !(q.is_job)(&row.stream) || !claimable(&row, now) {
                    continue;
                }
                // The epoch: one more than the last, and at least the
                // database clock in ms (`crate::lease::next_epoch`), so a
                // stream whose row was pruned starts above every epoch it
                // had ([`Store::prune_leases`]).
                let sql = format!(
                    "UPDATE transcode_leases SET node_id = $1, \
                     epoch = CASE WHEN epoch < {now_ms} THEN {now_ms} ELSE epoch + 1 END, \
                     expires_ms = {now_ms} + {ttl_ms} WHERE stream = $2 AND epoch = $3"
                );
                let done = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(q.me)
                    .bind(row.stream.as_str())
                    .bind(row.epoch)
                    .execute(&mut *tx)
                    .await
                    .map_err(db(ctx))?
                    .rows_affected();
                taken += usize::from(done > 0);
            }
        }
        let sql = format!(
            "SELECT stream, epoch FROM transcode_leases WHERE node_id = $1 AND expires_ms > {now_ms}"
        );
        let held = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(q.me)
            .fetch_all(&mut *tx)
            .await
            .map_err(db(ctx))?;
        tx.commit().await.map_err(db(ctx))?;
        let mut out = Vec::with_capacity(held.len());
        for r in &held {
            let stream: String = get(r, "transcode_leases", "stream")?;
            if (q.is_job)(&stream) {
                out.push((stream, get(r, "transcode_leases", "epoch")?));
            }
        }
        out.sort();
        Ok(out)
    }

    /// Keeps the live flags of the lease rows (see [`Store::lease_round`]).
    async fn mark_jobs(&self, q: &LeaseQuery<'_>) -> Result<()> {
        let ctx = "transcode lease jobs";
        for chunk in q.new_jobs.chunks(500) {
            let values: Vec<String> = (1..=chunk.len())
                .map(|i| format!("(${i}, '', 0, 0, 1)"))
                .collect();
            let sql = format!(
                "INSERT INTO transcode_leases (stream, node_id, epoch, expires_ms, live) VALUES {} \
                 ON CONFLICT (stream) DO UPDATE SET live = 1 WHERE transcode_leases.live <> 1",
                values.join(", ")
            );
            let mut b = sqlx::query(sqlx::AssertSqlSafe(sql));
            for j in chunk {
                b = b.bind(j.as_str());
            }
            b.execute(&self.pool).await.map_err(db(ctx))?;
        }
        let mut ended: Vec<&str> = q.ended_jobs.iter().map(String::as_str).collect();
        let stale;
        if q.resync {
            stale = sqlx::query("SELECT stream FROM transcode_leases WHERE live = 1")
                .fetch_all(&self.pool)
                .await
                .map_err(db(ctx))?
                .iter()
                .map(|r| get::<String>(r, "transcode_leases", "stream"))
                .collect::<Result<Vec<String>>>()?;
            ended.extend(stale.iter().map(String::as_str).filter(|s| !(q.is_job)(s)));
        }
        for chunk in ended.chunks(1000) {
            let sql = format!(
                "UPDATE transcode_leases SET live = 0 WHERE live = 1 AND stream IN ({})",
                placeholders(1, chunk.len())
            );
            let mut b = sqlx::query(sqlx::AssertSqlSafe(sql));
            for s in chunk {
                b = b.bind(*s);
            }
            b.execute(&self.pool).await.map_err(db(ctx))?;
        }
        Ok(())
    }

    /// Every lease row, by stream (the admin's view and tests').
    pub async fn leases(&self) -> Result<Vec<LeaseRow>> {
        let rows = sqlx::query(
            "SELECT stream, node_id, epoch, expires_ms FROM transcode_leases ORDER BY stream",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db("list leases"))?;
        rows.iter().map(lease_row).collect()
    }

    /// Deletes the lease rows of streams that are no job (not live), held
    /// by nobody, and last claimed more than `keep_ms` ago by the database
    /// clock (their epoch is at most a little past the clock of their last
    /// claim); returns how many. A stream that comes back gets a new row,
    /// and its first claim an epoch from the clock then, above every epoch
    /// it had: origins that remember one refuse nothing they should take.
    /// `keep_ms` is the database clock step back this tolerates.
    pub async fn prune_leases(&self, keep_ms: i64) -> Result<u64> {
        let now_ms = self.now_ms_sql();
        let sql = format!(
            "DELETE FROM transcode_leases WHERE live = 0 AND expires_ms <= {now_ms} \
             AND epoch < {now_ms} - $1"
        );
        Ok(sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(keep_ms)
            .execute(&self.pool)
            .await
            .map_err(db("prune transcode leases"))?
            .rows_affected())
    }

    /// Deletes sessions that expired before `now`; returns how many.
    pub async fn prune_sessions(&self, now: i64) -> Result<u64> {
        Ok(
            sqlx::query("DELETE FROM play_sessions WHERE expires_at <= $1")
                .bind(now)
                .execute(&self.pool)
                .await
                .map_err(db("prune sessions"))?
                .rows_affected(),
        )
    }
}

fn get<'r, T>(row: &'r AnyRow, table: &'static str, col: &'static str) -> Result<T>
where
    T: sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    row.try_get(col).map_err(|e| Error::Corrupt {
        table,
        reason: format!("{col}: {e}"),
    })
}

fn stream_row(r: &AnyRow) -> Result<StreamRecord> {
    const T: &str = "streams";
    let restream: String = get(r, T, "restream")?;
    let restream = serde_json::from_str(&restream).map_err(|e| Error::Corrupt {
        table: T,
        reason: format!("restream: {e}"),
    })?;
    let dvr: i64 = get(r, T, "dvr_hours")?;
    let timeout: i64 = get(r, T, "source_timeout_ms")?;
    Ok(StreamRecord {
        name: get(r, T, "name")?,
        owner: get(r, T, "owner")?,
        title: get(r, T, "title")?,
        private: get::<i64>(r, T, "private")? != 0,
        key: get(r, T, "stream_key")?,
        transcode: get(r, T, "transcode")?,
        dvr_hours: u32::try_from(dvr).map_err(|_| Error::Corrupt {
            table: T,
            reason: format!("dvr_hours {dvr}"),
        })?,
        restream,
        srt_passphrase: get(r, T, "srt_passphrase")?,
        fallback: get(r, T, "fallback")?,
        source_timeout_ms: u32::try_from(timeout).map_err(|_| Error::Corrupt {
            table: T,
            reason: format!("source_timeout_ms {timeout}"),
        })?,
        created_at: get(r, T, "created_at")?,
    })
}

fn lease_row(r: &AnyRow) -> Result<LeaseRow> {
    const T: &str = "transcode_leases";
    Ok(LeaseRow {
        stream: get(r, T, "stream")?,
        node_id: get(r, T, "node_id")?,
        epoch: get(r, T, "epoch")?,
        expires_ms: get(r, T, "expires_ms")?,
    })
}

/// `$first, $first+1, ...`: `n` bind placeholders.
fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn restream_json(list: &[String]) -> String {
    serde_json::to_string(list).unwrap_or_else(|_| "[]".into())
}

fn conflict_or(e: sqlx::Error, what: &'static str, id: &str, context: &'static str) -> Error {
    if let sqlx::Error::Database(d) = &e
        && d.is_unique_violation()
    {
        return Error::Conflict {
            what,
            id: id.to_owned(),
        };
    }
    Error::Database { context, source: e }
}
