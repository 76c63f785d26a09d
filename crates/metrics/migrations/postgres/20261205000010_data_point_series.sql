-- ListDataPointSeries: one row per series, kept in the transaction that
-- stores its points, and the tag keys each series' points carry.

-- Names and keys compare bytewise (COLLATE "C"), as on SQLite, so pages
-- and prefixes hold the same series on both backends.
CREATE TABLE data_point_series (
    organization_id TEXT NOT NULL,
    name            TEXT COLLATE "C" NOT NULL,
    -- Type and unit of the latest point (by measured_at).
    point_type      INTEGER NOT NULL,
    unit            TEXT NOT NULL,
    point_count     BIGINT NOT NULL,
    first_at        BIGINT NOT NULL,
    last_at         BIGINT NOT NULL,
    PRIMARY KEY (organization_id, name)
);

CREATE TABLE data_point_tag_keys (
    organization_id TEXT NOT NULL,
    name            TEXT COLLATE "C" NOT NULL,
    tag_key         TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (organization_id, name, tag_key)
);

-- The series of points stored before this migration.
INSERT INTO data_point_series (organization_id, name, point_type, unit, point_count, first_at, last_at)
SELECT DISTINCT ON (organization_id, name)
       organization_id, name, point_type, unit,
       COUNT(*) OVER (PARTITION BY organization_id, name),
       MIN(measured_at) OVER (PARTITION BY organization_id, name),
       measured_at
FROM data_points
ORDER BY organization_id, name, measured_at DESC, point_id DESC;

INSERT INTO data_point_tag_keys (organization_id, name, tag_key)
SELECT DISTINCT organization_id, name, jsonb_object_keys(tags) FROM data_points;
