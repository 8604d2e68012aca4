-- Whether a lease row's stream is a job now (live, with a ladder). The
-- control planes keep it from the registry as streams start and end, so a
-- transcoder's claim selects its candidates by this flag instead of
-- naming every job in the query (an IN list of 10,000 streams saturated
-- one PostgreSQL core at ~120 lease rounds a second).
ALTER TABLE transcode_leases ADD COLUMN live INTEGER NOT NULL DEFAULT 0;
-- Claims: free rows are the live ones with `expires_ms` at or before now
-- (an unheld row's is 0), found as one range, oldest first.
CREATE INDEX transcode_leases_free ON transcode_leases (live, expires_ms, stream);
-- Every round reads and renews its node's rows, and claims from draining
-- and lower-priority nodes by holder.
CREATE INDEX transcode_leases_holder ON transcode_leases (node_id);
