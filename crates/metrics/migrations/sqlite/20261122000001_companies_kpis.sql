-- Companies and their KPI values. Timestamps are Unix microseconds.

CREATE TABLE companies (
    company_id      TEXT PRIMARY KEY,
    organization_id TEXT NOT NULL,
    name            TEXT NOT NULL,
    sector_id       TEXT NOT NULL,
    business_model  INTEGER NOT NULL,
    country_code    TEXT NOT NULL,
    founding_year   INTEGER NOT NULL DEFAULT 0,
    -- Derived from the current `arr` value of the latest period; '' while none.
    revenue_band_id TEXT NOT NULL DEFAULT '',
    -- The pseudonym of ListPeerValues: a keyed hash of the company id, fixed
    -- at creation so it stays stable.
    peer_key        TEXT NOT NULL UNIQUE,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);

CREATE INDEX companies_by_organization ON companies (organization_id, name, company_id);

-- Every revision of every value; exactly one revision per company, metric
-- and period is the current one (`latest`).
CREATE TABLE kpi_values (
    company_id      TEXT NOT NULL REFERENCES companies (company_id) ON DELETE CASCADE,
    metric_id       TEXT NOT NULL,
    period          TEXT NOT NULL,
    revision        INTEGER NOT NULL,
    organization_id TEXT NOT NULL,
    granularity     INTEGER NOT NULL,
    -- First and last month of the period as year * 12 + month - 1.
    period_start    INTEGER NOT NULL,
    period_end      INTEGER NOT NULL,
    value           REAL NOT NULL,
    source          INTEGER NOT NULL,
    note            TEXT NOT NULL DEFAULT '',
    recorded_at     BIGINT NOT NULL,
    recorded_by     TEXT NOT NULL,
    latest          BOOLEAN NOT NULL,
    PRIMARY KEY (company_id, metric_id, period, revision)
);

CREATE UNIQUE INDEX kpi_values_current ON kpi_values (company_id, metric_id, period) WHERE latest;
CREATE INDEX kpi_values_by_organization ON kpi_values (organization_id, company_id, metric_id, period_end DESC);
CREATE INDEX kpi_values_peers ON kpi_values (metric_id, period_end) WHERE latest;
