//! The metrics service's relational store: companies and KPI values, in
//! SQL that PostgreSQL and SQLite both run.
//!
//! Every query that reads an organisation's data names the organisation, so
//! tenancy holds at the lowest layer and not only in the handlers.

use std::collections::{BTreeSet, HashMap};

use metrix_core::error::{FieldViolation, Violations};
use metrix_core::reference;
use metrix_core::storage::{BeginWrite as _, Database, is_unique_violation};
use metrix_core::with_pool;
use metrix_proto::metrics::v1::{KpiSource, PeriodGranularity};
use serde::{Deserialize, Serialize};
use sqlx::AssertSqlSafe;

use crate::error::MetricsError;
use crate::period::Period;

/// How often a batch of KPI values is retried when a concurrent writer
/// recorded a value of the same company, metric and period first.
const RECORD_ATTEMPTS: usize = 3;

/// The metric whose latest value decides a company's revenue band.
const ARR_METRIC_ID: &str = "arr";

/// The metrics store.
#[derive(Debug, Clone)]
pub struct MetricsStore {
    database: Database,
}

/// A stored company.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct CompanyRow {
    /// The company's id (a UUID v7).
    pub company_id: String,
    /// The organisation the company belongs to.
    pub organization_id: String,
    /// The display name, 1 to 200 characters.
    pub name: String,
    /// The sector, from the fixed taxonomy of ListSectors (such as `fintech`).
    pub sector_id: String,
    /// How the company makes its money, the contract's `BusinessModel` number.
    pub business_model: i32,
    /// The country of incorporation, an upper-case ISO 3166-1 alpha-2 code such as `DE`.
    pub country_code: String,
    /// The year the company was founded; 0 when unknown.
    pub founding_year: i32,
    /// The revenue band, derived from the current `arr` value of the latest period; empty while no
    /// ARR is recorded.
    pub revenue_band_id: String,
    /// The company's pseudonym in peer values: a keyed hash of its id, fixed at creation so that it
    /// stays stable, and not reversible without the server-held secret.
    pub peer_key: String,
    /// When the company was created, in microseconds since the Unix epoch.
    pub created_at: i64,
    /// When the company or its revenue band last changed, in microseconds since the Unix epoch.
    pub updated_at: i64,
}

/// Filters of ListCompanies; empty strings and zero mean "any".
#[derive(Debug, Clone, Default)]
pub struct CompanyFilter {
    /// Only companies of this sector.
    pub sector_id: String,
    /// Only companies with this business model, a `BusinessModel` number.
    pub business_model: i32,
    /// Only companies in this revenue band.
    pub revenue_band_id: String,
    /// Only companies in this country, an ISO 3166-1 alpha-2 code.
    pub country_code: String,
}

/// Where the next page of companies starts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CompanyCursor {
    /// The name of the last company of the previous page.
    pub name: String,
    /// The id of that company, which orders companies with the same name.
    pub company_id: String,
}

/// One stored revision of a KPI value.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct KpiRow {
    /// The company the value belongs to.
    pub company_id: String,
    /// The metric, such as `arr` or `ndr`.
    pub metric_id: String,
    /// The period the value covers: `YYYY`, `YYYY-Qn` or `YYYY-MM`.
    pub period: String,
    /// The revision number for the company, metric and period: 1 for the first value, one more for
    /// every change.
    pub revision: i32,
    /// The organisation that owns the company.
    pub organization_id: String,
    /// The length of the period, the contract's `PeriodGranularity` number.
    pub granularity: i32,
    /// The first month of the period as a month index, year × 12 + month − 1.
    pub period_start: i32,
    /// The last month of the period as a month index, year × 12 + month − 1.
    pub period_end: i32,
    /// The value in the metric's unit (US dollars for money, 0–100 for percentages).
    pub value: f64,
    /// Where the value came from, the contract's `KpiSource` number.
    pub source: i32,
    /// A free-text note of at most 1,000 characters; may be empty.
    pub note: String,
    /// When this revision was recorded, in microseconds since the Unix epoch.
    pub recorded_at: i64,
    /// The user, service account or API key that recorded this revision.
    pub recorded_by: String,
    /// Whether this revision is the current value of its company, metric and period.
    pub latest: bool,
}

