-- PostgreSQL twin of sql/0005_webhook_deliveries.sql.
CREATE TABLE webhook_deliveries (
    endpoint     TEXT    NOT NULL,                -- the endpoint URL
    outbox_seq   BIGINT  NOT NULL REFERENCES outbox (seq),
    state        TEXT    NOT NULL CHECK (state IN ('delivered', 'given_up', 'filtered')),
    attempts     BIGINT  NOT NULL,
    last_status  TEXT,
    finished_at  BIGINT  NOT NULL,
    PRIMARY KEY (endpoint, outbox_seq)
);
