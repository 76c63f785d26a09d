//! The gRPC face of the metrics service: requests are parsed into domain
//! types here, permissions are checked here, and errors become statuses
//! here.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures::Stream;
use hmac::{Hmac, Mac as _};
use ipnet::IpNet;
use metrix_core::authn::{Principal, Role, Scope, principal};
use metrix_core::cache::PubSub;
use metrix_core::client::client_info;
use metrix_core::error::FieldViolation;
use metrix_core::notices::{KPI_CHANGES_CHANNEL, KpiChanges};
use metrix_core::page_token::{self, PageLimits};
use metrix_core::reference;
use metrix_core::server::answer;
use metrix_core::time::{current_year, duration_micros, now_micros, timestamp};
use metrix_proto::metrics::v1::metrics_service_server::MetricsService;
use metrix_proto::metrics::v1::*;
use prost::Message as _;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tonic::{Request, Response, Status};

use crate::catalog;
use crate::company::{CompanyFields, fields_to_update};
use crate::dashboard;
use crate::error::MetricsError;
use crate::events::{Arrival, EventSelection, NewEvent, event_to_proto, parse_event};
use crate::formulas;
use crate::import;
use crate::period::Period;
use crate::store::events::{EventCursor, EventOrder};
use crate::store::{
    CompanyCursor, CompanyFilter, CompanyRow, KpiCursor, KpiFilter, KpiRow, MetricsStore, NewKpi, PeerCursor,
    PeerFilter, RecordOutcome,
};
use crate::validation::{self, KpiCandidate};

/// Roles that may read an organisation's data.
const READERS: [Role; 3] = [Role::CompanyUser, Role::Analyst, Role::Admin];
/// Roles that may change companies.
const ADMINS: [Role; 1] = [Role::Admin];
/// Roles that may import files.
const IMPORTERS: [Role; 2] = [Role::Analyst, Role::Admin];
/// The most values of one RecordKpis call.
const MAX_KPI_BATCH: usize = 1_000;
/// The most related values of one ValidateKpi call.
const MAX_RELATED_VALUES: usize = 100;
/// The longest KPI note, in characters.
const MAX_NOTE_LENGTH: usize = 1_000;
/// Page sizes of the list RPCs (default, maximum).
const LIST_PAGE: PageLimits = PageLimits {
    default: 100,
    maximum: 1_000,
};
/// Page sizes of ListPeerValues (default, maximum).
const PEER_PAGE: PageLimits = PageLimits {
    default: 10_000,
    maximum: 100_000,
};
/// Peer values per stream message.
const PEER_MESSAGE_SIZE: u32 = 1_000;
/// A watched dashboard is sent at least this often, so rolling windows move.
const DASHBOARD_REFRESH: Duration = Duration::from_secs(30);
/// A watched dashboard is sent at most this often.
const DASHBOARD_DEBOUNCE: Duration = Duration::from_secs(1);
/// Live events buffered per WatchEvents stream before some are skipped.
const WATCH_BUFFER: usize = 256;

/// Everything the handlers share.
pub struct MetricsState {
    /// The relational store.
    pub store: MetricsStore,
    /// The key of the peer-key hash.
    pub peer_key_secret: SecretString,
    /// Announces stored events to every instance (live streams).
    pub pubsub: Arc<dyn PubSub>,
    /// The durable queue of the asynchronous ingestion path (Redis Streams,
    /// or the service's database without Redis).
    pub work_streams: Arc<dyn metrix_core::cache::WorkStream>,
    /// How the queue is bounded and worked.
    pub queue: crate::settings::QueueSettings,
    /// Peers whose client metadata is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// How long raw events are kept.
    pub event_retention: Duration,
}

/// The pub/sub channel on which an organisation's stored events are
/// announced (their ids: [`crate::ingest::stored_notice`]).
pub fn events_channel(organization_id: &str) -> String {
    format!("metrics:events:{organization_id}")
}

/// Tells every instance which periods' KPI values changed, so that the
/// benchmark service drops its computed slices of those periods. A lost
/// notice only delays that until the cached slices expire.
pub async fn announce_kpi_changes(pubsub: &dyn PubSub, recorded: &[(KpiRow, RecordOutcome)]) {
    let changed: Vec<&KpiRow> = recorded
        .iter()
        .filter(|(_, outcome)| *outcome != RecordOutcome::Unchanged)
        .map(|(row, _)| row)
        .collect();
    if changed.is_empty() {
        return;
    }
    let mut periods: Vec<String> = changed.iter().map(|row| row.period.clone()).collect();
    periods.sort();
    periods.dedup();
    let changes = KpiChanges {
        periods,
        revenue_bands_changed: changed.iter().any(|row| row.metric_id == "arr"),
    };
    if let Err(error) = pubsub.publish(KPI_CHANGES_CHANNEL, &changes.encode()).await {
        tracing::warn!(error = %metrix_core::error::error_chain(&error), "kpi changes not announced");
    }
}

/// The `MetricsService` implementation.
#[derive(Clone)]
pub struct MetricsApi {
    state: Arc<MetricsState>,
}

/// A server stream of the service.
type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Where the next page of a static list (sectors, metric definitions) starts.
#[derive(Serialize, Deserialize)]
struct IdCursor {
    id: String,
}

/// Authorises a caller: a user by role, a service token or API key by any of
/// `scopes`.
fn authorize<'request, T>(
    request: &'request Request<T>,
    roles: &[Role],
    scopes: &[Scope],
) -> Result<&'request Principal, Status> {
    let caller = principal(request)?;
    if caller.is_user() {
        caller.require_user_role(roles)?;
        return Ok(caller);
    }
    if scopes.iter().any(|scope| caller.scopes.contains(scope)) {
        return Ok(caller);
    }
    let names: Vec<&str> = scopes.iter().map(|scope| scope.as_str()).collect();
    Err(Status::permission_denied(format!(
        "the credential needs the {} scope",
        names.join(" or ")
    )))
}

/// The pseudonymous key of a company: a keyed hash of its id.
pub fn peer_key(secret: &SecretString, company_id: &str) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(company_id.as_bytes());
    URL_SAFE_NO_PAD.encode(&mac.finalize().into_bytes()[..16])
}

fn company_to_proto(row: CompanyRow) -> Company {
    Company {
        company_id: row.company_id,
        organization_id: row.organization_id,
        name: row.name,
        sector_id: row.sector_id,
        business_model: row.business_model,
        country_code: row.country_code,
        founding_year: row.founding_year,
        revenue_band_id: row.revenue_band_id,
        create_time: Some(timestamp(row.created_at)),
        update_time: Some(timestamp(row.updated_at)),
    }
}

