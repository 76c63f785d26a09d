-- Product events and the rollups dashboards read. Times are Unix microseconds.

CREATE TABLE events (
    organization_id  TEXT NOT NULL,
    event_id         TEXT NOT NULL,
    app_id           TEXT NOT NULL,
    user_id          TEXT NOT NULL,
    event_type       TEXT NOT NULL,
    event_name       TEXT NOT NULL,
    properties       TEXT NOT NULL,
    session_id       TEXT NOT NULL,
    client_timestamp BIGINT,
    sent_at          BIGINT,
    received_at      BIGINT NOT NULL,
    -- The clock-skew corrected time every filter, order and rollup uses.
    occurred_at      BIGINT NOT NULL,
    user_agent       TEXT NOT NULL,
    ip               TEXT NOT NULL,
    PRIMARY KEY (organization_id, event_id)
);

CREATE INDEX events_by_time ON events (organization_id, occurred_at DESC, event_id DESC);
CREATE INDEX events_by_user ON events (organization_id, user_id, occurred_at DESC);
CREATE INDEX events_by_type ON events (organization_id, event_type, occurred_at DESC);

-- Event counts per app, type and time bucket, at three widths (60, 3600 and
-- 86400 seconds), maintained in the transaction that stores the events and
-- kept after the raw events expire.
CREATE TABLE event_counts (
    organization_id TEXT NOT NULL,
    app_id          TEXT NOT NULL,
    width_seconds   INTEGER NOT NULL,
    bucket_start    BIGINT NOT NULL,
    event_type      TEXT NOT NULL,
    event_count     BIGINT NOT NULL,
    PRIMARY KEY (organization_id, width_seconds, bucket_start, app_id, event_type)
);

-- Which users were active per app and hour or day (3600 or 86400 seconds),
-- for distinct-user counts over rolling windows.
CREATE TABLE user_activity (
    organization_id TEXT NOT NULL,
    app_id          TEXT NOT NULL,
    width_seconds   INTEGER NOT NULL,
    bucket_start    BIGINT NOT NULL,
    user_id         TEXT NOT NULL,
    PRIMARY KEY (organization_id, width_seconds, bucket_start, app_id, user_id)
);