/// The longest KPI note, in characters.
pub const MAX_NOTE_LENGTH: usize = 1_000;

/// A value to record. [`NewKpi::parse`] is the only way to make one: it
/// applies every check a stored value must pass, so the store takes it as
/// it is.
#[derive(Debug, Clone, PartialEq)]
pub struct NewKpi {
    company_id: String,
    metric_id: &'static str,
    period: Period,
    value: f64,
    source: KpiSource,
    note: String,
}

impl NewKpi {
    /// A value of `company_id` (whose tenancy the caller checks), refused
    /// with every problem named `metric_id`, `period`, `value` or `note`:
    /// the errors of [`crate::validation::validate_record`], a note longer
    /// than [`MAX_NOTE_LENGTH`] characters, a NUL in the note.
    pub fn parse(
        company_id: String,
        metric_id: &str,
        period: &str,
        value: f64,
        source: KpiSource,
        note: &str,
    ) -> Result<Self, Vec<FieldViolation>> {
        let mut violations = Violations::new();
        let record = violations.check_all(crate::validation::validate_record(metric_id, period, value));
        if note.chars().count() > MAX_NOTE_LENGTH {
            violations.add("note", format!("must be at most {MAX_NOTE_LENGTH} characters"));
        } else if note.contains('\0') {
            violations.add("note", crate::events::NUL_REASON);
        }
        let Some((period, metric)) = record else {
            return Err(violations.into_vec());
        };
        violations.finish()?;
        Ok(Self {
            company_id,
            metric_id: metric.id,
            period,
            value,
            source,
            note: note.to_owned(),
        })
    }

    /// The company the value belongs to.
    pub fn company_id(&self) -> &str {
        &self.company_id
    }

    /// The metric, one of the catalogue's.
    pub fn metric_id(&self) -> &'static str {
        self.metric_id
    }

    /// The period the value covers, of one of the metric's allowed granularities.
    pub fn period(&self) -> Period {
        self.period
    }

    /// The value in the metric's unit (US dollars for money, 0–100 for percentages).
    pub fn value(&self) -> f64 {
        self.value
    }

    /// Where the value came from.
    pub fn source(&self) -> KpiSource {
        self.source
    }

    /// A free-text note; may be empty.
    pub fn note(&self) -> &str {
        &self.note
    }
}

/// What recording one value did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordOutcome {
    /// The first value of its company, metric and period.
    Created,
    /// A new revision replacing a different value.
    Updated,
    /// Equal to the current revision; nothing stored.
    Unchanged,
}

/// Filters of ListKpis; empty and `None` mean "any".
#[derive(Debug, Clone, Default)]
pub struct KpiFilter {
    /// Only values of this company; empty for every company of the organisation.
    pub company_id: String,
    /// Only values of these metrics; empty for every metric.
    pub metric_ids: Vec<String>,
    /// Only periods of this length; `None` for any.
    pub granularity: Option<PeriodGranularity>,
    /// Only periods starting at or after this month index.
    pub start_month: Option<i32>,
    /// Only periods ending at or before this month index.
    pub end_month: Option<i32>,
    /// Only values from this source; `None` for any.
    pub source: Option<KpiSource>,
    /// Whether earlier revisions are listed too, not only the current value.
    pub include_history: bool,
}

/// Where the next page of KPI values starts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KpiCursor {
    /// The company of the last value of the previous page.
    pub company_id: String,
    /// The metric of that value.
    pub metric_id: String,
    /// The last month index of that value's period; periods ending later come first.
    pub period_end: i32,
    /// The period of that value, which orders periods ending in the same month.
    pub period: String,
    /// The revision of that value; later revisions come first.
    pub revision: i32,
}