fn company_fields(row: &CompanyRow) -> CompanyFields {
    CompanyFields {
        name: row.name.clone(),
        sector_id: row.sector_id.clone(),
        business_model: BusinessModel::try_from(row.business_model).unwrap_or(BusinessModel::Other),
        country_code: row.country_code.clone(),
        founding_year: row.founding_year,
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

/// A page of a static list ordered by id.
fn static_page<T: Clone>(
    items: &[T],
    id_of: impl Fn(&T) -> &str,
    page_size: i32,
    page_token_text: &str,
    filters: &str,
) -> Result<(Vec<T>, String), MetricsError> {
    let (size, cursor) = page_token::page_request::<IdCursor>(page_size, page_token_text, filters, LIST_PAGE)
        .map_err(MetricsError::from)?;
    let rows: Vec<T> = items
        .iter()
        .filter(|item| cursor.as_ref().is_none_or(|cursor| id_of(item) > cursor.id.as_str()))
        .take(size as usize + 1)
        .cloned()
        .collect();
    Ok(page_token::paginate(rows, size, filters, |item| IdCursor {
        id: id_of(item).to_owned(),
    }))
}

/// A required identifier field.
fn required(field: &str, value: &str) -> Result<String, FieldViolation> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        Err(FieldViolation::new(field, "is required"))
    } else {
        Ok(trimmed.to_owned())
    }
}

/// A granularity filter: 0 for any, else a known granularity.
fn granularity_filter(field: &str, value: i32) -> Result<i32, FieldViolation> {
    match PeriodGranularity::try_from(value) {
        Ok(_) => Ok(value),
        Err(_) => Err(FieldViolation::new(
            field,
            format!("{value} is not a period granularity"),
        )),
    }
}

/// An optional period bound: the month index of its start or end.
fn period_bound(field: &str, text: &str, end: bool) -> Result<Option<i32>, FieldViolation> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    let period = Period::parse(text.trim()).map_err(|error| FieldViolation::new(field, error.to_string()))?;
    let month_index = if end {
        period.end_month_index()
    } else {
        period.start_month_index()
    };
    // Month indices of years 1900–2100 are below 25,300.
    Ok(Some(month_index as i32))
}

/// Metric ids of a filter, each of the catalog.
fn metric_filter(field: &str, metric_ids: &[String]) -> Result<Vec<String>, Vec<FieldViolation>> {
    let mut violations = Vec::new();
    let mut known = BTreeSet::new();
    for (index, metric_id) in metric_ids.iter().enumerate() {
        match catalog::find(metric_id.trim()) {
            Some(spec) => {
                known.insert(spec.id.to_owned());
            }
            None => violations.push(FieldViolation::new(
                format!("{field}[{index}]"),
                format!("{metric_id:?} is not a metric; see ListMetricDefinitions"),
            )),
        }
    }
    if violations.is_empty() {
        Ok(known.into_iter().collect())
    } else {
        Err(violations)
    }
}

/// The source of a value sent through the API: unspecified becomes API;
/// the sources the server sets itself are refused.
fn api_source(field: &str, value: i32) -> Result<i32, FieldViolation> {
    match KpiSource::try_from(value) {
        Ok(KpiSource::Unspecified) => Ok(KpiSource::Api as i32),
        Ok(KpiSource::Manual | KpiSource::Api | KpiSource::Calculated) => Ok(value),
        Ok(KpiSource::CsvImport | KpiSource::Demo) => Err(FieldViolation::new(
            field,
            "is set by the server for imports and demo data; use MANUAL, API or CALCULATED",
        )),
        Err(_) => Err(FieldViolation::new(field, format!("{value} is not a KPI source"))),
    }
}

impl MetricsApi {
    /// Handlers over `state`.
    pub fn new(state: Arc<MetricsState>) -> Self {
        Self { state }
    }

    async fn create_company(&self, request: Request<CreateCompanyRequest>) -> Result<CreateCompanyResponse, Status> {
        let caller = authorize(&request, &ADMINS, &[Scope::MetricsWrite])?.clone();
        let company = request.into_inner().company.unwrap_or_default();
        let fields = CompanyFields::parse("company", &company, current_year()).map_err(MetricsError::from)?;
        let now = now_micros();
        let company_id = uuid::Uuid::now_v7().to_string();
        let row = CompanyRow {
            peer_key: peer_key(&self.state.peer_key_secret, &company_id),
            company_id,
            organization_id: caller.organization_id.clone(),
            name: fields.name,
            sector_id: fields.sector_id,
            business_model: fields.business_model as i32,
            country_code: fields.country_code,
            founding_year: fields.founding_year,
            revenue_band_id: String::new(),
            created_at: now,
            updated_at: now,
        };
        self.state.store.insert_company(&row).await?;
        tracing::info!(company_id = %row.company_id, organization_id = %row.organization_id, "company created");
        Ok(CreateCompanyResponse {
            company: Some(company_to_proto(row)),
        })
    }

    async fn get_company(&self, request: Request<GetCompanyRequest>) -> Result<GetCompanyResponse, Status> {
        let caller = authorize(&request, &READERS, &[Scope::Read])?;
        let company_id = required("company_id", &request.get_ref().company_id).map_err(MetricsError::from)?;
        let row = self
            .state
            .store
            .company(&caller.organization_id, &company_id)
            .await?
            .ok_or(MetricsError::NotFound("company"))?;
        Ok(GetCompanyResponse {
            company: Some(company_to_proto(row)),
        })
    }

    async fn update_company(&self, request: Request<UpdateCompanyRequest>) -> Result<UpdateCompanyResponse, Status> {
        let caller = authorize(&request, &ADMINS, &[Scope::MetricsWrite])?.clone();
        let request = request.into_inner();
        let update = request.company.unwrap_or_default();
        let company_id = required("company.company_id", &update.company_id).map_err(MetricsError::from)?;
        let mask_paths = request.update_mask.map(|mask| mask.paths).unwrap_or_default();
        let fields = fields_to_update(&update, &mask_paths).map_err(MetricsError::from)?;
        let mut row = self
            .state
            .store
            .company(&caller.organization_id, &company_id)
            .await?
            .ok_or(MetricsError::NotFound("company"))?;
        let next = company_fields(&row)
            .updated(&update, &fields, current_year())
            .map_err(MetricsError::from)?;
        row.name = next.name;
        row.sector_id = next.sector_id;
        row.business_model = next.business_model as i32;
        row.country_code = next.country_code;
        row.founding_year = next.founding_year;
        row.updated_at = now_micros();
        self.state.store.update_company(&row).await?;
        Ok(UpdateCompanyResponse {
            company: Some(company_to_proto(row)),
        })
    }

    async fn list_companies(&self, request: Request<ListCompaniesRequest>) -> Result<ListCompaniesResponse, Status> {
        let caller = authorize(&request, &READERS, &[Scope::Read])?;
        let request = request.get_ref();
        let mut violations = Vec::new();
        let sector_id = request.sector_id.trim().to_owned();
        if !sector_id.is_empty() && reference::sector(&sector_id).is_none() {
            violations.push(FieldViolation::new("sector_id", "is not a sector; see ListSectors"));
        }
        if BusinessModel::try_from(request.business_model).is_err() {
            violations.push(FieldViolation::new("business_model", "is not a business model"));
        }
        let revenue_band_id = request.revenue_band_id.trim().to_owned();
        if !revenue_band_id.is_empty() && reference::revenue_band(&revenue_band_id).is_none() {
            violations.push(FieldViolation::new("revenue_band_id", "is not a revenue band"));
        }
        let country_code = request.country_code.trim().to_owned();
        if !country_code.is_empty() && !reference::is_country_code(&country_code) {
            violations.push(FieldViolation::new(
                "country_code",
                "is not an ISO 3166-1 alpha-2 code such as DE",
            ));
        }
        if !violations.is_empty() {
            return Err(MetricsError::from(violations).into());
        }
        let filter = CompanyFilter {
            sector_id,
            business_model: request.business_model,
            revenue_band_id,
            country_code,
        };
        let filters = format!(
            "companies|{}|{}|{}|{}|{}",
            caller.organization_id,
            filter.sector_id,
            filter.business_model,
            filter.revenue_band_id,
            filter.country_code
        );
        let (size, cursor) =
            page_token::page_request::<CompanyCursor>(request.page_size, &request.page_token, &filters, LIST_PAGE)
                .map_err(MetricsError::from)?;
        let rows = self
            .state
            .store
            .list_companies(&caller.organization_id, &filter, cursor.as_ref(), size + 1)
            .await?;
        let (rows, next_page_token) = page_token::paginate(rows, size, &filters, |row| CompanyCursor {
            name: row.name.clone(),
            company_id: row.company_id.clone(),
        });
        Ok(ListCompaniesResponse {
            companies: rows.into_iter().map(company_to_proto).collect(),
            next_page_token,
        })
    }

