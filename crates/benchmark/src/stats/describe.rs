//! The statistics of one slice: outlier fences, outlier exclusion, and the
//! figures of the retained values.
//!
//! The order of the work follows the contract (`BenchmarkStatistics`): the
//! fences P25 − 1.5 · IQR and P75 + 1.5 · IQR are computed over all values,
//! values strictly beyond a fence are excluded, and every other figure is
//! computed over the retained values.
//!
//! Two entry points share that definition and differ only in what they keep:
//! [`describe()`] (and [`SliceDescriber`], which reuses its buffers) selects the
//! few order statistics it needs without sorting, which is what serving many
//! slices wants; [`describe_sorted`] sorts once and keeps the sorted retained
//! values in a [`Description`], which ranking and the median bootstrap need.
//! Both give the same counts, fences and percentiles to the bit; the mean and
//! standard deviation are summed in a different order and agree to within
//! an ulp or two.

use std::ops::Range;

use rayon::prelude::*;

use super::percentile::{OrderStatistics, percentile_linear, sort_ascending};
use super::summation::{sum_min_max, sum_of_squared_deviations};

/// How far beyond the quartiles, in interquartile ranges, the outlier fences
/// lie.
pub const OUTLIER_FENCE_IQR_MULTIPLIER: f64 = 1.5;

/// The statistics of a slice after outlier exclusion, all of them computed
/// (anonymity rules such as suppressing small slices are applied by the
/// caller).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SliceStatistics {
    /// The number of values before outlier exclusion.
    pub total_count: usize,
    /// The number of retained values, which every figure below except the
    /// fences is computed from; never 0.
    pub n: usize,
    /// The number of values strictly beyond a fence (`total_count − n`).
    pub outlier_count: usize,
    /// The lower fence P25 − 1.5 · IQR over all values.
    pub lower_fence: f64,
    /// The upper fence P75 + 1.5 · IQR over all values.
    pub upper_fence: f64,
    /// The arithmetic mean of the retained values.
    pub mean: f64,
    /// The sample standard deviation (ddof = 1) of the retained values; `None`
    /// when fewer than 2 values are retained. It is exactly 0 when all
    /// retained values are equal.
    pub std_dev: Option<f64>,
    /// The smallest retained value.
    pub min: f64,
    /// The largest retained value.
    pub max: f64,
    /// The 10th percentile of the retained values (linear interpolation).
    pub p10: f64,
    /// The 25th percentile of the retained values.
    pub p25: f64,
    /// The median of the retained values.
    pub p50: f64,
    /// The 75th percentile of the retained values.
    pub p75: f64,
    /// The 90th percentile of the retained values.
    pub p90: f64,
}

impl SliceStatistics {
    /// The interquartile range P75 − P25 of the retained values.
    pub fn interquartile_range(&self) -> f64 {
        self.p75 - self.p25
    }

    /// Whether `value` lies strictly beyond one of the fences.
    pub fn is_outlier(&self, value: f64) -> bool {
        value < self.lower_fence || value > self.upper_fence
    }
}

/// The statistics of a slice together with its retained values in ascending
/// order, as ranking and the median bootstrap need them.
#[derive(Debug, Clone, PartialEq)]
pub struct Description {
    /// The figures of the slice.
    statistics: SliceStatistics,
    /// The retained values, ascending.
    sorted_retained: Vec<f64>,
}

impl Description {
    /// The figures of the slice.
    pub fn statistics(&self) -> &SliceStatistics {
        &self.statistics
    }

    /// The retained values (outliers excluded), in ascending order.
    pub fn sorted_retained(&self) -> &[f64] {
        &self.sorted_retained
    }

    /// Splits the description into its figures and its sorted retained values.
    pub fn into_parts(self) -> (SliceStatistics, Vec<f64>) {
        (self.statistics, self.sorted_retained)
    }
}

