//! How a value ranks against its peers, metric by metric, and across
//! metrics: the domain answer of RankCompany, CalculateRanking and reports.
//!
//! Every score is direction-aware (higher is always better). Against the
//! platform's data the rank is exact over the retained peer values; against
//! an external source it is interpolated between the published percentiles.

use serde::{Deserialize, Serialize};

use crate::engine::DescribedPeers;
use crate::figures::SliceFigures;
use crate::peers::MetricInfo;
use crate::stats::{self, Direction, Quartile};

/// Whether a metric could be ranked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RankStatus {
    /// Ranked; the figures are set.
    Ranked,
    /// The company has no value for the metric and period.
    NoCompanyValue,
    /// The peers are suppressed (fewer than k or no data).
    PeersSuppressed,
}

/// How a percentile rank was computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RankMethod {
    /// Exact over the peers' values (scipy `percentileofscore`, kind `weak`).
    Weak,
    /// Interpolated between an external source's published percentiles.
    Interpolated,
}

/// How one value ranks for one metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricRank {
    /// The metric.
    pub metric_id: String,
    /// Whether larger values are better.
    pub direction: Direction,
    /// Whether it could be ranked.
    pub status: RankStatus,
    /// The ranked value.
    pub value: Option<f64>,
    /// The percentile rank in [0, 100].
    pub percentile_rank: Option<f64>,
    /// How the rank was computed; `None` when not ranked.
    pub method: Option<RankMethod>,
    /// s · (x − mean) / std.
    pub z_score: Option<f64>,
    /// s · (x − P50) / IQR.
    pub robust_score: Option<f64>,
    /// The 0–100 score (ties count half).
    pub score: Option<f64>,
    /// The quartile, best first.
    pub quartile: Option<Quartile>,
    /// Whether the value lies beyond the peers' fences.
    pub outlier: bool,
    /// The peers' figures, anonymised.
    pub peers: SliceFigures,
}

impl MetricRank {
    fn unranked(metric: &MetricInfo, value: Option<f64>, status: RankStatus, peers: SliceFigures) -> Self {
        Self {
            metric_id: metric.id.clone(),
            direction: metric.direction,
            status,
            value,
            percentile_rank: None,
            method: None,
            z_score: None,
            robust_score: None,
            score: None,
            quartile: None,
            outlier: false,
            peers,
        }
    }
}

/// Ranks `value` against the platform's peers of `metric`.
pub fn rank_against_platform(
    metric: &MetricInfo,
    value: Option<f64>,
    peers: &DescribedPeers,
    min_peer_count: u32,
) -> MetricRank {
    let figures = peers.figures.anonymised(min_peer_count);
    let Some(value) = value else {
        return MetricRank::unranked(metric, None, RankStatus::NoCompanyValue, figures);
    };
    let (true, Some(description)) = (figures.is_reported(), peers.description.as_ref()) else {
        return MetricRank::unranked(metric, Some(value), RankStatus::PeersSuppressed, figures);
    };
    let ranked = stats::rank_against_peers(description, value, metric.direction);
    MetricRank {
        metric_id: metric.id.clone(),
        direction: metric.direction,
        status: RankStatus::Ranked,
        value: Some(value),
        percentile_rank: Some(ranked.percentile_rank),
        method: Some(RankMethod::Weak),
        z_score: ranked.z_score,
        robust_score: ranked.robust_score,
        score: Some(ranked.score),
        quartile: known_quartile(ranked.quartile),
        outlier: ranked.outlier,
        peers: figures,
    }
}

/// Ranks `value` against the published figures of an external source
/// (already anonymised).
pub fn rank_against_published(metric: &MetricInfo, value: Option<f64>, figures: SliceFigures) -> MetricRank {
    let Some(value) = value else {
        return MetricRank::unranked(metric, None, RankStatus::NoCompanyValue, figures);
    };
    let published = stats::PublishedPercentiles {
        min: figures.min,
        p10: figures.p10,
        p25: figures.p25,
        p50: figures.p50,
        p75: figures.p75,
        p90: figures.p90,
        max: figures.max,
    };
    let rank = if figures.is_reported() {
        stats::interpolated_percentile_rank(&published, value, metric.direction)
    } else {
        None
    };
    let Some(rank) = rank else {
        return MetricRank::unranked(metric, Some(value), RankStatus::PeersSuppressed, figures);
    };
    let sign = metric.direction.sign();
    let z_score = match (figures.mean, figures.std_dev) {
        (Some(mean), Some(std_dev)) if figures.n >= 2 && std_dev > 0.0 => Some(sign * (value - mean) / std_dev),
        _ => None,
    };
    let (robust_score, quartile) = match (figures.p25, figures.p50, figures.p75) {
        (Some(p25), Some(p50), Some(p75)) => {
            let iqr = p75 - p25;
            let robust = (iqr > 0.0).then(|| sign * (value - p50) / iqr);
            (
                robust,
                known_quartile(stats::quartile_of(value, p25, p50, p75, metric.direction)),
            )
        }
        _ => (None, None),
    };
    MetricRank {
        metric_id: metric.id.clone(),
        direction: metric.direction,
        status: RankStatus::Ranked,
        value: Some(value),
        percentile_rank: Some(rank),
        method: Some(RankMethod::Interpolated),
        z_score,
        robust_score,
        score: Some(rank),
        quartile,
        outlier: false,
        peers: figures,
    }
}

/// The score across metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Overall {
    /// The mean of the ranked metrics' scores.
    pub score: Option<f64>,
    /// Its quartile: TOP from 75, UPPER_MIDDLE from 50, LOWER_MIDDLE from 25.
    pub quartile: Option<Quartile>,
    /// How many metrics were ranked.
    pub ranked_metric_count: u32,
    /// How many metrics were asked for.
    pub metric_count: u32,
}

/// The overall score of `rankings`.
pub fn overall(rankings: &[MetricRank]) -> Overall {
    let scores: Vec<f64> = rankings.iter().filter_map(|ranking| ranking.score).collect();
    let overall = stats::overall_score(&scores);
    Overall {
        score: overall.score,
        quartile: known_quartile(overall.quartile),
        ranked_metric_count: u32::try_from(overall.ranked_metric_count).unwrap_or(u32::MAX),
        metric_count: u32::try_from(rankings.len()).unwrap_or(u32::MAX),
    }
}

/// A quartile, or `None` for an unspecified one.
fn known_quartile(quartile: Quartile) -> Option<Quartile> {
    (quartile != Quartile::Unspecified).then_some(quartile)
}
