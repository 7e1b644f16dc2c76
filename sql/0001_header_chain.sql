-- The active header chain as the tower has processed it, one row per height.
-- The chain follower resumes from the highest row after a restart, and finds
-- fork points by comparing these hashes with the node's.
CREATE TABLE headers (
    height            INTEGER PRIMARY KEY,
    hash              BLOB    NOT NULL UNIQUE,   -- 32 bytes, internal byte order
    prev_hash         BLOB    NOT NULL,
    time              INTEGER NOT NULL,          -- block timestamp (unix seconds)
    median_time_past  INTEGER NOT NULL           -- of the 11 blocks ending here
);
