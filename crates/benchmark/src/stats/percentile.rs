//! Percentiles by linear interpolation between closest ranks, with numpy's
//! exact arithmetic, and the selection of order statistics they need.
//!
//! The contract defines percentiles as numpy's default `np.percentile(values,
//! q)` (method `"linear"`, Hyndman and Fan's definition 7). To agree with
//! numpy to the last bit, the arithmetic is numpy's, step by step:
//!
//! 1. the fraction is `q / 100` and the virtual index is `(n − 1) · (q / 100)`;
//! 2. the lower rank is `floor(index)`, the upper rank the next one, and the
//!    weight the difference `index − lower rank`;
//! 3. when the index reaches the last rank, numpy takes the last value for
//!    both neighbours and computes the weight against rank −1 (the last
//!    position counted from the end); the weight then has no effect on the
//!    value, but the same steps are kept so that even the sign of a zero
//!    result is numpy's;
//! 4. the interpolation is numpy's `_lerp`: `a + (b − a) · t` when `t < 0.5`
//!    and `b − (b − a) · (1 − t)` otherwise, which stays within `[a, b]` and is
//!    exact at both ends.
//!
//! Only two order statistics are needed per percentile, so callers that do not
//! need sorted values select them with [`OrderStatistics`] (repeated
//! `select_nth_unstable`) instead of sorting.

use std::cmp::Ordering;

/// The two neighbouring ranks and the interpolation weight of a percentile.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct InterpolationPoint {
    /// The rank (0-based position in sorted order) of the lower neighbour.
    pub(crate) lower_rank: usize,
    /// The rank of the upper neighbour.
    pub(crate) upper_rank: usize,
    /// The weight of the upper neighbour, as numpy computes it.
    pub(crate) weight: f64,
}

/// Where the `percent`-th percentile of `count` values falls, with numpy's
/// arithmetic. `count` must be at least 1; `percent` is clamped to [0, 100].
pub(crate) fn interpolation_point(count: usize, percent: f64) -> InterpolationPoint {
    debug_assert!(count > 0, "a percentile needs at least one value");
    let fraction = percent.clamp(0.0, 100.0) / 100.0;
    let last_rank = count.saturating_sub(1);
    let virtual_index = last_rank as f64 * fraction;
    if virtual_index >= last_rank as f64 {
        // numpy points both neighbours at index −1 and measures the weight from
        // there; the value is the last one either way.
        return InterpolationPoint {
            lower_rank: last_rank,
            upper_rank: last_rank,
            weight: virtual_index + 1.0,
        };
    }
    let lower = virtual_index.floor();
    // The index is below `last_rank`, so the conversion is exact and in range.
    let lower_rank = lower as usize;
    InterpolationPoint {
        lower_rank,
        upper_rank: lower_rank + 1,
        weight: virtual_index - lower,
    }
}

/// numpy's `_lerp`: interpolates from `lower` towards `upper` by `weight`,
/// computing from the nearer end so that the result is exact at both ends and
/// never leaves `[lower, upper]`.
#[inline]
pub(crate) fn numpy_lerp(lower: f64, upper: f64, weight: f64) -> f64 {
    let difference = upper - lower;
    if weight >= 0.5 {
        upper - difference * (1.0 - weight)
    } else {
        lower + difference * weight
    }
}

/// The `percent`-th percentile of values whose order statistics are given by
/// `value_at_rank` (the value of each 0-based rank in ascending order).
pub(crate) fn percentile_from_ranks(count: usize, percent: f64, mut value_at_rank: impl FnMut(usize) -> f64) -> f64 {
    let point = interpolation_point(count, percent);
    let lower = value_at_rank(point.lower_rank);
    let upper = value_at_rank(point.upper_rank);
    numpy_lerp(lower, upper, point.weight)
}

/// The `q`-th percentile of ascending `sorted` values, exactly as numpy's
/// `np.percentile(values, q)` (method `"linear"`) computes it.
///
/// `q` is in percent and is clamped to [0, 100]. The values must be sorted in
/// ascending order and finite. An empty slice has no percentile: the result
/// is NaN, as numpy's is.
///
/// # Examples
///
/// ```
/// use metrix_benchmark::stats::percentile_linear;
///
/// let sorted = [1.0, 2.0, 3.0, 4.0];
/// assert_eq!(percentile_linear(&sorted, 50.0), 2.5);
/// assert_eq!(percentile_linear(&sorted, 25.0), 1.75);
/// assert_eq!(percentile_linear(&sorted, 100.0), 4.0);
/// ```
pub fn percentile_linear(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    percentile_from_ranks(sorted.len(), q, |rank| sorted[rank])
}