/// The statistics of `values`, or `None` when there are none.
///
/// The values must be finite (the caller filters NaN and infinities out);
/// their magnitudes must stay below about 1e154 for the squared deviations to
/// be finite. The input order does not matter. This selects order statistics
/// instead of sorting; use [`describe_sorted`] when the sorted retained values
/// are needed as well, and a [`SliceDescriber`] to reuse the working buffers
/// across many slices.
///
/// # Examples
///
/// ```
/// use metrix_benchmark::stats::describe;
///
/// let statistics = describe(&[3.0, 1.0, 2.0, 4.0, 100.0]).expect("the slice is not empty");
/// assert_eq!((statistics.total_count, statistics.n, statistics.outlier_count), (5, 4, 1));
/// assert_eq!((statistics.lower_fence, statistics.upper_fence), (-1.0, 7.0));
/// assert_eq!((statistics.mean, statistics.p50, statistics.max), (2.5, 2.5, 4.0));
/// ```
pub fn describe(values: &[f64]) -> Option<SliceStatistics> {
    SliceDescriber::new().describe(values)
}

/// The statistics of `values` and the sorted retained values, or `None` when
/// there are none.
///
/// The preconditions are those of [`describe()`], whose figures this equals
/// (counts, fences, minimum, maximum and percentiles to the bit; the mean and
/// standard deviation to within rounding).
pub fn describe_sorted(values: &[f64]) -> Option<Description> {
    let total_count = values.len();
    if total_count == 0 {
        return None;
    }
    let mut sorted = values.to_vec();
    sort_ascending(&mut sorted);
    let (lower_fence, upper_fence) = fences(percentile_linear(&sorted, 25.0), percentile_linear(&sorted, 75.0));
    let mut retained =
        sorted.partition_point(|&value| value < lower_fence)..sorted.partition_point(|&value| value <= upper_fence);
    if retained.is_empty() {
        retained = 0..total_count;
    }
    sorted.truncate(retained.end);
    sorted.drain(..retained.start);
    let percentiles = REPORTED_PERCENTS.map(|percent| percentile_linear(&sorted, percent));
    let statistics = summarize(total_count, (lower_fence, upper_fence), &sorted, percentiles);
    Some(Description {
        statistics,
        sorted_retained: sorted,
    })
}

/// Describes many slices in parallel on the rayon thread pool, one result per
/// slice in the same order (`None` for an empty slice).
///
/// Each worker thread reuses one [`SliceDescriber`], so the work allocates
/// once per thread rather than once per slice.
pub fn describe_slices(slices: &[&[f64]]) -> Vec<Option<SliceStatistics>> {
    slices
        .par_iter()
        .map_init(SliceDescriber::new, |describer, values| describer.describe(values))
        .collect()
}

/// Describes slices one after another with reusable working buffers.
///
/// Describing needs a copy of the values to partition; a describer keeps that
/// copy's allocation between calls.
#[derive(Debug, Default, Clone)]
pub struct SliceDescriber {
    /// The working copy of the current slice.
    buffer: Vec<f64>,
    /// The positions of `buffer` already in sorted position.
    settled: Vec<usize>,
}

impl SliceDescriber {
    /// A describer with empty buffers.
    pub fn new() -> Self {
        Self::default()
    }

    /// The statistics of `values`, exactly as [`describe()`] computes them.
    pub fn describe(&mut self, values: &[f64]) -> Option<SliceStatistics> {
        let total_count = values.len();
        if total_count == 0 {
            return None;
        }
        self.buffer.clear();
        self.buffer.extend_from_slice(values);

        let mut order = OrderStatistics::new(&mut self.buffer, &mut self.settled);
        let quartiles_of_all = (order.percentile(25.0), order.percentile(75.0));
        let (lower_fence, upper_fence) = fences(quartiles_of_all.0, quartiles_of_all.1);
        let (buffer, settled) = order.into_parts();

        let retained_range = separate_outliers(buffer, settled, lower_fence, upper_fence);
        let retained = &mut buffer[retained_range];
        let mut order = OrderStatistics::with_settled(retained, settled);
        let percentiles = REPORTED_PERCENTS.map(|percent| order.percentile(percent));
        let (retained, _) = order.into_parts();
        Some(summarize(
            total_count,
            (lower_fence, upper_fence),
            retained,
            percentiles,
        ))
    }
}

