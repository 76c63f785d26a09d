//! Every query of the benchmark service, written once in SQL that PostgreSQL
//! and SQLite both accept, and run through [`with_pool!`] on either:
//! imported benchmark sources with their published rows, and reports.

use metrix_core::storage::{BeginWrite as _, Database};
use metrix_core::time::now_micros;
use metrix_core::with_pool;

use crate::error::BenchmarkError;

/// An imported source as stored.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct SourceRow {
    /// The source's server-assigned id (a UUID v7).
    pub source_id: String,
    /// The organisation that imported the source, the only one that sees it.
    pub organization_id: String,
    /// The source's name as published, such as `SaaS Capital Retention Survey 2026`.
    pub display_name: String,
    /// The organisation that published the survey; may be empty.
    pub publisher: String,
    /// The publication date as an ISO 8601 calendar date `YYYY-MM-DD`, so text order is date order.
    pub publication_date: String,
    /// Whether the importer checked the figures against the original publication.
    pub verified: bool,
    /// A link to the original publication; may be empty.
    pub url: String,
    /// A short description of the survey's population and method; may be empty.
    pub description: String,
    /// When the source was imported or last re-imported, in microseconds since the Unix epoch.
    pub imported_at: i64,
    /// The number of published rows (slices) stored for the source.
    pub row_count: i32,
}

/// The description of a source being imported.
#[derive(Debug, Clone, PartialEq)]
pub struct NewSource {
    /// The source's name as published, trimmed, at most 200 characters; with the publication date
    /// it decides whether an earlier import is replaced.
    pub display_name: String,
    /// The organisation that published the survey; may be empty.
    pub publisher: String,
    /// The publication date as an ISO 8601 calendar date `YYYY-MM-DD`.
    pub publication_date: String,
    /// Whether the importer checked the figures against the original publication.
    pub verified: bool,
    /// A link to the original publication, `http://` or `https://`; may be empty.
    pub url: String,
    /// A short description of the survey's population and method; may be empty.
    pub description: String,
}

/// One published slice of an external source; `None` where the survey did
/// not publish the figure.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct PublishedRow {
    /// The metric, as the metrics service names it (such as `ndr`).
    pub metric_id: String,
    /// The revenue band the figures describe.
    pub revenue_band_id: String,
    /// Empty for every sector of the band.
    pub sector_id: String,
    /// The period the figures describe: `YYYY-Qn` or `YYYY-MM`.
    pub period: String,
    /// The number of companies the survey reports for the slice, at least one.
    pub sample_size: i32,
    /// The published mean, in the metric's unit.
    pub mean: Option<f64>,
    /// The published standard deviation, never negative.
    pub std_dev: Option<f64>,
    /// The published minimum.
    pub min_value: Option<f64>,
    /// The published maximum.
    pub max_value: Option<f64>,
    /// The published 10th percentile.
    pub p10: Option<f64>,
    /// The published 25th percentile.
    pub p25: Option<f64>,
    /// The published median (50th percentile).
    pub p50: Option<f64>,
    /// The published 75th percentile.
    pub p75: Option<f64>,
    /// The published 90th percentile.
    pub p90: Option<f64>,
}

/// Where the next page of sources starts: after this date and id.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SourceCursor {
    /// The publication date of the last source of the previous page, `YYYY-MM-DD`.
    pub publication_date: String,
    /// The id of that source, which orders sources published on the same date.
    pub source_id: String,
}