/// One anonymised value for the benchmark service.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct PeerRow {
    /// The metric, such as `ndr`.
    pub metric_id: String,
    /// The current value as recorded, in the metric's unit; noise is infused before it is sent.
    pub value: f64,
    /// The company's sector.
    pub sector_id: String,
    /// The company's current revenue band; empty while it has no ARR recorded.
    pub revenue_band_id: String,
    /// The period the value covers: `YYYY`, `YYYY-Qn` or `YYYY-MM`.
    pub period: String,
    /// The company's pseudonym: a keyed hash of its id, stable and not reversible.
    pub peer_key: String,
    /// Never sent: the key of the value's noise factor.
    pub company_id: String,
    /// Never sent: hashed into the organisation key.
    pub organization_id: String,
}

/// Filters of ListPeerValues; empty and zero mean "any".
#[derive(Debug, Clone, Default)]
pub struct PeerFilter {
    /// Only values of these metrics; empty for every metric.
    pub metric_ids: Vec<String>,
    /// Only companies of this sector.
    pub sector_id: String,
    /// Only companies in this revenue band.
    pub revenue_band_id: String,
    /// Only periods of this length; `None` for any.
    pub granularity: Option<PeriodGranularity>,
    /// Only periods starting at or after this month index (year × 12 + month − 1).
    pub start_month: Option<i32>,
    /// Only periods ending at or before this month index (year × 12 + month − 1).
    pub end_month: Option<i32>,
    /// Companies whose values are left out, such as the company being ranked.
    pub exclude_company_ids: Vec<String>,
    /// Organisations whose companies are left out, such as the caller's own.
    pub exclude_organization_ids: Vec<String>,
}

/// Where the next page of peer values starts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeerCursor {
    /// The metric of the last value of the previous page.
    pub metric_id: String,
    /// The period of that value.
    pub period: String,
    /// The peer key of that value's company, which orders values of the same metric and period.
    pub peer_key: String,
}

/// A value bound to a dynamically built query.
enum Bind {
    Text(String),
    Integer(i64),
}

/// A query assembled from optional filters, with `$n` placeholders that
/// both backends read.
#[derive(Default)]
struct DynamicQuery {
    conditions: Vec<String>,
    binds: Vec<Bind>,
}

impl DynamicQuery {
    fn placeholder(&mut self, bind: Bind) -> String {
        self.binds.push(bind);
        format!("${}", self.binds.len())
    }

    fn text(&mut self, value: &str) -> String {
        self.placeholder(Bind::Text(value.to_owned()))
    }

    fn integer(&mut self, value: i64) -> String {
        self.placeholder(Bind::Integer(value))
    }

    fn condition(&mut self, condition: String) {
        self.conditions.push(condition);
    }

    fn text_list(&mut self, values: &[String]) -> String {
        let placeholders: Vec<String> = values.iter().map(|value| self.text(value)).collect();
        placeholders.join(", ")
    }

    fn where_clause(&self) -> String {
        if self.conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", self.conditions.join(" AND "))
        }
    }
}

/// Runs `$sql` with the binds of `$query` on `$pool`, fetching every row as `$row`.
macro_rules! fetch_dynamic {
    ($pool:expr, $row:ty, $sql:expr, $query:expr) => {{
        // The SQL is assembled from this module's constants and `$n`
        // placeholders only; every value travels as a bind.
        let mut prepared = sqlx::query_as::<_, $row>(sqlx::AssertSqlSafe($sql.as_str()));
        for bind in $query.binds {
            prepared = match bind {
                Bind::Text(text) => prepared.bind(text),
                Bind::Integer(integer) => prepared.bind(integer),
            };
        }
        prepared.fetch_all($pool).await
    }};
}

pub mod data_migrations;
pub mod data_points;
pub mod events;
pub mod profiles;

const COMPANY_COLUMNS: &str = "company_id, organization_id, name, sector_id, business_model, country_code, \
     founding_year, revenue_band_id, peer_key, created_at, updated_at";

