-- Every block the tower processed or unwound, in processing order: an audit
-- trail for operators ("what did the tower see, and when") and the exact
-- record the restart tests compare with the node's chain.
CREATE TABLE chain_log (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    kind       TEXT    NOT NULL CHECK (kind IN ('connected', 'disconnected')),
    height     INTEGER NOT NULL,
    hash       BLOB    NOT NULL,               -- 32 bytes, internal byte order
    logged_at  INTEGER NOT NULL                -- unix seconds
);
