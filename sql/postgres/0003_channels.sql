-- PostgreSQL twin of sql/0003_channels.sql (see the comments there): same
-- tables, columns, constraints and indexes. INTEGER is BIGINT (flags stay
-- 0/1 integers, as in SQLite), BLOB is BYTEA, and SQLite's rowid keys
-- (INTEGER PRIMARY KEY, AUTOINCREMENT) are identity columns.

CREATE TABLE merchants (
    id              BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name            TEXT    NOT NULL UNIQUE,
    payout_address  TEXT,
    custody         TEXT    NOT NULL CHECK (custody IN ('presigned', 'signer')),
    xprv_file       TEXT,
    created_at      BIGINT  NOT NULL
);

CREATE TABLE channels (
    id                    BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    address               TEXT    NOT NULL UNIQUE,
    merchant_id           BIGINT  NOT NULL REFERENCES merchants (id),
    state                 TEXT    NOT NULL CHECK (state IN
                              ('pending_funding', 'open', 'closing', 'closed', 'refunded', 'failed')),
    redeem_script         BYTEA   NOT NULL,
    merchant_key_origin   TEXT,
    payout_script         BYTEA   NOT NULL,
    announcement          BYTEA   NOT NULL,
    capacity              BIGINT  NOT NULL,
    sequence              BIGINT  NOT NULL DEFAULT 0,
    merchant_amount       BIGINT  NOT NULL DEFAULT 0,
    latest_unsigned_txid  BYTEA,
    broadcast_height      BIGINT  NOT NULL,
    warning_height        BIGINT  NOT NULL,
    deadline_warned       BIGINT  NOT NULL DEFAULT 0,
    close_txid            BYTEA,
    close_mined_height    BIGINT,
    close_first_broadcast BIGINT,
    close_broadcasts      BIGINT  NOT NULL DEFAULT 0,
    close_reported        BIGINT  NOT NULL DEFAULT 0,
    undo_state            TEXT,
    undo_height           BIGINT,
    created_at            BIGINT  NOT NULL,
    updated_at            BIGINT  NOT NULL
);
CREATE INDEX channels_by_merchant_state ON channels (merchant_id, state, id);
CREATE INDEX channels_by_state ON channels (state);

CREATE TABLE funding_outputs (
    channel_id          BIGINT  NOT NULL REFERENCES channels (id),
    txid                BYTEA   NOT NULL,
    vout                BIGINT  NOT NULL,
    position            BIGINT  NOT NULL,
    value               BIGINT  NOT NULL,
    status              TEXT    NOT NULL CHECK (status IN
                            ('unseen', 'mempool', 'confirmed', 'double_spent', 'spent')),
    confirmed_height    BIGINT,
    confirmed_reported  BIGINT  NOT NULL DEFAULT 0,
    spent_by            BYTEA,
    spent_height        BIGINT,
    PRIMARY KEY (txid, vout)
);
CREATE INDEX funding_outputs_by_channel ON funding_outputs (channel_id, position);

CREATE TABLE funding_inputs (
    channel_id    BIGINT  NOT NULL REFERENCES channels (id),
    funding_txid  BYTEA   NOT NULL,
    txid          BYTEA   NOT NULL,
    vout          BIGINT  NOT NULL,
    PRIMARY KEY (channel_id, funding_txid, txid, vout)
);

CREATE TABLE payments (
    channel_id       BIGINT  NOT NULL REFERENCES channels (id),
    sequence         BIGINT  NOT NULL,
    psbt             BYTEA   NOT NULL,
    merchant_amount  BIGINT  NOT NULL,
    fee              BIGINT  NOT NULL,
    unsigned_txid    BYTEA   NOT NULL,
    received_at      BIGINT  NOT NULL,
    PRIMARY KEY (channel_id, sequence)
);

CREATE TABLE transitions (
    id          BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    channel_id  BIGINT  NOT NULL REFERENCES channels (id),
    from_state  TEXT    NOT NULL,
    to_state    TEXT    NOT NULL,
    cause       TEXT    NOT NULL,
    height      BIGINT,
    at          BIGINT  NOT NULL
);
CREATE INDEX transitions_by_channel ON transitions (channel_id, id);

CREATE TABLE broadcasts (
    id          BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    channel_id  BIGINT  NOT NULL REFERENCES channels (id),
    txid        BYTEA,
    height      BIGINT,
    result      TEXT    NOT NULL,
    message     TEXT,
    at          BIGINT  NOT NULL
);
CREATE INDEX broadcasts_by_channel ON broadcasts (channel_id, id);

CREATE TABLE outbox (
    seq         BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id    TEXT    NOT NULL UNIQUE,
    type        TEXT    NOT NULL,
    channel_id  TEXT,
    merchant_id BIGINT,
    payload     TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL
);