/// A report as stored; `content` is the JSON of its body.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ReportRow {
    /// The report's server-assigned id (a UUID v7).
    pub report_id: String,
    /// The organisation that requested the report, the only one that sees it.
    pub organization_id: String,
    /// The company the report compares with its peers, one of the organisation's.
    pub company_id: String,
    /// The template the report was generated from, one of ListReportTemplates.
    pub template_id: String,
    /// The period compared: `YYYY-Qn` or `YYYY-MM`.
    pub period: String,
    /// The revenue band of the peers, the company's own.
    pub revenue_band_id: String,
    /// The sector of the peers; empty for every sector of the band, used when the company's own
    /// sector has too few peers to rank any of the template's metrics.
    pub sector_id: String,
    /// The source of the peer figures: `metrix` for the platform's own, or an imported source's id.
    pub source_id: String,
    /// Where the report is in its lifecycle, the contract's `ReportStatus` number.
    pub status: i32,
    /// Why generation failed; empty unless the status is failed.
    pub failure_message: String,
    /// The caller's idempotency key; empty when none was given.
    pub request_id: String,
    /// When the report was requested, in microseconds since the Unix epoch.
    pub created_at: i64,
    /// When generation finished (succeeded or failed), in microseconds since the Unix epoch; `None` before then.
    pub completed_at: Option<i64>,
    /// The JSON of the report's body, its sections and findings; empty when generation failed.
    pub content: String,
}

/// The benchmark service's store.
#[derive(Debug, Clone)]
pub struct BenchmarkStore {
    database: Database,
}

/// A SELECT of every source column, followed by `$tail`.
macro_rules! source_query {
    ($tail:literal) => {
        concat!(
            "SELECT source_id, organization_id, display_name, publisher, publication_date, verified, url, ",
            "description, imported_at, row_count FROM benchmark_sources ",
            $tail
        )
    };
}

/// A SELECT of every report column, followed by `$tail`.
macro_rules! report_query {
    ($tail:literal) => {
        concat!(
            "SELECT report_id, organization_id, company_id, template_id, period, revenue_band_id, sector_id, ",
            "source_id, status, failure_message, request_id, created_at, completed_at, content FROM reports ",
            $tail
        )
    };
}

/// One benchmark query, as the audit trail keeps it.
#[derive(Debug, Clone)]
pub struct QueryRecord {
    /// A fresh id.
    pub query_id: String,
    /// The organisation asking.
    pub organization_id: String,
    /// The user, service account or API key asking.
    pub subject: String,
    /// The RPC, such as `GetBenchmark`.
    pub rpc: &'static str,
    /// The slice asked, such as `metric=ndr band=arr_1m_5m sector=* period=2026-Q2`.
    pub slice: String,
    /// When, Unix microseconds.
    pub asked_at: i64,
}

impl BenchmarkStore {
    /// A store over `database`.
    pub fn new(database: Database) -> Self {
        Self { database }
    }

    /// The database, for health checks.
    pub fn database(&self) -> &Database {
        &self.database
    }

