//! Compensated summation, the base of every mean and sum of squares in
//! [`crate::stats`].
//!
//! A plain running sum loses the low-order bits of every addend that is much
//! smaller than the total, and it loses everything when large values of
//! opposite signs cancel. Neumaier's compensated summation carries the exact
//! rounding error of each addition in a second accumulator and adds it back at
//! the end, so the result is as accurate as if it had been summed in roughly
//! twice the precision. The rounding error is obtained with Knuth's
//! branch-free TwoSum, which gives the same error term as Neumaier's
//! magnitude comparison without a data-dependent branch.
//!
//! Slices are summed in four independent lanes so that the additions do not
//! wait on each other; the lanes are merged with the same compensation.

/// The number of independent accumulators used for slices: enough for the
/// additions of neighbouring values not to wait on each other, few enough for
/// all lanes (sum, compensation, minimum, maximum) to stay in registers.
const LANE_COUNT: usize = 4;

/// A running sum with the accumulated rounding error of its additions.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct CompensatedSum {
    /// The rounded running sum.
    sum: f64,
    /// The sum of the exact rounding errors of the additions so far.
    compensation: f64,
}

impl CompensatedSum {
    /// Adds one value, keeping the rounding error of the addition.
    #[inline(always)]
    pub(crate) fn add(&mut self, value: f64) {
        let (sum, error) = two_sum(self.sum, value);
        self.sum = sum;
        self.compensation += error;
    }

    /// Adds another compensated sum, as if its values had been added here.
    #[inline]
    pub(crate) fn merge(&mut self, other: CompensatedSum) {
        self.add(other.sum);
        self.compensation += other.compensation;
    }

    /// The sum with its accumulated rounding error added back.
    #[inline]
    pub(crate) fn total(self) -> f64 {
        self.sum + self.compensation
    }
}

/// Knuth's TwoSum: the rounded sum of `left` and `right` and the exact error of
/// that rounding, for any magnitudes and without a branch.
#[inline(always)]
fn two_sum(left: f64, right: f64) -> (f64, f64) {
    let sum = left + right;
    let right_part = sum - left;
    let left_part = sum - right_part;
    let error = (left - left_part) + (right - right_part);
    (sum, error)
}

/// The compensated sum of any sequence of values.
pub(crate) fn compensated_sum(values: impl IntoIterator<Item = f64>) -> f64 {
    let mut accumulator = CompensatedSum::default();
    for value in values {
        accumulator.add(value);
    }
    accumulator.total()
}

/// Merges per-lane sums and compensations, then adds the values left over
/// after the whole chunks.
fn merge_lanes(sums: [f64; LANE_COUNT], compensations: [f64; LANE_COUNT], remainder: impl Iterator<Item = f64>) -> f64 {
    let mut merged = CompensatedSum::default();
    for (sum, compensation) in sums.into_iter().zip(compensations) {
        merged.merge(CompensatedSum { sum, compensation });
    }
    for value in remainder {
        merged.add(value);
    }
    merged.total()
}

/// The compensated sum, the minimum and the maximum of a slice, in one pass.
///
/// Returns `(sum, min, max)`; for an empty slice the sum is 0 and the minimum
/// and maximum are +∞ and −∞.
pub(crate) fn sum_min_max(values: &[f64]) -> (f64, f64, f64) {
    // The lanes are plain local arrays, which the compiler keeps in
    // registers.
    let mut sums = [0.0; LANE_COUNT];
    let mut compensations = [0.0; LANE_COUNT];
    let mut minimums = [f64::INFINITY; LANE_COUNT];
    let mut maximums = [f64::NEG_INFINITY; LANE_COUNT];
    let mut chunks = values.chunks_exact(LANE_COUNT);
    for chunk in &mut chunks {
        for lane in 0..LANE_COUNT {
            let value = chunk[lane];
            let (sum, error) = two_sum(sums[lane], value);
            sums[lane] = sum;
            compensations[lane] += error;
            // Selects rather than `f64::min`, which would also handle NaN,
            // compile to single minimum and maximum instructions.
            minimums[lane] = if value < minimums[lane] { value } else { minimums[lane] };
            maximums[lane] = if value > maximums[lane] { value } else { maximums[lane] };
        }
    }
    let remainder = chunks.remainder();
    let minimum = minimums.iter().chain(remainder).copied().fold(f64::INFINITY, f64::min);
    let maximum = maximums
        .iter()
        .chain(remainder)
        .copied()
        .fold(f64::NEG_INFINITY, f64::max);
    (
        merge_lanes(sums, compensations, remainder.iter().copied()),
        minimum,
        maximum,
    )
}

/// The compensated sum of the squared deviations `(value − center)²`.
///
/// This is the second pass of the two-pass variance: the deviations are
/// formed first, so a large common offset of the values never enters a
/// square.
pub(crate) fn sum_of_squared_deviations(values: &[f64], center: f64) -> f64 {
    let mut sums = [0.0; LANE_COUNT];
    let mut compensations = [0.0; LANE_COUNT];
    let mut chunks = values.chunks_exact(LANE_COUNT);
    for chunk in &mut chunks {
        for lane in 0..LANE_COUNT {
            let deviation = chunk[lane] - center;
            let (sum, error) = two_sum(sums[lane], deviation * deviation);
            sums[lane] = sum;
            compensations[lane] += error;
        }
    }
    let squared_remainder = chunks.remainder().iter().map(|value| {
        let deviation = value - center;
        deviation * deviation
    });
    merge_lanes(sums, compensations, squared_remainder)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_small_addends_lost_by_a_plain_sum() {
        let values = [1e16, 1.0, -1e16, 1.0];
        assert_eq!(values.iter().sum::<f64>(), 1.0);
        assert_eq!(compensated_sum(values), 2.0);
        assert_eq!(sum_min_max(&values).0, 2.0);
    }

    #[test]
    fn sums_many_tenths_exactly_rounded() {
        let values = vec![0.1; 1_000_003];
        let (sum, minimum, maximum) = sum_min_max(&values);
        // The exact sum of 1,000,003 copies of the double nearest 0.1, rounded once.
        let exact = 1_000_003.0 * 0.1_f64;
        assert!((sum - exact).abs() <= exact * f64::EPSILON);
        assert_eq!((minimum, maximum), (0.1, 0.1));
    }

    #[test]
    fn min_and_max_cover_the_remainder_lanes() {
        let values = [3.0, 2.0, 5.0, 4.0, -7.0, 9.5];
        assert_eq!(sum_min_max(&values), (16.5, -7.0, 9.5));
        assert_eq!(sum_min_max(&[]), (0.0, f64::INFINITY, f64::NEG_INFINITY));
    }

    #[test]
    fn squared_deviations_ignore_a_large_offset() {
        let values = [1e9 + 1.0, 1e9 + 2.0, 1e9 + 3.0, 1e9 + 4.0, 1e9 + 5.0];
        assert_eq!(sum_of_squared_deviations(&values, 1e9 + 3.0), 10.0);
    }
}
