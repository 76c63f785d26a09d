//! Domain answers in the contract's form. Nothing here decides anything: the
//! figures arrive anonymised, and unset stays unset.

use metrix_core::time::timestamp;
use metrix_proto::benchmark::v1 as proto;
use metrix_proto::common::v1::MetricDirection;

use crate::figures::{self, Origin, SliceFigures, Suppression};
use crate::ranking::{MetricRank, Overall, RankMethod, RankStatus};
use crate::reports::{Assessment, ReportBody};
use crate::stats::{self, Direction, Quartile};
use crate::store::{ReportRow, SourceRow};

/// The id of the platform's own source.
pub const PLATFORM_SOURCE_ID: &str = "metrix";

/// The platform's own source.
pub fn platform_source() -> proto::BenchmarkSource {
    proto::BenchmarkSource {
        id: PLATFORM_SOURCE_ID.to_owned(),
        kind: proto::BenchmarkSourceKind::Platform as i32,
        display_name: "Metrix platform peers".to_owned(),
        publisher: String::new(),
        publication_date: String::new(),
        verified: true,
        url: String::new(),
        description: "Computed exactly from the KPIs companies record in Metrix, anonymised: one current value per \
                      company, outliers beyond 1.5 × IQR excluded, slices under the anonymity threshold withheld."
            .to_owned(),
        import_time: None,
        row_count: 0,
    }
}

/// An imported source.
pub fn source(row: &SourceRow) -> proto::BenchmarkSource {
    proto::BenchmarkSource {
        id: row.source_id.clone(),
        kind: proto::BenchmarkSourceKind::External as i32,
        display_name: row.display_name.clone(),
        publisher: row.publisher.clone(),
        publication_date: row.publication_date.clone(),
        verified: row.verified,
        url: row.url.clone(),
        description: row.description.clone(),
        import_time: Some(timestamp(row.imported_at)),
        row_count: row.row_count,
    }
}

/// A direction in the contract's form.
pub fn direction(direction: Direction) -> i32 {
    match direction {
        Direction::HigherIsBetter => MetricDirection::HigherIsBetter as i32,
        Direction::LowerIsBetter => MetricDirection::LowerIsBetter as i32,
    }
}

fn suppression(figures: &SliceFigures) -> proto::Suppression {
    let status = match figures.suppression {
        Suppression::NotSuppressed => proto::SuppressionStatus::NotSuppressed,
        Suppression::TailsOmitted => proto::SuppressionStatus::TailsOmitted,
        Suppression::BelowK => proto::SuppressionStatus::SuppressedBelowK,
        Suppression::NoData => proto::SuppressionStatus::SuppressedNoData,
    };
    proto::Suppression {
        status: status as i32,
        reason: figures.suppression_reason(),
        min_sample_size: i32::try_from(figures.min_sample_size).unwrap_or(i32::MAX),
        tail_min_sample_size: i32::try_from(figures::TAIL_MIN_SAMPLE_SIZE).unwrap_or(i32::MAX),
    }
}

fn count(value: u32) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

/// Anonymised figures in the contract's form.
pub fn statistics(figures: &SliceFigures) -> proto::BenchmarkStatistics {
    let mean_interval = match figures.origin {
        Origin::Computed => Some(proto::ConfidenceInterval {
            method: proto::ConfidenceIntervalMethod::StudentT as i32,
            confidence_level: figures::CONFIDENCE_LEVEL,
            lower_bound: figures.mean_interval.map(|interval| interval.lower),
            upper_bound: figures.mean_interval.map(|interval| interval.upper),
            bootstrap_seed: None,
            bootstrap_resamples: 0,
            bootstrap_rng: String::new(),
        }),
        Origin::Published => None,
    };
    let median_interval = match (figures.origin, figures.bootstrap) {
        (Origin::Computed, Some(bootstrap)) => Some(proto::ConfidenceInterval {
            method: proto::ConfidenceIntervalMethod::BootstrapPercentile as i32,
            confidence_level: figures::CONFIDENCE_LEVEL,
            lower_bound: figures.median_interval.map(|interval| interval.lower),
            upper_bound: figures.median_interval.map(|interval| interval.upper),
            bootstrap_seed: Some(bootstrap.seed),
            bootstrap_resamples: i32::try_from(bootstrap.resamples).unwrap_or(i32::MAX),
            bootstrap_rng: stats::BOOTSTRAP_RNG_NAME.to_owned(),
        }),
        _ => None,
    };
    proto::BenchmarkStatistics {
        n: count(figures.n),
        total_count: count(figures.total_count),
        outlier_count: count(figures.outlier_count),
        suppression: Some(suppression(figures)),
        mean: figures.mean,
        std_dev: figures.std_dev,
        min: figures.min,
        max: figures.max,
        p10: figures.p10,
        p25: figures.p25,
        p50: figures.p50,
        p75: figures.p75,
        p90: figures.p90,
        lower_fence: figures.lower_fence,
        upper_fence: figures.upper_fence,
        mean_confidence_interval: mean_interval,
        median_confidence_interval: median_interval,
    }
}

