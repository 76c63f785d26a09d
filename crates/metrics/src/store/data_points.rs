//! Time-series data points. Aggregations run in the database on PostgreSQL
//! (`percentile_cont` and friends, tag filters by JSONB containment); on
//! SQLite the matching values are read and aggregated exactly in Rust with
//! the same definitions.

use std::collections::{BTreeMap, BTreeSet};

use metrix_core::storage::{BeginWrite as _, Database};
use metrix_core::with_pool;
use metrix_proto::metrics::v1::{Aggregation, DataPointType};
use sqlx::AssertSqlSafe;

use super::{Bind, DynamicQuery, MetricsStore};
use crate::data_points::{NewDataPoint, PointQuery, aggregate, percentile_fraction};
use crate::error::MetricsError;

/// Points per INSERT statement (10 parameters each).
const INSERT_CHUNK: usize = 500;

/// The most tag keys ListDataPointSeries names per series.
pub const MAX_LISTED_TAG_KEYS: usize = 100;

/// A series as ListDataPointSeries describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesSummary {
    /// The series name.
    pub name: String,
    /// The type of its latest point.
    pub point_type: DataPointType,
    /// The unit of its latest point.
    pub unit: String,
    /// Its tag keys, sorted.
    pub tag_keys: Vec<String>,
    /// How many points it holds.
    pub point_count: i64,
    /// When its earliest point was measured, in Unix microseconds.
    pub first_at: i64,
    /// When its latest point was measured, in Unix microseconds.
    pub last_at: i64,
}

#[derive(sqlx::FromRow)]
struct SeriesRow {
    name: String,
    point_type: i32,
    unit: String,
    point_count: i64,
    first_at: i64,
    last_at: i64,
}

/// What one batch adds to a series' summary.
struct SeriesChange<'a> {
    name: &'a str,
    latest: &'a NewDataPoint,
    count: i64,
    first_at: i64,
    tag_keys: BTreeSet<&'a str>,
}

