-- PostgreSQL twin of sql/0002_chain_log.sql. SQLite's AUTOINCREMENT (never
-- reuses a seq) is an identity column here; ALWAYS, so a write that names
-- the seq fails instead of leaving the sequence behind.
CREATE TABLE chain_log (
    seq        BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind       TEXT    NOT NULL CHECK (kind IN ('connected', 'disconnected')),
    height     BIGINT  NOT NULL,
    hash       BYTEA   NOT NULL,               -- 32 bytes, internal byte order
    logged_at  BIGINT  NOT NULL                -- unix seconds
);
