//! The numerical core of the benchmark service: slice statistics with outlier
//! exclusion, confidence intervals, direction-aware rankings and trends,
//! exactly as `metrix.benchmark.v1` defines them.
//!
//! Everything here is pure computation on `f64` slices; anonymity rules
//! (suppressing slices below k values, omitting P10 and P90 below 10) and the
//! mapping to protobuf messages belong to the caller. The definitions follow
//! the reference implementations the contract names, and the differential
//! test (`tests/differential.rs`) checks them against numpy and scipy:
//!
//! - percentiles are numpy's `np.percentile(values, q)` (method `"linear"`),
//!   with numpy's arithmetic, so they agree to the bit ([`percentile_linear`]);
//! - a slice's fences P25 ∓ 1.5 · IQR are computed over all values, values
//!   strictly beyond them are excluded, and the mean, sample standard
//!   deviation (ddof = 1), extremes and percentiles describe the retained
//!   values ([`describe()`], [`describe_sorted`], [`describe_slices`]);
//! - the mean's interval is Student's t, the median's a seeded percentile
//!   bootstrap on ChaCha8 ([`mean_confidence_interval`],
//!   [`median_bootstrap_interval`]);
//! - percentile ranks are `scipy.stats.percentileofscore`, mirrored on negated
//!   data for lower-is-better metrics ([`percentile_of_score`],
//!   [`rank_against_peers`]);
//! - trends are ordinary least squares with the slope's t-test, as
//!   `scipy.stats.linregress` ([`linear_trend`]).
//!
//! Inputs must be finite: callers drop NaN and infinite values before they
//! reach this module. Should one slip through, the figures are meaningless
//! but nothing panics; empty input is answered as each function documents. Means and sums of squares use two passes and
//! compensated summation, so large offsets (1e9 plus small changes) and
//! cancelling signs keep their accuracy.

mod describe;
mod interval;
mod percentile;
mod ranking;
mod student_t;
mod summation;
mod trend;

pub use describe::{
    Description, OUTLIER_FENCE_IQR_MULTIPLIER, SliceDescriber, SliceStatistics, describe, describe_slices,
    describe_sorted,
};
pub use interval::{
    BOOTSTRAP_RNG_NAME, ConfidenceBounds, DEFAULT_BOOTSTRAP_RESAMPLES, DEFAULT_CONFIDENCE_LEVEL,
    mean_confidence_interval, median_bootstrap_interval,
};
pub use percentile::percentile_linear;
pub use ranking::{
    Direction, OverallScore, PeerRanking, PublishedPercentiles, Quartile, ScoreKind, directional_percentile_of_score,
    interpolated_percentile_rank, overall_score, percentile_of_score, quartile_of, rank_against_peers, score_quartile,
};
pub use student_t::{student_t_quantile, student_t_two_sided_p_value};
pub use trend::{MIN_TREND_POINTS, TREND_SIGNIFICANCE_LEVEL, TrendDirection, TrendFit, linear_trend};
