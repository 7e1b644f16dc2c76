-- PostgreSQL twin of sql/0006_high_availability.sql: same tables, columns,
-- constraints and indexes; INTEGER is BIGINT.
CREATE TABLE ha_lease (
    name           TEXT     PRIMARY KEY,
    holder         TEXT     NOT NULL,
    holder_url     TEXT,
    epoch          BIGINT   NOT NULL,
    acquired_at_ms BIGINT   NOT NULL,
    renewed_at_ms  BIGINT   NOT NULL,
    expires_at_ms  BIGINT   NOT NULL
);

CREATE TABLE ha_towers (
    tower_id       TEXT     PRIMARY KEY,
    advertise_url  TEXT,
    role           TEXT     NOT NULL CHECK (role IN ('leader', 'standby')),
    version        TEXT     NOT NULL,
    started_at_ms  BIGINT   NOT NULL,
    seen_at_ms     BIGINT   NOT NULL,
    tip_height     BIGINT
);

CREATE INDEX channels_by_updated_at ON channels (updated_at);
