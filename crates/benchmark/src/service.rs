//! The gRPC face of the benchmark service: requests are parsed into domain
//! types here, permissions are checked here, and errors become statuses
//! here.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, OnceLock};

use metrix_core::authn::{Principal, Role, Scope, principal};
use metrix_core::error::{FieldViolation, Violations};
use metrix_core::page_token;
use metrix_core::period::Period;
use metrix_core::reference;
use metrix_core::server::answer;
use metrix_core::time::{micros_of, now_micros, rfc3339, timestamp};
use metrix_proto::benchmark::v1::benchmark_service_server::BenchmarkService;
use metrix_proto::benchmark::v1::*;
use metrix_proto::common::v1::TimeRange;
use metrix_proto::metrics::v1::PeriodGranularity;
use prost::Message as _;
use serde::{Deserialize, Serialize};
use tonic::{Request, Response, Status};

use crate::convert::{self, PLATFORM_SOURCE_ID, ReportState};
use crate::engine::{Engine, Scope as PeerScope};
use crate::error::BenchmarkError;
use crate::figures::{Bootstrap, Origin, SliceFigures};
use crate::import;
use crate::peers::{CallerCredentials, CompanyInfo, MetricInfo};
use crate::ranking::{self, MetricRank};
use crate::reports::{self, ReportBody, ReportHeading};
use crate::series;
use crate::stats;
use crate::store::{PublishedRow, ReportRow, SourceCursor, SourceRow};

/// The most sources one GetBenchmark answers from.
const MAX_SOURCES: usize = 10;
/// The most metrics one ranking covers.
const MAX_RANKED_METRICS: usize = 50;
/// The most bootstrap resamples a request may ask for.
const MAX_BOOTSTRAP_RESAMPLES: i32 = crate::settings::MAX_BOOTSTRAP_RESAMPLES as i32;
/// Bootstrap resamples of each period of a time series (one interval per
/// period; fewer than a single slice's default keeps long series quick).
const SERIES_BOOTSTRAP_RESAMPLES: u32 = 2_000;
/// How long a report's idempotency key holds, in microseconds.
const REPORT_REQUEST_WINDOW: i64 = 24 * 3_600 * 1_000_000;
/// The longest idempotency key.
const MAX_REQUEST_ID_LENGTH: usize = 128;
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