/// The percentiles a slice reports, in the order of [`summarize`]'s argument.
const REPORTED_PERCENTS: [f64; 5] = [10.0, 25.0, 50.0, 75.0, 90.0];

/// The outlier fences from the quartiles of all values, with the same
/// operations in the same order as the numpy reference.
fn fences(first_quartile: f64, third_quartile: f64) -> (f64, f64) {
    let interquartile_range = third_quartile - first_quartile;
    (
        first_quartile - OUTLIER_FENCE_IQR_MULTIPLIER * interquartile_range,
        third_quartile + OUTLIER_FENCE_IQR_MULTIPLIER * interquartile_range,
    )
}

/// Assembles the figures of the retained values.
fn summarize(
    total_count: usize,
    (lower_fence, upper_fence): (f64, f64),
    retained: &[f64],
    [p10, p25, p50, p75, p90]: [f64; 5],
) -> SliceStatistics {
    let n = retained.len();
    let (sum, min, max) = sum_min_max(retained);
    let (mean, std_dev) = if min == max {
        // Equal values have exactly their value as mean and no spread; the
        // general formulas would only add rounding noise to both.
        (min, (n >= 2).then_some(0.0))
    } else {
        let mean = sum / n as f64;
        let std_dev = (n >= 2).then(|| (sum_of_squared_deviations(retained, mean) / (n - 1) as f64).sqrt());
        (mean, std_dev)
    };
    SliceStatistics {
        total_count,
        n,
        outlier_count: total_count - n,
        lower_fence,
        upper_fence,
        mean,
        std_dev,
        min,
        max,
        p10,
        p25,
        p50,
        p75,
        p90,
    }
}

/// Moves the values strictly below `lower_fence` to the front of `values` and
/// those strictly above `upper_fence` to the back, and returns the range of
/// the retained values in between.
///
/// `settled` holds positions that are in sorted position (see
/// [`OrderStatistics`]); they bound where outliers can be. Nothing at or after
/// a settled position whose value reaches the lower fence can be below it, so
/// only the stretch before the first such position is scanned for low
/// outliers, and likewise at the top. Settled positions between the two
/// stretches are untouched and stay settled; they are returned rebased to the
/// retained range, so that the retained percentiles start from them.
fn separate_outliers(values: &mut [f64], settled: &mut Vec<usize>, lower_fence: f64, upper_fence: f64) -> Range<usize> {
    let count = values.len();
    let low_stretch_end = settled
        .iter()
        .copied()
        .find(|&position| values[position] >= lower_fence)
        .unwrap_or(count);
    let high_stretch_start = settled
        .iter()
        .rev()
        .copied()
        .find(|&position| values[position] <= upper_fence)
        .map_or(0, |position| position + 1);

    let retained = if low_stretch_end <= high_stretch_start {
        let low_outliers = move_to_front(&mut values[..low_stretch_end], |value| value < lower_fence);
        let kept_at_top = move_to_front(&mut values[high_stretch_start..], |value| value <= upper_fence);
        settled.retain(|&position| (low_stretch_end..high_stretch_start).contains(&position));
        for position in settled.iter_mut() {
            *position -= low_outliers;
        }
        low_outliers..high_stretch_start + kept_at_top
    } else {
        // No settled value lies within the fences, so nothing bounds the
        // outliers: partition the whole slice.
        settled.clear();
        let low_outliers = move_to_front(values, |value| value < lower_fence);
        let kept = move_to_front(&mut values[low_outliers..], |value| value <= upper_fence);
        low_outliers..low_outliers + kept
    };
    if retained.is_empty() {
        // The quartiles lie within the values and the fences beyond the
        // quartiles, so some value is always retained; should rounding ever
        // say otherwise, nothing is excluded rather than everything.
        settled.clear();
        return 0..count;
    }
    retained
}

