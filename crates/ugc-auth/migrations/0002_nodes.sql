-- The node registry of a platform of several machines: each media node
-- upserts its row on every heartbeat. `last_seen_ms` is written by the
-- database's own clock (never the node's or the control plane's), so
-- liveness is judged on one clock however many control planes there are.
-- `info` is the node's last heartbeat as JSON (public URLs, capacity, load,
-- streams, draining).
CREATE TABLE nodes (
    id TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    url TEXT NOT NULL,
    info TEXT NOT NULL,
    registered_at BIGINT NOT NULL,
    last_seen_ms BIGINT NOT NULL
);