/// Any authenticated caller that may read its organisation's data: users of
/// every role, and service tokens or API keys with the `read` scope.
fn reader<T>(request: &Request<T>) -> Result<Principal, Status> {
    let caller = principal(request)?;
    caller.require_scope(Scope::Read)?;
    Ok(caller.clone())
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

fn metric_of(catalogue: &[MetricInfo], field: &str, id: &str) -> Result<MetricInfo, FieldViolation> {
    let id = id.trim();
    if id.is_empty() {
        return Err(FieldViolation::new(field, "is required"));
    }
    catalogue
        .iter()
        .find(|metric| metric.id == id)
        .cloned()
        .ok_or_else(|| FieldViolation::new(field, format!("{id:?} is not a metric (see ListMetricDefinitions)")))
}

fn band_of(field: &str, id: &str) -> Result<String, FieldViolation> {
    let id = id.trim();
    if id.is_empty() {
        return Err(FieldViolation::new(field, "is required"));
    }
    reference::revenue_band(id)
        .map(|band| band.id.to_owned())
        .ok_or_else(|| FieldViolation::new(field, format!("{id:?} is not a revenue band (see ListRevenueBands)")))
}

fn sector_of(field: &str, id: &str) -> Result<Option<String>, FieldViolation> {
    let id = id.trim();
    if id.is_empty() {
        return Ok(None);
    }
    reference::sector(id)
        .map(|sector| Some(sector.id.to_owned()))
        .ok_or_else(|| FieldViolation::new(field, format!("{id:?} is not a sector (see ListSectors)")))
}

fn period_of(field: &str, text: &str) -> Result<Period, FieldViolation> {
    if text.trim().is_empty() {
        return Ok(series::last_ended_quarter(now_micros()));
    }
    import::parse_slice_period(text).map_err(|message| FieldViolation::new(field, message))
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

/// Where the next page of a static list starts: after this position.
#[derive(Serialize, Deserialize)]
struct PositionCursor {
    after: usize,
}

/// A page of a fixed list, by position.
fn static_page<T: Clone>(
    items: &[T],
    page_size: i32,
    page_token_text: &str,
    filters: &str,
) -> Result<(Vec<T>, String), BenchmarkError> {
    let mut violations = Violations::default();
    let size = violations.check(page_token::page_size(page_size));
    let cursor = violations.check(page_token::decode::<PositionCursor>(page_token_text, filters));
    let (Some(size), Some(cursor)) = (size, cursor) else {
        return Err(violations.into_vec().into());
    };
    violations.finish()?;
    let start = cursor.map(|cursor| cursor.after).unwrap_or_default().min(items.len());
    let end = (start + size as usize).min(items.len());
    let next = if end < items.len() {
        page_token::encode(&PositionCursor { after: end }, filters)
    } else {
        String::new()
    };
    Ok((items[start..end].to_vec(), next))
}

/// Where the next page of sources starts.
#[derive(Serialize, Deserialize)]
enum SourcesCursor {
    /// After the platform source: the first imported one is next.
    AfterPlatform,
    /// After this imported source.
    After(SourceCursor),
}

impl BenchmarkApi {
    async fn list_revenue_bands(
        &self,
        request: Request<ListRevenueBandsRequest>,
    ) -> Result<ListRevenueBandsResponse, BenchmarkError> {
        reader(&request).map_err(status_error)?;
        let request = request.into_inner();
        let bands: Vec<_> = reference::REVENUE_BANDS.iter().map(|band| band.to_proto()).collect();
        let (revenue_bands, next_page_token) = static_page(&bands, request.page_size, &request.page_token, "bands")?;
        Ok(ListRevenueBandsResponse {
            revenue_bands,
            next_page_token,
        })
    }

    async fn list_sectors(&self, request: Request<ListSectorsRequest>) -> Result<ListSectorsResponse, BenchmarkError> {
        reader(&request).map_err(status_error)?;
        let request = request.into_inner();
        let sectors: Vec<_> = reference::SECTORS.iter().map(|sector| sector.to_proto()).collect();
        let (sectors, next_page_token) = static_page(&sectors, request.page_size, &request.page_token, "sectors")?;
        Ok(ListSectorsResponse {
            sectors,
            next_page_token,
        })
    }

    async fn list_benchmark_sources(
        &self,
        request: Request<ListBenchmarkSourcesRequest>,
    ) -> Result<ListBenchmarkSourcesResponse, BenchmarkError> {
        let caller = reader(&request).map_err(status_error)?;
        let request = request.into_inner();
        let mut violations = Violations::default();
        let kind = violations.check(
            BenchmarkSourceKind::try_from(request.kind)
                .map_err(|_| FieldViolation::new("kind", format!("{} is not a source kind", request.kind))),
        );
        let filters = format!("sources|{}|{}", request.kind, request.verified_only);
        let size = violations.check(page_token::page_size(request.page_size));
        let cursor = violations.check(page_token::decode::<SourcesCursor>(&request.page_token, &filters));
        let (Some(kind), Some(size), Some(cursor)) = (kind, size, cursor) else {
            return Err(violations.into_vec().into());
        };
        violations.finish()?;
        let mut sources = Vec::new();
        let wants_platform = matches!(kind, BenchmarkSourceKind::Unspecified | BenchmarkSourceKind::Platform);
        let wants_external = matches!(kind, BenchmarkSourceKind::Unspecified | BenchmarkSourceKind::External);
        if cursor.is_none() && wants_platform {
            sources.push(convert::platform_source());
        }
        let mut next_page_token = String::new();
        if wants_external {
            let after = match &cursor {
                Some(SourcesCursor::After(after)) => Some(after),
                _ => None,
            };
            let room = size.saturating_sub(u32::try_from(sources.len()).unwrap_or(u32::MAX));
            let rows = self
                .engine
                .store
                .sources(&caller.organization_id, request.verified_only, after, room + 1)
                .await?;
            if rows.len() > room as usize {
                let last = rows.get((room as usize).wrapping_sub(1));
                let next = match last {
                    Some(last) => SourcesCursor::After(SourceCursor {
                        publication_date: last.publication_date.clone(),
                        source_id: last.source_id.clone(),
                    }),
                    None => SourcesCursor::AfterPlatform,
                };
                next_page_token = page_token::encode(&next, &filters);
            }
            sources.extend(rows.iter().take(room as usize).map(convert::source));
        }
        Ok(ListBenchmarkSourcesResponse {
            benchmark_sources: sources,
            next_page_token,
        })
    }

    async fn import_benchmark_data(
        &self,
        request: Request<ImportBenchmarkDataRequest>,
    ) -> Result<ImportBenchmarkDataResponse, BenchmarkError> {
        let caller = principal(&request).map_err(status_error)?.clone();
        caller.require_user_role(&IMPORTERS).map_err(status_error)?;
        let request = request.into_inner();
        let source = import::parse_source(&request)?;
        let catalogue = self.engine.peers.metrics().await?;
        let rows = match import::parse_rows(&request.rows, &catalogue) {
            Ok(rows) => rows,
            Err(errors) => {
                return Ok(ImportBenchmarkDataResponse {
                    source: None,
                    imported_row_count: 0,
                    row_errors: errors
                        .into_iter()
                        .map(|error| BenchmarkDataRowError {
                            row_index: i32::try_from(error.row_index).unwrap_or(i32::MAX),
                            field: error.field.to_owned(),
                            message: error.message,
                        })
                        .collect(),
                });
            }
        };
        if request.validate_only {
            return Ok(ImportBenchmarkDataResponse::default());
        }
        let stored = self
            .engine
            .store
            .replace_source(&caller.organization_id, &source, &rows)
            .await?;
        tracing::info!(
            source_id = %stored.source_id,
            organization_id = %caller.organization_id,
            rows = rows.len(),
            "benchmark source imported"
        );
        Ok(ImportBenchmarkDataResponse {
            imported_row_count: stored.row_count,
            source: Some(convert::source(&stored)),
            row_errors: Vec::new(),
        })
    }

    async fn get_benchmark(
        &self,
        request: Request<GetBenchmarkRequest>,
    ) -> Result<GetBenchmarkResponse, BenchmarkError> {
        let caller = reader(&request).map_err(status_error)?;
        let request = request.into_inner();
        let catalogue = self.engine.peers.metrics().await?;
        let mut violations = Violations::default();
        let metric = violations.check(metric_of(&catalogue, "metric_id", &request.metric_id));
        let band = violations.check(band_of("revenue_band_id", &request.revenue_band_id));
        let sector = violations.check(sector_of("sector_id", &request.sector_id));
        let period = violations.check(period_of("period", &request.period));
        let resamples = violations.check(match request.bootstrap_resamples {
            0 => Ok(self.engine.default_bootstrap.resamples),
            count if (1..=MAX_BOOTSTRAP_RESAMPLES).contains(&count) => Ok(count.unsigned_abs()),
            _ => Err(FieldViolation::new(
                "bootstrap_resamples",
                format!("must be between 0 (the default) and {MAX_BOOTSTRAP_RESAMPLES}"),
            )),
        });
        if request.source_ids.len() > MAX_SOURCES {
            violations.push(FieldViolation::new(
                "source_ids",
                format!("must name at most {MAX_SOURCES} sources"),
            ));
        }
        let mut seen = HashSet::new();
        for (index, id) in request.source_ids.iter().enumerate() {
            if !seen.insert(id.trim()) {
                violations.push(FieldViolation::new(
                    format!("source_ids[{index}]"),
                    "names a source twice",
                ));
            }
        }
        let mut sources = Vec::new();
        if request.source_ids.is_empty() {
            sources.push(Source::Platform);
        }
        for (index, id) in request.source_ids.iter().enumerate().take(MAX_SOURCES) {
            let field = format!("source_ids[{index}]");
            if let Some(source) = self
                .source_field(&caller.organization_id, &field, id, &mut violations)
                .await?
            {
                sources.push(source);
            }
        }
        let (Some(metric), Some(band), Some(sector), Some(period), Some(resamples)) =
            (metric, band, sector, period, resamples)
        else {
            return Err(violations.into_vec().into());
        };
        violations.finish()?;
        let bootstrap = Bootstrap {
            seed: request.bootstrap_seed.unwrap_or(self.engine.default_bootstrap.seed),
            resamples,
        };
        self.engine
            .admit(
                &caller,
                "GetBenchmark",
                slice_text(&metric.id, &band, sector.as_deref(), &period.to_string()),
            )
            .await?;
        let scope = PeerScope {
            revenue_band_id: band.clone(),
            sector_id: sector.clone(),
            period,
        };
        let mut results = Vec::with_capacity(sources.len());
        for source in &sources {
            let (figures, cached) = match source {
                Source::Platform => {
                    let computed = self
                        .engine
                        .platform_slice(&metric.id, &scope, bootstrap, &caller.organization_id)
                        .await?;
                    (computed.figures, computed.cached)
                }
                Source::External(row) => (self.published_figures(row, &metric.id, &scope).await?, false),
            };
            let figures = figures.anonymised(self.engine.min_peer_count);
            results.push(SourceBenchmark {
                source: Some(source.to_proto()),
                statistics: Some(convert::statistics(&figures)),
                compute_time: Some(timestamp(figures.computed_at)),
                cached,
            });
        }
        Ok(GetBenchmarkResponse {
            slice: Some(BenchmarkSlice {
                metric_id: metric.id.clone(),
                revenue_band_id: band,
                sector_id: sector.unwrap_or_default(),
                period: period.to_string(),
            }),
            direction: convert::direction(metric.direction),
            results,
        })
    }

    async fn get_benchmark_time_series(
        &self,
        request: Request<GetBenchmarkTimeSeriesRequest>,
    ) -> Result<GetBenchmarkTimeSeriesResponse, BenchmarkError> {
        let caller = reader(&request).map_err(status_error)?;
        let request = request.into_inner();
        let catalogue = self.engine.peers.metrics().await?;
        let mut violations = Violations::default();
        let metric = violations.check(metric_of(&catalogue, "metric_id", &request.metric_id));
        let band = violations.check(band_of("revenue_band_id", &request.revenue_band_id));
        let sector = violations.check(sector_of("sector_id", &request.sector_id));
        let granularity = violations.check(match TimeGranularity::try_from(request.granularity) {
            Ok(TimeGranularity::Month) => Ok(PeriodGranularity::Month),
            Ok(TimeGranularity::Quarter | TimeGranularity::Unspecified) => Ok(PeriodGranularity::Quarter),
            Err(_) => Err(FieldViolation::new(
                "granularity",
                format!("{} is not a granularity", request.granularity),
            )),
        });
        let trend_statistic = violations.check(match TrendStatistic::try_from(request.trend_statistic) {
            Ok(TrendStatistic::Mean) => Ok(TrendStatistic::Mean),
            Ok(TrendStatistic::Median | TrendStatistic::Unspecified) => Ok(TrendStatistic::Median),
            Err(_) => Err(FieldViolation::new(
                "trend_statistic",
                format!("{} is not a trend statistic", request.trend_statistic),
            )),
        });
        let range = violations.check(time_range(request.time_range.as_ref()));
        let source = self
            .source_field(
                &caller.organization_id,
                "source_id",
                &request.source_id,
                &mut violations,
            )
            .await?;
        let (
            Some(metric),
            Some(band),
            Some(sector),
            Some(granularity),
            Some(trend_statistic),
            Some(range),
            Some(source),
        ) = (metric, band, sector, granularity, trend_statistic, range, source)
        else {
            return Err(violations.into_vec().into());
        };
        violations.finish()?;
        self.engine
            .admit(
                &caller,
                "GetBenchmarkTimeSeries",
                slice_text(&metric.id, &band, sector.as_deref(), &format!("{range:?}")),
            )
            .await?;
        let now = now_micros();
        let k = self.engine.min_peer_count;
        // The figures of each period, keyed by period text.
        let (start, end) = range;
        let mut by_period: BTreeMap<String, SliceFigures> = BTreeMap::new();
        let earliest_with_data = match &source {
            Source::Platform => {
                let computed = self
                    .engine
                    .series_figures(
                        &crate::peers::PeerQuery {
                            metric_ids: vec![metric.id.clone()],
                            revenue_band_id: band.clone(),
                            sector_id: sector.clone(),
                            start: start.and_then(|start| Period::containing(start, granularity)),
                            end: Period::containing(end.unwrap_or(now).min(now), granularity),
                            exclude_organization_id: caller.organization_id.clone(),
                        },
                        Bootstrap {
                            seed: self.engine.default_bootstrap.seed,
                            resamples: SERIES_BOOTSTRAP_RESAMPLES,
                        },
                    )
                    .await?;
                by_period.extend(computed);
                by_period
                    .keys()
                    .filter_map(|period| Period::parse(period).ok())
                    .filter(|period| period.granularity() == granularity)
                    .min_by_key(Period::sort_key)
            }
            Source::External(row) => {
                let rows = self
                    .engine
                    .store
                    .published_rows(&row.source_id, &metric.id, &band, sector.as_deref().unwrap_or_default())
                    .await?;
                for published_row in &rows {
                    by_period.insert(published_row.period.clone(), published(published_row, row.imported_at));
                }
                by_period
                    .keys()
                    .filter_map(|period| Period::parse(period).ok())
                    .filter(|period| period.granularity() == granularity)
                    .min_by_key(Period::sort_key)
            }
        };
        let range_start = match (start, earliest_with_data) {
            (Some(start), _) => Some(start),
            (None, Some(earliest)) => Some(earliest.bounds_micros().0),
            (None, None) => None,
        };
        let periods = match range_start {
            Some(range_start) => series::periods_in_range(granularity, range_start, end.unwrap_or(now), now)
                .map_err(|error| BenchmarkError::invalid("time_range", error.to_string()))?,
            None => Vec::new(),
        };
        let origin = match source {
            Source::Platform => Origin::Computed,
            Source::External(_) => Origin::Published,
        };
        let mut points = Vec::with_capacity(periods.len());
        let mut trend_points = Vec::new();
        for (index, period) in periods.iter().enumerate() {
            let figures = by_period
                .remove(&period.to_string())
                .unwrap_or_else(|| SliceFigures::empty(origin, now))
                .anonymised(k);
            let statistic = match trend_statistic {
                TrendStatistic::Mean => figures.mean,
                _ => figures.p50,
            };
            if let Some(statistic) = statistic
                && figures.is_reported()
            {
                trend_points.push((index as f64, statistic));
            }
            let (period_start, period_end) = period.bounds_micros();
            points.push(TimeSeriesPoint {
                period: period.to_string(),
                period_range: Some(TimeRange {
                    start_time: Some(timestamp(period_start)),
                    end_time: Some(timestamp(period_end)),
                }),
                statistics: Some(convert::statistics(&figures)),
            });
        }
        let fit = stats::linear_trend(&trend_points);
        Ok(GetBenchmarkTimeSeriesResponse {
            metric_id: metric.id.clone(),
            revenue_band_id: band,
            sector_id: sector.unwrap_or_default(),
            source: Some(source.to_proto()),
            direction: convert::direction(metric.direction),
            granularity: match granularity {
                PeriodGranularity::Month => TimeGranularity::Month,
                _ => TimeGranularity::Quarter,
            } as i32,
            points,
            trend: Some(Trend {
                statistic: trend_statistic as i32,
                point_count: i32::try_from(fit.point_count).unwrap_or(i32::MAX),
                slope: fit.slope,
                slope_standard_error: fit.slope_standard_error,
                intercept: fit.intercept,
                r_squared: fit.r_squared,
                slope_p_value: fit.slope_p_value,
                direction: match fit.direction() {
                    stats::TrendDirection::Increasing => TrendDirection::Increasing,
                    stats::TrendDirection::Decreasing => TrendDirection::Decreasing,
                    stats::TrendDirection::Flat => TrendDirection::Flat,
                    stats::TrendDirection::InsufficientData => TrendDirection::InsufficientData,
                } as i32,
            }),
        })
    }

    async fn rank_company(&self, request: Request<RankCompanyRequest>) -> Result<RankCompanyResponse, BenchmarkError> {
        let caller = reader(&request).map_err(status_error)?;
        let credentials = CallerCredentials::from_request(&caller.organization_id, request.metadata());
        let request = request.into_inner();
        let catalogue = self.engine.peers.metrics().await?;
        let mut violations = Violations::default();
        let company_id = request.company_id.trim().to_owned();
        if company_id.is_empty() {
            violations.push(FieldViolation::new("company_id", "is required"));
        }
        let period = violations.check(period_of("period", &request.period));
        let requested_metrics = violations.check(metric_list(&catalogue, &request.metric_ids));
        let band = if request.revenue_band_id.trim().is_empty() {
            Some(None)
        } else {
            violations.check(band_of("revenue_band_id", &request.revenue_band_id).map(Some))
        };
        let sector = violations.check(sector_of("sector_id", &request.sector_id));
        if request.all_sectors && !request.sector_id.trim().is_empty() {
            violations.push(FieldViolation::new(
                "sector_id",
                "must be empty when all_sectors is set",
            ));
        }
        let source = self
            .source_field(
                &caller.organization_id,
                "source_id",
                &request.source_id,
                &mut violations,
            )
            .await?;
        let (Some(period), Some(requested_metrics), Some(band), Some(sector), Some(source)) =
            (period, requested_metrics, band, sector, source)
        else {
            return Err(violations.into_vec().into());
        };
        violations.finish()?;
        let company = self.company(&credentials, &company_id).await?;
        self.engine
            .admit(
                &caller,
                "RankCompany",
                format!("company={} period={period}", company.company_id),
            )
            .await?;
        let values = self
            .engine
            .peers
            .company_values(&credentials, &company.company_id, &period)
            .await?;
        let metrics: Vec<MetricInfo> = if requested_metrics.is_empty() {
            catalogue
                .iter()
                .filter(|metric| values.contains_key(&metric.id))
                .cloned()
                .collect()
        } else {
            requested_metrics
        };
        let revenue_band_id = match band {
            Some(band) => band,
            None if company.revenue_band_id.is_empty() => {
                return Err(BenchmarkError::FailedPrecondition(
                    "the company has no revenue band yet (record its ARR), so name revenue_band_id".to_owned(),
                ));
            }
            None => company.revenue_band_id.clone(),
        };
        let sector_choice = match (request.all_sectors, sector) {
            (true, _) => SectorChoice::AllSectors,
            (false, Some(sector)) => SectorChoice::Named(sector),
            (false, None) => SectorChoice::OwnOrBand(company.sector_id.clone()),
        };
        let comparison = Comparison {
            revenue_band_id,
            sector: sector_choice,
            period,
        };
        let (scope, rankings) = self
            .rank_in_sector(&metrics, &values, comparison, &source, &caller.organization_id)
            .await?;
        let overall = ranking::overall(&rankings);
        Ok(RankCompanyResponse {
            company_id: company.company_id,
            period: period.to_string(),
            revenue_band_id: scope.revenue_band_id.clone(),
            sector_id: scope.sector_id.clone().unwrap_or_default(),
            source: Some(source.to_proto()),
            rankings: rankings.iter().map(convert::ranking).collect(),
            overall: Some(convert::overall(&overall)),
            compute_time: Some(timestamp(now_micros())),
        })
    }

    async fn calculate_ranking(
        &self,
        request: Request<CalculateRankingRequest>,
    ) -> Result<CalculateRankingResponse, BenchmarkError> {
        let caller = reader(&request).map_err(status_error)?;
        let credentials = CallerCredentials::from_request(&caller.organization_id, request.metadata());
        let request = request.into_inner();
        let catalogue = self.engine.peers.metrics().await?;
        let mut violations = Violations::default();
        if request.values.is_empty() {
            violations.push(FieldViolation::new("values", "must hold at least one value"));
        } else if request.values.len() > MAX_RANKED_METRICS {
            violations.push(FieldViolation::new(
                "values",
                format!("must hold at most {MAX_RANKED_METRICS} values"),
            ));
        }
        let mut metrics = Vec::new();
        let mut values = BTreeMap::new();
        for (metric_id, value) in &request.values {
            let field = format!("values[{metric_id}]");
            if let Some(metric) = violations.check(metric_of(&catalogue, &field, metric_id)) {
                if value.is_finite() {
                    values.insert(metric.id.clone(), *value);
                    metrics.push(metric);
                } else {
                    violations.push(FieldViolation::new(field, "must be a finite number"));
                }
            }
        }
        metrics.sort_by(|left, right| left.id.cmp(&right.id));
        let band = violations.check(band_of("revenue_band_id", &request.revenue_band_id));
        let sector = violations.check(sector_of("sector_id", &request.sector_id));
        let period = violations.check(period_of("period", &request.period));
        let source = self
            .source_field(
                &caller.organization_id,
                "source_id",
                &request.source_id,
                &mut violations,
            )
            .await?;
        let (Some(band), Some(sector), Some(period), Some(source)) = (band, sector, period, source) else {
            return Err(violations.into_vec().into());
        };
        violations.finish()?;
        // The company, when named, must be the caller's own; every company
        // of the caller's organisation is left out of its peers anyway.
        if !request.company_id.trim().is_empty() {
            self.company(&credentials, request.company_id.trim()).await?;
        }
        self.engine
            .admit(
                &caller,
                "CalculateRanking",
                format!(
                    "{} values={:?}",
                    slice_text("*", &band, sector.as_deref(), &period.to_string()),
                    values
                ),
            )
            .await?;
        let scope = PeerScope {
            revenue_band_id: band,
            sector_id: sector,
            period,
        };
        let rankings = self
            .rank(&metrics, &values, &scope, &source, &caller.organization_id)
            .await?;
        let overall = ranking::overall(&rankings);
        Ok(CalculateRankingResponse {
            period: period.to_string(),
            revenue_band_id: scope.revenue_band_id.clone(),
            sector_id: scope.sector_id.clone().unwrap_or_default(),
            source: Some(source.to_proto()),
            rankings: rankings.iter().map(convert::ranking).collect(),
            overall: Some(convert::overall(&overall)),
        })
    }

    async fn list_report_templates(
        &self,
        request: Request<ListReportTemplatesRequest>,
    ) -> Result<ListReportTemplatesResponse, BenchmarkError> {
        reader(&request).map_err(status_error)?;
        let request = request.into_inner();
        let templates: Vec<ReportTemplate> = reports::TEMPLATES
            .iter()
            .map(|template| ReportTemplate {
                id: template.id.to_owned(),
                display_name: template.display_name.to_owned(),
                description: template.description.to_owned(),
                metric_ids: template.metric_ids.iter().map(|id| (*id).to_owned()).collect(),
            })
            .collect();
        let (report_templates, next_page_token) =
            static_page(&templates, request.page_size, &request.page_token, "templates")?;
        Ok(ListReportTemplatesResponse {
            report_templates,
            next_page_token,
        })
    }

    async fn generate_report(
        &self,
        request: Request<GenerateReportRequest>,
    ) -> Result<GenerateReportResponse, BenchmarkError> {
        let caller = reader(&request).map_err(status_error)?;
        let credentials = CallerCredentials::from_request(&caller.organization_id, request.metadata());
        let request = request.into_inner();
        let mut violations = Violations::default();
        let company_id = request.company_id.trim().to_owned();
        if company_id.is_empty() {
            violations.push(FieldViolation::new("company_id", "is required"));
        }
        let template = match request.template_id.trim() {
            "" => {
                violations.push(FieldViolation::new("template_id", "is required"));
                None
            }
            id => {
                let found = reports::template(id);
                if found.is_none() {
                    violations.push(FieldViolation::new(
                        "template_id",
                        format!("{id:?} is not a report template (see ListReportTemplates)"),
                    ));
                }
                found
            }
        };
        let period = violations.check(period_of("period", &request.period));
        let request_id = request.request_id.trim().to_owned();
        if request_id.len() > MAX_REQUEST_ID_LENGTH {
            violations.push(FieldViolation::new(
                "request_id",
                format!("must be at most {MAX_REQUEST_ID_LENGTH} characters"),
            ));
        }
        let source = self
            .source_field(
                &caller.organization_id,
                "source_id",
                &request.source_id,
                &mut violations,
            )
            .await?;
        let (Some(template), Some(period), Some(source)) = (template, period, source) else {
            return Err(violations.into_vec().into());
        };
        violations.finish()?;
        let company = self.company(&credentials, &company_id).await?;
        self.engine
            .admit(
                &caller,
                "GenerateReport",
                format!(
                    "company={} template={} period={period}",
                    company.company_id, template.id
                ),
            )
            .await?;
        let now = now_micros();
        if !request_id.is_empty()
            && let Some(existing) = self
                .engine
                .store
                .report_by_request(&caller.organization_id, &request_id, now - REPORT_REQUEST_WINDOW)
                .await?
        {
            return Ok(GenerateReportResponse {
                report: Some(stored_report(&existing)?),
            });
        }
        let mut row = ReportRow {
            report_id: uuid::Uuid::now_v7().to_string(),
            organization_id: caller.organization_id.clone(),
            company_id: company.company_id.clone(),
            template_id: template.id.to_owned(),
            period: period.to_string(),
            revenue_band_id: company.revenue_band_id.clone(),
            sector_id: company.sector_id.clone(),
            source_id: source.id().to_owned(),
            status: ReportState::Succeeded.code(),
            failure_message: String::new(),
            request_id,
            created_at: now,
            completed_at: None,
            content: String::new(),
        };
        let body = if company.revenue_band_id.is_empty() {
            row.status = ReportState::Failed.code();
            row.failure_message =
                "the company has no revenue band yet: record its ARR so it can be compared with peers".to_owned();
            None
        } else {
            let catalogue = self.engine.peers.metrics().await?;
            let metrics: Vec<MetricInfo> = template
                .metric_ids
                .iter()
                .filter_map(|id| catalogue.iter().find(|metric| metric.id == *id).cloned())
                .collect();
            let values = self
                .engine
                .peers
                .company_values(&credentials, &company.company_id, &period)
                .await?;
            let (scope, rankings) = self
                .rank_in_sector(
                    &metrics,
                    &values,
                    Comparison {
                        revenue_band_id: company.revenue_band_id.clone(),
                        sector: SectorChoice::OwnOrBand(company.sector_id.clone()),
                        period,
                    },
                    &source,
                    &caller.organization_id,
                )
                .await?;
            row.sector_id = scope.sector_id.unwrap_or_default();
            let overall = ranking::overall(&rankings);
            let body = reports::build(metrics.into_iter().zip(rankings).collect(), overall);
            row.content = serde_json::to_string(&body)?;
            Some(body)
        };
        row.completed_at = Some(now_micros());
        self.engine.store.insert_report(&row).await?;
        tracing::info!(report_id = %row.report_id, company_id = %row.company_id, template = %row.template_id, "report generated");
        Ok(GenerateReportResponse {
            report: Some(convert::report(&row, body.as_ref())),
        })
    }

    async fn get_report(&self, request: Request<GetReportRequest>) -> Result<GetReportResponse, BenchmarkError> {
        let caller = reader(&request).map_err(status_error)?;
        let row = self.stored_row(&caller, &request.get_ref().report_id).await?;
        Ok(GetReportResponse {
            report: Some(stored_report(&row)?),
        })
    }

    async fn stored_row(&self, caller: &Principal, report_id: &str) -> Result<ReportRow, BenchmarkError> {
        let report_id = report_id.trim();
        if report_id.is_empty() {
            return Err(BenchmarkError::invalid("report_id", "is required"));
        }
        self.engine
            .store
            .report(&caller.organization_id, report_id)
            .await?
            .ok_or(BenchmarkError::NotFound("report"))
    }

    async fn download_report(
        &self,
        request: Request<DownloadReportRequest>,
    ) -> Result<DownloadReportResponse, BenchmarkError> {
        let caller = reader(&request).map_err(status_error)?;
        let request = request.into_inner();
        let format = ReportFormat::try_from(request.format)
            .map_err(|_| BenchmarkError::invalid("format", format!("{} is not a report format", request.format)))?;
        let row = self.stored_row(&caller, &request.report_id).await?;
        if row.status != ReportState::Succeeded.code() {
            return Err(BenchmarkError::FailedPrecondition(format!(
                "the report did not succeed: {}",
                row.failure_message
            )));
        }
        let body: ReportBody = serde_json::from_str(&row.content)?;
        let (content_type, extension, content) = match format {
            ReportFormat::Unspecified | ReportFormat::Html => (
                "text/html; charset=utf-8",
                "html",
                reports::render_html(&self.heading(&caller, &row).await, &body).into_bytes(),
            ),
            ReportFormat::Markdown => (
                "text/markdown; charset=utf-8",
                "md",
                reports::render_markdown(&self.heading(&caller, &row).await, &body).into_bytes(),
            ),
            ReportFormat::Csv => (
                "text/csv; charset=utf-8",
                "csv",
                reports::render_csv(&body)
                    .map_err(|error| BenchmarkError::Render(format!("csv: {error}")))?
                    .into_bytes(),
            ),
            ReportFormat::Json => (
                "application/json",
                "json",
                report_json(&convert::report(&row, Some(&body)))?,
            ),
        };
        Ok(DownloadReportResponse {
            content_type: content_type.to_owned(),
            filename: format!("metrix-report-{}.{extension}", row.report_id),
            content,
        })
    }

    /// What a rendered report says about itself.
    async fn heading(&self, caller: &Principal, row: &ReportRow) -> ReportHeading {
        let source = match row.source_id.as_str() {
            PLATFORM_SOURCE_ID => convert::platform_source().display_name,
            id => match self.engine.store.source(&caller.organization_id, id).await {
                Ok(Some(source)) => source.display_name,
                _ => id.to_owned(),
            },
        };
        ReportHeading {
            report_id: row.report_id.clone(),
            template_name: reports::template(&row.template_id)
                .map(|template| template.display_name.to_owned())
                .unwrap_or_else(|| row.template_id.clone()),
            company_id: row.company_id.clone(),
            period: row.period.clone(),
            revenue_band: reference::revenue_band(&row.revenue_band_id)
                .map(|band| band.display_name.to_owned())
                .unwrap_or_else(|| row.revenue_band_id.clone()),
            sector: reference::sector(&row.sector_id)
                .map(|sector| sector.display_name.to_owned())
                .unwrap_or_else(|| "all sectors".to_owned()),
            source,
            generated_at: rfc3339(row.completed_at.unwrap_or(row.created_at)),
        }
    }
}

/// A stored report with its body read back.
fn stored_report(row: &ReportRow) -> Result<Report, BenchmarkError> {
    let body: Option<ReportBody> = if row.content.is_empty() {
        None
    } else {
        Some(serde_json::from_str(&row.content)?)
    };
    Ok(convert::report(row, body.as_ref()))
}

/// The canonical proto3 JSON of a report.
fn report_json(report: &Report) -> Result<Vec<u8>, BenchmarkError> {
    static DESCRIPTOR: OnceLock<Option<prost_reflect::MessageDescriptor>> = OnceLock::new();
    let descriptor = DESCRIPTOR
        .get_or_init(|| {
            prost_reflect::DescriptorPool::decode(metrix_proto::FILE_DESCRIPTOR_SET)
                .ok()?
                .get_message_by_name("metrix.benchmark.v1.Report")
        })
        .clone()
        .ok_or_else(|| BenchmarkError::Render("the report message is not in the descriptor set".to_owned()))?;
    let message = prost_reflect::DynamicMessage::decode(descriptor, report.encode_to_vec().as_slice())
        .map_err(|error| BenchmarkError::Render(format!("json: {error}")))?;
    let mut json = serde_json::to_vec_pretty(&message)?;
    json.push(b'\n');
    Ok(json)
}

/// The metrics of a ranking request: each known, none twice, at most 50.
fn metric_list(catalogue: &[MetricInfo], ids: &[String]) -> Result<Vec<MetricInfo>, FieldViolation> {
    if ids.len() > MAX_RANKED_METRICS {
        return Err(FieldViolation::new(
            "metric_ids",
            format!("must name at most {MAX_RANKED_METRICS} metrics"),
        ));
    }
    let mut metrics: Vec<MetricInfo> = Vec::with_capacity(ids.len());
    for (index, id) in ids.iter().enumerate() {
        let metric = metric_of(catalogue, &format!("metric_ids[{index}]"), id)?;
        if metrics.iter().any(|known| known.id == metric.id) {
            return Err(FieldViolation::new(
                format!("metric_ids[{index}]"),
                "names a metric twice",
            ));
        }
        metrics.push(metric);
    }
    metrics.sort_by(|left, right| left.id.cmp(&right.id));
    Ok(metrics)
}

/// A time range's bounds in Unix microseconds, each optional.
fn time_range(range: Option<&TimeRange>) -> Result<(Option<i64>, Option<i64>), FieldViolation> {
    let Some(range) = range else {
        return Ok((None, None));
    };
    let bound = |field: &str, value: Option<&prost_types::Timestamp>| {
        value
            .map(|value| micros_of(value).ok_or_else(|| FieldViolation::new(field, "is not a valid timestamp")))
            .transpose()
    };
    let start = bound("time_range.start_time", range.start_time.as_ref())?;
    let end = bound("time_range.end_time", range.end_time.as_ref())?;
    if let (Some(start), Some(end)) = (start, end)
        && end <= start
    {
        return Err(FieldViolation::new("time_range", "must end after it starts"));
    }
    Ok((start, end))
}

/// A status from a permission check, carried as a domain error.
fn status_error(status: Status) -> BenchmarkError {
    match status.code() {
        tonic::Code::PermissionDenied => BenchmarkError::PermissionDenied("your role does not allow this"),
        _ => BenchmarkError::Unauthenticated(status.message().to_owned()),
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
    async fn download_report(
        &self,
        request: Request<DownloadReportRequest>,
    ) -> Result<Response<DownloadReportResponse>, Status> {
        answer(BenchmarkApi::download_report(self, request).await)
    }
}
