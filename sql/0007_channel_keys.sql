-- Channel keys: the fresh public key a payer asks the merchant for before it
-- builds a channel (POST /v1/channel-keys). Each is derived at the next
-- index of the merchant's extended key (m/0/i below it) and handed out once.
--
-- A presigned merchant may give its extended public key, so the tower hands
-- out keys without holding any secret; a signer merchant's keys come from
-- the xprv the tower already holds.
ALTER TABLE merchants ADD COLUMN xpub TEXT;
-- The next index to hand out, taken and moved on in the same transaction as
-- the key's row (an UPDATE of this row): two towers of a group sharing the
-- store, or a tower after a restart, can never hand out one index twice.
ALTER TABLE merchants ADD COLUMN next_key_index INTEGER NOT NULL DEFAULT 0;

CREATE TABLE channel_keys (
    merchant_id   INTEGER NOT NULL REFERENCES merchants (id),
    key_index     INTEGER NOT NULL,             -- i in m/0/i
    pubkey        BLOB    NOT NULL UNIQUE,      -- 33-byte compressed key
    fingerprint   TEXT    NOT NULL,             -- the extended key's, 8 hex digits
    path          TEXT    NOT NULL,             -- "m/0/i", relative to that key
    issued_at     INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,             -- unused after this: refused (policy.require_issued_keys)
    channel_id    INTEGER REFERENCES channels (id),  -- the channel registered with it
    used_at       INTEGER,
    PRIMARY KEY (merchant_id, key_index)
);
