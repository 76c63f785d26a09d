-- The identifiers events are keyed, de-duplicated and rolled up by are
-- compared byte by byte (COLLATE "C"), as SQLite compares them: they are
-- ids and names, not prose, and the database's default collation would make
-- every index comparison of an insert a locale-aware one (strcoll), which is
-- most of what storing an event costs PostgreSQL.
ALTER TABLE events
    ALTER COLUMN organization_id TYPE TEXT COLLATE "C",
    ALTER COLUMN event_id TYPE TEXT COLLATE "C",
    ALTER COLUMN app_id TYPE TEXT COLLATE "C",
    ALTER COLUMN user_id TYPE TEXT COLLATE "C",
    ALTER COLUMN event_type TYPE TEXT COLLATE "C",
    ALTER COLUMN session_id TYPE TEXT COLLATE "C";

ALTER TABLE event_counts
    ALTER COLUMN organization_id TYPE TEXT COLLATE "C",
    ALTER COLUMN app_id TYPE TEXT COLLATE "C",
    ALTER COLUMN event_type TYPE TEXT COLLATE "C";

ALTER TABLE user_sketches
    ALTER COLUMN organization_id TYPE TEXT COLLATE "C",
    ALTER COLUMN app_id TYPE TEXT COLLATE "C";