/// Moves the values satisfying `keep` to the front, in no particular order,
/// and returns how many there are.
fn move_to_front(values: &mut [f64], keep: impl Fn(f64) -> bool) -> usize {
    let mut kept = 0;
    for index in 0..values.len() {
        if keep(values[index]) {
            values.swap(kept, index);
            kept += 1;
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn close(left: f64, right: f64) -> bool {
        (left - right).abs() <= 4.0 * f64::EPSILON * left.abs().max(right.abs())
    }

    #[test]
    fn hand_checked_slice_with_one_outlier() {
        // np.percentile([1, 2, 3, 4, 100], [25, 75]) = [2, 4]: fences −1 and 7.
        let statistics = describe(&[4.0, 100.0, 1.0, 3.0, 2.0]).expect("not empty");
        assert_eq!(statistics.total_count, 5);
        assert_eq!(statistics.n, 4);
        assert_eq!(statistics.outlier_count, 1);
        assert_eq!((statistics.lower_fence, statistics.upper_fence), (-1.0, 7.0));
        assert_eq!((statistics.min, statistics.max), (1.0, 4.0));
        assert_eq!(statistics.mean, 2.5);
        // np.std([1, 2, 3, 4], ddof=1) = 1.2909944487358056
        assert_eq!(statistics.std_dev, Some(1.2909944487358056));
        // np.percentile([1, 2, 3, 4], [10, 25, 50, 75, 90]) = [1.3, 1.75, 2.5, 3.25, 3.7]
        assert_eq!(
            [
                statistics.p10,
                statistics.p25,
                statistics.p50,
                statistics.p75,
                statistics.p90
            ],
            [1.3, 1.75, 2.5, 3.25, 3.7]
        );
    }

    #[test]
    fn empty_single_and_constant_slices() {
        assert_eq!(describe(&[]), None);
        assert_eq!(describe_sorted(&[]), None);

        let single = describe(&[42.0]).expect("not empty");
        assert_eq!(
            (single.n, single.outlier_count, single.mean, single.std_dev),
            (1, 0, 42.0, None)
        );
        assert_eq!(
            (single.lower_fence, single.upper_fence, single.p10, single.p90),
            (42.0, 42.0, 42.0, 42.0)
        );

        let constant = describe(&[0.1; 7]).expect("not empty");
        assert_eq!((constant.n, constant.mean, constant.std_dev), (7, 0.1, Some(0.0)));
    }

    #[test]
    fn both_fences_exclude_and_values_on_a_fence_are_kept() {
        // Quartiles of [-50, 0, 1, 2, 3, 4, 5, 60] are 0.75 and 4.25: fences -4.5 and 9.5.
        let values = [5.0, -50.0, 0.0, 4.0, 60.0, 1.0, 3.0, 2.0];
        let statistics = describe(&values).expect("not empty");
        assert_eq!((statistics.lower_fence, statistics.upper_fence), (-4.5, 9.5));
        assert_eq!(
            (statistics.n, statistics.outlier_count, statistics.min, statistics.max),
            (6, 2, 0.0, 5.0)
        );

        // A value exactly on a fence is not beyond it: the quartiles of
        // [0, 10, 10, 10, 10, 25] are both 10, so both fences are 10.
        let on_fence = describe(&[10.0, 0.0, 10.0, 25.0, 10.0, 10.0]).expect("not empty");
        assert_eq!((on_fence.lower_fence, on_fence.upper_fence), (10.0, 10.0));
        assert_eq!(
            (on_fence.n, on_fence.outlier_count, on_fence.std_dev),
            (4, 2, Some(0.0))
        );
    }

    #[test]
    fn large_offsets_keep_their_spread() {
        let values: Vec<f64> = (0..1000).map(|index| 1e9 + f64::from(index % 10) * 0.125).collect();
        let statistics = describe(&values).expect("not empty");
        assert_eq!(statistics.mean, 1e9 + 0.5625);
        // The sample standard deviation of 0, 0.125, …, 1.125 repeated 100 times.
        let expected = (0.125f64 * 0.125 * 82.5 * 100.0 / 999.0).sqrt();
        assert!(close(statistics.std_dev.expect("n ≥ 2"), expected));
    }

    #[test]
    fn sorted_description_keeps_the_retained_values() {
        let description = describe_sorted(&[4.0, 100.0, 1.0, 3.0, 2.0]).expect("not empty");
        assert_eq!(description.sorted_retained(), &[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(Some(*description.statistics()), describe(&[4.0, 100.0, 1.0, 3.0, 2.0]));
    }

    #[test]
    fn batch_matches_one_by_one() {
        let first = [1.0, 2.0, 3.0];
        let second: [f64; 0] = [];
        let third = [5.0, -1.0, 2.5, 1e6, 3.0, 2.0];
        let slices: Vec<&[f64]> = vec![&first, &second, &third];
        assert_eq!(describe_slices(&slices), vec![describe(&first), None, describe(&third)]);
    }

    /// Finite values of varied shapes: wide, clustered with ties, or offset.
    fn slice_values() -> impl Strategy<Value = Vec<f64>> {
        prop_oneof![
            proptest::collection::vec(-1e6f64..1e6, 1..300),
            proptest::collection::vec((0i32..6).prop_map(f64::from), 1..300),
            proptest::collection::vec((-1.0f64..1.0).prop_map(|noise| 1e9 + noise), 1..300),
            proptest::collection::vec(prop_oneof![9 => -1.0f64..1.0, 1 => -1e9f64..1e9], 1..300),
        ]
    }

    proptest! {
        #[test]
        fn figures_are_ordered_and_counted(values in slice_values()) {
            let statistics = describe(&values).expect("not empty");
            prop_assert_eq!(statistics.n + statistics.outlier_count, statistics.total_count);
            prop_assert_eq!(statistics.total_count, values.len());
            prop_assert!(statistics.n >= 1);
            prop_assert!(statistics.min <= statistics.p10);
            prop_assert!(statistics.p10 <= statistics.p25);
            prop_assert!(statistics.p25 <= statistics.p50);
            prop_assert!(statistics.p50 <= statistics.p75);
            prop_assert!(statistics.p75 <= statistics.p90);
            prop_assert!(statistics.p90 <= statistics.max);
            prop_assert!(statistics.lower_fence <= statistics.min && statistics.max <= statistics.upper_fence);
            prop_assert!(statistics.min <= statistics.mean && statistics.mean <= statistics.max);
            prop_assert_eq!(statistics.std_dev.is_some(), statistics.n >= 2);
            let outliers = values.iter().filter(|&&value| statistics.is_outlier(value)).count();
            prop_assert_eq!(outliers, statistics.outlier_count);
        }

        #[test]
        fn non_finite_values_never_panic(values in proptest::collection::vec(any::<f64>(), 0..50)) {
            let fast = describe(&values);
            let sorted = describe_sorted(&values);
            prop_assert_eq!(fast.is_some(), !values.is_empty());
            prop_assert_eq!(sorted.is_some(), !values.is_empty());
        }

        #[test]
        fn fast_and_sorted_paths_agree(values in slice_values()) {
            let fast = describe(&values).expect("not empty");
            let description = describe_sorted(&values).expect("not empty");
            let sorted = description.statistics();
            prop_assert_eq!(
                (fast.total_count, fast.n, fast.outlier_count, fast.lower_fence, fast.upper_fence),
                (sorted.total_count, sorted.n, sorted.outlier_count, sorted.lower_fence, sorted.upper_fence)
            );
            prop_assert_eq!(
                [fast.min, fast.max, fast.p10, fast.p25, fast.p50, fast.p75, fast.p90],
                [sorted.min, sorted.max, sorted.p10, sorted.p25, sorted.p50, sorted.p75, sorted.p90]
            );
            prop_assert!(close(fast.mean, sorted.mean) || (fast.mean - sorted.mean).abs() <= 1e-15 * fast.max.abs().max(fast.min.abs()));
            match (fast.std_dev, sorted.std_dev) {
                (Some(left), Some(right)) => prop_assert!((left - right).abs() <= 1e-12 * left.max(right) + 1e-300),
                (left, right) => prop_assert_eq!(left, right),
            }
            prop_assert_eq!(description.sorted_retained().len(), fast.n);
            prop_assert!(description.sorted_retained().windows(2).all(|pair| pair[0] <= pair[1]));
        }
    }
}
