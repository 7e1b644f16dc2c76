-- PostgreSQL twin of sql/0004_api_tokens.sql.
CREATE TABLE api_tokens (
    id           TEXT    PRIMARY KEY,            -- the public part of the token
    merchant_id  BIGINT  NOT NULL REFERENCES merchants (id),
    secret_hash  BYTEA   NOT NULL,               -- sha256 of the secret part
    created_at   BIGINT  NOT NULL,
    revoked_at   BIGINT
);
CREATE INDEX api_tokens_by_merchant ON api_tokens (merchant_id);