const KPI_COLUMNS: &str = "company_id, metric_id, period, revision, organization_id, granularity, period_start, \
     period_end, value, source, note, recorded_at, recorded_by, latest";

impl MetricsStore {
    /// A store over `database`.
    pub fn new(database: Database) -> Self {
        Self { database }
    }

    /// The database behind the store.
    pub fn database(&self) -> &Database {
        &self.database
    }

    /// Stores a new company.
    pub async fn insert_company(&self, company: &CompanyRow) -> Result<(), MetricsError> {
        let sql =
            format!("INSERT INTO companies ({COMPANY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)");
        with_pool!(&self.database, pool => sqlx::query(AssertSqlSafe(sql.as_str()))
            .bind(&company.company_id)
            .bind(&company.organization_id)
            .bind(&company.name)
            .bind(&company.sector_id)
            .bind(company.business_model)
            .bind(&company.country_code)
            .bind(company.founding_year)
            .bind(&company.revenue_band_id)
            .bind(&company.peer_key)
            .bind(company.created_at)
            .bind(company.updated_at)
            .execute(pool)
            .await
            .map(|_| ()))?;
        Ok(())
    }

    /// The company `company_id` of `organization_id`, if there is one.
    pub async fn company(&self, organization_id: &str, company_id: &str) -> Result<Option<CompanyRow>, MetricsError> {
        let sql = format!("SELECT {COMPANY_COLUMNS} FROM companies WHERE organization_id = $1 AND company_id = $2");
        let row = with_pool!(&self.database, pool => sqlx::query_as::<_, CompanyRow>(AssertSqlSafe(sql.as_str()))
            .bind(organization_id)
            .bind(company_id)
            .fetch_optional(pool)
            .await)?;
        Ok(row)
    }

    /// Which of `company_ids` belong to `organization_id`.
    pub async fn companies_of(
        &self,
        organization_id: &str,
        company_ids: &BTreeSet<String>,
    ) -> Result<BTreeSet<String>, MetricsError> {
        let mut found = BTreeSet::new();
        let ids: Vec<String> = company_ids.iter().cloned().collect();
        // Chunks keep the statement under SQLite's bound-parameter limit.
        for chunk in ids.chunks(500) {
            let mut query = DynamicQuery::default();
            let organization = query.text(organization_id);
            let list = query.text_list(chunk);
            query.condition(format!("organization_id = {organization}"));
            query.condition(format!("company_id IN ({list})"));
            let sql = format!("SELECT {COMPANY_COLUMNS} FROM companies {}", query.where_clause());
            let rows = with_pool!(&self.database, pool => fetch_dynamic!(pool, CompanyRow, &sql, query))?;
            found.extend(rows.into_iter().map(|row| row.company_id));
        }
        Ok(found)
    }

    /// How many companies `organization_id` has.
    pub async fn count_companies(&self, organization_id: &str) -> Result<i64, MetricsError> {
        let count: i64 = with_pool!(&self.database, pool => sqlx::query_scalar(
            "SELECT COUNT(*) FROM companies WHERE organization_id = $1",
        )
        .bind(organization_id)
        .fetch_one(pool)
        .await)?;
        Ok(count)
    }

    /// Writes the editable fields of a company back.
    pub async fn update_company(&self, company: &CompanyRow) -> Result<(), MetricsError> {
        let updated = with_pool!(&self.database, pool => sqlx::query(
            "UPDATE companies SET name = $1, sector_id = $2, business_model = $3, country_code = $4, \
             founding_year = $5, updated_at = $6 WHERE organization_id = $7 AND company_id = $8",
        )
        .bind(&company.name)
        .bind(&company.sector_id)
        .bind(company.business_model)
        .bind(&company.country_code)
        .bind(company.founding_year)
        .bind(company.updated_at)
        .bind(&company.organization_id)
        .bind(&company.company_id)
        .execute(pool)
        .await
        .map(|done| done.rows_affected()))?;
        if updated == 0 {
            return Err(MetricsError::NotFound("company"));
        }
        Ok(())
    }

