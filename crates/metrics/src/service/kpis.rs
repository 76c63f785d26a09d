//! KPI values: recording, listing, calculating and validating. Imports of a
//! CSV file are in `kpi_imports`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use metrix_core::authn::Scope;
use metrix_core::error::{FieldViolation, Violations};
use metrix_core::page_token;
use metrix_core::time::{now_micros, timestamp};
use metrix_proto::metrics::v1::*;
use tonic::Request;

use crate::app::announce_kpi_changes;
use crate::error::MetricsError;
use crate::period::Period;
use crate::store::{KpiCursor, KpiFilter, KpiRow, NewKpi, RecordOutcome};
use crate::validation::{self, KpiCandidate};
use crate::{catalog, formulas};

use super::{LIST_PAGE, MetricsApi, READERS, authorize, granularity_filter, metric_filter, period_bound, required};

/// The most values of one RecordKpis call.
const MAX_KPI_BATCH: usize = 1_000;

/// The most related values of one ValidateKpi call.
const MAX_RELATED_VALUES: usize = 100;

/// The source of a value sent through the API: unspecified becomes API;
/// the sources the server sets itself are refused.
fn api_source(field: &str, value: i32) -> Result<KpiSource, FieldViolation> {
    match KpiSource::try_from(value) {
        Ok(KpiSource::Unspecified) => Ok(KpiSource::Api),
        Ok(source @ (KpiSource::Manual | KpiSource::Api | KpiSource::Calculated)) => Ok(source),
        Ok(KpiSource::CsvImport | KpiSource::Demo) => Err(FieldViolation::new(
            field,
            "is set by the server for imports and demo data; use MANUAL, API or CALCULATED",
        )),
        Err(_) => Err(FieldViolation::new(field, format!("{value} is not a KPI source"))),
    }
}

/// A source filter: 0 for any, else a known source.
fn source_filter(field: &str, value: i32) -> Result<Option<KpiSource>, FieldViolation> {
    match KpiSource::try_from(value) {
        Ok(KpiSource::Unspecified) => Ok(None),
        Ok(source) => Ok(Some(source)),
        Err(_) => Err(FieldViolation::new(field, format!("{value} is not a KPI source"))),
    }
}

fn kpi_to_proto(row: KpiRow) -> KpiValue {
    KpiValue {
        company_id: row.company_id,
        metric_id: row.metric_id,
        period: row.period,
        value: row.value,
        source: row.source,
        note: row.note,
        recorded_at: Some(timestamp(row.recorded_at)),
        revision: row.revision,
        latest: row.latest,
        recorded_by: row.recorded_by,
    }
}

/// One value of a RecordKpis request, its problems named by their path
/// inside the value.
fn new_kpi(violations: &mut Violations, kpi: &KpiValue) -> Option<NewKpi> {
    let company_id = violations.check(required("company_id", &kpi.company_id));
    let source = violations.check(api_source("source", kpi.source));
    let value = violations.check_all(NewKpi::parse(
        company_id.clone().unwrap_or_default(),
        &kpi.metric_id,
        &kpi.period,
        kpi.value,
        source.unwrap_or(KpiSource::Api),
        &kpi.note,
    ));
    company_id.and(source).and(value)
}

