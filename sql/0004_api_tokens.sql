-- API tokens. Only a SHA-256 of each token's secret part is kept; the token
-- itself is shown once, when it is created.
CREATE TABLE api_tokens (
    id           TEXT    PRIMARY KEY,            -- the public part of the token
    merchant_id  INTEGER NOT NULL REFERENCES merchants (id),
    secret_hash  BLOB    NOT NULL,               -- sha256 of the secret part
    created_at   INTEGER NOT NULL,
    revoked_at   INTEGER
);
CREATE INDEX api_tokens_by_merchant ON api_tokens (merchant_id);