    /// Up to `limit` companies of `organization_id` after `cursor`, by name and id.
    pub async fn list_companies(
        &self,
        organization_id: &str,
        filter: &CompanyFilter,
        cursor: Option<&CompanyCursor>,
        limit: u32,
    ) -> Result<Vec<CompanyRow>, MetricsError> {
        let mut query = DynamicQuery::default();
        let organization = query.text(organization_id);
        query.condition(format!("organization_id = {organization}"));
        if !filter.sector_id.is_empty() {
            let sector = query.text(&filter.sector_id);
            query.condition(format!("sector_id = {sector}"));
        }
        if filter.business_model != 0 {
            let model = query.integer(i64::from(filter.business_model));
            query.condition(format!("business_model = {model}"));
        }
        if !filter.revenue_band_id.is_empty() {
            let band = query.text(&filter.revenue_band_id);
            query.condition(format!("revenue_band_id = {band}"));
        }
        if !filter.country_code.is_empty() {
            let country = query.text(&filter.country_code);
            query.condition(format!("country_code = {country}"));
        }
        if let Some(cursor) = cursor {
            let name = query.text(&cursor.name);
            let name_again = query.text(&cursor.name);
            let id = query.text(&cursor.company_id);
            query.condition(format!(
                "(name > {name} OR (name = {name_again} AND company_id > {id}))"
            ));
        }
        let limit_placeholder = query.integer(i64::from(limit));
        let sql = format!(
            "SELECT {COMPANY_COLUMNS} FROM companies {} ORDER BY name, company_id LIMIT {limit_placeholder}",
            query.where_clause()
        );
        let rows = with_pool!(&self.database, pool => fetch_dynamic!(pool, CompanyRow, &sql, query))?;
        Ok(rows)
    }