    /// Stores an imported source of `organization_id` with its rows,
    /// replacing the rows of a source with the same name and publication
    /// date, in one transaction.
    pub async fn replace_source(
        &self,
        organization_id: &str,
        source: &NewSource,
        rows: &[PublishedRow],
    ) -> Result<SourceRow, BenchmarkError> {
        let now = now_micros();
        let new_id = uuid::Uuid::now_v7().to_string();
        let row_count = i32::try_from(rows.len()).unwrap_or(i32::MAX);
        let stored = with_pool!(&self.database, pool => async {
            let mut transaction = pool.begin_write().await?;
            let existing: Option<SourceRow> = sqlx::query_as(source_query!("WHERE organization_id = $1 AND display_name = $2 AND publication_date = $3"))
                .bind(organization_id).bind(&source.display_name).bind(&source.publication_date)
                .fetch_optional(&mut *transaction).await?;
            let source_id = match existing {
                Some(existing) => {
                    sqlx::query("DELETE FROM benchmark_source_rows WHERE source_id = $1")
                        .bind(&existing.source_id).execute(&mut *transaction).await?;
                    sqlx::query(
                        "UPDATE benchmark_sources SET publisher = $2, verified = $3, url = $4, description = $5, \
                         imported_at = $6, row_count = $7 WHERE source_id = $1",
                    )
                    .bind(&existing.source_id).bind(&source.publisher).bind(source.verified).bind(&source.url)
                    .bind(&source.description).bind(now).bind(row_count)
                    .execute(&mut *transaction).await?;
                    existing.source_id
                }
                None => {
                    sqlx::query(
                        "INSERT INTO benchmark_sources (source_id, organization_id, display_name, publisher, \
                         publication_date, verified, url, description, imported_at, row_count) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                    )
                    .bind(&new_id).bind(organization_id).bind(&source.display_name).bind(&source.publisher)
                    .bind(&source.publication_date).bind(source.verified).bind(&source.url)
                    .bind(&source.description).bind(now).bind(row_count)
                    .execute(&mut *transaction).await?;
                    new_id.clone()
                }
            };
            for row in rows {
                sqlx::query(
                    "INSERT INTO benchmark_source_rows (source_id, metric_id, revenue_band_id, sector_id, period, \
                     sample_size, mean, std_dev, min_value, max_value, p10, p25, p50, p75, p90) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
                )
                .bind(&source_id).bind(&row.metric_id).bind(&row.revenue_band_id).bind(&row.sector_id)
                .bind(&row.period).bind(row.sample_size).bind(row.mean).bind(row.std_dev).bind(row.min_value)
                .bind(row.max_value).bind(row.p10).bind(row.p25).bind(row.p50).bind(row.p75).bind(row.p90)
                .execute(&mut *transaction).await?;
            }
            let stored: SourceRow = sqlx::query_as(source_query!("WHERE source_id = $1"))
                .bind(&source_id).fetch_one(&mut *transaction).await?;
            transaction.commit().await?;
            Ok::<_, sqlx::Error>(stored)
        }.await)?;
        Ok(stored)
    }

    /// The imported source `source_id` if `organization_id` may see it.
    pub async fn source(&self, organization_id: &str, source_id: &str) -> Result<Option<SourceRow>, BenchmarkError> {
        let row = with_pool!(&self.database, pool => sqlx::query_as::<_, SourceRow>(source_query!("WHERE source_id = $1 AND organization_id = $2"))
            .bind(source_id).bind(organization_id).fetch_optional(pool).await)?;
        Ok(row)
    }

    /// A page of the sources `organization_id` imported, newest publication
    /// first, after `cursor`.
    pub async fn sources(
        &self,
        organization_id: &str,
        verified_only: bool,
        cursor: Option<&SourceCursor>,
        limit: u32,
    ) -> Result<Vec<SourceRow>, BenchmarkError> {
        let (after_date, after_id) = cursor
            .map(|cursor| (cursor.publication_date.clone(), cursor.source_id.clone()))
            .unwrap_or_default();
        let rows = with_pool!(&self.database, pool => sqlx::query_as::<_, SourceRow>(source_query!(
            "WHERE organization_id = $1 AND ($2 = FALSE OR verified) \
             AND ($3 = '' OR publication_date < $3 OR (publication_date = $3 AND source_id > $4)) \
             ORDER BY publication_date DESC, source_id LIMIT $5"
        ))
            .bind(organization_id).bind(verified_only).bind(&after_date).bind(&after_id).bind(i64::from(limit))
            .fetch_all(pool).await)?;
        Ok(rows)
    }

    /// The published rows of `source_id` for one metric, band and sector
    /// (empty for every sector), every period, oldest first.
    pub async fn published_rows(
        &self,
        source_id: &str,
        metric_id: &str,
        revenue_band_id: &str,
        sector_id: &str,
    ) -> Result<Vec<PublishedRow>, BenchmarkError> {
        let rows = with_pool!(&self.database, pool => sqlx::query_as::<_, PublishedRow>(
            "SELECT metric_id, revenue_band_id, sector_id, period, sample_size, mean, std_dev, min_value, max_value, \
             p10, p25, p50, p75, p90 FROM benchmark_source_rows \
             WHERE source_id = $1 AND metric_id = $2 AND revenue_band_id = $3 AND sector_id = $4 ORDER BY period",
        )
        .bind(source_id).bind(metric_id).bind(revenue_band_id).bind(sector_id)
        .fetch_all(pool).await)?;
        Ok(rows)
    }

    /// Records a benchmark query in the audit trail.
    pub async fn record_query(&self, query: &QueryRecord) -> Result<(), BenchmarkError> {
        with_pool!(&self.database, pool => sqlx::query(
            "INSERT INTO benchmark_queries (query_id, organization_id, subject, rpc, slice, asked_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&query.query_id).bind(&query.organization_id).bind(&query.subject).bind(query.rpc)
        .bind(&query.slice).bind(query.asked_at)
        .execute(pool).await.map(|_| ()))?;
        Ok(())
    }

    /// The newest `limit` benchmark queries of `organization_id`, newest first.
    pub async fn queries(
        &self,
        organization_id: &str,
        limit: u32,
    ) -> Result<Vec<(String, String, String, i64)>, BenchmarkError> {
        let rows = with_pool!(&self.database, pool => sqlx::query_as::<_, (String, String, String, i64)>(
            "SELECT subject, rpc, slice, asked_at FROM benchmark_queries WHERE organization_id = $1 \
             ORDER BY asked_at DESC, query_id DESC LIMIT $2",
        )
        .bind(organization_id).bind(i64::from(limit))
        .fetch_all(pool).await)?;
        Ok(rows)
    }

    /// Stores a new report.
    pub async fn insert_report(&self, report: &ReportRow) -> Result<(), BenchmarkError> {
        with_pool!(&self.database, pool => sqlx::query(
            "INSERT INTO reports (report_id, organization_id, company_id, template_id, period, revenue_band_id, \
             sector_id, source_id, status, failure_message, request_id, created_at, completed_at, content) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        )
        .bind(&report.report_id).bind(&report.organization_id).bind(&report.company_id).bind(&report.template_id)
        .bind(&report.period).bind(&report.revenue_band_id).bind(&report.sector_id).bind(&report.source_id)
        .bind(report.status).bind(&report.failure_message).bind(&report.request_id).bind(report.created_at)
        .bind(report.completed_at).bind(&report.content)
        .execute(pool).await.map(|_| ()))?;
        Ok(())
    }

    /// The report `report_id` of `organization_id`.
    pub async fn report(&self, organization_id: &str, report_id: &str) -> Result<Option<ReportRow>, BenchmarkError> {
        let row = with_pool!(&self.database, pool => sqlx::query_as::<_, ReportRow>(report_query!("WHERE report_id = $1 AND organization_id = $2"))
            .bind(report_id).bind(organization_id).fetch_optional(pool).await)?;
        Ok(row)
    }

    /// A page of `organization_id`'s reports (of `company_id` when not
    /// empty), newest first, after `after` (request time and id of the last
    /// one of the previous page); their content is left empty.
    pub async fn list_reports(
        &self,
        organization_id: &str,
        company_id: &str,
        after: Option<(i64, &str)>,
        limit: u32,
    ) -> Result<Vec<ReportRow>, BenchmarkError> {
        let (before_time, before_id) = after.unwrap_or((i64::MAX, ""));
        let rows = with_pool!(&self.database, pool => sqlx::query_as::<_, ReportRow>(
            "SELECT report_id, organization_id, company_id, template_id, period, revenue_band_id, sector_id, \
             source_id, status, failure_message, request_id, created_at, completed_at, '' AS content FROM reports \
             WHERE organization_id = $1 AND ($2 = '' OR company_id = $2) \
             AND (created_at < $3 OR (created_at = $3 AND report_id < $4)) \
             ORDER BY created_at DESC, report_id DESC LIMIT $5"
        )
            .bind(organization_id).bind(company_id).bind(before_time).bind(before_id).bind(i64::from(limit))
            .fetch_all(pool).await)?;
        Ok(rows)
    }

    /// The newest report of `organization_id` requested with the idempotency
    /// key `request_id` since `since` (Unix microseconds).
    pub async fn report_by_request(
        &self,
        organization_id: &str,
        request_id: &str,
        since: i64,
    ) -> Result<Option<ReportRow>, BenchmarkError> {
        let row = with_pool!(&self.database, pool => sqlx::query_as::<_, ReportRow>(report_query!(
            "WHERE organization_id = $1 AND request_id = $2 AND created_at >= $3 ORDER BY created_at DESC LIMIT 1"
        ))
            .bind(organization_id).bind(request_id).bind(since).fetch_optional(pool).await)?;
        Ok(row)
    }
}
