//! Confidence intervals: Student's t interval of the mean and the seeded
//! percentile bootstrap of the median.

use rand::SeedableRng;
use rand::distr::{Distribution, Uniform};
use rand_chacha::ChaCha8Rng;

use super::describe::SliceStatistics;
use super::percentile::{OrderStatistics, interpolation_point, numpy_lerp};
use super::student_t::student_t_quantile;

/// The name of the bootstrap's random number generator, as reported in
/// `ConfidenceInterval.bootstrap_rng`: rand_chacha's `ChaCha8Rng`.
pub const BOOTSTRAP_RNG_NAME: &str = "ChaCha8";

/// The number of bootstrap resamples when a request does not choose one.
pub const DEFAULT_BOOTSTRAP_RESAMPLES: u32 = 10_000;

/// The confidence level of the reported intervals (95 %).
pub const DEFAULT_CONFIDENCE_LEVEL: f64 = 0.95;

/// The two bounds of a confidence interval, `lower ≤ upper`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConfidenceBounds {
    /// The lower bound.
    pub lower: f64,
    /// The upper bound.
    pub upper: f64,
}

/// Student's t confidence interval of the mean of the retained values:
/// mean ± t(1 − α/2, n − 1) · s / √n with α = 1 − `level` and s the sample
/// standard deviation.
///
/// `None` when fewer than 2 values are retained or `level` is not strictly
/// between 0 and 1. When s = 0 the interval is (mean, mean).
///
/// # Examples
///
/// ```
/// use metrix_benchmark::stats::{describe, mean_confidence_interval};
///
/// let statistics = describe(&[1.0, 2.0, 3.0, 4.0]).expect("not empty");
/// let bounds = mean_confidence_interval(&statistics, 0.95).expect("n ≥ 2");
/// // 2.5 ± t(0.975, 3) · 1.2909944487358056 / 2
/// assert!((bounds.lower - 0.44573974323947924).abs() < 1e-12);
/// assert!((bounds.upper - 4.554260256760521).abs() < 1e-12);
/// ```
pub fn mean_confidence_interval(statistics: &SliceStatistics, level: f64) -> Option<ConfidenceBounds> {
    if !(level > 0.0 && level < 1.0) {
        return None;
    }
    let std_dev = statistics.std_dev?;
    let n = statistics.n as f64;
    // The same expression as the reference `t.ppf(1 - (1 - level) / 2, n - 1)`,
    // so that a level of 0.95 gives the probability 0.975 to the bit.
    let probability = 1.0 - (1.0 - level) / 2.0;
    let critical_value = student_t_quantile(probability, n - 1.0);
    let half_width = critical_value * std_dev / n.sqrt();
    Some(ConfidenceBounds {
        lower: statistics.mean - half_width,
        upper: statistics.mean + half_width,
    })
}