    /// Records a batch of values atomically: each becomes revision 1, a new
    /// revision, or nothing when it equals the current one; revenue bands
    /// follow the companies' latest ARR. Retried when a concurrent batch
    /// wrote the same values first.
    pub async fn record_kpis(
        &self,
        organization_id: &str,
        recorded_by: &str,
        recorded_at: i64,
        values: &[NewKpi],
    ) -> Result<Vec<(KpiRow, RecordOutcome)>, MetricsError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self
                .record_kpis_once(organization_id, recorded_by, recorded_at, values)
                .await
            {
                Err(MetricsError::Storage(error)) if is_unique_violation(&error) && attempt < RECORD_ATTEMPTS => {
                    tracing::debug!(attempt, "kpi batch raced a concurrent writer, retrying");
                }
                Err(MetricsError::Storage(error)) if is_unique_violation(&error) => {
                    return Err(MetricsError::Aborted(
                        "the same values are being recorded concurrently, retry the request",
                    ));
                }
                outcome => return outcome,
            }
        }
    }

    async fn record_kpis_once(
        &self,
        organization_id: &str,
        recorded_by: &str,
        recorded_at: i64,
        values: &[NewKpi],
    ) -> Result<Vec<(KpiRow, RecordOutcome)>, MetricsError> {
        let company_ids: BTreeSet<&str> = values.iter().map(NewKpi::company_id).collect();
        let select_current =
            format!("SELECT {KPI_COLUMNS} FROM kpi_values WHERE organization_id = $1 AND company_id = $2 AND latest");
        let insert = format!(
            "INSERT INTO kpi_values ({KPI_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
        );
        let outcome: Result<Vec<(KpiRow, RecordOutcome)>, sqlx::Error> = with_pool!(&self.database, pool => async {
            let mut transaction = pool.begin_write().await?;
            let mut current: HashMap<(String, String), KpiRow> = HashMap::new();
            for company_id in &company_ids {
                let rows = sqlx::query_as::<_, KpiRow>(AssertSqlSafe(select_current.as_str()))
                    .bind(organization_id)
                    .bind(*company_id)
                    .fetch_all(&mut *transaction)
                    .await?;
                for row in rows {
                    current.insert((row.company_id.clone(), format!("{}/{}", row.metric_id, row.period)), row);
                }
            }
            let mut results = Vec::with_capacity(values.len());
            let mut arr_changed: BTreeSet<&str> = BTreeSet::new();
            for value in values {
                let period = value.period().to_string();
                let key = (value.company_id().to_owned(), format!("{}/{period}", value.metric_id()));
                let previous = current.get(&key);
                if let Some(previous) = previous
                    && previous.value == value.value()
                    && previous.note == value.note()
                {
                    results.push((previous.clone(), RecordOutcome::Unchanged));
                    continue;
                }
                let revision = previous.map_or(1, |previous| previous.revision + 1);
                if previous.is_some() {
                    sqlx::query(
                        "UPDATE kpi_values SET latest = FALSE \
                         WHERE company_id = $1 AND metric_id = $2 AND period = $3 AND latest",
                    )
                    .bind(value.company_id())
                    .bind(value.metric_id())
                    .bind(&period)
                    .execute(&mut *transaction)
                    .await?;
                }
                let row = KpiRow {
                    company_id: value.company_id().to_owned(),
                    metric_id: value.metric_id().to_owned(),
                    period: period.clone(),
                    revision,
                    organization_id: organization_id.to_owned(),
                    granularity: value.period().granularity() as i32,
                    period_start: value.period().start_month_index() as i32,
                    period_end: value.period().end_month_index() as i32,
                    value: value.value(),
                    source: value.source() as i32,
                    note: value.note().to_owned(),
                    recorded_at,
                    recorded_by: recorded_by.to_owned(),
                    latest: true,
                };
                sqlx::query(AssertSqlSafe(insert.as_str()))
                    .bind(&row.company_id)
                    .bind(&row.metric_id)
                    .bind(&row.period)
                    .bind(row.revision)
                    .bind(&row.organization_id)
                    .bind(row.granularity)
                    .bind(row.period_start)
                    .bind(row.period_end)
                    .bind(row.value)
                    .bind(row.source)
                    .bind(&row.note)
                    .bind(row.recorded_at)
                    .bind(&row.recorded_by)
                    .bind(row.latest)
                    .execute(&mut *transaction)
                    .await?;
                if value.metric_id() == ARR_METRIC_ID {
                    arr_changed.insert(value.company_id());
                }
                let outcome = if previous.is_some() { RecordOutcome::Updated } else { RecordOutcome::Created };
                current.insert(key, row.clone());
                results.push((row, outcome));
            }
            for company_id in arr_changed {
                let latest_arr: Option<f64> = sqlx::query_scalar(
                    "SELECT value FROM kpi_values WHERE company_id = $1 AND metric_id = $2 AND latest \
                     ORDER BY period_end DESC, recorded_at DESC, granularity ASC LIMIT 1",
                )
                .bind(company_id)
                .bind(ARR_METRIC_ID)
                .fetch_optional(&mut *transaction)
                .await?;
                let band = latest_arr
                    .and_then(reference::revenue_band_for)
                    .map_or("", |band| band.id);
                sqlx::query(
                    "UPDATE companies SET revenue_band_id = $1, updated_at = $2 \
                     WHERE company_id = $3 AND revenue_band_id <> $4",
                )
                .bind(band)
                .bind(recorded_at)
                .bind(company_id)
                .bind(band)
                .execute(&mut *transaction)
                .await?;
            }
            transaction.commit().await?;
            Ok(results)
        }
        .await);
        Ok(outcome?)
    }

    /// The current values of `company_id` for `period`, by metric id.
    pub async fn current_values_for_period(
        &self,
        organization_id: &str,
        company_id: &str,
        period: &str,
    ) -> Result<std::collections::BTreeMap<String, f64>, MetricsError> {
        let rows: Vec<(String, f64)> = with_pool!(&self.database, pool => sqlx::query_as(
            "SELECT metric_id, value FROM kpi_values \
             WHERE organization_id = $1 AND company_id = $2 AND period = $3 AND latest",
        )
        .bind(organization_id)
        .bind(company_id)
        .bind(period)
        .fetch_all(pool)
        .await)?;
        Ok(rows.into_iter().collect())
    }

    /// Up to `limit` values of `organization_id` after `cursor`, ordered by
    /// company, metric, period (latest first) and revision (latest first).
    pub async fn list_kpis(
        &self,
        organization_id: &str,
        filter: &KpiFilter,
        cursor: Option<&KpiCursor>,
        limit: u32,
    ) -> Result<Vec<KpiRow>, MetricsError> {
        let mut query = DynamicQuery::default();
        let organization = query.text(organization_id);
        query.condition(format!("organization_id = {organization}"));
        if !filter.company_id.is_empty() {
            let company = query.text(&filter.company_id);
            query.condition(format!("company_id = {company}"));
        }
        if !filter.metric_ids.is_empty() {
            let list = query.text_list(&filter.metric_ids);
            query.condition(format!("metric_id IN ({list})"));
        }
        if let Some(granularity) = filter.granularity {
            let granularity = query.integer(i64::from(granularity as i32));
            query.condition(format!("granularity = {granularity}"));
        }
        if let Some(start) = filter.start_month {
            let start = query.integer(i64::from(start));
            query.condition(format!("period_start >= {start}"));
        }
        if let Some(end) = filter.end_month {
            let end = query.integer(i64::from(end));
            query.condition(format!("period_end <= {end}"));
        }
        if let Some(source) = filter.source {
            let source = query.integer(i64::from(source as i32));
            query.condition(format!("source = {source}"));
        }
        if !filter.include_history {
            query.condition("latest".to_owned());
        }
        if let Some(cursor) = cursor {
            // (company ASC, metric ASC, period_end DESC, period DESC, revision DESC): each
            // alternative binds its own copies, since PostgreSQL types every placeholder once.
            let mut alternatives = Vec::new();
            for depth in 1..=5 {
                let mut parts = Vec::new();
                let company = query.text(&cursor.company_id);
                parts.push(if depth == 1 {
                    format!("company_id > {company}")
                } else {
                    format!("company_id = {company}")
                });
                if depth >= 2 {
                    let metric = query.text(&cursor.metric_id);
                    parts.push(if depth == 2 {
                        format!("metric_id > {metric}")
                    } else {
                        format!("metric_id = {metric}")
                    });
                }
                if depth >= 3 {
                    let end = query.integer(i64::from(cursor.period_end));
                    parts.push(if depth == 3 {
                        format!("period_end < {end}")
                    } else {
                        format!("period_end = {end}")
                    });
                }
                if depth >= 4 {
                    let period = query.text(&cursor.period);
                    parts.push(if depth == 4 {
                        format!("period < {period}")
                    } else {
                        format!("period = {period}")
                    });
                }
                if depth == 5 {
                    let revision = query.integer(i64::from(cursor.revision));
                    parts.push(format!("revision < {revision}"));
                }
                alternatives.push(format!("({})", parts.join(" AND ")));
            }
            query.condition(format!("({})", alternatives.join(" OR ")));
        }
        let limit_placeholder = query.integer(i64::from(limit));
        let sql = format!(
            "SELECT {KPI_COLUMNS} FROM kpi_values {} \
             ORDER BY company_id, metric_id, period_end DESC, period DESC, revision DESC LIMIT {limit_placeholder}",
            query.where_clause()
        );
        let rows = with_pool!(&self.database, pool => fetch_dynamic!(pool, KpiRow, &sql, query))?;
        Ok(rows)
    }

    /// Up to `limit` current values of every organisation after `cursor`,
    /// anonymised, ordered by metric, period and peer key.
    pub async fn peer_values(
        &self,
        filter: &PeerFilter,
        cursor: Option<&PeerCursor>,
        limit: u32,
    ) -> Result<Vec<PeerRow>, MetricsError> {
        let mut query = DynamicQuery::default();
        query.condition("k.latest".to_owned());
        if !filter.metric_ids.is_empty() {
            let list = query.text_list(&filter.metric_ids);
            query.condition(format!("k.metric_id IN ({list})"));
        }
        if !filter.sector_id.is_empty() {
            let sector = query.text(&filter.sector_id);
            query.condition(format!("c.sector_id = {sector}"));
        }
        if !filter.revenue_band_id.is_empty() {
            let band = query.text(&filter.revenue_band_id);
            query.condition(format!("c.revenue_band_id = {band}"));
        }
        if let Some(granularity) = filter.granularity {
            let granularity = query.integer(i64::from(granularity as i32));
            query.condition(format!("k.granularity = {granularity}"));
        }
        if let Some(start) = filter.start_month {
            let start = query.integer(i64::from(start));
            query.condition(format!("k.period_start >= {start}"));
        }
        if let Some(end) = filter.end_month {
            let end = query.integer(i64::from(end));
            query.condition(format!("k.period_end <= {end}"));
        }
        if !filter.exclude_company_ids.is_empty() {
            let list = query.text_list(&filter.exclude_company_ids);
            query.condition(format!("c.company_id NOT IN ({list})"));
        }
        if !filter.exclude_organization_ids.is_empty() {
            let list = query.text_list(&filter.exclude_organization_ids);
            query.condition(format!("c.organization_id NOT IN ({list})"));
        }
        if let Some(cursor) = cursor {
            let m1 = query.text(&cursor.metric_id);
            let m2 = query.text(&cursor.metric_id);
            let p2 = query.text(&cursor.period);
            let m3 = query.text(&cursor.metric_id);
            let p3 = query.text(&cursor.period);
            let k3 = query.text(&cursor.peer_key);
            query.condition(format!(
                "(k.metric_id > {m1} OR (k.metric_id = {m2} AND k.period > {p2}) \
                 OR (k.metric_id = {m3} AND k.period = {p3} AND c.peer_key > {k3}))"
            ));
        }
        let limit_placeholder = query.integer(i64::from(limit));
        let sql = format!(
            "SELECT k.metric_id, k.value, c.sector_id, c.revenue_band_id, k.period, c.peer_key, \
             c.company_id, c.organization_id \
             FROM kpi_values k JOIN companies c ON c.company_id = k.company_id {} \
             ORDER BY k.metric_id, k.period, c.peer_key LIMIT {limit_placeholder}",
            query.where_clause()
        );
        let rows = with_pool!(&self.database, pool => fetch_dynamic!(pool, PeerRow, &sql, query))?;
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_kpi_is_made_only_from_a_storable_value() {
        let value = NewKpi::parse("c".into(), "ndr", "2026-Q3", 112.5, KpiSource::Api, "note").expect("valid");
        assert_eq!(
            (value.metric_id(), value.period().to_string()),
            ("ndr", "2026-Q3".to_owned())
        );
        let fields = |result: Result<NewKpi, Vec<FieldViolation>>| -> Vec<String> {
            result
                .expect_err("refused")
                .into_iter()
                .map(|violation| violation.field)
                .collect()
        };
        assert_eq!(
            fields(NewKpi::parse(
                "c".into(),
                "ltv",
                "2026 Q3",
                f64::NAN,
                KpiSource::Api,
                ""
            )),
            ["metric_id", "period", "value"]
        );
        let long_note = "x".repeat(MAX_NOTE_LENGTH + 1);
        assert_eq!(
            fields(NewKpi::parse(
                "c".into(),
                "ndr",
                "2026-Q3",
                100.0,
                KpiSource::Api,
                &long_note
            )),
            ["note"]
        );
        // PostgreSQL cannot store a NUL in text; SQLite could, so it is
        // refused on both alike.
        assert_eq!(
            fields(NewKpi::parse(
                "c".into(),
                "ndr",
                "2026-Q3",
                100.0,
                KpiSource::Api,
                "a\0b"
            )),
            ["note"]
        );
    }
}
