-- The data migrations that have run: rewrites of stored data that need the
-- service's own code (such as the sketch encoder) and so are not SQL. Each
-- runs once per database, after the SQL migrations, in the transaction that
-- writes its row here (src/store/data_migrations.rs).
CREATE TABLE _metrics_data_migrations (
    name       TEXT PRIMARY KEY,
    applied_at BIGINT NOT NULL
);