/// The percentile bootstrap interval of the median of `sorted_retained`
/// (ascending), reproducible from `seed`.
///
/// The procedure, in full so that it can be reproduced elsewhere:
///
/// 1. the generator is `ChaCha8Rng::seed_from_u64(seed)` (rand_chacha 0.9,
///    seeded once for the whole interval);
/// 2. each of the `resamples` resamples draws n indices in turn, each from
///    `rand::distr::Uniform::new(0, n as u32)` (rand 0.9): a `u32` from the
///    generator is multiplied by n in 64 bits, the high half is the index,
///    and the draw is repeated while the low half falls below 2³² mod n
///    (Lemire's unbiased method);
/// 3. the statistic of a resample is its median, the linear 50th percentile
///    of the values at the drawn indices (numpy's `np.percentile(sample, 50)`);
/// 4. the bounds are the linear percentiles (1 − `level`) / 2 and
///    (1 + `level`) / 2, in percent, of the resampled medians: 2.5 and 97.5 for
///    a level of 0.95.
///
/// `None` when fewer than 2 values are given, `resamples` is 0, `level` is not
/// strictly between 0 and 1, or there are more than 2³² − 1 values.
///
/// Because the values are sorted, a resample's median only needs the ranks of
/// its indices, not its values: the draws are counted per position, and the
/// two middle ranks are found by a running total taken 64 positions at a
/// time and then within one block, without sorting or selecting anything per
/// resample. Generating the random indices is then most of the cost.
pub fn median_bootstrap_interval(
    sorted_retained: &[f64],
    resamples: u32,
    seed: u64,
    level: f64,
) -> Option<ConfidenceBounds> {
    let count = sorted_retained.len();
    if count < 2 || resamples == 0 || !(level > 0.0 && level < 1.0) {
        return None;
    }
    let index_distribution = Uniform::new(0, u32::try_from(count).ok()?).ok()?;
    let mut generator = ChaCha8Rng::seed_from_u64(seed);
    let median_point = interpolation_point(count, 50.0);

    let mut tally = DrawTally::new(count);
    let mut medians = Vec::with_capacity(resamples as usize);
    for _ in 0..resamples {
        for _ in 0..count {
            tally.record(index_distribution.sample(&mut generator) as usize);
        }
        let (lower_index, upper_index) = tally.indices_at_ranks(median_point.lower_rank, median_point.upper_rank);
        medians.push(numpy_lerp(
            sorted_retained[lower_index],
            sorted_retained[upper_index],
            median_point.weight,
        ));
        tally.clear();
    }

    // 100 · 0.95 rounds to 95 exactly, so a level of 0.95 gives the
    // contract's 2.5th and 97.5th percentiles to the bit.
    let tail_percent = (100.0 - 100.0 * level) / 2.0;
    let mut settled = Vec::new();
    let mut order = OrderStatistics::new(&mut medians, &mut settled);
    let lower = order.percentile(tail_percent);
    let upper = order.percentile(100.0 - tail_percent);
    Some(ConfidenceBounds { lower, upper })
}

/// The positions summed at a time when [`DrawTally`] looks for a rank: whole
/// blocks are skipped with a vectorizable sum, then one block is walked.
const TALLY_BLOCK: usize = 64;

/// How often each position of the sorted values was drawn in one resample.
struct DrawTally {
    per_position: Vec<u32>,
}

impl DrawTally {
    fn new(positions: usize) -> Self {
        DrawTally {
            per_position: vec![0; positions],
        }
    }

    #[inline]
    fn record(&mut self, position: usize) {
        self.per_position[position] += 1;
    }

    fn clear(&mut self) {
        self.per_position.fill(0);
    }

