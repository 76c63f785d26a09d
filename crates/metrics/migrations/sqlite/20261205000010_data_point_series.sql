-- ListDataPointSeries: one row per series, kept in the transaction that
-- stores its points, and the tag keys each series' points carry.

CREATE TABLE data_point_series (
    organization_id TEXT NOT NULL,
    name            TEXT NOT NULL,
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
    name            TEXT NOT NULL,
    tag_key         TEXT NOT NULL,
    PRIMARY KEY (organization_id, name, tag_key)
);

-- The series of points stored before this migration.
INSERT INTO data_point_series (organization_id, name, point_type, unit, point_count, first_at, last_at)
SELECT organization_id, name, point_type, unit, point_count, first_at, measured_at
FROM (
    SELECT organization_id, name, point_type, unit, measured_at,
           COUNT(*) OVER (PARTITION BY organization_id, name) AS point_count,
           MIN(measured_at) OVER (PARTITION BY organization_id, name) AS first_at,
           ROW_NUMBER() OVER (PARTITION BY organization_id, name ORDER BY measured_at DESC, point_id DESC) AS newest
    FROM data_points
)
WHERE newest = 1;

INSERT INTO data_point_tag_keys (organization_id, name, tag_key)
SELECT DISTINCT data_points.organization_id, data_points.name, tag.key
FROM data_points, json_each(data_points.tags) AS tag;