impl MetricsApi {
    pub(super) async fn record_kpis(
        &self,
        request: Request<RecordKpisRequest>,
    ) -> Result<RecordKpisResponse, MetricsError> {
        let caller = authorize(&request, &READERS, &[Scope::MetricsWrite])?.clone();
        let request = request.into_inner();
        if request.kpi_values.is_empty() {
            return Err(MetricsError::invalid("kpi_values", "must hold at least one value"));
        }
        if request.kpi_values.len() > MAX_KPI_BATCH {
            return Err(MetricsError::invalid(
                "kpi_values",
                format!(
                    "holds {} values; at most {MAX_KPI_BATCH} per call",
                    request.kpi_values.len()
                ),
            ));
        }
        let mut violations = Violations::new();
        let mut values = Vec::with_capacity(request.kpi_values.len());
        let mut first_index_of_key: HashMap<(String, String, String), usize> = HashMap::new();
        for (index, kpi) in request.kpi_values.iter().enumerate() {
            let prefix = format!("kpi_values[{index}]");
            let Some(value) = violations.nested(&prefix, |fields| new_kpi(fields, kpi)) else {
                continue;
            };
            let key = (
                value.company_id().to_owned(),
                value.metric_id().to_owned(),
                value.period().to_string(),
            );
            if let Some(first) = first_index_of_key.get(&key) {
                violations.add(
                    prefix,
                    format!("repeats the company, metric and period of kpi_values[{first}]"),
                );
                continue;
            }
            first_index_of_key.insert(key, index);
            values.push(value);
        }
        let company_ids: BTreeSet<String> = values.iter().map(|value| value.company_id().to_owned()).collect();
        let known = self
            .state
            .store
            .companies_of(&caller.organization_id, &company_ids)
            .await?;
        for (index, kpi) in request.kpi_values.iter().enumerate() {
            let company_id = kpi.company_id.trim();
            if !company_id.is_empty() && company_ids.contains(company_id) && !known.contains(company_id) {
                violations.add(
                    format!("kpi_values[{index}].company_id"),
                    "is not a company of your organisation",
                );
            }
        }
        violations.finish()?;
        let recorded = self
            .state
            .store
            .record_kpis(&caller.organization_id, &caller.subject, now_micros(), &values)
            .await?;
        announce_kpi_changes(self.state.pubsub.as_ref(), &recorded).await;
        let count = |wanted: RecordOutcome| recorded.iter().filter(|(_, outcome)| *outcome == wanted).count() as i64;
        Ok(RecordKpisResponse {
            created_count: count(RecordOutcome::Created),
            updated_count: count(RecordOutcome::Updated),
            unchanged_count: count(RecordOutcome::Unchanged),
            kpi_values: recorded.into_iter().map(|(row, _)| kpi_to_proto(row)).collect(),
        })
    }

    pub(super) async fn list_kpis(&self, request: Request<ListKpisRequest>) -> Result<ListKpisResponse, MetricsError> {
        let caller = authorize(&request, &READERS, &[Scope::Read])?.clone();
        let request = request.into_inner();
        let mut violations = Violations::new();
        let metric_ids = metric_filter("metric_ids", &request.metric_ids)
            .map_err(|problems| violations.extend(problems))
            .unwrap_or_default();
        let granularity = granularity_filter("period_granularity", request.period_granularity)
            .map_err(|violation| violations.push(violation))
            .unwrap_or_default();
        let source = source_filter("source", request.source)
            .map_err(|violation| violations.push(violation))
            .unwrap_or_default();
        let start_month = period_bound("start_period", &request.start_period, false)
            .map_err(|violation| violations.push(violation))
            .unwrap_or_default();
        let end_month = period_bound("end_period", &request.end_period, true)
            .map_err(|violation| violations.push(violation))
            .unwrap_or_default();
        violations.finish()?;
        let company_id = request.company_id.trim().to_owned();
        self.require_company_if_named(&caller.organization_id, &company_id)
            .await?;
        let filter = KpiFilter {
            company_id,
            metric_ids,
            granularity,
            start_month,
            end_month,
            source,
            include_history: request.include_history,
        };
        let filters = format!(
            "kpis|{}|{}|{}|{:?}|{:?}|{:?}|{:?}|{}",
            caller.organization_id,
            filter.company_id,
            filter.metric_ids.join(","),
            filter.granularity,
            filter.start_month,
            filter.end_month,
            filter.source,
            filter.include_history
        );
        let (size, cursor) =
            page_token::page_request::<KpiCursor>(request.page_size, &request.page_token, &filters, LIST_PAGE)
                .map_err(MetricsError::from)?;
        let rows = self
            .state
            .store
            .list_kpis(&caller.organization_id, &filter, cursor.as_ref(), size + 1)
            .await?;
        let (rows, next_page_token) = page_token::paginate(rows, size, &filters, |row| KpiCursor {
            company_id: row.company_id.clone(),
            metric_id: row.metric_id.clone(),
            period_end: row.period_end,
            period: row.period.clone(),
            revision: row.revision,
        });
        Ok(ListKpisResponse {
            kpi_values: rows.into_iter().map(kpi_to_proto).collect(),
            next_page_token,
        })
    }

