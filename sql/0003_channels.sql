-- Merchants, their channels and everything the tower must never forget about
-- them. Amounts are koinu; hashes and txids are 32 bytes in internal order;
-- times are unix seconds.

CREATE TABLE merchants (
    id              INTEGER PRIMARY KEY,
    name            TEXT    NOT NULL UNIQUE,
    payout_address  TEXT,                      -- default payout address, if any
    custody         TEXT    NOT NULL CHECK (custody IN ('presigned', 'signer')),
    xprv_file       TEXT,                      -- signer custody: path of the 0600 key file
    created_at      INTEGER NOT NULL
);

CREATE TABLE channels (
    id                    INTEGER PRIMARY KEY,
    address               TEXT    NOT NULL UNIQUE,   -- the channel id: its P2SH address
    merchant_id           INTEGER NOT NULL REFERENCES merchants (id),
    state                 TEXT    NOT NULL CHECK (state IN
                              ('pending_funding', 'open', 'closing', 'closed', 'refunded', 'failed')),
    redeem_script         BLOB    NOT NULL,
    merchant_key_origin   TEXT,                      -- "fingerprint/path" in signer custody
    payout_script         BLOB    NOT NULL,
    announcement          BLOB    NOT NULL,          -- the announcement PSBT as received
    capacity              INTEGER NOT NULL,
    sequence              INTEGER NOT NULL DEFAULT 0,
    merchant_amount       INTEGER NOT NULL DEFAULT 0,
    latest_unsigned_txid  BLOB,
    broadcast_height      INTEGER NOT NULL,
    warning_height        INTEGER NOT NULL,
    deadline_warned       INTEGER NOT NULL DEFAULT 0,
    close_txid            BLOB,
    close_mined_height    INTEGER,
    close_first_broadcast INTEGER,
    close_broadcasts      INTEGER NOT NULL DEFAULT 0,
    close_reported        INTEGER NOT NULL DEFAULT 0,
    undo_state            TEXT,                      -- state before a terminal one ...
    undo_height           INTEGER,                   -- ... and the block that caused it
    created_at            INTEGER NOT NULL,
    updated_at            INTEGER NOT NULL
);
CREATE INDEX channels_by_merchant_state ON channels (merchant_id, state, id);
CREATE INDEX channels_by_state ON channels (state);

CREATE TABLE funding_outputs (
    channel_id          INTEGER NOT NULL REFERENCES channels (id),
    txid                BLOB    NOT NULL,
    vout                INTEGER NOT NULL,
    position            INTEGER NOT NULL,            -- input order in the announcement
    value               INTEGER NOT NULL,
    status              TEXT    NOT NULL CHECK (status IN
                            ('unseen', 'mempool', 'confirmed', 'double_spent', 'spent')),
    confirmed_height    INTEGER,
    confirmed_reported  INTEGER NOT NULL DEFAULT 0,
    spent_by            BLOB,
    spent_height        INTEGER,
    PRIMARY KEY (txid, vout)
);
CREATE INDEX funding_outputs_by_channel ON funding_outputs (channel_id, position);

-- Inputs of each channel's funding transactions: spent by anything else, the
-- funding was double-spent.
CREATE TABLE funding_inputs (
    channel_id    INTEGER NOT NULL REFERENCES channels (id),
    funding_txid  BLOB    NOT NULL,
    txid          BLOB    NOT NULL,
    vout          INTEGER NOT NULL,
    PRIMARY KEY (channel_id, funding_txid, txid, vout)
);

-- Every accepted payment state, not only the latest.
CREATE TABLE payments (
    channel_id       INTEGER NOT NULL REFERENCES channels (id),
    sequence         INTEGER NOT NULL,
    psbt             BLOB    NOT NULL,
    merchant_amount  INTEGER NOT NULL,
    fee              INTEGER NOT NULL,
    unsigned_txid    BLOB    NOT NULL,
    received_at      INTEGER NOT NULL,
    PRIMARY KEY (channel_id, sequence)
);

-- Every state change, with what caused it.
CREATE TABLE transitions (
    id          INTEGER PRIMARY KEY,
    channel_id  INTEGER NOT NULL REFERENCES channels (id),
    from_state  TEXT    NOT NULL,
    to_state    TEXT    NOT NULL,
    cause       TEXT    NOT NULL,
    height      INTEGER,
    at          INTEGER NOT NULL
);
CREATE INDEX transitions_by_channel ON transitions (channel_id, id);

-- Every attempt to hand a close to the node, and the node's answer.
CREATE TABLE broadcasts (
    id          INTEGER PRIMARY KEY,
    channel_id  INTEGER NOT NULL REFERENCES channels (id),
    txid        BLOB,
    height      INTEGER,
    result      TEXT    NOT NULL,                   -- sent | already_in_chain | rejected:<kind> | not_finalized | unreachable
    message     TEXT,
    at          INTEGER NOT NULL
);
CREATE INDEX broadcasts_by_channel ON broadcasts (channel_id, id);

-- Events for merchants, written in the same transaction as the change that
-- caused them; the webhook sender delivers them from here.
CREATE TABLE outbox (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id    TEXT    NOT NULL UNIQUE,
    type        TEXT    NOT NULL,
    channel_id  TEXT,                               -- the channel's address, or NULL
    merchant_id INTEGER,
    payload     TEXT    NOT NULL,                   -- the webhook body (JSON)
    created_at  INTEGER NOT NULL
);
