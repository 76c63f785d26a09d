//! The gRPC face of the benchmark service: requests are parsed into domain
//! types here, permissions are checked here, and errors become statuses
//! here. Handlers live with their section of the contract (`sources`,
//! `slices`, `rankings`, `reporting`); the request checks they share are in
//! `checks`; this module holds the peer lookups they share and the
//! `BenchmarkService` table that routes each RPC. The computation is in
//! [`crate::engine`].

mod checks;
mod rankings;
mod reporting;
mod slices;
mod sources;

use std::collections::BTreeMap;
use std::sync::Arc;

use metrix_core::authn::Role;
use metrix_core::error::Violations;
use metrix_core::period::Period;
use metrix_core::server::answer;
use metrix_proto::benchmark::v1::benchmark_service_server::BenchmarkService;
use metrix_proto::benchmark::v1::*;
use tonic::{Request, Response, Status};

use crate::convert::{self, PLATFORM_SOURCE_ID};
use crate::engine::{Engine, Scope as PeerScope};
use crate::error::BenchmarkError;
use crate::figures::{Origin, SliceFigures};
use crate::peers::{CallerCredentials, CompanyInfo, MetricInfo};
use crate::ranking::{self, MetricRank};
use crate::store::{PublishedRow, SourceRow};

/// The most sources one GetBenchmark answers from.
const MAX_SOURCES: usize = 10;
/// The most bootstrap resamples a request may ask for.
const MAX_BOOTSTRAP_RESAMPLES: i32 = crate::settings::MAX_BOOTSTRAP_RESAMPLES as i32;
/// Roles that may import external sources.
const IMPORTERS: [Role; 2] = [Role::Analyst, Role::Admin];

/// The `BenchmarkService` implementation.
#[derive(Clone)]
pub struct BenchmarkApi {
    engine: Arc<Engine>,
}

impl BenchmarkApi {
    /// Handlers over `engine`.
    pub fn new(engine: Arc<Engine>) -> Self {
        Self { engine }
    }
}

/// Where peer figures come from.
#[derive(Debug, Clone)]
enum Source {
    /// The platform's own peer data.
    Platform,
    /// An imported survey.
    External(SourceRow),
}

impl Source {
    fn to_proto(&self) -> BenchmarkSource {
        match self {
            Source::Platform => convert::platform_source(),
            Source::External(row) => convert::source(row),
        }
    }

    fn id(&self) -> &str {
        match self {
            Source::Platform => PLATFORM_SOURCE_ID,
            Source::External(row) => &row.source_id,
        }
    }
}

impl BenchmarkApi {
    async fn resolve_source(&self, organization_id: &str, field: &str, id: &str) -> Result<Source, BenchmarkError> {
        let id = id.trim();
        if id.is_empty() || id == PLATFORM_SOURCE_ID {
            return Ok(Source::Platform);
        }
        match self.engine.store.source(organization_id, id).await? {
            Some(row) => Ok(Source::External(row)),
            None => Err(BenchmarkError::invalid(
                field,
                format!("{id:?} is not a benchmark source (see ListBenchmarkSources)"),
            )),
        }
    }

    /// The source a request field names, or `None` with its violation
    /// recorded; other failures end the request.
    async fn source_field(
        &self,
        organization_id: &str,
        field: &str,
        id: &str,
        violations: &mut Violations,
    ) -> Result<Option<Source>, BenchmarkError> {
        match self.resolve_source(organization_id, field, id).await {
            Ok(source) => Ok(Some(source)),
            Err(BenchmarkError::Invalid(problems)) => {
                violations.extend(problems);
                Ok(None)
            }
            Err(other) => Err(other),
        }
    }

    /// The published figures of `source` for one slice, as published
    /// (before anonymity), or no data.
    async fn published_figures(
        &self,
        source: &SourceRow,
        metric_id: &str,
        scope: &PeerScope,
    ) -> Result<SliceFigures, BenchmarkError> {
        let rows = self
            .engine
            .store
            .published_rows(
                &source.source_id,
                metric_id,
                &scope.revenue_band_id,
                scope.sector_id.as_deref().unwrap_or_default(),
            )
            .await?;
        let wanted = scope.period.to_string();
        Ok(rows
            .iter()
            .find(|row| row.period == wanted)
            .map(|row| published(row, source.imported_at))
            .unwrap_or_else(|| SliceFigures::empty(Origin::Published, source.imported_at)))
    }