    pub(super) async fn calculate_kpi(
        &self,
        request: Request<CalculateKpiRequest>,
    ) -> Result<CalculateKpiResponse, MetricsError> {
        authorize(&request, &READERS, &[Scope::Read, Scope::MetricsWrite])?;
        let request = request.into_inner();
        let inputs: BTreeMap<String, f64> = request.inputs.into_iter().collect();
        let calculation = formulas::calculate(request.metric_id.trim(), &inputs)
            .map_err(|error| MetricsError::from(error.into_field_violations()))?;
        Ok(calculation.into_proto())
    }

    pub(super) async fn validate_kpi(
        &self,
        request: Request<ValidateKpiRequest>,
    ) -> Result<ValidateKpiResponse, MetricsError> {
        let caller = authorize(&request, &READERS, &[Scope::Read, Scope::MetricsWrite])?.clone();
        let request = request.into_inner();
        let Some(kpi) = request.kpi else {
            return Err(MetricsError::invalid("kpi", "is required"));
        };

        if request.related_values.len() > MAX_RELATED_VALUES {
            return Err(MetricsError::invalid(
                "related_values",
                format!("holds more than {MAX_RELATED_VALUES} values"),
            ));
        }
        let mut related = validation::RelatedValues::new();
        let company_id = kpi.company_id.trim();
        if !company_id.is_empty() {
            if self
                .state
                .store
                .company(&caller.organization_id, company_id)
                .await?
                .is_none()
            {
                return Err(MetricsError::NotFound("company"));
            }
            if let Ok(period) = Period::parse(kpi.period.trim()) {
                related = self
                    .state
                    .store
                    .current_values_for_period(&caller.organization_id, company_id, &period.to_string())
                    .await?;
            }
        }
        let mut violations = Violations::new();
        for (index, value) in request.related_values.iter().enumerate() {
            if catalog::find(value.metric_id.trim()).is_none() {
                violations.push(FieldViolation::new(
                    format!("related_values[{index}].metric_id"),
                    "is not a metric; see ListMetricDefinitions",
                ));
                continue;
            }
            if value.period.trim().is_empty() {
                violations.push(FieldViolation::new(
                    format!("related_values[{index}].period"),
                    "is required",
                ));
                continue;
            }
            if value.period.trim() != kpi.period.trim() {
                violations.push(FieldViolation::new(
                    format!("related_values[{index}].period"),
                    "must be the period of the validated value",
                ));
                continue;
            }
            if !value.value.is_finite() {
                violations.push(FieldViolation::new(
                    format!("related_values[{index}].value"),
                    "must be a finite number",
                ));
                continue;
            }
            related.insert(value.metric_id.trim().to_owned(), value.value);
        }
        violations.finish()?;
        let candidate = KpiCandidate {
            metric_id: kpi.metric_id.trim().to_owned(),
            period: kpi.period.trim().to_owned(),
            value: kpi.value,
        };
        Ok(validation::validate(&candidate, &related).into_proto())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_sources_exclude_server_set_ones() {
        assert_eq!(api_source("source", 0), Ok(KpiSource::Api));
        assert_eq!(api_source("source", KpiSource::Manual as i32), Ok(KpiSource::Manual));
        assert!(api_source("source", KpiSource::CsvImport as i32).is_err());
        assert!(api_source("source", KpiSource::Demo as i32).is_err());
        assert!(api_source("source", 99).is_err());
    }
}
