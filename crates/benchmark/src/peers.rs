//! Where peer data comes from: the metrics service, over gRPC.
//!
//! [`PeerSource`] is what the benchmark engine needs from the metrics
//! service: the metric catalogue, anonymised peer values, and a company with
//! its own values. Peer values are read with this service's own account
//! (scope `peers:read`); a company and its values are read with the caller's
//! own credentials, forwarded, so the metrics service decides what the
//! caller may see and tenancy is enforced in one place.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use metrix_core::authn::ServiceTokenSource;
use metrix_core::error::ErrorKind;
use metrix_core::period::Period;
use metrix_proto::common::v1::MetricDirection;
use metrix_proto::metrics::v1::metrics_service_client::MetricsServiceClient;
use metrix_proto::metrics::v1::{
    GetCompanyRequest, ListKpisRequest, ListMetricDefinitionsRequest, ListPeerValuesRequest,
};
use tokio::sync::RwLock;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::stats::Direction;

/// How long the metric catalogue is kept before it is read again.
const CATALOGUE_TTL: Duration = Duration::from_secs(600);
/// Values asked for per ListPeerValues page.
const PEER_PAGE_SIZE: i32 = 100_000;
/// Values asked for per ListKpis page.
const KPI_PAGE_SIZE: i32 = 1_000;
/// Metadata forwarded from the caller's request to the metrics service.
const FORWARDED_METADATA: [&str; 3] = ["authorization", "x-api-key", "x-request-id"];

/// A failed call to the metrics service.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// The metrics service could not be reached or did not answer in time.
    #[error("metrics service unavailable: {0}")]
    Unavailable(Status),
    /// The metrics service refused the call.
    #[error("metrics service refused the call: {0}")]
    Refused(Status),
}

impl PeerError {
    /// Sorts a status from the metrics service.
    pub fn from_status(status: Status) -> Self {
        match status.code() {
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::ResourceExhausted => {
                Self::Unavailable(status)
            }
            _ => Self::Refused(status),
        }
    }

    /// The kind of this error in the shared table.
    pub fn kind(&self) -> ErrorKind {
        match self {
            PeerError::Unavailable(_) => ErrorKind::Unavailable,
            PeerError::Refused(status) if status.code() == Code::Unauthenticated => ErrorKind::Unauthenticated,
            PeerError::Refused(_) => ErrorKind::Internal,
        }
    }
}

/// What the benchmark service knows of a metric.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricInfo {
    /// The metric identifier, such as `ndr`.
    pub id: String,
    /// Its human-readable name, such as `Net dollar retention`.
    pub display_name: String,
    /// The unit's symbol for readings, such as `%`, `$`, `months` or `×`.
    pub unit: String,
    /// Whether larger values are better.
    pub direction: Direction,
}

/// The part of a company the benchmark needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompanyInfo {
    /// The company identifier.
    pub company_id: String,
    /// The organisation it belongs to.
    pub organization_id: String,
    /// Its sector.
    pub sector_id: String,
    /// Its current revenue band; empty while it has no ARR.
    pub revenue_band_id: String,
}

/// Which peer values to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerQuery {
    /// The metrics.
    pub metric_ids: Vec<String>,
    /// The revenue band.
    pub revenue_band_id: String,
    /// The sector; `None` for every sector of the band.
    pub sector_id: Option<String>,
    /// The first period (of the granularity wanted); `None` for the earliest.
    pub start: Option<Period>,
    /// The last period (equal to `start` for one period); `None` for the latest.
    pub end: Option<Period>,
    /// The organisation whose companies are left out: the caller's own,
    /// which is never among its own peers.
    pub exclude_organization_id: String,
}

/// One anonymised value of one company for one metric and period.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerRow {
    /// The metric.
    pub metric_id: String,
    /// The period, canonical text.
    pub period: String,
    /// The value, as the metrics service publishes it (noise-infused).
    pub value: f64,
    /// The pseudonymous key of the company's organisation.
    pub organization_key: String,
}