    /// The company `company_id` if the caller may see it; PERMISSION_DENIED
    /// otherwise, whether it exists or not.
    async fn company(&self, caller: &CallerCredentials, company_id: &str) -> Result<CompanyInfo, BenchmarkError> {
        match self.engine.peers.company(caller, company_id).await? {
            Some(company) if company.organization_id == caller.organization_id => Ok(company),
            _ => Err(BenchmarkError::PermissionDenied(
                "the company is not one of your organisation's companies",
            )),
        }
    }

    /// Ranks `values` (by metric) against the peers of `scope` from `source`,
    /// leaving out the companies of `excluded_organization` (the caller's);
    /// one ranking per metric of `metrics`.
    async fn rank(
        &self,
        metrics: &[MetricInfo],
        values: &BTreeMap<String, f64>,
        scope: &PeerScope,
        source: &Source,
        excluded_organization: &str,
    ) -> Result<Vec<MetricRank>, BenchmarkError> {
        let k = self.engine.min_peer_count;
        match source {
            Source::Platform => {
                let metric_ids: Vec<String> = metrics.iter().map(|metric| metric.id.clone()).collect();
                let described = self
                    .engine
                    .described_peers(&metric_ids, scope, excluded_organization)
                    .await?;
                Ok(metrics
                    .iter()
                    .filter_map(|metric| {
                        described.get(&metric.id).map(|peers| {
                            ranking::rank_against_platform(metric, values.get(&metric.id).copied(), peers, k)
                        })
                    })
                    .collect())
            }
            Source::External(row) => {
                let mut rankings = Vec::with_capacity(metrics.len());
                for metric in metrics {
                    let figures = self.published_figures(row, &metric.id, scope).await?.anonymised(k);
                    rankings.push(ranking::rank_against_published(
                        metric,
                        values.get(&metric.id).copied(),
                        figures,
                    ));
                }
                Ok(rankings)
            }
        }
    }
}

/// Which sector a company is compared within.
enum SectorChoice {
    /// Every sector of the band.
    AllSectors,
    /// The sector the caller named.
    Named(String),
    /// The company's own sector, or every sector of the band when the own
    /// sector has too few peers to rank anything.
    OwnOrBand(String),
}

/// The peers a company is compared with.
struct Comparison {
    /// The revenue band.
    revenue_band_id: String,
    /// The sector.
    sector: SectorChoice,
    /// The period.
    period: Period,
}

impl BenchmarkApi {
    /// Ranks a company's `values` against the peers of `comparison`,
    /// leaving its organisation (`organization_id`) out of its peers; the
    /// scope it was ranked in.
    async fn rank_in_sector(
        &self,
        metrics: &[MetricInfo],
        values: &BTreeMap<String, f64>,
        comparison: Comparison,
        source: &Source,
        organization_id: &str,
    ) -> Result<(PeerScope, Vec<MetricRank>), BenchmarkError> {
        let Comparison {
            revenue_band_id,
            sector,
            period,
        } = comparison;
        let (sector_id, fall_back) = match sector {
            SectorChoice::AllSectors => (None, false),
            SectorChoice::Named(sector) => (Some(sector), false),
            SectorChoice::OwnOrBand(sector) => (Some(sector), true),
        };
        let scope = PeerScope {
            revenue_band_id,
            sector_id,
            period,
        };
        let rankings = self.rank(metrics, values, &scope, source, organization_id).await?;
        let nothing_ranked = rankings
            .iter()
            .all(|ranking| ranking.status != ranking::RankStatus::Ranked);
        let something_to_rank = rankings.iter().any(|ranking| ranking.value.is_some());
        if fall_back && nothing_ranked && something_to_rank {
            let band_scope = PeerScope {
                sector_id: None,
                ..scope
            };
            let rankings = self.rank(metrics, values, &band_scope, source, organization_id).await?;
            return Ok((band_scope, rankings));
        }
        Ok((scope, rankings))
    }
}