    async fn list_sectors(&self, request: Request<ListSectorsRequest>) -> Result<ListSectorsResponse, Status> {
        principal(&request)?;
        let request = request.get_ref();
        let (sectors, next_page_token) = static_page(
            &reference::SECTORS,
            |sector| sector.id,
            request.page_size,
            &request.page_token,
            "sectors",
        )?;
        Ok(ListSectorsResponse {
            sectors: sectors.iter().map(reference::SectorInfo::to_proto).collect(),
            next_page_token,
        })
    }

    async fn list_metric_definitions(
        &self,
        request: Request<ListMetricDefinitionsRequest>,
    ) -> Result<ListMetricDefinitionsResponse, Status> {
        principal(&request)?;
        let request = request.get_ref();
        let metric_ids = metric_filter("metric_ids", &request.metric_ids).map_err(MetricsError::from)?;
        let selected: Vec<&catalog::MetricSpec> = catalog::all()
            .iter()
            .filter(|spec| metric_ids.is_empty() || metric_ids.iter().any(|id| id == spec.id))
            .collect();
        let filters = format!("metric-definitions|{}", metric_ids.join(","));
        let (page, next_page_token) = static_page(
            &selected,
            |spec| spec.id,
            request.page_size,
            &request.page_token,
            &filters,
        )?;
        Ok(ListMetricDefinitionsResponse {
            metric_definitions: page.into_iter().map(catalog::MetricSpec::to_proto).collect(),
            next_page_token,
        })
    }