/// Who is asking, as the metrics service must see them: the credentials of
/// the original request.
#[derive(Debug, Clone, Default)]
pub struct CallerCredentials {
    /// The organisation of the caller (already verified by this service).
    pub organization_id: String,
    metadata: Vec<(&'static str, MetadataValue<tonic::metadata::Ascii>)>,
}

impl CallerCredentials {
    /// The credentials of a request whose caller belongs to `organization_id`.
    pub fn from_request(organization_id: &str, metadata: &MetadataMap) -> Self {
        let forwarded = FORWARDED_METADATA
            .iter()
            .filter_map(|key| metadata.get(*key).map(|value| (*key, value.clone())))
            .collect();
        Self {
            organization_id: organization_id.to_owned(),
            metadata: forwarded,
        }
    }

    fn apply<T>(&self, mut request: tonic::Request<T>) -> tonic::Request<T> {
        for (key, value) in &self.metadata {
            request.metadata_mut().insert(*key, value.clone());
        }
        request
    }
}

/// The peer data the benchmark engine reads.
#[async_trait]
pub trait PeerSource: Send + Sync + 'static {
    /// Every metric the metrics service defines.
    async fn metrics(&self) -> Result<Arc<Vec<MetricInfo>>, PeerError>;
    /// The current value of every company matching `query`, one per
    /// company, metric and period.
    async fn peer_values(&self, query: &PeerQuery) -> Result<Vec<PeerRow>, PeerError>;
    /// The company, if the caller may see it.
    async fn company(&self, caller: &CallerCredentials, company_id: &str) -> Result<Option<CompanyInfo>, PeerError>;
    /// The company's current values for exactly `period`, by metric.
    async fn company_values(
        &self,
        caller: &CallerCredentials,
        company_id: &str,
        period: &Period,
    ) -> Result<BTreeMap<String, f64>, PeerError>;
}

/// The metrics service, reached over gRPC.
pub struct MetricsPeerSource {
    client: MetricsServiceClient<Channel>,
    service_token: Option<Arc<ServiceTokenSource>>,
    catalogue: RwLock<Option<(Instant, Arc<Vec<MetricInfo>>)>>,
}

impl MetricsPeerSource {
    /// Talks to the metrics service on `channel`; peer values are read with
    /// the token of `service_token` (without one, they are refused).
    pub fn new(channel: Channel, service_token: Option<Arc<ServiceTokenSource>>) -> Self {
        Self {
            client: MetricsServiceClient::new(channel),
            service_token,
            catalogue: RwLock::new(None),
        }
    }

    async fn as_service<T>(&self, message: T) -> Result<tonic::Request<T>, PeerError> {
        let Some(source) = &self.service_token else {
            return Err(PeerError::Refused(Status::failed_precondition(
                "METRIX_SERVICE_CLIENT_ID is not set: the benchmark service has no account to read peer data with",
            )));
        };
        source
            .authorize(tonic::Request::new(message))
            .await
            .map_err(PeerError::from_status)
    }
}

/// A metric's unit as a short symbol for readings.
fn unit_symbol(unit: i32) -> &'static str {
    use metrix_proto::metrics::v1::MetricUnit;
    match MetricUnit::try_from(unit).unwrap_or(MetricUnit::Unspecified) {
        MetricUnit::Usd => "$",
        MetricUnit::Percent => "%",
        MetricUnit::Months => "months",
        MetricUnit::Ratio => "×",
        _ => "",
    }
}

#[async_trait]
impl PeerSource for MetricsPeerSource {
    async fn metrics(&self) -> Result<Arc<Vec<MetricInfo>>, PeerError> {
        if let Some((fetched, catalogue)) = self.catalogue.read().await.as_ref()
            && fetched.elapsed() < CATALOGUE_TTL
        {
            return Ok(catalogue.clone());
        }
        let mut client = self.client.clone();
        let mut metrics = Vec::new();
        let mut page_token = String::new();
        loop {
            let request = self
                .as_service(ListMetricDefinitionsRequest {
                    page_size: 1_000,
                    page_token: page_token.clone(),
                    ..Default::default()
                })
                .await?;
            let page = client
                .list_metric_definitions(request)
                .await
                .map_err(PeerError::from_status)?
                .into_inner();
            metrics.extend(page.metric_definitions.into_iter().map(|definition| MetricInfo {
                direction: match MetricDirection::try_from(definition.direction) {
                    Ok(MetricDirection::LowerIsBetter) => Direction::LowerIsBetter,
                    _ => Direction::HigherIsBetter,
                },
                unit: unit_symbol(definition.unit).to_owned(),
                display_name: definition.display_name,
                id: definition.metric_id,
            }));
            if page.next_page_token.is_empty() {
                break;
            }
            page_token = page.next_page_token;
        }
        metrics.sort_by(|left, right| left.id.cmp(&right.id));
        let catalogue = Arc::new(metrics);
        *self.catalogue.write().await = Some((Instant::now(), catalogue.clone()));
        Ok(catalogue)
    }

