-- The audit trail of benchmark queries: who asked for which slice, when.
-- Differencing attacks need many queries; this is where they show.
CREATE TABLE benchmark_queries (
    query_id TEXT PRIMARY KEY,
    organization_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    rpc TEXT NOT NULL,
    slice TEXT NOT NULL,
    asked_at BIGINT NOT NULL
);
CREATE INDEX benchmark_queries_by_organization ON benchmark_queries (organization_id, asked_at);
