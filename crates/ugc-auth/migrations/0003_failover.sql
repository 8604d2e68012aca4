-- Per-stream failover settings. `fallback`: NULL for the media node's own
-- fallback, else `slate`, `off`, an http(s) URL or a file name in the
-- node's fallback directory. `source_timeout_ms`: 0 for the node's default.
ALTER TABLE streams ADD COLUMN fallback TEXT;
ALTER TABLE streams ADD COLUMN source_timeout_ms BIGINT NOT NULL DEFAULT 0;
