//! The gRPC face of the metrics service: requests are parsed into domain
//! types here, permissions are checked here, and errors become statuses
//! here. Handlers live with their section of the contract (`companies`,
//! `kpis`, `kpi_imports`, `events`, `profiles`, `dashboard`, `data_points`, `peers`;
//! `tracking`, the Segment-compatible `TrackingService`); this module holds
//! what they share and the `MetricsService` table that routes each RPC to its
//! handler.
//! Nothing below it (`app`, `store`, the domain modules) knows gRPC.

mod companies;
mod dashboard;
mod data_points;
mod events;
mod kpi_imports;
mod kpis;
mod peers;
mod profiles;
mod tracking;

pub use self::tracking::TrackingApi;

use std::collections::BTreeSet;
use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use metrix_core::authn::{Principal, Role, Scope, principal};
use metrix_core::error::FieldViolation;
use metrix_core::page_token::PageLimits;
use metrix_core::server::answer;
use metrix_proto::metrics::v1::metrics_service_server::MetricsService;
use metrix_proto::metrics::v1::*;
use tonic::{Request, Response, Status};

use crate::app::MetricsState;
use crate::catalog;
use crate::period::Period;

/// Roles that may read an organisation's data.
const READERS: [Role; 3] = [Role::CompanyUser, Role::Analyst, Role::Admin];
/// Roles that may change companies.
const ADMINS: [Role; 1] = [Role::Admin];
/// Page sizes of the list RPCs.
const LIST_PAGE: PageLimits = PageLimits {
    default: 100,
    maximum: 1_000,
};

/// The `MetricsService` implementation.
#[derive(Clone)]
pub struct MetricsApi {
    state: Arc<MetricsState>,
}

/// A server stream of the service.
type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

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
fn granularity_filter(field: &str, value: i32) -> Result<Option<PeriodGranularity>, FieldViolation> {
    match PeriodGranularity::try_from(value) {
        Ok(PeriodGranularity::Unspecified) => Ok(None),
        Ok(granularity) => Ok(Some(granularity)),
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

impl MetricsApi {
    /// Handlers over `state`.
    pub fn new(state: Arc<MetricsState>) -> Self {
        Self { state }
    }

    /// When a request names a company (`company_id` not empty), that it is
    /// one of the caller's organisation; another's is NOT_FOUND.
    async fn require_company_if_named(
        &self,
        organization_id: &str,
        company_id: &str,
    ) -> Result<(), crate::error::MetricsError> {
        if !company_id.is_empty() && self.state.store.company(organization_id, company_id).await?.is_none() {
            return Err(crate::error::MetricsError::NotFound("company"));
        }
        Ok(())
    }

    /// The shared state.
    fn state(&self) -> &Arc<MetricsState> {
        &self.state
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
    async fn get_user_profile(
        &self,
        request: Request<GetUserProfileRequest>,
    ) -> Result<Response<GetUserProfileResponse>, Status> {
        answer(MetricsApi::get_user_profile(self, request).await)
    }
    async fn list_user_profiles(
        &self,
        request: Request<ListUserProfilesRequest>,
    ) -> Result<Response<ListUserProfilesResponse>, Status> {
        answer(MetricsApi::list_user_profiles(self, request).await)
    }
    async fn list_user_profile_events(
        &self,
        request: Request<ListUserProfileEventsRequest>,
    ) -> Result<Response<ListUserProfileEventsResponse>, Status> {
        answer(MetricsApi::list_user_profile_events(self, request).await)
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
    async fn list_data_point_series(
        &self,
        request: Request<ListDataPointSeriesRequest>,
    ) -> Result<Response<ListDataPointSeriesResponse>, Status> {
        answer(MetricsApi::list_data_point_series(self, request).await)
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
