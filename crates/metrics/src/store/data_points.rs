//! Time-series data points. Aggregations run in the database on PostgreSQL
//! (`percentile_cont` and friends, tag filters by JSONB containment); on
//! SQLite the matching values are read and aggregated exactly in Rust with
//! the same definitions.

use std::collections::BTreeMap;

use metrix_core::storage::{BeginWrite as _, Database};
use metrix_core::with_pool;
use metrix_proto::metrics::v1::{Aggregation, DataPointType};
use sqlx::AssertSqlSafe;

use super::{Bind, DynamicQuery, MetricsStore};
use crate::data_points::{NewDataPoint, PointQuery, aggregate, percentile_fraction};
use crate::error::MetricsError;

/// Points per INSERT statement (10 parameters each).
const INSERT_CHUNK: usize = 500;

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
            transaction.commit().await
        }
        .await);
        Ok(outcome?)
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