/// A slice as the audit trail names it.
fn slice_text(metric_id: &str, band: &str, sector: Option<&str>, period: &str) -> String {
    format!(
        "metric={metric_id} band={band} sector={} period={period}",
        sector.unwrap_or("*")
    )
}

/// The figures of a published row, before anonymity.
fn published(row: &PublishedRow, imported_at: i64) -> SliceFigures {
    let n = u32::try_from(row.sample_size).unwrap_or_default();
    SliceFigures {
        n,
        total_count: n,
        outlier_count: 0,
        mean: row.mean,
        std_dev: row.std_dev,
        min: row.min_value,
        max: row.max_value,
        p10: row.p10,
        p25: row.p25,
        p50: row.p50,
        p75: row.p75,
        p90: row.p90,
        ..SliceFigures::empty(Origin::Published, imported_at)
    }
}

#[tonic::async_trait]
impl BenchmarkService for BenchmarkApi {
    async fn list_revenue_bands(
        &self,
        request: Request<ListRevenueBandsRequest>,
    ) -> Result<Response<ListRevenueBandsResponse>, Status> {
        answer(BenchmarkApi::list_revenue_bands(self, request).await)
    }
    async fn list_sectors(
        &self,
        request: Request<ListSectorsRequest>,
    ) -> Result<Response<ListSectorsResponse>, Status> {
        answer(BenchmarkApi::list_sectors(self, request).await)
    }
    async fn list_benchmark_sources(
        &self,
        request: Request<ListBenchmarkSourcesRequest>,
    ) -> Result<Response<ListBenchmarkSourcesResponse>, Status> {
        answer(BenchmarkApi::list_benchmark_sources(self, request).await)
    }
    async fn import_benchmark_data(
        &self,
        request: Request<ImportBenchmarkDataRequest>,
    ) -> Result<Response<ImportBenchmarkDataResponse>, Status> {
        answer(BenchmarkApi::import_benchmark_data(self, request).await)
    }
    async fn get_benchmark(
        &self,
        request: Request<GetBenchmarkRequest>,
    ) -> Result<Response<GetBenchmarkResponse>, Status> {
        answer(BenchmarkApi::get_benchmark(self, request).await)
    }
    async fn get_benchmark_time_series(
        &self,
        request: Request<GetBenchmarkTimeSeriesRequest>,
    ) -> Result<Response<GetBenchmarkTimeSeriesResponse>, Status> {
        answer(BenchmarkApi::get_benchmark_time_series(self, request).await)
    }
    async fn rank_company(
        &self,
        request: Request<RankCompanyRequest>,
    ) -> Result<Response<RankCompanyResponse>, Status> {
        answer(BenchmarkApi::rank_company(self, request).await)
    }
    async fn calculate_ranking(
        &self,
        request: Request<CalculateRankingRequest>,
    ) -> Result<Response<CalculateRankingResponse>, Status> {
        answer(BenchmarkApi::calculate_ranking(self, request).await)
    }
    async fn list_report_templates(
        &self,
        request: Request<ListReportTemplatesRequest>,
    ) -> Result<Response<ListReportTemplatesResponse>, Status> {
        answer(BenchmarkApi::list_report_templates(self, request).await)
    }
    async fn generate_report(
        &self,
        request: Request<GenerateReportRequest>,
    ) -> Result<Response<GenerateReportResponse>, Status> {
        answer(BenchmarkApi::generate_report(self, request).await)
    }
    async fn get_report(&self, request: Request<GetReportRequest>) -> Result<Response<GetReportResponse>, Status> {
        answer(BenchmarkApi::get_report(self, request).await)
    }

    async fn list_reports(
        &self,
        request: Request<ListReportsRequest>,
    ) -> Result<Response<ListReportsResponse>, Status> {
        answer(BenchmarkApi::list_reports(self, request).await)
    }
    async fn download_report(
        &self,
        request: Request<DownloadReportRequest>,
    ) -> Result<Response<DownloadReportResponse>, Status> {
        answer(BenchmarkApi::download_report(self, request).await)
    }
}
