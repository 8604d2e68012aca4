-- Transcode leases of a platform of several machines: each live stream
-- with a ladder is a job held by one transcoding node at a time. `epoch`
-- grows on every claim and is never reset (rows outlive their streams), so
-- a receiver that saw epoch N refuses every sender with less; `expires_ms`
-- is on the database clock, renewed by the holder's heartbeats.
CREATE TABLE transcode_leases (
    stream TEXT PRIMARY KEY,
    node_id TEXT NOT NULL,
    epoch BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL
);