/// The ascending total order used for selection and sorting: the finite
/// values the module accepts compare as numbers, and −0 sorts before +0,
/// which are equal in value.
#[inline]
pub(crate) fn ascending(left: &f64, right: &f64) -> Ordering {
    left.total_cmp(right)
}

/// Below this length a slice is sorted directly; above it, through integer
/// keys.
const KEYED_SORT_MIN_LENGTH: usize = 64;

/// Sorts values ascending in the order of [`ascending`].
///
/// Longer slices are sorted as integer keys that order exactly as
/// `f64::total_cmp` does (the IEEE 754 bits with the sign bit flipped for
/// positive values and all bits flipped for negative ones): integers compare
/// in one instruction, which makes the sort about twice as fast as comparing
/// floats through `total_cmp`, for the same result to the bit.
pub(crate) fn sort_ascending(values: &mut [f64]) {
    if values.len() < KEYED_SORT_MIN_LENGTH {
        values.sort_unstable_by(ascending);
        return;
    }
    let mut keys: Vec<u64> = values.iter().map(|&value| order_key(value)).collect();
    keys.sort_unstable();
    for (value, key) in values.iter_mut().zip(keys) {
        *value = from_order_key(key);
    }
}

/// The unsigned integer whose order is the `total_cmp` order of `value`.
#[inline]
fn order_key(value: f64) -> u64 {
    const SIGN: u64 = 1 << 63;
    let bits = value.to_bits();
    if bits & SIGN == 0 { bits | SIGN } else { !bits }
}

/// The value whose [`order_key`] is `key`.
#[inline]
fn from_order_key(key: u64) -> f64 {
    const SIGN: u64 = 1 << 63;
    f64::from_bits(if key & SIGN != 0 { key & !SIGN } else { !key })
}

/// Lazily selected order statistics of a mutable buffer of values.
///
/// Each requested rank is put in its sorted position with
/// `select_nth_unstable_by`, and remembered as *settled*: everything before a
/// settled position is no greater and everything after it no smaller. Later
/// requests only partition the stretch between the two settled positions
/// around them, so asking for neighbouring ranks (the two neighbours of a
/// percentile, or several percentiles) costs little more than the first one.
pub(crate) struct OrderStatistics<'buffer> {
    /// The values, partially ordered around the settled positions.
    values: &'buffer mut [f64],
    /// The settled positions, ascending.
    settled: &'buffer mut Vec<usize>,
}

impl<'buffer> OrderStatistics<'buffer> {
    /// Starts from an arbitrary arrangement of `values`; `settled` is scratch
    /// space and is cleared.
    pub(crate) fn new(values: &'buffer mut [f64], settled: &'buffer mut Vec<usize>) -> Self {
        settled.clear();
        OrderStatistics { values, settled }
    }

    /// Continues from an arrangement in which the given positions are already
    /// settled (ascending, each partitioning the values as described on the
    /// type).
    pub(crate) fn with_settled(values: &'buffer mut [f64], settled: &'buffer mut Vec<usize>) -> Self {
        debug_assert!(settled.windows(2).all(|pair| pair[0] < pair[1]));
        debug_assert!(settled.iter().all(|&position| position < values.len()));
        OrderStatistics { values, settled }
    }

    /// The number of values.
    pub(crate) fn len(&self) -> usize {
        self.values.len()
    }

    /// The value of the 0-based `rank` in ascending order. `rank` must be
    /// below [`Self::len`].
    pub(crate) fn value_at(&mut self, rank: usize) -> f64 {
        match self.settled.binary_search(&rank) {
            Ok(_) => self.values[rank],
            Err(insert_at) => {
                let start = if insert_at == 0 {
                    0
                } else {
                    self.settled[insert_at - 1] + 1
                };
                let end = self.settled.get(insert_at).copied().unwrap_or(self.values.len());
                self.values[start..end].select_nth_unstable_by(rank - start, ascending);
                self.settled.insert(insert_at, rank);
                self.values[rank]
            }
        }
    }

    /// The `percent`-th percentile of the values, with numpy's arithmetic.
    /// There must be at least one value.
    pub(crate) fn percentile(&mut self, percent: f64) -> f64 {
        let count = self.len();
        percentile_from_ranks(count, percent, |rank| self.value_at(rank))
    }

