//! Ranking a value against its peers, direction-aware, and the overall score
//! across metrics.
//!
//! Every figure here is oriented so that higher is better. For a
//! lower-is-better metric (CAC payback, burn multiple) the contract defines
//! each figure on the negated data, `percentileofscore(-peers, -x)`; the
//! functions below compute the mirrored counts directly (the share of peers
//! ≥ x instead of ≤ x), which is the same number without negating anything.

use super::describe::Description;
use super::summation::compensated_sum;

/// Whether larger values of a metric are better or worse; it sets the sign s
/// of the scores (+1 or −1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Direction {
    /// Larger values are better (s = +1), for example net dollar retention.
    HigherIsBetter,
    /// Smaller values are better (s = −1), for example CAC payback.
    LowerIsBetter,
}

impl Direction {
    /// The sign s of the direction: +1 or −1.
    pub fn sign(self) -> f64 {
        match self {
            Direction::HigherIsBetter => 1.0,
            Direction::LowerIsBetter => -1.0,
        }
    }
}

/// How ties with the score count in a percentile of score, as the `kind` of
/// `scipy.stats.percentileofscore`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScoreKind {
    /// The percentage of values ≤ the score (`kind="weak"`).
    Weak,
    /// The percentage of values < the score (`kind="strict"`).
    Strict,
    /// The average of the weak and strict percentages (`kind="mean"`): ties
    /// count half.
    Mean,
}

/// The quartile of a value among its peers, best quartile first, or of an
/// overall score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Quartile {
    /// Not determined: nothing was ranked, or the quartiles are unknown.
    Unspecified,
    /// The best quarter.
    Top,
    /// The second-best quarter.
    UpperMiddle,
    /// The second-worst quarter.
    LowerMiddle,
    /// The worst quarter.
    Bottom,
}

/// The percentile rank of `score` among ascending `sorted` values, exactly as
/// `scipy.stats.percentileofscore(values, score, kind)` computes it, counting
/// by binary search.
///
/// The result is in [0, 100]: where scipy's `count · (100 / n)` rounds one
/// ulp above 100 it is 100. It is NaN when there are no values or the score
/// is NaN, as scipy's is.
///
/// # Examples
///
/// ```
/// use metrix_benchmark::stats::{ScoreKind, percentile_of_score};
///
/// let sorted = [1.0, 2.0, 3.0, 3.0];
/// assert_eq!(percentile_of_score(&sorted, 3.0, ScoreKind::Weak), 100.0);
/// assert_eq!(percentile_of_score(&sorted, 3.0, ScoreKind::Strict), 50.0);
/// assert_eq!(percentile_of_score(&sorted, 3.0, ScoreKind::Mean), 75.0);
/// ```
pub fn percentile_of_score(sorted: &[f64], score: f64, kind: ScoreKind) -> f64 {
    directional_percentile_of_score(sorted, score, kind, Direction::HigherIsBetter)
}

/// The direction-aware percentile rank of `score` among ascending `sorted`
/// values: [`percentile_of_score`] for a higher-is-better metric, and
/// `percentileofscore(-values, -score, kind)` for a lower-is-better one (the
/// weak rank is then the percentage of values ≥ the score).
pub fn directional_percentile_of_score(sorted: &[f64], score: f64, kind: ScoreKind, direction: Direction) -> f64 {
    let count = sorted.len();
    if count == 0 || score.is_nan() {
        return f64::NAN;
    }
    let below = sorted.partition_point(|&value| value < score);
    let at_or_below = sorted.partition_point(|&value| value <= score);
    // Counts of values worse than the score and worse-or-tied, in the
    // metric's own direction.
    let (worse, worse_or_tied) = match direction {
        Direction::HigherIsBetter => (below, at_or_below),
        Direction::LowerIsBetter => (count - at_or_below, count - below),
    };
    // The same operations as scipy: an integer count times 100 / n (or the
    // sum of two counts times 50 / n). For all n values that product can
    // round one ulp above 100 (n = 11, for example), where scipy reports
    // 100.00000000000001; the contract's range is [0, 100], so it is clamped.
    let count = count as f64;
    let percent = match kind {
        ScoreKind::Weak => worse_or_tied as f64 * (100.0 / count),
        ScoreKind::Strict => worse as f64 * (100.0 / count),
        ScoreKind::Mean => (worse + worse_or_tied) as f64 * (50.0 / count),
    };
    percent.min(100.0)
}

