-- The durable work streams of a deployment without Redis: one row per
-- entry waiting or in flight (acknowledged entries are deleted), and the
-- entries moved aside because processing them cannot succeed. AUTOINCREMENT
-- so that an id is never handed out twice, even after deletions.
CREATE TABLE work_stream_entries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    stream TEXT NOT NULL,
    payload BLOB NOT NULL,
    appended_at BIGINT NOT NULL,
    consumer TEXT,
    delivered_at BIGINT,
    deliveries BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX work_stream_entries_by_stream ON work_stream_entries (stream, id);

CREATE TABLE work_stream_dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    stream TEXT NOT NULL,
    entry_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    payload BLOB NOT NULL,
    failed_at BIGINT NOT NULL
);
CREATE INDEX work_stream_dead_letters_by_stream ON work_stream_dead_letters (stream, id);