    async fn peer_values(&self, query: &PeerQuery) -> Result<Vec<PeerRow>, PeerError> {
        let mut client = self.client.clone();
        let granularity = query
            .start
            .or(query.end)
            .map(|period| period.granularity())
            .unwrap_or(metrix_proto::metrics::v1::PeriodGranularity::Quarter);
        let mut rows = Vec::new();
        let mut page_token = String::new();
        loop {
            let request = self
                .as_service(ListPeerValuesRequest {
                    metric_ids: query.metric_ids.clone(),
                    sector_id: query.sector_id.clone().unwrap_or_default(),
                    revenue_band_id: query.revenue_band_id.clone(),
                    period_granularity: granularity as i32,
                    start_period: query.start.map(|period| period.to_string()).unwrap_or_default(),
                    end_period: query.end.map(|period| period.to_string()).unwrap_or_default(),
                    exclude_company_ids: Vec::new(),
                    exclude_organization_ids: vec![query.exclude_organization_id.clone()],
                    page_size: PEER_PAGE_SIZE,
                    page_token: page_token.clone(),
                })
                .await?;
            let mut stream = client
                .list_peer_values(request)
                .await
                .map_err(PeerError::from_status)?
                .into_inner();
            let mut next_page_token = String::new();
            while let Some(message) = stream.message().await.map_err(PeerError::from_status)? {
                rows.extend(
                    message
                        .peer_values
                        .into_iter()
                        // The band filter of the metrics service is the band the
                        // company is in now; a value without a band never
                        // belongs to a slice.
                        .filter(|value| value.value.is_finite() && !value.revenue_band_id.is_empty())
                        .map(|value| PeerRow {
                            metric_id: value.metric_id,
                            period: value.period,
                            value: value.value,
                            organization_key: value.organization_key,
                        }),
                );
                if !message.next_page_token.is_empty() {
                    next_page_token = message.next_page_token;
                }
            }
            if next_page_token.is_empty() {
                break;
            }
            page_token = next_page_token;
        }
        Ok(rows)
    }

    async fn company(&self, caller: &CallerCredentials, company_id: &str) -> Result<Option<CompanyInfo>, PeerError> {
        let mut client = self.client.clone();
        let request = caller.apply(tonic::Request::new(GetCompanyRequest {
            company_id: company_id.to_owned(),
        }));
        match client.get_company(request).await {
            Ok(response) => Ok(response.into_inner().company.map(|company| CompanyInfo {
                company_id: company.company_id,
                organization_id: company.organization_id,
                sector_id: company.sector_id,
                revenue_band_id: company.revenue_band_id,
            })),
            Err(status) if matches!(status.code(), Code::NotFound | Code::PermissionDenied) => Ok(None),
            Err(status) => Err(PeerError::from_status(status)),
        }
    }

    async fn company_values(
        &self,
        caller: &CallerCredentials,
        company_id: &str,
        period: &Period,
    ) -> Result<BTreeMap<String, f64>, PeerError> {
        let mut client = self.client.clone();
        let wanted = period.to_string();
        let mut values = BTreeMap::new();
        let mut page_token = String::new();
        loop {
            let request = caller.apply(tonic::Request::new(ListKpisRequest {
                company_id: company_id.to_owned(),
                period_granularity: period.granularity() as i32,
                start_period: wanted.clone(),
                end_period: wanted.clone(),
                page_size: KPI_PAGE_SIZE,
                page_token: page_token.clone(),
                ..Default::default()
            }));
            let page = client
                .list_kpis(request)
                .await
                .map_err(PeerError::from_status)?
                .into_inner();
            for value in page.kpi_values {
                if value.latest && value.period == wanted && value.value.is_finite() {
                    values.insert(value.metric_id, value.value);
                }
            }
            if page.next_page_token.is_empty() {
                break;
            }
            page_token = page.next_page_token;
        }
        Ok(values)
    }
}