/// The quartile of `value` given the peers' P25, P50 and P75.
///
/// Higher is better: TOP when value ≥ P75, UPPER_MIDDLE when P50 ≤ value <
/// P75, LOWER_MIDDLE when P25 ≤ value < P50, BOTTOM below P25. Lower is
/// better: TOP when value ≤ P25, UPPER_MIDDLE when P25 < value ≤ P50,
/// LOWER_MIDDLE when P50 < value ≤ P75, BOTTOM above P75.
pub fn quartile_of(value: f64, p25: f64, p50: f64, p75: f64, direction: Direction) -> Quartile {
    match direction {
        Direction::HigherIsBetter => {
            if value >= p75 {
                Quartile::Top
            } else if value >= p50 {
                Quartile::UpperMiddle
            } else if value >= p25 {
                Quartile::LowerMiddle
            } else {
                Quartile::Bottom
            }
        }
        Direction::LowerIsBetter => {
            if value <= p25 {
                Quartile::Top
            } else if value <= p50 {
                Quartile::UpperMiddle
            } else if value <= p75 {
                Quartile::LowerMiddle
            } else {
                Quartile::Bottom
            }
        }
    }
}

/// How a value ranks against the retained values of its peers
/// (`MetricRanking` with `PERCENTILE_RANK_METHOD_WEAK`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PeerRanking {
    /// The weak percentile rank in [0, 100]: the percentage of peers ≤ the
    /// value (higher is better) or ≥ the value (lower is better).
    pub percentile_rank: f64,
    /// s · (x − mean) / std_dev; `None` when the peers have fewer than 2
    /// values or a standard deviation of 0.
    pub z_score: Option<f64>,
    /// s · (x − P50) / (P75 − P25); `None` when the interquartile range is 0.
    pub robust_score: Option<f64>,
    /// The 0–100 score: the direction-aware percentile rank of kind "mean"
    /// (ties count half).
    pub score: f64,
    /// The quartile of the value, best first.
    pub quartile: Quartile,
    /// Whether the value lies strictly beyond the peers' outlier fences.
    pub outlier: bool,
}

/// Ranks `value` against the peers described by `peers` (their retained
/// values, with the value's own company already left out by the caller).
///
/// # Examples
///
/// ```
/// use metrix_benchmark::stats::{Direction, Quartile, describe_sorted, rank_against_peers};
///
/// let peers = describe_sorted(&[1.0, 2.0, 3.0, 4.0, 5.0]).expect("not empty");
/// let ranking = rank_against_peers(&peers, 4.0, Direction::HigherIsBetter);
/// assert_eq!(ranking.percentile_rank, 80.0);
/// assert_eq!(ranking.score, 70.0);
/// assert_eq!(ranking.quartile, Quartile::Top);
/// assert_eq!(ranking.robust_score, Some(0.5));
///
/// let mirrored = rank_against_peers(&peers, 4.0, Direction::LowerIsBetter);
/// assert_eq!(mirrored.percentile_rank, 40.0);
/// assert_eq!(mirrored.quartile, Quartile::LowerMiddle);
/// assert_eq!(mirrored.robust_score, Some(-0.5));
/// ```
pub fn rank_against_peers(peers: &Description, value: f64, direction: Direction) -> PeerRanking {
    let statistics = peers.statistics();
    let sorted = peers.sorted_retained();
    let sign = direction.sign();
    let z_score = match statistics.std_dev {
        Some(std_dev) if std_dev > 0.0 => Some(sign * (value - statistics.mean) / std_dev),
        _ => None,
    };
    let interquartile_range = statistics.interquartile_range();
    let robust_score = (interquartile_range != 0.0).then(|| sign * (value - statistics.p50) / interquartile_range);
    PeerRanking {
        percentile_rank: directional_percentile_of_score(sorted, value, ScoreKind::Weak, direction),
        z_score,
        robust_score,
        score: directional_percentile_of_score(sorted, value, ScoreKind::Mean, direction),
        quartile: quartile_of(value, statistics.p25, statistics.p50, statistics.p75, direction),
        outlier: statistics.is_outlier(value),
    }
}

/// The figures an external source published for a slice; each is `None`
/// when it was not published.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PublishedPercentiles {
    /// The published minimum (rank 0).
    pub min: Option<f64>,
    /// The published 10th percentile.
    pub p10: Option<f64>,
    /// The published 25th percentile.
    pub p25: Option<f64>,
    /// The published median.
    pub p50: Option<f64>,
    /// The published 75th percentile.
    pub p75: Option<f64>,
    /// The published 90th percentile.
    pub p90: Option<f64>,
    /// The published maximum (rank 100).
    pub max: Option<f64>,
}