    /// The positions whose values have the given ranks (`lower_rank ≤
    /// upper_rank`) in the resample, i.e. the first positions at which the
    /// running total of draws exceeds each rank. Ranks at or beyond the number
    /// of draws (which callers never ask for) give the last position.
    fn indices_at_ranks(&self, lower_rank: usize, upper_rank: usize) -> (usize, usize) {
        let last = self.per_position.len().saturating_sub(1);
        let mut drawn = 0usize;
        let mut block_start = 0;
        for block in self.per_position.chunks(TALLY_BLOCK) {
            let block_draws: u32 = block.iter().sum();
            if drawn + block_draws as usize > lower_rank {
                break;
            }
            drawn += block_draws as usize;
            block_start += block.len();
        }
        let mut lower_index = None;
        for (offset, &draws) in self.per_position.iter().skip(block_start).enumerate() {
            drawn += draws as usize;
            let index = block_start + offset;
            if lower_index.is_none() && drawn > lower_rank {
                lower_index = Some(index);
            }
            if drawn > upper_rank {
                return (lower_index.unwrap_or(index), index);
            }
        }
        (lower_index.unwrap_or(last), last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{describe, percentile_linear};
    use proptest::prelude::*;
    use rand::Rng;

    #[test]
    fn t_interval_is_symmetric_about_the_mean() {
        let statistics = describe(&[1.0, 2.0, 3.0, 4.0]).expect("not empty");
        let bounds = mean_confidence_interval(&statistics, 0.95).expect("n ≥ 2");
        // scipy.stats.t.ppf(0.975, 3) = 3.1824463052837078
        let half_width = 3.1824463052837078 * 1.2909944487358056 / 2.0;
        assert!((bounds.lower - (2.5 - half_width)).abs() < 1e-14);
        assert!((bounds.upper - (2.5 + half_width)).abs() < 1e-14);
    }

    #[test]
    fn t_interval_needs_two_values_and_collapses_without_spread() {
        let single = describe(&[5.0]).expect("not empty");
        assert_eq!(mean_confidence_interval(&single, 0.95), None);
        let constant = describe(&[2.0, 2.0, 2.0]).expect("not empty");
        assert_eq!(
            mean_confidence_interval(&constant, 0.95),
            Some(ConfidenceBounds { lower: 2.0, upper: 2.0 })
        );
        assert_eq!(mean_confidence_interval(&constant, 1.0), None);
    }

    /// The bootstrap written the plain way: collect each resample's values,
    /// sort them and take numpy's median.
    fn straightforward_bootstrap(sorted: &[f64], resamples: u32, seed: u64, level: f64) -> ConfidenceBounds {
        let mut generator = ChaCha8Rng::seed_from_u64(seed);
        let distribution = Uniform::new(0, sorted.len() as u32).expect("non-empty range");
        let mut medians = Vec::new();
        for _ in 0..resamples {
            let mut sample: Vec<f64> = (0..sorted.len())
                .map(|_| sorted[distribution.sample(&mut generator) as usize])
                .collect();
            sample.sort_by(f64::total_cmp);
            medians.push(percentile_linear(&sample, 50.0));
        }
        medians.sort_by(f64::total_cmp);
        let tail = (100.0 - 100.0 * level) / 2.0;
        ConfidenceBounds {
            lower: percentile_linear(&medians, tail),
            upper: percentile_linear(&medians, 100.0 - tail),
        }
    }

    #[test]
    fn counting_ranks_equals_sorting_each_resample() {
        let mut generator = ChaCha8Rng::seed_from_u64(7);
        for count in [2usize, 3, 4, 5, 10, 11, 64, 257] {
            let mut sorted: Vec<f64> = (0..count).map(|_| generator.random_range(-10.0..10.0)).collect();
            // Ties as well.
            sorted.iter_mut().step_by(3).for_each(|value| *value = value.round());
            sorted.sort_by(f64::total_cmp);
            for level in [0.95, 0.9, 0.5] {
                assert_eq!(
                    median_bootstrap_interval(&sorted, 300, 42, level),
                    Some(straightforward_bootstrap(&sorted, 300, 42, level))
                );
            }
        }
    }

    #[test]
    fn bootstrap_rejects_degenerate_requests() {
        assert_eq!(median_bootstrap_interval(&[1.0], 100, 1, 0.95), None);
        assert_eq!(median_bootstrap_interval(&[1.0, 2.0], 0, 1, 0.95), None);
        assert_eq!(median_bootstrap_interval(&[1.0, 2.0], 10, 1, 0.0), None);
        assert_eq!(
            median_bootstrap_interval(&[3.0, 3.0, 3.0], 50, 1, 0.95),
            Some(ConfidenceBounds { lower: 3.0, upper: 3.0 })
        );
    }

    proptest! {
        #[test]
        fn non_finite_values_never_panic(
            mut values in proptest::collection::vec(any::<f64>(), 0..40),
            level in any::<f64>(),
        ) {
            values.sort_by(f64::total_cmp);
            let _ = median_bootstrap_interval(&values, 20, 3, level);
            if let Some(statistics) = describe(&values) {
                let _ = mean_confidence_interval(&statistics, level);
            }
        }

        #[test]
        fn bootstrap_is_deterministic_and_ordered(
            mut values in proptest::collection::vec(-1e3f64..1e3, 2..60),
            seed in any::<u64>(),
            resamples in 1u32..200,
        ) {
            values.sort_by(f64::total_cmp);
            let first = median_bootstrap_interval(&values, resamples, seed, 0.95).expect("n ≥ 2");
            let second = median_bootstrap_interval(&values, resamples, seed, 0.95).expect("n ≥ 2");
            prop_assert_eq!(first, second);
            prop_assert!(first.lower <= first.upper);
            prop_assert!(values[0] <= first.lower && first.upper <= values[values.len() - 1]);
        }
    }
}
