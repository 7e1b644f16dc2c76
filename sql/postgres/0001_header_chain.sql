-- PostgreSQL twin of sql/0001_header_chain.sql: same tables, columns,
-- constraints and indexes; INTEGER is BIGINT, BLOB is BYTEA.
-- The active header chain as the tower has processed it, one row per height.
CREATE TABLE headers (
    height            BIGINT  PRIMARY KEY,
    hash              BYTEA   NOT NULL UNIQUE,   -- 32 bytes, internal byte order
    prev_hash         BYTEA   NOT NULL,
    time              BIGINT  NOT NULL,          -- block timestamp (unix seconds)
    median_time_past  BIGINT  NOT NULL           -- of the 11 blocks ending here
);