impl PublishedPercentiles {
    /// The published points as (value, rank) pairs in rank order.
    fn points(&self) -> impl Iterator<Item = (f64, f64)> + '_ {
        [
            (self.min, 0.0),
            (self.p10, 10.0),
            (self.p25, 25.0),
            (self.p50, 50.0),
            (self.p75, 75.0),
            (self.p90, 90.0),
            (self.max, 100.0),
        ]
        .into_iter()
        .filter_map(|(value, rank)| value.map(|value| (value, rank)))
    }
}

/// Published points that share one value: the lowest and highest of their
/// ranks.
#[derive(Debug, Clone, Copy)]
struct TiedPoints {
    value: f64,
    lowest_rank: f64,
    highest_rank: f64,
}

/// The estimated percentile rank of `value` from an external source's
/// published figures (`PERCENTILE_RANK_METHOD_INTERPOLATED`), in [0, 100].
///
/// The rank is interpolated linearly between the published points (min = 0,
/// P10 = 10, P25 = 25, P50 = 50, P75 = 75, P90 = 90, max = 100, whichever were
/// published) and clamped to the outermost published points: a value below
/// the lowest published figure gets that figure's rank, and likewise at the
/// top. For a lower-is-better metric the result is mirrored, 100 − r.
///
/// Published figures may repeat (P25 = P50, for example). A value exactly
/// equal to repeated figures is given the rank most favourable to it, as the
/// weak rank of platform data counts ties in the value's favour: the highest
/// of the tied ranks when higher is better, and 100 minus the lowest of them
/// when lower is better. Between two distinct published values the rank runs
/// linearly from the highest rank of the lower value to the lowest rank of
/// the upper one.
///
/// `None` when nothing was published, a figure is not finite, the figures
/// decrease with rank (which the import rejects), or `value` is NaN.
///
/// # Examples
///
/// ```
/// use metrix_benchmark::stats::{Direction, PublishedPercentiles, interpolated_percentile_rank};
///
/// let published = PublishedPercentiles { p25: Some(10.0), p50: Some(20.0), p75: Some(40.0), ..Default::default() };
/// assert_eq!(interpolated_percentile_rank(&published, 30.0, Direction::HigherIsBetter), Some(62.5));
/// assert_eq!(interpolated_percentile_rank(&published, 30.0, Direction::LowerIsBetter), Some(37.5));
/// assert_eq!(interpolated_percentile_rank(&published, 1.0, Direction::HigherIsBetter), Some(25.0));
/// ```
pub fn interpolated_percentile_rank(published: &PublishedPercentiles, value: f64, direction: Direction) -> Option<f64> {
    if value.is_nan() {
        return None;
    }
    let mut groups: Vec<TiedPoints> = Vec::with_capacity(7);
    for (point_value, rank) in published.points() {
        if !point_value.is_finite() {
            return None;
        }
        match groups.last_mut() {
            Some(last) if point_value < last.value => return None,
            Some(last) if point_value == last.value => last.highest_rank = rank,
            _ => groups.push(TiedPoints {
                value: point_value,
                lowest_rank: rank,
                highest_rank: rank,
            }),
        }
    }
    let first = groups.first()?;
    let last = groups.last()?;
    // Ranks of published points are whole numbers, so mirroring them
    // (100 − r) is exact; only the interpolation between two points needs
    // care, below.
    let mirror = |rank: f64| match direction {
        Direction::HigherIsBetter => rank,
        Direction::LowerIsBetter => 100.0 - rank,
    };
    if value < first.value {
        return Some(mirror(first.lowest_rank));
    }
    if value > last.value {
        return Some(mirror(last.highest_rank));
    }
    // The first group whose value reaches `value`; it exists because
    // value ≤ last.value.
    let reached = groups.partition_point(|group| group.value < value);
    let upper = groups[reached];
    if upper.value == value {
        return Some(match direction {
            Direction::HigherIsBetter => upper.highest_rank,
            Direction::LowerIsBetter => 100.0 - upper.lowest_rank,
        });
    }
    // value > first.value, so the group before `reached` exists.
    let lower = groups[reached - 1];
    let (start_rank, end_rank) = (lower.highest_rank, upper.lowest_rank);
    let width = upper.value - lower.value;
    // Each direction interpolates from the end where its own result is
    // smallest, so that a rank near 0 is not the difference of two numbers
    // near 100: higher is better measures from the lower point, lower is
    // better (100 − r) from the upper point.
    Some(match direction {
        Direction::HigherIsBetter => {
            let fraction = (value - lower.value) / width;
            (start_rank + (end_rank - start_rank) * fraction).clamp(start_rank, end_rank)
        }
        Direction::LowerIsBetter => {
            let fraction_from_upper = (upper.value - value) / width;
            ((100.0 - end_rank) + (end_rank - start_rank) * fraction_from_upper)
                .clamp(100.0 - end_rank, 100.0 - start_rank)
        }
    })
}

