-- Distinct users per app and bucket of one minute, one hour and one day, as
-- sketches (exact up to 2,048 users, then HyperLogLog registers; see
-- src/sketch.rs), maintained in the transaction that stores the events and
-- kept after the raw events expire. They replace user_activity, whose rows
-- grew with the number of users; the service folds user_activity into them
-- and drops it when it starts (src/store/events.rs, upgrade_activity).
CREATE TABLE user_sketches (
    organization_id TEXT NOT NULL,
    app_id          TEXT NOT NULL,
    width_seconds   INTEGER NOT NULL,
    bucket_start    BIGINT NOT NULL,
    sketch          BLOB NOT NULL,
    PRIMARY KEY (organization_id, width_seconds, bucket_start, app_id)
);