    async fn record_kpis(&self, request: Request<RecordKpisRequest>) -> Result<RecordKpisResponse, Status> {
        let caller = authorize(&request, &READERS, &[Scope::MetricsWrite])?.clone();
        let request = request.into_inner();
        if request.kpi_values.is_empty() {
            return Err(MetricsError::invalid("kpi_values", "must hold at least one value").into());
        }
        if request.kpi_values.len() > MAX_KPI_BATCH {
            return Err(MetricsError::invalid(
                "kpi_values",
                format!(
                    "holds {} values; at most {MAX_KPI_BATCH} per call",
                    request.kpi_values.len()
                ),
            )
            .into());
        }
        let mut violations = Vec::new();
        let mut values = Vec::with_capacity(request.kpi_values.len());
        let mut first_index_of_key: HashMap<(String, String, String), usize> = HashMap::new();
        for (index, kpi) in request.kpi_values.iter().enumerate() {
            let prefix = format!("kpi_values[{index}]");
            let before = violations.len();
            let company_id = required(&format!("{prefix}.company_id"), &kpi.company_id)
                .map_err(|violation| violations.push(violation))
                .ok();
            let record = validation::validate_record(&kpi.metric_id, &kpi.period, kpi.value)
                .map_err(|problems| {
                    violations.extend(
                        problems
                            .into_iter()
                            .map(|(field, description)| FieldViolation::new(format!("{prefix}.{field}"), description)),
                    );
                })
                .ok();
            let source = api_source(&format!("{prefix}.source"), kpi.source)
                .map_err(|violation| violations.push(violation))
                .ok();
            if kpi.note.chars().count() > MAX_NOTE_LENGTH {
                violations.push(FieldViolation::new(
                    format!("{prefix}.note"),
                    format!("must be at most {MAX_NOTE_LENGTH} characters"),
                ));
            }
            let (Some(company_id), Some((period, spec)), Some(source)) = (company_id, record, source) else {
                continue;
            };
            if violations.len() > before {
                continue;
            }
            let key = (company_id.clone(), spec.id.to_owned(), period.to_string());
            if let Some(first) = first_index_of_key.get(&key) {
                violations.push(FieldViolation::new(
                    prefix,
                    format!("repeats the company, metric and period of kpi_values[{first}]"),
                ));
                continue;
            }
            first_index_of_key.insert(key, index);
            values.push(NewKpi {
                company_id,
                metric_id: spec.id.to_owned(),
                period,
                value: kpi.value,
                source,
                note: kpi.note.clone(),
            });
        }
        let company_ids: BTreeSet<String> = values.iter().map(|value| value.company_id.clone()).collect();
        let known = self
            .state
            .store
            .companies_of(&caller.organization_id, &company_ids)
            .await?;
        for (index, kpi) in request.kpi_values.iter().enumerate() {
            let company_id = kpi.company_id.trim();
            if !company_id.is_empty() && company_ids.contains(company_id) && !known.contains(company_id) {
                violations.push(FieldViolation::new(
                    format!("kpi_values[{index}].company_id"),
                    "is not a company of your organisation",
                ));
            }
        }
        if !violations.is_empty() {
            return Err(MetricsError::from(violations).into());
        }
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

    async fn list_kpis(&self, request: Request<ListKpisRequest>) -> Result<ListKpisResponse, Status> {
        let caller = authorize(&request, &READERS, &[Scope::Read])?.clone();
        let request = request.into_inner();
        let mut violations = Vec::new();
        let metric_ids = metric_filter("metric_ids", &request.metric_ids)
            .map_err(|problems| violations.extend(problems))
            .unwrap_or_default();
        let granularity = granularity_filter("period_granularity", request.period_granularity)
            .map_err(|violation| violations.push(violation))
            .unwrap_or_default();
        let start_month = period_bound("start_period", &request.start_period, false)
            .map_err(|violation| violations.push(violation))
            .unwrap_or_default();
        let end_month = period_bound("end_period", &request.end_period, true)
            .map_err(|violation| violations.push(violation))
            .unwrap_or_default();
        if KpiSource::try_from(request.source).is_err() {
            violations.push(FieldViolation::new("source", "is not a KPI source"));
        }
        if !violations.is_empty() {
            return Err(MetricsError::from(violations).into());
        }
        let company_id = request.company_id.trim().to_owned();
        if !company_id.is_empty()
            && self
                .state
                .store
                .company(&caller.organization_id, &company_id)
                .await?
                .is_none()
        {
            return Err(MetricsError::NotFound("company").into());
        }
        let filter = KpiFilter {
            company_id,
            metric_ids,
            granularity,
            start_month,
            end_month,
            source: request.source,
            include_history: request.include_history,
        };
        let filters = format!(
            "kpis|{}|{}|{}|{}|{:?}|{:?}|{}|{}",
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

    async fn calculate_kpi(&self, request: Request<CalculateKpiRequest>) -> Result<CalculateKpiResponse, Status> {
        authorize(&request, &READERS, &[Scope::Read, Scope::MetricsWrite])?;
        let request = request.into_inner();
        let inputs: BTreeMap<String, f64> = request.inputs.into_iter().collect();
        let calculation = formulas::calculate(request.metric_id.trim(), &inputs)
            .map_err(|error| MetricsError::from(error.into_field_violations()))?;
        Ok(calculation.into_proto())
    }

    async fn validate_kpi(&self, request: Request<ValidateKpiRequest>) -> Result<ValidateKpiResponse, Status> {
        let caller = authorize(&request, &READERS, &[Scope::Read, Scope::MetricsWrite])?.clone();
        let request = request.into_inner();
        let Some(kpi) = request.kpi else {
            return Err(MetricsError::invalid("kpi", "is required").into());
        };
        if request.related_values.len() > MAX_RELATED_VALUES {
            return Err(MetricsError::invalid(
                "related_values",
                format!("holds more than {MAX_RELATED_VALUES} values"),
            )
            .into());
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
                return Err(MetricsError::NotFound("company").into());
            }
            if let Ok(period) = Period::parse(kpi.period.trim()) {
                related = self
                    .state
                    .store
                    .current_values_for_period(&caller.organization_id, company_id, &period.to_string())
                    .await?;
            }
        }
        let mut violations = Vec::new();
        for (index, value) in request.related_values.iter().enumerate() {
            if catalog::find(value.metric_id.trim()).is_none() {
                violations.push(FieldViolation::new(
                    format!("related_values[{index}].metric_id"),
                    "is not a metric; see ListMetricDefinitions",
                ));
                continue;
            }
            if !value.period.trim().is_empty() && value.period.trim() != kpi.period.trim() {
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
        if !violations.is_empty() {
            return Err(MetricsError::from(violations).into());
        }
        let candidate = KpiCandidate {
            metric_id: kpi.metric_id.trim().to_owned(),
            period: kpi.period.trim().to_owned(),
            value: kpi.value,
        };
        Ok(validation::validate(&candidate, &related).into_proto())
    }

    async fn import_kpis(&self, request: Request<ImportKpisRequest>) -> Result<ImportKpisResponse, Status> {
        let caller = authorize(&request, &IMPORTERS, &[Scope::MetricsWrite])?.clone();
        let request = request.into_inner();
        let request_company_id = request.company_id.trim().to_owned();
        if !request_company_id.is_empty()
            && self
                .state
                .store
                .company(&caller.organization_id, &request_company_id)
                .await?
                .is_none()
        {
            return Err(MetricsError::NotFound("company").into());
        }
        let mut parsed = import::parse(&request.csv_content, &request_company_id).map_err(MetricsError::from)?;
        // Rows naming companies outside the organisation are rejected like any bad row.
        let named: BTreeSet<String> = parsed.accepted.iter().map(|row| row.company_id.clone()).collect();
        let known = self.state.store.companies_of(&caller.organization_id, &named).await?;
        let (accepted, foreign): (Vec<_>, Vec<_>) = parsed
            .accepted
            .drain(..)
            .partition(|row| known.contains(&row.company_id));
        parsed.accepted = accepted;
        parsed.rejected.extend(foreign.into_iter().map(|row| import::RowIssue {
            line_number: row.line_number,
            column: "company_id".to_owned(),
            reason: "is not a company of your organisation".to_owned(),
        }));
        parsed.rejected.sort_by_key(|issue| issue.line_number);

        let warnings = import_warnings(&parsed.accepted);
        let values: Vec<NewKpi> = parsed
            .accepted
            .iter()
            .map(|row| NewKpi {
                company_id: row.company_id.clone(),
                metric_id: row.metric_id.clone(),
                period: row.period,
                value: row.value,
                source: KpiSource::CsvImport as i32,
                note: row.note.clone(),
            })
            .collect();
        let (mut created, mut updated, mut unchanged) = (0, 0, 0);
        if !request.dry_run && !values.is_empty() {
            let recorded = self
                .state
                .store
                .record_kpis(&caller.organization_id, &caller.subject, now_micros(), &values)
                .await?;
            announce_kpi_changes(self.state.pubsub.as_ref(), &recorded).await;
            for (_, outcome) in recorded {
                match outcome {
                    RecordOutcome::Created => created += 1,
                    RecordOutcome::Updated => updated += 1,
                    RecordOutcome::Unchanged => unchanged += 1,
                }
            }
        }
        tracing::info!(
            organization_id = %caller.organization_id,
            rows = parsed.total_rows,
            accepted = parsed.accepted.len(),
            rejected = parsed.rejected.len(),
            dry_run = request.dry_run,
            "kpi import"
        );
        Ok(ImportKpisResponse {
            total_row_count: parsed.total_rows as i64,
            accepted_row_count: parsed.accepted.len() as i64,
            rejected_row_count: parsed.rejected.len() as i64,
            created_count: created,
            updated_count: updated,
            unchanged_count: unchanged,
            rejected_rows: parsed.rejected.into_iter().map(row_issue_to_proto).collect(),
            warnings: warnings.into_iter().map(row_issue_to_proto).collect(),
            dry_run: request.dry_run,
        })
    }

    /// What the edge says about the caller, and the retention cut-off.
    fn arrival<T>(&self, request: &Request<T>) -> Arrival {
        let client = client_info(request, &self.state.trusted_proxies);
        let received_at = now_micros();
        Arrival {
            received_at,
            user_agent: client.user_agent,
            ip: client.ip.map(|ip| ip.to_string()).unwrap_or_default(),
            oldest_retained: received_at - duration_micros(self.state.event_retention),
        }
    }

    async fn track_event(&self, request: Request<TrackEventRequest>) -> Result<TrackEventResponse, Status> {
        let caller = authorize(&request, &READERS, &[Scope::EventsWrite])?.clone();
        let arrival = self.arrival(&request);
        let request = request.into_inner();
        let Some(event) = request.event else {
            return Err(MetricsError::invalid("event", "is required").into());
        };
        let parsed = parse_event(&event, &arrival).map_err(|problems| {
            MetricsError::from(
                problems
                    .into_iter()
                    .map(|(field, reason)| FieldViolation::new(format!("event.{field}"), reason))
                    .collect::<Vec<_>>(),
            )
        })?;
        let status = if request.asynchronous {
            crate::ingest::enqueue(
                self.state.work_streams.as_ref(),
                self.state.queue.max_depth,
                &caller.organization_id,
                std::slice::from_ref(&parsed),
            )
            .await?;
            TrackEventStatus::Queued
        } else if crate::ingest::store_and_announce(&self.state, &caller.organization_id, std::slice::from_ref(&parsed))
            .await?
            .contains(&parsed.event_id)
        {
            TrackEventStatus::Accepted
        } else {
            TrackEventStatus::Duplicate
        };
        Ok(TrackEventResponse {
            event_id: parsed.event_id,
            status: status as i32,
            session_id: parsed.session_id,
            received_at: Some(timestamp(arrival.received_at)),
        })
    }

    async fn track_events(&self, request: Request<TrackEventsRequest>) -> Result<TrackEventsResponse, Status> {
        let caller = authorize(&request, &READERS, &[Scope::EventsWrite])?.clone();
        let arrival = self.arrival(&request);
        let encoded_length = request.get_ref().encoded_len();
        let request = request.into_inner();
        if encoded_length > crate::events::MAX_BATCH_BYTES {
            return Err(metrix_core::error::status(
                metrix_core::error::ErrorKind::ResourceExhausted,
                format!(
                    "the batch is {encoded_length} bytes; at most {} bytes per call",
                    crate::events::MAX_BATCH_BYTES
                ),
            ));
        }
        if request.events.is_empty() {
            return Err(MetricsError::invalid("events", "must hold at least one event").into());
        }
        if request.events.len() > crate::events::MAX_BATCH_EVENTS {
            return Err(MetricsError::invalid(
                "events",
                format!(
                    "holds {} events; at most {} per call",
                    request.events.len(),
                    crate::events::MAX_BATCH_EVENTS
                ),
            )
            .into());
        }
        let mut results: Vec<TrackEventResult> = Vec::with_capacity(request.events.len());
        let mut to_store: Vec<NewEvent> = Vec::new();
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (index, event) in request.events.iter().enumerate() {
            let index_number = i32::try_from(index).expect("a batch holds at most 1,000 events");
            match parse_event(event, &arrival) {
                Err(problems) => {
                    let (field, reason) = problems.into_iter().next().unwrap_or_default();
                    results.push(TrackEventResult {
                        index: index_number,
                        event_id: event.event_id.trim().to_owned(),
                        status: TrackEventStatus::Rejected as i32,
                        reason,
                        field,
                        session_id: String::new(),
                    });
                }
                Ok(parsed) => {
                    let status = if seen.contains_key(&parsed.event_id) {
                        TrackEventStatus::Duplicate
                    } else {
                        seen.insert(parsed.event_id.clone(), index);
                        to_store.push(parsed.clone());
                        // Settled once the batch is stored.
                        TrackEventStatus::Unspecified
                    };
                    results.push(TrackEventResult {
                        index: index_number,
                        event_id: parsed.event_id,
                        status: status as i32,
                        reason: String::new(),
                        field: String::new(),
                        session_id: parsed.session_id,
                    });
                }
            }
        }
        if request.asynchronous {
            crate::ingest::enqueue(
                self.state.work_streams.as_ref(),
                self.state.queue.max_depth,
                &caller.organization_id,
                &to_store,
            )
            .await?;
        }
        let inserted = if request.asynchronous {
            BTreeSet::new()
        } else {
            crate::ingest::store_and_announce(&self.state, &caller.organization_id, &to_store).await?
        };
        for result in &mut results {
            if result.status == TrackEventStatus::Unspecified as i32 {
                result.status = if request.asynchronous {
                    TrackEventStatus::Queued as i32
                } else if inserted.contains(&result.event_id) {
                    TrackEventStatus::Accepted as i32
                } else {
                    TrackEventStatus::Duplicate as i32
                };
            }
        }
        let count =
            |wanted: TrackEventStatus| results.iter().filter(|result| result.status == wanted as i32).count() as i64;
        let rejected_count = count(TrackEventStatus::Rejected);
        let duplicate_count = count(TrackEventStatus::Duplicate);
        Ok(TrackEventsResponse {
            accepted_count: results.len() as i64 - rejected_count,
            rejected_count,
            duplicate_count,
            results,
            received_at: Some(timestamp(arrival.received_at)),
        })
    }

    async fn get_event(&self, request: Request<GetEventRequest>) -> Result<GetEventResponse, Status> {
        let caller = authorize(&request, &READERS, &[Scope::Read])?;
        let event_id = required("event_id", &request.get_ref().event_id).map_err(MetricsError::from)?;
        let event = self
            .state
            .store
            .event(&caller.organization_id, &event_id)
            .await?
            .ok_or(MetricsError::NotFound("event"))?;
        Ok(GetEventResponse {
            event: Some(event_to_proto(&event, &caller.organization_id)),
        })
    }

    async fn list_events(&self, request: Request<ListEventsRequest>) -> Result<ListEventsResponse, Status> {
        let caller = authorize(&request, &READERS, &[Scope::Read])?;
        let request = request.get_ref();
        let selection = EventSelection::parse("filter", request.filter.as_ref()).map_err(MetricsError::from)?;
        let filters = format!("events|{}|{}", caller.organization_id, selection.fingerprint());
        let (size, cursor) =
            page_token::page_request::<EventCursor>(request.page_size, &request.page_token, &filters, LIST_PAGE)
                .map_err(MetricsError::from)?;
        let events = self
            .state
            .store
            .list_events(
                &caller.organization_id,
                &selection,
                cursor.as_ref(),
                size + 1,
                EventOrder::NewestFirst,
            )
            .await?;
        let (events, next_page_token) = page_token::paginate(events, size, &filters, |event| EventCursor {
            occurred_at: event.occurred_at,
            event_id: event.event_id.clone(),
        });
        Ok(ListEventsResponse {
            events: events
                .iter()
                .map(|event| event_to_proto(event, &caller.organization_id))
                .collect(),
            next_page_token,
        })
    }

    async fn count_events(&self, request: Request<CountEventsRequest>) -> Result<CountEventsResponse, Status> {
        let caller = authorize(&request, &READERS, &[Scope::Read])?;
        let selection =
            EventSelection::parse("filter", request.get_ref().filter.as_ref()).map_err(MetricsError::from)?;
        let counts = self
            .state
            .store
            .count_events(&caller.organization_id, &selection)
            .await?;
        Ok(CountEventsResponse {
            total_count: counts.iter().map(|(_, count)| count).sum(),
            counts_by_type: counts
                .into_iter()
                .map(|(event_type, count)| EventTypeCount { event_type, count })
                .collect(),
        })
    }

    async fn get_dashboard(&self, request: Request<GetDashboardRequest>) -> Result<GetDashboardResponse, Status> {
        let caller = authorize(&request, &READERS, &[Scope::Read])?;
        let request = request.get_ref();
        let now = now_micros();
        let window = dashboard::resolve_window(request.range_preset, request.custom_range.as_ref(), now)
            .map_err(MetricsError::from)?;
        let dashboard = dashboard::compute(
            &self.state.store,
            &caller.organization_id,
            request.app_id.trim(),
            window,
            now,
        )
        .await?;
        Ok(GetDashboardResponse {
            dashboard: Some(dashboard),
        })
    }

    async fn watch_dashboard(
        &self,
        request: Request<WatchDashboardRequest>,
    ) -> Result<ResponseStream<WatchDashboardResponse>, Status> {
        let caller = authorize(&request, &READERS, &[Scope::Read])?.clone();
        let lease = crate::streams::admit(&request, &caller).await?;
        let request = request.into_inner();
        // Validate once up front so a bad request fails the call, not the stream.
        dashboard::resolve_window(request.range_preset, request.custom_range.as_ref(), now_micros())
            .map_err(MetricsError::from)?;
        let mut announcements = self
            .state
            .pubsub
            .subscribe(&events_channel(&caller.organization_id))
            .await
            .map_err(|error| metrix_core::error::unavailable("cannot subscribe to events", &error))?;
        let (sender, receiver) = tokio::sync::mpsc::channel(4);
        let store = self.state.store.clone();
        tokio::spawn(async move {
            use futures::StreamExt as _;
            let app_id = request.app_id.trim().to_owned();
            let compute = || async {
                let now = now_micros();
                let window = dashboard::resolve_window(request.range_preset, request.custom_range.as_ref(), now)
                    .map_err(MetricsError::from)?;
                dashboard::compute(&store, &caller.organization_id, &app_id, window, now).await
            };
            let mut refresh = tokio::time::interval(DASHBOARD_REFRESH);
            refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut dirty = true;
            let mut last_sent: Option<tokio::time::Instant> = None;
            loop {
                if dirty {
                    // Debounce: at most one dashboard per DASHBOARD_DEBOUNCE.
                    if let Some(sent) = last_sent {
                        tokio::time::sleep_until(sent + DASHBOARD_DEBOUNCE).await;
                    }
                    let message = compute()
                        .await
                        .map(|dashboard| WatchDashboardResponse {
                            dashboard: Some(dashboard),
                        })
                        .map_err(Status::from);
                    if sender.send(message).await.is_err() {
                        return;
                    }
                    last_sent = Some(tokio::time::Instant::now());
                    refresh.reset();
                    dirty = false;
                }
                tokio::select! {
                    () = sender.closed() => return,
                    _ = refresh.tick() => dirty = true,
                    announcement = announcements.next() => match announcement {
                        Some(payload) => {
                            dirty |= crate::ingest::noticed_events(&payload)
                                .iter()
                                .any(|(noticed_app, _)| app_id.is_empty() || *noticed_app == app_id);
                        }
                        None => return,
                    },
                }
            }
        });
        Ok(lease.bound(tokio_stream::wrappers::ReceiverStream::new(receiver)))
    }

    async fn watch_events(
        &self,
        request: Request<WatchEventsRequest>,
    ) -> Result<ResponseStream<WatchEventsResponse>, Status> {
        let caller = authorize(&request, &READERS, &[Scope::Read])?.clone();
        let selection =
            EventSelection::parse("filter", request.get_ref().filter.as_ref()).map_err(MetricsError::from)?;
        let lease = crate::streams::admit(&request, &caller).await?;
        let mut announcements = self
            .state
            .pubsub
            .subscribe(&events_channel(&caller.organization_id))
            .await
            .map_err(|error| metrix_core::error::unavailable("cannot subscribe to events", &error))?;
        let (sender, receiver) = tokio::sync::mpsc::channel::<Result<WatchEventsResponse, Status>>(WATCH_BUFFER);
        let store = self.state.store.clone();
        let organization_id = caller.organization_id.clone();
        tokio::spawn(async move {
            use futures::StreamExt as _;
            let mut skipped: i64 = 0;
            loop {
                tokio::select! {
                    () = sender.closed() => return,
                    announcement = announcements.next() => {
                        let Some(payload) = announcement else { return };
                        let ids: Vec<String> = crate::ingest::noticed_events(&payload)
                            .into_iter()
                            .filter(|(app_id, _)| selection.app_id.is_empty() || selection.app_id == *app_id)
                            .map(|(_, event_id)| event_id)
                            .collect();
                        if ids.is_empty() {
                            continue;
                        }
                        let stored = match store.events_by_ids(&organization_id, &ids).await {
                            Ok(stored) => stored,
                            Err(error) => {
                                tracing::warn!(error = %metrix_core::error::error_chain(&error), "cannot read announced events");
                                continue;
                            }
                        };
                        let events = stored
                            .iter()
                            .map(|event| event_to_proto(event, &organization_id))
                            .filter(|event| selection.matches_live(event));
                        for event in events {
                            let message = WatchEventsResponse { event: Some(event), skipped_count: skipped };
                            match sender.try_send(Ok(message)) {
                                Ok(()) => skipped = 0,
                                // A slow reader loses events from the stream, not from storage.
                                Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => skipped += 1,
                                Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => return,
                            }
                        }
                    }
                }
            }
        });
        Ok(lease.bound(tokio_stream::wrappers::ReceiverStream::new(receiver)))
    }

    async fn export_events(
        &self,
        request: Request<ExportEventsRequest>,
    ) -> Result<ResponseStream<ExportEventsResponse>, Status> {
        let caller = authorize(&request, &READERS, &[Scope::Read])?.clone();
        let lease = crate::streams::admit(&request, &caller).await?;
        let request = request.into_inner();
        let selection = EventSelection::parse("filter", request.filter.as_ref()).map_err(MetricsError::from)?;
        let format = match ExportFormat::try_from(request.format) {
            Ok(ExportFormat::Unspecified | ExportFormat::Csv) => crate::export::Format::Csv,
            Ok(ExportFormat::Ndjson) => crate::export::Format::Ndjson,
            Err(_) => return Err(MetricsError::invalid("format", "is not an export format").into()),
        };
        let stream = crate::export::export_stream(
            self.state.store.clone(),
            caller.organization_id.clone(),
            selection,
            format,
        );
        Ok(lease.bound(stream))
    }

    async fn record_data_points(
        &self,
        request: Request<RecordDataPointsRequest>,
    ) -> Result<RecordDataPointsResponse, Status> {
        let caller = authorize(&request, &READERS, &[Scope::MetricsWrite])?.clone();
        let encoded_length = request.get_ref().encoded_len();
        let request = request.into_inner();
        if encoded_length > crate::events::MAX_BATCH_BYTES {
            return Err(metrix_core::error::status(
                metrix_core::error::ErrorKind::ResourceExhausted,
                format!(
                    "the batch is {encoded_length} bytes; at most {} bytes per call",
                    crate::events::MAX_BATCH_BYTES
                ),
            ));
        }
        if request.data_points.is_empty() || request.data_points.len() > crate::data_points::MAX_BATCH_POINTS {
            return Err(MetricsError::invalid(
                "data_points",
                format!("must hold 1 to {} points", crate::data_points::MAX_BATCH_POINTS),
            )
            .into());
        }
        let now = now_micros();
        let mut violations = Vec::new();
        let mut points = Vec::with_capacity(request.data_points.len());
        for (index, point) in request.data_points.iter().enumerate() {
            match crate::data_points::parse_point(&format!("data_points[{index}]"), point, now) {
                Ok(parsed) => points.push(parsed),
                Err(problems) => violations.extend(problems),
            }
        }
        if !violations.is_empty() {
            return Err(MetricsError::from(violations).into());
        }
        self.state
            .store
            .insert_data_points(&caller.organization_id, &points, now)
            .await?;
        Ok(RecordDataPointsResponse {
            accepted_count: points.len() as i64,
        })
    }

    async fn query_data_points(
        &self,
        request: Request<QueryDataPointsRequest>,
    ) -> Result<QueryDataPointsResponse, Status> {
        let caller = authorize(&request, &READERS, &[Scope::Read])?;
        let query = crate::data_points::parse_query(request.get_ref(), now_micros()).map_err(MetricsError::from)?;
        let series_type = match query.point_type {
            DataPointType::Unspecified => self
                .state
                .store
                .series_type(&caller.organization_id, &query.name)
                .await?
                .unwrap_or(DataPointType::Gauge),
            known => known,
        };
        let aggregation = crate::data_points::resolve_aggregation(query.aggregation, series_type);
        let buckets = self
            .state
            .store
            .aggregate_data_points(&caller.organization_id, &query, aggregation)
            .await?;
        Ok(QueryDataPointsResponse {
            buckets: buckets
                .into_iter()
                .map(|(start, value, count)| DataPointBucket {
                    start_time: Some(timestamp(start)),
                    end_time: Some(timestamp(query.bucket_end(start))),
                    value,
                    count,
                })
                .collect(),
            aggregation: aggregation as i32,
            time_range: Some(metrix_proto::common::v1::TimeRange {
                start_time: Some(timestamp(query.start)),
                end_time: Some(timestamp(query.end)),
            }),
        })
    }

    async fn list_peer_values(
        &self,
        request: Request<ListPeerValuesRequest>,
    ) -> Result<ResponseStream<ListPeerValuesResponse>, Status> {
        principal(&request)?.require_platform_scope(Scope::PeersRead)?;
        let request = request.into_inner();
        let mut violations = Vec::new();
        let metric_ids = metric_filter("metric_ids", &request.metric_ids)
            .map_err(|problems| violations.extend(problems))
            .unwrap_or_default();
        let sector_id = request.sector_id.trim().to_owned();
        if !sector_id.is_empty() && reference::sector(&sector_id).is_none() {
            violations.push(FieldViolation::new("sector_id", "is not a sector"));
        }
        let revenue_band_id = request.revenue_band_id.trim().to_owned();
        if !revenue_band_id.is_empty() && reference::revenue_band(&revenue_band_id).is_none() {
            violations.push(FieldViolation::new("revenue_band_id", "is not a revenue band"));
        }
        let granularity = granularity_filter("period_granularity", request.period_granularity)
            .map_err(|violation| violations.push(violation))
            .unwrap_or_default();
        let start_month = period_bound("start_period", &request.start_period, false)
            .map_err(|violation| violations.push(violation))
            .unwrap_or_default();
        let end_month = period_bound("end_period", &request.end_period, true)
            .map_err(|violation| violations.push(violation))
            .unwrap_or_default();
        if !violations.is_empty() {
            return Err(MetricsError::from(violations).into());
        }
        let mut exclude_company_ids: Vec<String> = request
            .exclude_company_ids
            .iter()
            .map(|id| id.trim().to_owned())
            .filter(|id| !id.is_empty())
            .collect();
        exclude_company_ids.sort();
        exclude_company_ids.dedup();
        let mut exclude_organization_ids: Vec<String> = request
            .exclude_organization_ids
            .iter()
            .map(|id| id.trim().to_owned())
            .filter(|id| !id.is_empty())
            .collect();
        exclude_organization_ids.sort();
        exclude_organization_ids.dedup();
        let filter = PeerFilter {
            metric_ids,
            sector_id,
            revenue_band_id,
            granularity,
            start_month,
            end_month,
            exclude_company_ids,
            exclude_organization_ids,
        };
        let filters = format!(
            "peers|{}|{}|{}|{}|{:?}|{:?}|{}|{}",
            filter.metric_ids.join(","),
            filter.sector_id,
            filter.revenue_band_id,
            filter.granularity,
            filter.start_month,
            filter.end_month,
            filter.exclude_company_ids.join(","),
            filter.exclude_organization_ids.join(",")
        );
        let (page_size, cursor) =
            page_token::page_request::<PeerCursor>(request.page_size, &request.page_token, &filters, PEER_PAGE)
                .map_err(MetricsError::from)?;
        let store = self.state.store.clone();
        let stream = peer_value_stream(
            store,
            self.state.peer_key_secret.clone(),
            filter,
            filters,
            cursor,
            page_size,
        );
        Ok(Box::pin(stream))
    }
}

/// Streams one page of peer values in messages of up to 1,000, reading the
/// store a message at a time so memory stays flat however large the page.
fn peer_value_stream(
    store: MetricsStore,
    secret: SecretString,
    filter: PeerFilter,
    filters: String,
    first_cursor: Option<PeerCursor>,
    page_size: u32,
) -> impl Stream<Item = Result<ListPeerValuesResponse, Status>> + Send {
    struct Progress {
        cursor: Option<PeerCursor>,
        delivered: u32,
        finished: bool,
    }
    let progress = Progress {
        cursor: first_cursor,
        delivered: 0,
        finished: false,
    };
    futures::stream::unfold(progress, move |mut progress| {
        let store = store.clone();
        let secret = secret.clone();
        let filter = filter.clone();
        let filters = filters.clone();
        async move {
            if progress.finished {
                return None;
            }
            let remaining = page_size - progress.delivered;
            let wanted = remaining.min(PEER_MESSAGE_SIZE);
            // One more than wanted tells whether anything follows.
            let mut rows = match store.peer_values(&filter, progress.cursor.as_ref(), wanted + 1).await {
                Ok(rows) => rows,
                Err(error) => {
                    progress.finished = true;
                    return Some((Err(Status::from(error)), progress));
                }
            };
            let more = rows.len() > wanted as usize;
            rows.truncate(wanted as usize);
            progress.delivered += rows.len() as u32;
            progress.cursor = rows.last().map(|last| PeerCursor {
                metric_id: last.metric_id.clone(),
                period: last.period.clone(),
                peer_key: last.peer_key.clone(),
            });
            let page_full = progress.delivered >= page_size;
            let next_page_token = match (&progress.cursor, more && page_full) {
                (Some(cursor), true) => page_token::encode(cursor, &filters),
                _ => String::new(),
            };
            progress.finished = !more || page_full;
            let message = ListPeerValuesResponse {
                peer_values: rows
                    .into_iter()
                    .map(|row| PeerValue {
                        value: crate::peer_noise::perturb(&secret, &row.company_id, &row.metric_id, row.value),
                        organization_key: crate::peer_noise::organization_key(&secret, &row.organization_id),
                        metric_id: row.metric_id,
                        sector_id: row.sector_id,
                        revenue_band_id: row.revenue_band_id,
                        period: row.period,
                        peer_key: row.peer_key,
                    })
                    .collect(),
                next_page_token,
            };
            Some((Ok(message), progress))
        }
    })
}

/// Warnings of the accepted rows of an import, checked against the other
/// rows of the same company and period in the file.
fn import_warnings(rows: &[import::ImportRow]) -> Vec<import::RowIssue> {
    let mut related: HashMap<(String, String), validation::RelatedValues> = HashMap::new();
    for row in rows {
        related
            .entry((row.company_id.clone(), row.period.to_string()))
            .or_default()
            .insert(row.metric_id.clone(), row.value);
    }
    let mut warnings = Vec::new();
    for row in rows {
        let period = row.period.to_string();
        let candidate = KpiCandidate {
            metric_id: row.metric_id.clone(),
            period: period.clone(),
            value: row.value,
        };
        let empty = validation::RelatedValues::new();
        let same_period = related.get(&(row.company_id.clone(), period)).unwrap_or(&empty);
        let report = validation::validate(&candidate, same_period);
        let mut reasons: Vec<String> = report
            .violations
            .iter()
            .map(|violation| violation.description.clone())
            .collect();
        reasons.extend(
            report
                .cross_metric_checks
                .iter()
                .filter(|check| check.evaluated && check.status != ValidationStatus::Valid)
                .map(|check| check.description.clone()),
        );
        if !reasons.is_empty() {
            warnings.push(import::RowIssue {
                line_number: row.line_number,
                column: "value".to_owned(),
                reason: reasons.join("; "),
            });
        }
    }
    warnings
}

fn row_issue_to_proto(issue: import::RowIssue) -> ImportRowIssue {
    ImportRowIssue {
        line_number: issue.line_number,
        column: issue.column,
        reason: issue.reason,
    }
}

#[tonic::async_trait]
impl MetricsService for MetricsApi {
    type ExportEventsStream = ResponseStream<ExportEventsResponse>;
    type WatchEventsStream = ResponseStream<WatchEventsResponse>;
    type WatchDashboardStream = ResponseStream<WatchDashboardResponse>;
    type ListPeerValuesStream = ResponseStream<ListPeerValuesResponse>;

    async fn create_company(
        &self,
        request: Request<CreateCompanyRequest>,
    ) -> Result<Response<CreateCompanyResponse>, Status> {
        answer(MetricsApi::create_company(self, request).await)
    }
    async fn get_company(&self, request: Request<GetCompanyRequest>) -> Result<Response<GetCompanyResponse>, Status> {
        answer(MetricsApi::get_company(self, request).await)
    }
    async fn update_company(
        &self,
        request: Request<UpdateCompanyRequest>,
    ) -> Result<Response<UpdateCompanyResponse>, Status> {
        answer(MetricsApi::update_company(self, request).await)
    }
    async fn list_companies(
        &self,
        request: Request<ListCompaniesRequest>,
    ) -> Result<Response<ListCompaniesResponse>, Status> {
        answer(MetricsApi::list_companies(self, request).await)
    }
    async fn list_sectors(
        &self,
        request: Request<ListSectorsRequest>,
    ) -> Result<Response<ListSectorsResponse>, Status> {
        answer(MetricsApi::list_sectors(self, request).await)
    }
    async fn list_metric_definitions(
        &self,
        request: Request<ListMetricDefinitionsRequest>,
    ) -> Result<Response<ListMetricDefinitionsResponse>, Status> {
        answer(MetricsApi::list_metric_definitions(self, request).await)
    }
    async fn record_kpis(&self, request: Request<RecordKpisRequest>) -> Result<Response<RecordKpisResponse>, Status> {
        answer(MetricsApi::record_kpis(self, request).await)
    }
    async fn list_kpis(&self, request: Request<ListKpisRequest>) -> Result<Response<ListKpisResponse>, Status> {
        answer(MetricsApi::list_kpis(self, request).await)
    }
    async fn calculate_kpi(
        &self,
        request: Request<CalculateKpiRequest>,
    ) -> Result<Response<CalculateKpiResponse>, Status> {
        answer(MetricsApi::calculate_kpi(self, request).await)
    }
    async fn validate_kpi(
        &self,
        request: Request<ValidateKpiRequest>,
    ) -> Result<Response<ValidateKpiResponse>, Status> {
        answer(MetricsApi::validate_kpi(self, request).await)
    }
    async fn import_kpis(&self, request: Request<ImportKpisRequest>) -> Result<Response<ImportKpisResponse>, Status> {
        answer(MetricsApi::import_kpis(self, request).await)
    }
    async fn track_event(&self, request: Request<TrackEventRequest>) -> Result<Response<TrackEventResponse>, Status> {
        answer(MetricsApi::track_event(self, request).await)
    }
    async fn track_events(
        &self,
        request: Request<TrackEventsRequest>,
    ) -> Result<Response<TrackEventsResponse>, Status> {
        answer(MetricsApi::track_events(self, request).await)
    }
    async fn get_event(&self, request: Request<GetEventRequest>) -> Result<Response<GetEventResponse>, Status> {
        answer(MetricsApi::get_event(self, request).await)
    }
    async fn list_events(&self, request: Request<ListEventsRequest>) -> Result<Response<ListEventsResponse>, Status> {
        answer(MetricsApi::list_events(self, request).await)
    }
    async fn count_events(
        &self,
        request: Request<CountEventsRequest>,
    ) -> Result<Response<CountEventsResponse>, Status> {
        answer(MetricsApi::count_events(self, request).await)
    }
    async fn export_events(
        &self,
        request: Request<ExportEventsRequest>,
    ) -> Result<Response<Self::ExportEventsStream>, Status> {
        answer(MetricsApi::export_events(self, request).await)
    }
    async fn watch_events(
        &self,
        request: Request<WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        answer(MetricsApi::watch_events(self, request).await)
    }
    async fn record_data_points(
        &self,
        request: Request<RecordDataPointsRequest>,
    ) -> Result<Response<RecordDataPointsResponse>, Status> {
        answer(MetricsApi::record_data_points(self, request).await)
    }
    async fn query_data_points(
        &self,
        request: Request<QueryDataPointsRequest>,
    ) -> Result<Response<QueryDataPointsResponse>, Status> {
        answer(MetricsApi::query_data_points(self, request).await)
    }
    async fn get_dashboard(
        &self,
        request: Request<GetDashboardRequest>,
    ) -> Result<Response<GetDashboardResponse>, Status> {
        answer(MetricsApi::get_dashboard(self, request).await)
    }
    async fn watch_dashboard(
        &self,
        request: Request<WatchDashboardRequest>,
    ) -> Result<Response<Self::WatchDashboardStream>, Status> {
        answer(MetricsApi::watch_dashboard(self, request).await)
    }
    async fn list_peer_values(
        &self,
        request: Request<ListPeerValuesRequest>,
    ) -> Result<Response<Self::ListPeerValuesStream>, Status> {
        answer(MetricsApi::list_peer_values(self, request).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_keys_are_stable_keyed_and_opaque() {
        let secret = SecretString::from("0123456789abcdef0123456789abcdef");
        let other_secret = SecretString::from("fedcba9876543210fedcba9876543210");
        let key = peer_key(&secret, "company-1");
        assert_eq!(key, peer_key(&secret, "company-1"));
        assert_ne!(key, peer_key(&secret, "company-2"));
        assert_ne!(key, peer_key(&other_secret, "company-1"));
        assert_eq!(key.len(), 22);
        assert!(!key.contains("company"));
    }

    #[test]
    fn api_sources_exclude_server_set_ones() {
        assert_eq!(api_source("source", 0), Ok(KpiSource::Api as i32));
        assert_eq!(
            api_source("source", KpiSource::Manual as i32),
            Ok(KpiSource::Manual as i32)
        );
        assert!(api_source("source", KpiSource::CsvImport as i32).is_err());
        assert!(api_source("source", KpiSource::Demo as i32).is_err());
        assert!(api_source("source", 99).is_err());
    }

    #[test]
    fn static_pages_walk_the_whole_list() {
        let items: Vec<String> = (0..25).map(|index| format!("item-{index:02}")).collect();
        let mut seen = Vec::new();
        let mut token = String::new();
        loop {
            let (page, next) = static_page(&items, String::as_str, 10, &token, "test").expect("page");
            seen.extend(page);
            if next.is_empty() {
                break;
            }
            token = next;
        }
        assert_eq!(seen, items);
        assert!(static_page(&items, String::as_str, 10, "garbage", "test").is_err());
    }
}
