-- PostgreSQL twin of sql/0007_channel_keys.sql (see the comments there).
ALTER TABLE merchants ADD COLUMN xpub TEXT;
ALTER TABLE merchants ADD COLUMN next_key_index BIGINT NOT NULL DEFAULT 0;

CREATE TABLE channel_keys (
    merchant_id   BIGINT  NOT NULL REFERENCES merchants (id),
    key_index     BIGINT  NOT NULL,
    pubkey        BYTEA   NOT NULL UNIQUE,
    fingerprint   TEXT    NOT NULL,
    path          TEXT    NOT NULL,
    issued_at     BIGINT  NOT NULL,
    expires_at    BIGINT  NOT NULL,
    channel_id    BIGINT  REFERENCES channels (id),
    used_at       BIGINT,
    PRIMARY KEY (merchant_id, key_index)
);
