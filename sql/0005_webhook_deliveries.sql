-- Finished webhook deliveries, per endpoint and outbox event. An outbox event
-- without a row here for an endpoint is still to be delivered to it; retry
-- timing lives in memory and starts over after a restart.
CREATE TABLE webhook_deliveries (
    endpoint     TEXT    NOT NULL,                -- the endpoint URL
    outbox_seq   INTEGER NOT NULL REFERENCES outbox (seq),
    state        TEXT    NOT NULL CHECK (state IN ('delivered', 'given_up', 'filtered')),
    attempts     INTEGER NOT NULL,
    last_status  TEXT,                            -- HTTP status or error of the last attempt
    finished_at  INTEGER NOT NULL,
    PRIMARY KEY (endpoint, outbox_seq)
);