/// A quartile in the contract's form.
pub fn quartile(quartile: Option<Quartile>) -> i32 {
    match quartile {
        Some(Quartile::Top) => proto::Quartile::Top as i32,
        Some(Quartile::UpperMiddle) => proto::Quartile::UpperMiddle as i32,
        Some(Quartile::LowerMiddle) => proto::Quartile::LowerMiddle as i32,
        Some(Quartile::Bottom) => proto::Quartile::Bottom as i32,
        Some(Quartile::Unspecified) | None => proto::Quartile::Unspecified as i32,
    }
}

/// A metric's ranking in the contract's form.
pub fn ranking(rank: &MetricRank) -> proto::MetricRanking {
    proto::MetricRanking {
        metric_id: rank.metric_id.clone(),
        direction: direction(rank.direction),
        status: match rank.status {
            RankStatus::Ranked => proto::RankingStatus::Ranked,
            RankStatus::NoCompanyValue => proto::RankingStatus::NoCompanyValue,
            RankStatus::PeersSuppressed => proto::RankingStatus::PeersSuppressed,
        } as i32,
        value: rank.value,
        percentile_rank: rank.percentile_rank,
        percentile_rank_method: match rank.method {
            Some(RankMethod::Weak) => proto::PercentileRankMethod::Weak,
            Some(RankMethod::Interpolated) => proto::PercentileRankMethod::Interpolated,
            None => proto::PercentileRankMethod::Unspecified,
        } as i32,
        z_score: rank.z_score,
        robust_score: rank.robust_score,
        score: rank.score,
        quartile: quartile(rank.quartile),
        outlier: rank.outlier,
        peer_statistics: Some(statistics(&rank.peers)),
    }
}

/// The overall score in the contract's form.
pub fn overall(overall: &Overall) -> proto::OverallScore {
    proto::OverallScore {
        score: overall.score,
        quartile: quartile(overall.quartile),
        ranked_metric_count: count(overall.ranked_metric_count),
        metric_count: count(overall.metric_count),
    }
}

/// The status of a stored report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportState {
    /// Generated.
    Succeeded,
    /// Generation failed.
    Failed,
}

impl ReportState {
    /// The stored code (the contract's enum number).
    pub fn code(self) -> i32 {
        match self {
            ReportState::Succeeded => proto::ReportStatus::Succeeded as i32,
            ReportState::Failed => proto::ReportStatus::Failed as i32,
        }
    }
}

/// A stored report in the contract's form.
pub fn report(row: &ReportRow, body: Option<&ReportBody>) -> proto::Report {
    let sections = body
        .map(|body| {
            body.sections
                .iter()
                .map(|section| proto::ReportSection {
                    metric_id: section.ranking.metric_id.clone(),
                    metric_display_name: section.metric_display_name.clone(),
                    ranking: Some(ranking(&section.ranking)),
                    chart_svg: section.chart_svg.clone(),
                    assessment: match section.assessment {
                        Assessment::Strength => proto::Assessment::Strength,
                        Assessment::Neutral => proto::Assessment::Neutral,
                        Assessment::Weakness => proto::Assessment::Weakness,
                        Assessment::NotRanked => proto::Assessment::NotRanked,
                    } as i32,
                    reading: section.reading.clone(),
                })
                .collect()
        })
        .unwrap_or_default();
    let findings = |findings: &[crate::reports::Finding]| {
        findings
            .iter()
            .map(|finding| proto::ReportFinding {
                metric_id: finding.metric_id.clone(),
                text: finding.text.clone(),
            })
            .collect::<Vec<_>>()
    };
    proto::Report {
        id: row.report_id.clone(),
        company_id: row.company_id.clone(),
        template_id: row.template_id.clone(),
        period: row.period.clone(),
        revenue_band_id: row.revenue_band_id.clone(),
        sector_id: row.sector_id.clone(),
        source_id: row.source_id.clone(),
        status: row.status,
        failure_message: row.failure_message.clone(),
        create_time: Some(timestamp(row.created_at)),
        complete_time: row.completed_at.map(timestamp),
        sections,
        strengths: body.map(|body| findings(&body.strengths)).unwrap_or_default(),
        weaknesses: body.map(|body| findings(&body.weaknesses)).unwrap_or_default(),
        overall: body.map(|body| overall(&body.overall)),
    }
}