impl<'a> SeriesChange<'a> {
    /// The batch's points, series by series.
    fn of(points: &'a [NewDataPoint]) -> Vec<SeriesChange<'a>> {
        let mut changes: BTreeMap<&str, SeriesChange<'a>> = BTreeMap::new();
        for point in points {
            let change = changes.entry(&point.name).or_insert_with(|| SeriesChange {
                name: &point.name,
                latest: point,
                count: 0,
                first_at: point.measured_at,
                tag_keys: BTreeSet::new(),
            });
            change.count += 1;
            change.first_at = change.first_at.min(point.measured_at);
            if point.measured_at >= change.latest.measured_at {
                change.latest = point;
            }
            change.tag_keys.extend(point.tags.keys().map(String::as_str));
        }
        changes.into_values().collect()
    }
}

/// One aggregated bucket: start, value, number of points.
pub type BucketRow = (i64, f64, i64);

#[derive(sqlx::FromRow)]
struct PointRow {
    name: String,
    point_type: i32,
    value: f64,
    unit: String,
    tags: String,
    app_id: String,
    measured_at: i64,
}

impl From<PointRow> for NewDataPoint {
    fn from(row: PointRow) -> Self {
        NewDataPoint {
            name: row.name,
            point_type: DataPointType::try_from(row.point_type).unwrap_or(DataPointType::Gauge),
            value: row.value,
            unit: row.unit,
            tags: serde_json::from_str(&row.tags).unwrap_or_default(),
            app_id: row.app_id,
            measured_at: row.measured_at,
        }
    }
}

/// The SQL aggregate of `aggregation` over `value` (PostgreSQL).
fn postgres_aggregate(aggregation: Aggregation) -> String {
    match aggregation {
        Aggregation::Count => "CAST(COUNT(*) AS DOUBLE PRECISION)".to_owned(),
        Aggregation::Sum => "SUM(value)".to_owned(),
        Aggregation::Min => "MIN(value)".to_owned(),
        Aggregation::Max => "MAX(value)".to_owned(),
        Aggregation::Median | Aggregation::P90 | Aggregation::P95 | Aggregation::P99 => format!(
            "percentile_cont({}) WITHIN GROUP (ORDER BY value)",
            percentile_fraction(aggregation)
        ),
        Aggregation::Mean | Aggregation::Unspecified => "AVG(value)".to_owned(),
    }
}

impl MetricsStore {
    /// Stores a batch of points atomically.
    pub async fn insert_data_points(
        &self,
        organization_id: &str,
        points: &[NewDataPoint],
        recorded_at: i64,
    ) -> Result<(), MetricsError> {
        let tags_placeholder = match &self.database {
            Database::Postgres(_) => "::jsonb",
            Database::Sqlite(_) => "",
        };
        let outcome: Result<(), sqlx::Error> = with_pool!(&self.database, pool => async {
            let mut transaction = pool.begin_write().await?;
            for chunk in points.chunks(INSERT_CHUNK) {
                let rows: Vec<String> = (0..chunk.len())
                    .map(|index| {
                        let base = index * 10;
                        let parameters: Vec<String> = (1..=10)
                            .map(|column| {
                                if column == 7 {
                                    format!("${}{tags_placeholder}", base + column)
                                } else {
                                    format!("${}", base + column)
                                }
                            })
                            .collect();
                        format!("({})", parameters.join(", "))
                    })
                    .collect();
                let sql = format!(
                    "INSERT INTO data_points (organization_id, point_id, name, point_type, value, unit, tags, app_id, \
                     measured_at, recorded_at) VALUES {}",
                    rows.join(", ")
                );
                let mut statement = sqlx::query(AssertSqlSafe(sql));
                for point in chunk {
                    statement = statement
                        .bind(organization_id)
                        .bind(uuid::Uuid::now_v7().to_string())
                        .bind(&point.name)
                        .bind(point.point_type as i32)
                        .bind(point.value)
                        .bind(&point.unit)
                        .bind(point.tags_json())
                        .bind(&point.app_id)
                        .bind(point.measured_at)
                        .bind(recorded_at);
                }
                statement.execute(&mut *transaction).await?;
            }
            let changes = SeriesChange::of(points);
            for series in &changes {
                sqlx::query(
                    "INSERT INTO data_point_series (organization_id, name, point_type, unit, point_count, first_at, last_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7) \
                     ON CONFLICT (organization_id, name) DO UPDATE SET \
                     point_type = CASE WHEN excluded.last_at >= data_point_series.last_at \
                         THEN excluded.point_type ELSE data_point_series.point_type END, \
                     unit = CASE WHEN excluded.last_at >= data_point_series.last_at \
                         THEN excluded.unit ELSE data_point_series.unit END, \
                     point_count = data_point_series.point_count + excluded.point_count, \
                     first_at = CASE WHEN excluded.first_at < data_point_series.first_at \
                         THEN excluded.first_at ELSE data_point_series.first_at END, \
                     last_at = CASE WHEN excluded.last_at > data_point_series.last_at \
                         THEN excluded.last_at ELSE data_point_series.last_at END",
                )
                .bind(organization_id)
                .bind(series.name)
                .bind(series.latest.point_type as i32)
                .bind(&series.latest.unit)
                .bind(series.count)
                .bind(series.first_at)
                .bind(series.latest.measured_at)
                .execute(&mut *transaction)
                .await?;
            }
            // Every series' tag keys in as few statements as the parameter
            // limit allows, not one a key.
            let tag_keys: Vec<(&str, &str)> = changes
                .iter()
                .flat_map(|series| series.tag_keys.iter().map(|key| (series.name, *key)))
                .collect();
            for chunk in tag_keys.chunks(INSERT_CHUNK) {
                let rows: Vec<String> = (0..chunk.len())
                    .map(|index| format!("($1, ${}, ${})", 2 * index + 2, 2 * index + 3))
                    .collect();
                let sql = format!(
                    "INSERT INTO data_point_tag_keys (organization_id, name, tag_key) VALUES {} \
                     ON CONFLICT (organization_id, name, tag_key) DO NOTHING",
                    rows.join(", ")
                );
                let mut statement = sqlx::query(AssertSqlSafe(sql)).bind(organization_id);
                for (name, key) in chunk {
                    statement = statement.bind(*name).bind(*key);
                }
                statement.execute(&mut *transaction).await?;
            }
            transaction.commit().await
        }
        .await);
        Ok(outcome?)
    }

    /// A page of `organization_id`'s series whose names start with
    /// `name_prefix`, by name, after the name `after`; each with at most
    /// [`MAX_LISTED_TAG_KEYS`] tag keys.
    pub async fn list_series(
        &self,
        organization_id: &str,
        name_prefix: &str,
        after: &str,
        limit: u32,
    ) -> Result<Vec<SeriesSummary>, MetricsError> {
        // A prefix match as a range, so the primary key serves it: every
        // name from the prefix up to the prefix followed by the largest
        // character a name may hold.
        let upper = format!("{name_prefix}\u{10FFFF}");
        let rows: Vec<SeriesRow> = with_pool!(&self.database, pool => sqlx::query_as(
            "SELECT name, point_type, unit, point_count, first_at, last_at FROM data_point_series \
             WHERE organization_id = $1 AND name >= $2 AND name > $3 AND name < $4 ORDER BY name LIMIT $5",
        )
        .bind(organization_id)
        .bind(name_prefix)
        .bind(after)
        .bind(&upper)
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await)?;
        let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
            return Ok(Vec::new());
        };
        let keys: Vec<(String, String)> = with_pool!(&self.database, pool => sqlx::query_as(
            "SELECT name, tag_key FROM data_point_tag_keys \
             WHERE organization_id = $1 AND name >= $2 AND name <= $3 ORDER BY name, tag_key",
        )
        .bind(organization_id)
        .bind(&first.name)
        .bind(&last.name)
        .fetch_all(pool)
        .await)?;
        let mut keys_by_name: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (name, tag_key) in keys {
            let listed = keys_by_name.entry(name).or_default();
            if listed.len() < MAX_LISTED_TAG_KEYS {
                listed.push(tag_key);
            }
        }
        Ok(rows
            .into_iter()
            .map(|row| SeriesSummary {
                tag_keys: keys_by_name.remove(&row.name).unwrap_or_default(),
                point_type: DataPointType::try_from(row.point_type).unwrap_or(DataPointType::Gauge),
                name: row.name,
                unit: row.unit,
                point_count: row.point_count,
                first_at: row.first_at,
                last_at: row.last_at,
            })
            .collect())
    }