/// A score across several ranked metrics (`OverallScore`, without the number
/// of metrics asked for, which the caller knows).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OverallScore {
    /// The arithmetic mean of the metric scores, in [0, 100]; `None` when no
    /// metric was ranked.
    pub score: Option<f64>,
    /// The quartile of the score; [`Quartile::Unspecified`] when there is no
    /// score.
    pub quartile: Quartile,
    /// The number of scores that contributed.
    pub ranked_metric_count: usize,
}

/// The quartile of a 0–100 score: TOP when ≥ 75, UPPER_MIDDLE when ≥ 50,
/// LOWER_MIDDLE when ≥ 25, otherwise BOTTOM.
pub fn score_quartile(score: f64) -> Quartile {
    if score >= 75.0 {
        Quartile::Top
    } else if score >= 50.0 {
        Quartile::UpperMiddle
    } else if score >= 25.0 {
        Quartile::LowerMiddle
    } else {
        Quartile::Bottom
    }
}

/// The overall score of the ranked metrics' scores: their equally weighted
/// mean and its quartile.
///
/// # Examples
///
/// ```
/// use metrix_benchmark::stats::{Quartile, overall_score};
///
/// let overall = overall_score(&[80.0, 60.0, 40.0]);
/// assert_eq!(overall.score, Some(60.0));
/// assert_eq!(overall.quartile, Quartile::UpperMiddle);
/// assert_eq!(overall_score(&[]).quartile, Quartile::Unspecified);
/// ```
pub fn overall_score(scores: &[f64]) -> OverallScore {
    let ranked_metric_count = scores.len();
    if ranked_metric_count == 0 {
        return OverallScore {
            score: None,
            quartile: Quartile::Unspecified,
            ranked_metric_count,
        };
    }
    // Scores are within [0, 100]; clamping only guards the mean's last bit.
    let score = (compensated_sum(scores.iter().copied()) / ranked_metric_count as f64).clamp(0.0, 100.0);
    OverallScore {
        score: Some(score),
        quartile: score_quartile(score),
        ranked_metric_count,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::describe_sorted;
    use proptest::prelude::*;

    #[test]
    fn percentile_of_score_matches_scipy_by_hand() {
        // scipy.stats.percentileofscore([1, 2, 3, 4], 3, kind=...) → weak 75, strict 50, mean 62.5
        let sorted = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile_of_score(&sorted, 3.0, ScoreKind::Weak), 75.0);
        assert_eq!(percentile_of_score(&sorted, 3.0, ScoreKind::Strict), 50.0);
        assert_eq!(percentile_of_score(&sorted, 3.0, ScoreKind::Mean), 62.5);
        assert_eq!(percentile_of_score(&sorted, 0.0, ScoreKind::Weak), 0.0);
        assert_eq!(percentile_of_score(&sorted, 9.0, ScoreKind::Mean), 100.0);
        // percentileofscore([1, 2, 3], 2.5) = 66.66666666666667 (2 * (100 / 3))
        assert_eq!(
            percentile_of_score(&[1.0, 2.0, 3.0], 2.5, ScoreKind::Weak),
            66.66666666666667
        );
        assert!(percentile_of_score(&[], 1.0, ScoreKind::Weak).is_nan());
    }

    #[test]
    fn lower_is_better_counts_peers_at_or_above() {
        let sorted = [1.0, 2.0, 3.0, 3.0, 5.0];
        // percentileofscore([-5, -3, -3, -2, -1], -3, kind="weak") = 60
        assert_eq!(
            directional_percentile_of_score(&sorted, 3.0, ScoreKind::Weak, Direction::LowerIsBetter),
            60.0
        );
        // kind="mean": (1 + 3) * 50 / 5 = 40
        assert_eq!(
            directional_percentile_of_score(&sorted, 3.0, ScoreKind::Mean, Direction::LowerIsBetter),
            40.0
        );
    }

    #[test]
    fn quartiles_follow_the_contract_at_the_boundaries() {
        let (p25, p50, p75) = (10.0, 20.0, 30.0);
        let higher = |value| quartile_of(value, p25, p50, p75, Direction::HigherIsBetter);
        let lower = |value| quartile_of(value, p25, p50, p75, Direction::LowerIsBetter);
        assert_eq!(
            [higher(30.0), higher(20.0), higher(10.0), higher(9.9)],
            [
                Quartile::Top,
                Quartile::UpperMiddle,
                Quartile::LowerMiddle,
                Quartile::Bottom
            ]
        );
        assert_eq!(
            [lower(10.0), lower(20.0), lower(30.0), lower(30.1)],
            [
                Quartile::Top,
                Quartile::UpperMiddle,
                Quartile::LowerMiddle,
                Quartile::Bottom
            ]
        );
    }

    #[test]
    fn ranking_leaves_undefined_scores_unset() {
        let constant = describe_sorted(&[4.0, 4.0, 4.0, 4.0]).expect("not empty");
        let ranking = rank_against_peers(&constant, 5.0, Direction::HigherIsBetter);
        assert_eq!((ranking.z_score, ranking.robust_score), (None, None));
        assert_eq!(
            (ranking.percentile_rank, ranking.score, ranking.outlier),
            (100.0, 100.0, true)
        );
        let single = describe_sorted(&[4.0]).expect("not empty");
        assert_eq!(rank_against_peers(&single, 4.0, Direction::LowerIsBetter).z_score, None);
    }

    #[test]
    fn z_scores_are_signed_by_direction() {
        let peers = describe_sorted(&[1.0, 2.0, 3.0, 4.0]).expect("not empty");
        let higher = rank_against_peers(&peers, 5.0, Direction::HigherIsBetter);
        let lower = rank_against_peers(&peers, 5.0, Direction::LowerIsBetter);
        assert_eq!(higher.z_score, Some(2.5 / 1.2909944487358056));
        assert_eq!(lower.z_score, Some(-2.5 / 1.2909944487358056));
    }

    #[test]
    fn interpolated_ranks_handle_ties_gaps_and_clamping() {
        let full = PublishedPercentiles {
            min: Some(0.0),
            p10: Some(10.0),
            p25: Some(20.0),
            p50: Some(20.0),
            p75: Some(40.0),
            p90: Some(60.0),
            max: Some(100.0),
        };
        let higher = |value| interpolated_percentile_rank(&full, value, Direction::HigherIsBetter);
        let lower = |value| interpolated_percentile_rank(&full, value, Direction::LowerIsBetter);
        assert_eq!(higher(5.0), Some(5.0));
        assert_eq!(higher(15.0), Some(17.5));
        assert_eq!(higher(20.0), Some(50.0));
        assert_eq!(lower(20.0), Some(75.0));
        assert_eq!(higher(30.0), Some(62.5));
        assert_eq!(higher(-1.0), Some(0.0));
        assert_eq!(higher(250.0), Some(100.0));
        assert_eq!(lower(250.0), Some(0.0));

        let only_median = PublishedPercentiles {
            p50: Some(7.0),
            ..Default::default()
        };
        assert_eq!(
            interpolated_percentile_rank(&only_median, 1.0, Direction::HigherIsBetter),
            Some(50.0)
        );
        assert_eq!(
            interpolated_percentile_rank(&only_median, 7.0, Direction::LowerIsBetter),
            Some(50.0)
        );
        assert_eq!(
            interpolated_percentile_rank(&PublishedPercentiles::default(), 1.0, Direction::HigherIsBetter),
            None
        );
        let decreasing = PublishedPercentiles {
            p25: Some(5.0),
            p75: Some(4.0),
            ..Default::default()
        };
        assert_eq!(
            interpolated_percentile_rank(&decreasing, 4.5, Direction::HigherIsBetter),
            None
        );
    }

    #[test]
    fn overall_scores_use_the_quartile_thresholds() {
        assert_eq!(overall_score(&[75.0]).quartile, Quartile::Top);
        assert_eq!(overall_score(&[74.9, 75.0]).quartile, Quartile::UpperMiddle);
        assert_eq!(overall_score(&[25.0]).quartile, Quartile::LowerMiddle);
        assert_eq!(overall_score(&[0.0, 49.0]).quartile, Quartile::Bottom);
        assert_eq!(overall_score(&[10.0, 20.0]).ranked_metric_count, 2);
    }

    proptest! {
        #[test]
        fn ranks_are_percentages(
            values in proptest::collection::vec(-100.0f64..100.0, 1..100),
            value in -150.0f64..150.0,
        ) {
            let peers = describe_sorted(&values).expect("not empty");
            for direction in [Direction::HigherIsBetter, Direction::LowerIsBetter] {
                let ranking = rank_against_peers(&peers, value, direction);
                prop_assert!((0.0..=100.0).contains(&ranking.percentile_rank));
                prop_assert!((0.0..=100.0).contains(&ranking.score));
            }
        }

        #[test]
        fn non_finite_values_never_panic(
            values in proptest::collection::vec(any::<f64>(), 1..50),
            value in any::<f64>(),
            published in proptest::collection::vec(proptest::option::of(any::<f64>()), 7),
        ) {
            let peers = describe_sorted(&values).expect("not empty");
            for direction in [Direction::HigherIsBetter, Direction::LowerIsBetter] {
                let _ = rank_against_peers(&peers, value, direction);
                let published = PublishedPercentiles {
                    min: published[0], p10: published[1], p25: published[2], p50: published[3],
                    p75: published[4], p90: published[5], max: published[6],
                };
                let _ = interpolated_percentile_rank(&published, value, direction);
            }
            let _ = overall_score(&values);
        }

        #[test]
        fn lower_is_better_mirrors_negated_data(
            values in proptest::collection::vec((-50i32..50).prop_map(|value| f64::from(value) / 4.0), 1..100),
            pick in any::<prop::sample::Index>(),
            offset in prop_oneof![Just(0.0), -20.0f64..20.0],
        ) {
            // Half the time the ranked value is one of the peers, to exercise ties.
            let value = values[pick.index(values.len())] + offset;
            let mut sorted = values.clone();
            sorted.sort_by(f64::total_cmp);
            let mut negated: Vec<f64> = values.iter().map(|value| -value).collect();
            negated.sort_by(f64::total_cmp);
            for kind in [ScoreKind::Weak, ScoreKind::Strict, ScoreKind::Mean] {
                prop_assert_eq!(
                    directional_percentile_of_score(&negated, -value, kind, Direction::HigherIsBetter),
                    directional_percentile_of_score(&sorted, value, kind, Direction::LowerIsBetter)
                );
            }
        }

        #[test]
        fn interpolated_ranks_are_monotone_and_bounded(
            mut points in proptest::collection::vec(-100.0f64..100.0, 7),
            mask in proptest::collection::vec(any::<bool>(), 7),
            first in -150.0f64..150.0,
            second in -150.0f64..150.0,
        ) {
            points.sort_by(f64::total_cmp);
            let pick = |index: usize| mask[index].then_some(points[index]);
            let published = PublishedPercentiles {
                min: pick(0), p10: pick(1), p25: pick(2), p50: pick(3), p75: pick(4), p90: pick(5), max: pick(6),
            };
            let (low, high) = if first <= second { (first, second) } else { (second, first) };
            match (
                interpolated_percentile_rank(&published, low, Direction::HigherIsBetter),
                interpolated_percentile_rank(&published, high, Direction::HigherIsBetter),
            ) {
                (Some(low_rank), Some(high_rank)) => {
                    prop_assert!(low_rank <= high_rank);
                    prop_assert!((0.0..=100.0).contains(&low_rank) && (0.0..=100.0).contains(&high_rank));
                }
                (None, None) => prop_assert!(mask.iter().all(|published| !published)),
                _ => prop_assert!(false, "one rank set and the other not"),
            }
            if let (Some(low_rank), Some(high_rank)) = (
                interpolated_percentile_rank(&published, low, Direction::LowerIsBetter),
                interpolated_percentile_rank(&published, high, Direction::LowerIsBetter),
            ) {
                prop_assert!(low_rank >= high_rank);
                prop_assert!((0.0..=100.0).contains(&low_rank) && (0.0..=100.0).contains(&high_rank));
                // Away from published values the two directions mirror each other.
                if !points.contains(&low) {
                    let higher = interpolated_percentile_rank(&published, low, Direction::HigherIsBetter).expect("published");
                    prop_assert!((low_rank - (100.0 - higher)).abs() <= 1e-12);
                }
            }
        }
    }
}
