//! The statistics of a slice, now and over time.

use std::collections::{BTreeMap, HashSet};

use metrix_core::error::{FieldViolation, Violations};
use metrix_core::period::Period;
use metrix_core::time::{micros_of, now_micros, timestamp};
use metrix_proto::benchmark::v1::*;
use metrix_proto::common::v1::TimeRange;
use metrix_proto::metrics::v1::PeriodGranularity;
use tonic::Request;

use crate::engine::Scope as PeerScope;
use crate::error::BenchmarkError;
use crate::figures::{Bootstrap, Origin, SliceFigures};
use crate::{convert, series, stats};

use super::checks::{band_of, metric_of, period_of, reader, sector_of, status_error};
use super::{BenchmarkApi, MAX_BOOTSTRAP_RESAMPLES, MAX_SOURCES, Source, published, slice_text};

/// Bootstrap resamples of each period of a time series (one interval per
/// period; fewer than a single slice's default keeps long series quick).
const SERIES_BOOTSTRAP_RESAMPLES: u32 = 2_000;

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

impl BenchmarkApi {
    pub(super) async fn get_benchmark(
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

    pub(super) async fn get_benchmark_time_series(
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
}