    /// The type of the latest point of series `name`, if it has points.
    pub async fn series_type(&self, organization_id: &str, name: &str) -> Result<Option<DataPointType>, MetricsError> {
        let found: Option<i32> = with_pool!(&self.database, pool => sqlx::query_scalar(
            "SELECT point_type FROM data_points WHERE organization_id = $1 AND name = $2 \
             ORDER BY measured_at DESC LIMIT 1",
        )
        .bind(organization_id)
        .bind(name)
        .fetch_optional(pool)
        .await)?;
        Ok(found.and_then(|value| DataPointType::try_from(value).ok()))
    }

    /// The buckets of `query` with `aggregation` (resolved) applied, oldest
    /// first, empty buckets left out.
    pub async fn aggregate_data_points(
        &self,
        organization_id: &str,
        query: &PointQuery,
        aggregation: Aggregation,
    ) -> Result<Vec<BucketRow>, MetricsError> {
        let mut filter = DynamicQuery::default();
        let organization = filter.text(organization_id);
        filter.condition(format!("organization_id = {organization}"));
        let name = filter.text(&query.name);
        filter.condition(format!("name = {name}"));
        let start = filter.integer(query.start);
        filter.condition(format!("measured_at >= {start}"));
        let end = filter.integer(query.end);
        filter.condition(format!("measured_at < {end}"));
        if query.point_type != DataPointType::Unspecified {
            let kind = filter.integer(query.point_type as i64);
            filter.condition(format!("point_type = {kind}"));
        }
        if !query.app_id.is_empty() {
            let app = filter.text(&query.app_id);
            filter.condition(format!("app_id = {app}"));
        }
        match &self.database {
            Database::Postgres(pool) => {
                if !query.tags.is_empty() {
                    let tags = filter.text(&serde_json::to_string(&query.tags).unwrap_or_else(|_| "{}".to_owned()));
                    filter.condition(format!("tags @> {tags}::jsonb"));
                }
                let bucket = match query.width_seconds {
                    Some(width) => {
                        let width_micros = filter.integer(width * 1_000_000);
                        let width_again = filter.integer(width * 1_000_000);
                        let width_third = filter.integer(width * 1_000_000);
                        format!("(measured_at - (((measured_at % {width_micros}) + {width_again}) % {width_third}))")
                    }
                    None => {
                        let start = filter.integer(query.start);
                        format!("CAST({start} AS BIGINT)")
                    }
                };
                let sql = format!(
                    "SELECT {bucket} AS bucket, {} AS aggregated, COUNT(*) AS points FROM data_points {} \
                     GROUP BY bucket ORDER BY bucket",
                    postgres_aggregate(aggregation),
                    filter.where_clause()
                );
                let rows = fetch_dynamic!(pool, (i64, f64, i64), &sql, filter)?;
                Ok(rows)
            }
            Database::Sqlite(pool) => {
                for (key, value) in &query.tags {
                    let path = filter.text(&format!("$.\"{key}\""));
                    let expected = filter.text(value);
                    filter.condition(format!("json_extract(tags, {path}) = {expected}"));
                }
                let sql = format!(
                    "SELECT measured_at, value FROM data_points {} ORDER BY measured_at",
                    filter.where_clause()
                );
                let values = fetch_dynamic!(pool, (i64, f64), &sql, filter)?;
                let mut buckets: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
                for (measured_at, value) in values {
                    buckets.entry(query.bucket_of(measured_at)).or_default().push(value);
                }
                Ok(buckets
                    .into_iter()
                    .filter_map(|(start, mut values)| {
                        let count = values.len() as i64;
                        aggregate(aggregation, &mut values).map(|value| (start, value, count))
                    })
                    .collect())
            }
        }
    }

    /// The `limit` most recently recorded points, newest first.
    pub async fn recent_data_points(
        &self,
        organization_id: &str,
        app_id: &str,
        limit: i64,
    ) -> Result<Vec<NewDataPoint>, MetricsError> {
        let tags = match &self.database {
            Database::Postgres(_) => "CAST(tags AS TEXT) AS tags",
            Database::Sqlite(_) => "tags",
        };
        let mut query = DynamicQuery::default();
        let organization = query.text(organization_id);
        query.condition(format!("organization_id = {organization}"));
        if !app_id.is_empty() {
            let app = query.text(app_id);
            query.condition(format!("app_id = {app}"));
        }
        let limit = query.integer(limit);
        let sql = format!(
            "SELECT name, point_type, value, unit, {tags}, app_id, measured_at FROM data_points {} \
             ORDER BY recorded_at DESC, point_id DESC LIMIT {limit}",
            query.where_clause()
        );
        let rows = with_pool!(&self.database, pool => fetch_dynamic!(pool, PointRow, &sql, query))?;
        Ok(rows.into_iter().map(NewDataPoint::from).collect())
    }
}
