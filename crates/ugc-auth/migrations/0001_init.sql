-- ugc control plane schema, portable between SQLite and PostgreSQL:
-- only TEXT and BIGINT columns (booleans are 0/1, times are unix seconds,
-- lists are JSON text), so one sqlx `Any` code path reads both.
CREATE TABLE creators (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    token_sha256 TEXT NOT NULL UNIQUE,
    is_admin BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);

CREATE TABLE streams (
    name TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    title TEXT NOT NULL,
    private BIGINT NOT NULL DEFAULT 0,
    stream_key TEXT NOT NULL UNIQUE,
    transcode TEXT NOT NULL DEFAULT 'off',
    dvr_hours BIGINT NOT NULL DEFAULT 0,
    restream TEXT NOT NULL DEFAULT '[]',
    srt_passphrase TEXT,
    created_at BIGINT NOT NULL
);

CREATE INDEX streams_owner ON streams (owner);

CREATE TABLE play_sessions (
    id TEXT PRIMARY KEY,
    stream TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    bind_ip TEXT,
    revoked BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);

CREATE INDEX play_sessions_revoked ON play_sessions (revoked, expires_at);
