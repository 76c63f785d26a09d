-- Imported benchmark sources and generated reports. Timestamps are Unix
-- microseconds. The platform's own source (`metrix`) is computed from peer
-- data and has no rows here.

-- An external survey imported by an organisation; only that organisation
-- sees it. Importing the same name and publication date again replaces it.
CREATE TABLE benchmark_sources (
    source_id        TEXT PRIMARY KEY,
    organization_id  TEXT NOT NULL,
    display_name     TEXT NOT NULL,
    publisher        TEXT NOT NULL DEFAULT '',
    -- ISO 8601 calendar date, so text order is date order.
    publication_date TEXT NOT NULL,
    verified         BOOLEAN NOT NULL,
    url              TEXT NOT NULL DEFAULT '',
    description      TEXT NOT NULL DEFAULT '',
    imported_at      BIGINT NOT NULL,
    row_count        INTEGER NOT NULL,
    UNIQUE (organization_id, display_name, publication_date)
);

CREATE INDEX benchmark_sources_listing ON benchmark_sources (organization_id, publication_date DESC, source_id);

-- One published slice of a source; a figure the survey did not publish is NULL.
CREATE TABLE benchmark_source_rows (
    source_id       TEXT NOT NULL REFERENCES benchmark_sources (source_id) ON DELETE CASCADE,
    metric_id       TEXT NOT NULL,
    revenue_band_id TEXT NOT NULL,
    -- '' for every sector of the band.
    sector_id       TEXT NOT NULL,
    period          TEXT NOT NULL,
    sample_size     INTEGER NOT NULL,
    mean            DOUBLE PRECISION,
    std_dev         DOUBLE PRECISION,
    min_value       DOUBLE PRECISION,
    max_value       DOUBLE PRECISION,
    p10             DOUBLE PRECISION,
    p25             DOUBLE PRECISION,
    p50             DOUBLE PRECISION,
    p75             DOUBLE PRECISION,
    p90             DOUBLE PRECISION,
    PRIMARY KEY (source_id, metric_id, revenue_band_id, sector_id, period)
);

-- A generated report; `content` is the JSON of its sections and findings.
CREATE TABLE reports (
    report_id       TEXT PRIMARY KEY,
    organization_id TEXT NOT NULL,
    company_id      TEXT NOT NULL,
    template_id     TEXT NOT NULL,
    period          TEXT NOT NULL,
    revenue_band_id TEXT NOT NULL,
    sector_id       TEXT NOT NULL,
    source_id       TEXT NOT NULL,
    status          INTEGER NOT NULL,
    failure_message TEXT NOT NULL DEFAULT '',
    -- The caller's idempotency key; '' when none was given.
    request_id      TEXT NOT NULL DEFAULT '',
    created_at      BIGINT NOT NULL,
    completed_at    BIGINT,
    content         TEXT NOT NULL DEFAULT ''
);

CREATE INDEX reports_by_request ON reports (organization_id, request_id, created_at DESC) WHERE request_id <> '';