    /// Consumes the selector, returning the settled positions' storage and the
    /// values in their current arrangement.
    pub(crate) fn into_parts(self) -> (&'buffer mut [f64], &'buffer mut Vec<usize>) {
        (self.values, self.settled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn matches_hand_computed_numpy_values() {
        // np.percentile([1, 2, 3, 4, 5], [10, 25, 50, 75, 90]) = [1.4, 2, 3, 4, 4.6]
        let sorted = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(percentile_linear(&sorted, 10.0), 1.4);
        assert_eq!(percentile_linear(&sorted, 25.0), 2.0);
        assert_eq!(percentile_linear(&sorted, 50.0), 3.0);
        assert_eq!(percentile_linear(&sorted, 75.0), 4.0);
        assert_eq!(percentile_linear(&sorted, 90.0), 4.6);
        // np.percentile([10, 20, 40, 80], 90) = 68.0: index 2.7, 40 + 40 * 0.7 from above.
        assert_eq!(percentile_linear(&[10.0, 20.0, 40.0, 80.0], 90.0), 68.0);
        // np.percentile([0.1, 0.2, 0.7], 10) = 0.12000000000000001
        assert_eq!(percentile_linear(&[0.1, 0.2, 0.7], 10.0), 0.12000000000000001);
        // np.percentile([1.0, 2.0], 75) is computed from the upper end: 2 - 1 * 0.25.
        assert_eq!(percentile_linear(&[1.0, 2.0], 75.0), 1.75);
    }

    #[test]
    fn single_values_and_ends() {
        assert_eq!(percentile_linear(&[7.5], 0.0), 7.5);
        assert_eq!(percentile_linear(&[7.5], 63.0), 7.5);
        assert_eq!(percentile_linear(&[-3.0, 9.0], 0.0), -3.0);
        assert_eq!(percentile_linear(&[-3.0, 9.0], 100.0), 9.0);
        assert!(percentile_linear(&[], 50.0).is_nan());
    }

    #[test]
    fn a_negative_zero_at_the_top_comes_out_positive_as_in_numpy() {
        // numpy computes the last value as b − 0·(1 − t) with t > 1, i.e. −0 + 0.
        let value = percentile_linear(&[-1.0, -0.0], 100.0);
        assert_eq!(value, 0.0);
        assert!(value.is_sign_positive());
    }

    #[test]
    fn out_of_range_percents_are_clamped() {
        let sorted = [1.0, 2.0, 3.0];
        assert_eq!(percentile_linear(&sorted, -5.0), 1.0);
        assert_eq!(percentile_linear(&sorted, 250.0), 3.0);
    }

    #[test]
    fn order_statistics_select_without_sorting() {
        let mut values = vec![9.0, 1.0, 8.0, 2.0, 7.0, 3.0, 6.0, 4.0, 5.0, 0.0];
        let mut settled = Vec::new();
        let mut order = OrderStatistics::new(&mut values, &mut settled);
        assert_eq!(order.value_at(3), 3.0);
        assert_eq!(order.value_at(4), 4.0);
        assert_eq!(order.value_at(0), 0.0);
        assert_eq!(order.value_at(9), 9.0);
        assert_eq!(order.value_at(3), 3.0);
        assert_eq!(order.percentile(25.0), 2.25);
        let (_, settled) = order.into_parts();
        assert_eq!(settled.as_slice(), &[0, 2, 3, 4, 9]);
    }

    proptest! {
        #[test]
        fn keyed_sort_orders_exactly_as_total_cmp(
            values in proptest::collection::vec(
                prop_oneof![any::<f64>(), Just(0.0), Just(-0.0), -1e3f64..1e3, (-3i32..3).prop_map(f64::from)],
                0..300,
            ),
        ) {
            let mut expected = values.clone();
            expected.sort_by(f64::total_cmp);
            let mut actual = values;
            sort_ascending(&mut actual);
            let bits = |values: &[f64]| values.iter().map(|value| value.to_bits()).collect::<Vec<_>>();
            prop_assert_eq!(bits(&actual), bits(&expected));
        }

        #[test]
        fn percentiles_are_monotone_and_within_the_range(
            mut values in proptest::collection::vec(-1e6f64..1e6, 1..200),
            first in 0.0f64..=100.0,
            second in 0.0f64..=100.0,
        ) {
            values.sort_by(f64::total_cmp);
            let (low_q, high_q) = if first <= second { (first, second) } else { (second, first) };
            let low = percentile_linear(&values, low_q);
            let high = percentile_linear(&values, high_q);
            prop_assert!(low <= high);
            prop_assert!(values[0] <= low && high <= values[values.len() - 1]);
        }

        #[test]
        fn selection_agrees_with_the_sorted_values(
            values in proptest::collection::vec(-1e3f64..1e3, 1..300),
            percents in proptest::collection::vec(0.0f64..=100.0, 1..8),
        ) {
            let mut sorted = values.clone();
            sorted.sort_by(f64::total_cmp);
            let mut buffer = values.clone();
            let mut settled = Vec::new();
            let mut order = OrderStatistics::new(&mut buffer, &mut settled);
            for percent in percents {
                prop_assert_eq!(order.percentile(percent), percentile_linear(&sorted, percent));
            }
        }
    }
}
