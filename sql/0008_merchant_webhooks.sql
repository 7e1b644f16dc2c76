-- Merchants' own webhook endpoints (POST /v1/webhooks) and the record of
-- each delivery to them, attempts and next retry included, so a merchant
-- can list and replay them and a restart resumes where the last run was.

-- The secret is kept as it was made, not hashed: the tower signs every
-- delivery with it (HMAC needs the key itself). It is shown once, in the
-- create answer; the API never reads it back and no log line carries it.
CREATE TABLE merchant_webhooks (
    id           TEXT    PRIMARY KEY,            -- wh_<32 hex>
    merchant_id  INTEGER NOT NULL REFERENCES merchants (id),
    url          TEXT    NOT NULL,
    events       TEXT    NOT NULL,               -- JSON array of event types; [] = all
    secret       TEXT    NOT NULL,               -- HMAC-SHA256 key (whsec_<64 hex>)
    -- The last outbox seq looked at for this endpoint: it starts at the
    -- outbox's end when the endpoint is made (no backlog of older events)
    -- and only moves forward as events become deliveries.
    scanned_seq  INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,
    deleted_at   INTEGER
);
CREATE INDEX merchant_webhooks_by_merchant ON merchant_webhooks (merchant_id);

CREATE TABLE merchant_webhook_deliveries (
    id               TEXT    PRIMARY KEY,        -- dlv_<32 hex>
    webhook_id       TEXT    NOT NULL REFERENCES merchant_webhooks (id),
    outbox_seq       INTEGER NOT NULL REFERENCES outbox (seq),
    state            TEXT    NOT NULL
                     CHECK (state IN ('pending', 'delivered', 'failed_retrying', 'given_up')),
    attempts         INTEGER NOT NULL,
    last_status_code INTEGER,                    -- HTTP status of the last attempt, if one came
    last_error       TEXT,                       -- transport error of the last attempt, if any
    last_attempt_at  INTEGER,                    -- unix seconds
    next_attempt_ms  INTEGER,                    -- unix milliseconds; NULL once finished
    -- When the current run of attempts began (the event's creation, or a
    -- redelivery): notify.give_up_after_secs counts from here.
    started_at       INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    UNIQUE (webhook_id, outbox_seq)
);
CREATE INDEX merchant_webhook_deliveries_open ON merchant_webhook_deliveries (webhook_id, state);

-- The sender reads each merchant's events after its endpoint's scanned_seq.
CREATE INDEX outbox_by_merchant ON outbox (merchant_id, seq);
