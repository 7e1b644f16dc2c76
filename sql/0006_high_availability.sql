-- High availability (issue 12). Used on PostgreSQL, where several towers
-- share one store; created in SQLite too so both schemas stay the same (a
-- SQLite tower is alone and never reads them).
--
-- The leader lease: one row ('leader'). Its holder is the only tower that
-- writes, broadcasts and delivers webhooks. `epoch` grows by one at every
-- change of holder; every write transaction of the leader checks its epoch
-- (fencing). Times are the database server's clock, in unix milliseconds, so
-- the towers' own clocks never have to agree.
CREATE TABLE ha_lease (
    name           TEXT     PRIMARY KEY,
    holder         TEXT     NOT NULL,      -- the tower id
    holder_url     TEXT,                   -- its ha.advertise_url
    epoch          INTEGER  NOT NULL,
    acquired_at_ms INTEGER  NOT NULL,
    renewed_at_ms  INTEGER  NOT NULL,
    expires_at_ms  INTEGER  NOT NULL
);

-- Every tower of the group, as it last reported itself (`dogetower ha status`).
CREATE TABLE ha_towers (
    tower_id       TEXT     PRIMARY KEY,
    advertise_url  TEXT,
    role           TEXT     NOT NULL CHECK (role IN ('leader', 'standby')),
    version        TEXT     NOT NULL,      -- dogetower's version
    started_at_ms  INTEGER  NOT NULL,
    seen_at_ms     INTEGER  NOT NULL,
    tip_height     INTEGER                 -- the chain tip its node reported
);

-- A standby keeps its engine warm by re-reading the channels the leader
-- changed since its last look (`Store::channels_changed_since`).
CREATE INDEX channels_by_updated_at ON channels (updated_at);
