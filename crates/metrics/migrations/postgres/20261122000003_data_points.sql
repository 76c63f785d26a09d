-- Time-series data points. Times are Unix microseconds.

CREATE TABLE data_points (
    organization_id TEXT NOT NULL,
    point_id        TEXT NOT NULL,
    name            TEXT NOT NULL,
    point_type      INTEGER NOT NULL,
    value           DOUBLE PRECISION NOT NULL,
    unit            TEXT NOT NULL,
    -- Tags as a JSON object; JSONB so that tag filters use containment.
    tags            JSONB NOT NULL,
    app_id          TEXT NOT NULL,
    measured_at     BIGINT NOT NULL,
    recorded_at     BIGINT NOT NULL,
    PRIMARY KEY (organization_id, point_id)
);

CREATE INDEX data_points_series ON data_points (organization_id, name, measured_at);
CREATE INDEX data_points_recent ON data_points (organization_id, recorded_at DESC, point_id DESC);
