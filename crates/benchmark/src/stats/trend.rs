//! The ordinary least-squares trend of one statistic over the periods of a
//! time series (`Trend` in the contract).
//!
//! The fit is computed on deviations from the means (x − x̄, y − ȳ) with
//! compensated sums, so that a large level (revenue in the billions) does not
//! drown the period-to-period changes, and the residual sum of squares is
//! summed from the residuals themselves rather than derived from r², so a
//! near-perfect fit keeps an accurate slope standard error. The results agree
//! with `scipy.stats.linregress` (slope, intercept, rvalue², stderr, pvalue)
//! wherever scipy's own arithmetic is well conditioned.

use ndarray::{Array1, Zip};

use super::student_t::student_t_two_sided_p_value;
use super::summation::{compensated_sum, sum_min_max};

/// The significance level of the slope's two-sided t-test that decides
/// between a rising or falling trend and a flat one.
pub const TREND_SIGNIFICANCE_LEVEL: f64 = 0.05;

/// The fewest points a trend needs before its direction is judged.
pub const MIN_TREND_POINTS: usize = 3;

/// A least-squares line fitted to (x, y) points, with the unset figures of the
/// contract as `None`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrendFit {
    /// The number of points used in the fit.
    pub point_count: usize,
    /// The least-squares slope, in y units per x unit; `None` with fewer than 2
    /// points or when all x are equal.
    pub slope: Option<f64>,
    /// The standard error of the slope, √(SSR / (m − 2) / Σ(x − x̄)²); `None`
    /// with fewer than 3 points or when all x are equal. It is 0 for a perfect
    /// fit (SSR = 0).
    pub slope_standard_error: Option<f64>,
    /// The fitted value at x = 0; `None` with fewer than 2 points or when all
    /// x are equal.
    pub intercept: Option<f64>,
    /// The coefficient of determination 1 − SSR / SST, in [0, 1], with SST =
    /// Σ(y − ȳ)²; `None` with fewer than 2 points, when all x are equal, or
    /// when SST = 0 (all y are equal, so there is no variation to explain).
    pub r_squared: Option<f64>,
    /// The two-sided p-value of the t-test of slope = 0 with m − 2 degrees of
    /// freedom; `None` with fewer than 3 points or when all x are equal. For a
    /// perfect fit (SSR = 0) it is 0 when the slope is not 0, and 1 when the
    /// slope is 0 (all y equal: no evidence of any change).
    pub slope_p_value: Option<f64>,
}

/// Whether a trend rises, falls or stays flat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TrendDirection {
    /// The slope is positive and its p-value below the significance level.
    Increasing,
    /// The slope is negative and its p-value below the significance level.
    Decreasing,
    /// The slope is not significantly different from 0.
    Flat,
    /// Fewer than 3 points (or no spread in x), so no direction is judged.
    InsufficientData,
}

impl TrendFit {
    /// The direction of the trend: INCREASING or DECREASING when the slope's
    /// p-value is below [`TREND_SIGNIFICANCE_LEVEL`] (5 %), by the slope's
    /// sign; FLAT otherwise; INSUFFICIENT_DATA with fewer than
    /// [`MIN_TREND_POINTS`] points or when no p-value could be computed.
    pub fn direction(&self) -> TrendDirection {
        if self.point_count < MIN_TREND_POINTS {
            return TrendDirection::InsufficientData;
        }
        match (self.slope, self.slope_p_value) {
            (Some(slope), Some(p_value)) if p_value < TREND_SIGNIFICANCE_LEVEL && slope > 0.0 => {
                TrendDirection::Increasing
            }
            (Some(slope), Some(p_value)) if p_value < TREND_SIGNIFICANCE_LEVEL && slope < 0.0 => {
                TrendDirection::Decreasing
            }
            (Some(_), Some(_)) => TrendDirection::Flat,
            _ => TrendDirection::InsufficientData,
        }
    }
}

/// Fits the least-squares line y = intercept + slope · x to `points`, given as
/// (x, y) pairs: for a time series, x is the period's index from the first
/// period of the series (gaps included) and y the trended statistic.
///
/// The values must be finite.
///
/// # Examples
///
/// ```
/// use metrix_benchmark::stats::{TrendDirection, linear_trend};
///
/// let fit = linear_trend(&[(0.0, 1.0), (1.0, 3.0), (2.0, 5.0), (4.0, 9.0)]);
/// assert_eq!((fit.slope, fit.intercept, fit.r_squared), (Some(2.0), Some(1.0), Some(1.0)));
/// assert_eq!((fit.slope_standard_error, fit.slope_p_value), (Some(0.0), Some(0.0)));
/// assert_eq!(fit.direction(), TrendDirection::Increasing);
/// ```
pub fn linear_trend(points: &[(f64, f64)]) -> TrendFit {
    let point_count = points.len();
    let mut fit = TrendFit {
        point_count,
        slope: None,
        slope_standard_error: None,
        intercept: None,
        r_squared: None,
        slope_p_value: None,
    };
    if point_count < 2 {
        return fit;
    }
    let x: Array1<f64> = points.iter().map(|&(x, _)| x).collect();
    let y: Array1<f64> = points.iter().map(|&(_, y)| y).collect();
    let x_mean = mean(&x);
    let y_mean = mean(&y);
    let x_deviations = x.mapv(|value| value - x_mean);
    let y_deviations = y.mapv(|value| value - y_mean);

    let x_sum_of_squares = sum_of_squares(&x_deviations);
    if x_sum_of_squares == 0.0 {
        // Every point is in the same period: no line is determined.
        return fit;
    }
    let cross_products = Zip::from(&x_deviations)
        .and(&y_deviations)
        .map_collect(|x_deviation, y_deviation| x_deviation * y_deviation);
    let slope = compensated_sum(cross_products.iter().copied()) / x_sum_of_squares;
    let intercept = y_mean - slope * x_mean;
    let residuals = Zip::from(&x_deviations)
        .and(&y_deviations)
        .map_collect(|x_deviation, y_deviation| y_deviation - slope * x_deviation);
    let residual_sum_of_squares = sum_of_squares(&residuals);
    let total_sum_of_squares = sum_of_squares(&y_deviations);

    fit.slope = Some(slope);
    fit.intercept = Some(intercept);
    fit.r_squared =
        (total_sum_of_squares > 0.0).then(|| (1.0 - residual_sum_of_squares / total_sum_of_squares).clamp(0.0, 1.0));
    if point_count >= MIN_TREND_POINTS {
        let degrees_of_freedom = (point_count - 2) as f64;
        let standard_error = (residual_sum_of_squares / degrees_of_freedom / x_sum_of_squares).sqrt();
        let p_value = if standard_error > 0.0 {
            student_t_two_sided_p_value(slope / standard_error, degrees_of_freedom)
        } else if slope == 0.0 {
            1.0
        } else {
            0.0
        };
        fit.slope_standard_error = Some(standard_error);
        fit.slope_p_value = Some(p_value);
    }
    fit
}

/// The compensated mean of a non-empty array; exactly the common value when
/// all values are equal, so that their deviations are exactly 0.
fn mean(values: &Array1<f64>) -> f64 {
    let (sum, min, max) = match values.as_slice() {
        Some(contiguous) => sum_min_max(contiguous),
        None => sum_min_max(&values.to_vec()),
    };
    if min == max { min } else { sum / values.len() as f64 }
}

/// The compensated sum of the squares of an array.
fn sum_of_squares(values: &Array1<f64>) -> f64 {
    compensated_sum(values.iter().map(|value| value * value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn assert_close(actual: Option<f64>, expected: f64, tolerance: f64) {
        let actual = actual.expect("the figure is set");
        assert!(
            (actual - expected).abs() <= tolerance * expected.abs().max(1e-300),
            "{actual} is not {expected}"
        );
    }

    #[test]
    fn matches_scipy_linregress_by_hand() {
        // scipy.stats.linregress([0, 1, 2, 3, 5], [1.0, 2.5, 2.0, 4.5, 6.0]):
        // slope 1.0, intercept 1.0, rvalue 0.9528774633302539,
        // stderr 0.18380365552345196, pvalue 0.012192227604067437
        let fit = linear_trend(&[(0.0, 1.0), (1.0, 2.5), (2.0, 2.0), (3.0, 4.5), (5.0, 6.0)]);
        assert_close(fit.slope, 1.0, 1e-14);
        assert_close(fit.intercept, 1.0, 1e-14);
        assert_close(fit.r_squared, 0.9528774633302539 * 0.9528774633302539, 1e-13);
        assert_close(fit.slope_standard_error, 0.18380365552345196, 1e-13);
        assert_close(fit.slope_p_value, 0.012192227604067437, 1e-12);
        assert_eq!(fit.direction(), TrendDirection::Increasing);
    }

    #[test]
    fn unset_figures_follow_the_contract() {
        let empty = linear_trend(&[]);
        assert_eq!((empty.point_count, empty.slope), (0, None));
        assert_eq!(
            linear_trend(&[(3.0, 1.0)]).direction(),
            TrendDirection::InsufficientData
        );

        let two = linear_trend(&[(0.0, 1.0), (2.0, 2.0)]);
        assert_eq!(
            (two.slope, two.intercept, two.r_squared),
            (Some(0.5), Some(1.0), Some(1.0))
        );
        assert_eq!((two.slope_standard_error, two.slope_p_value), (None, None));
        assert_eq!(two.direction(), TrendDirection::InsufficientData);

        let same_period = linear_trend(&[(1.0, 1.0), (1.0, 2.0), (1.0, 3.0)]);
        assert_eq!((same_period.slope, same_period.slope_p_value), (None, None));
        assert_eq!(same_period.direction(), TrendDirection::InsufficientData);
    }

    #[test]
    fn constant_series_are_flat_without_r_squared() {
        let fit = linear_trend(&[(0.0, 0.1), (1.0, 0.1), (2.0, 0.1), (5.0, 0.1)]);
        assert_eq!((fit.slope, fit.intercept), (Some(0.0), Some(0.1)));
        assert_eq!(fit.r_squared, None);
        assert_eq!((fit.slope_standard_error, fit.slope_p_value), (Some(0.0), Some(1.0)));
        assert_eq!(fit.direction(), TrendDirection::Flat);
    }

    #[test]
    fn noisy_flat_series_is_flat() {
        let fit = linear_trend(&[(0.0, 5.0), (1.0, 7.0), (2.0, 4.0), (3.0, 6.0), (4.0, 5.0)]);
        assert!(fit.slope_p_value.expect("m ≥ 3") > 0.05);
        assert_eq!(fit.direction(), TrendDirection::Flat);
    }

    #[test]
    fn large_levels_do_not_hide_the_change() {
        let points: Vec<(f64, f64)> = (0..12)
            .map(|period| (f64::from(period), 1e9 - 3.0 * f64::from(period)))
            .collect();
        let fit = linear_trend(&points);
        assert_eq!(
            (fit.slope, fit.intercept, fit.r_squared),
            (Some(-3.0), Some(1e9), Some(1.0))
        );
        assert_eq!(fit.direction(), TrendDirection::Decreasing);
    }

    proptest! {
        #[test]
        fn exactly_linear_data_is_recovered(
            slope in -1000i32..1000,
            intercept in -1_000_000i32..1_000_000,
            mut periods in proptest::collection::btree_set(0u8..120, 3..40),
        ) {
            let points: Vec<(f64, f64)> = std::mem::take(&mut periods)
                .into_iter()
                .map(|period| (f64::from(period), f64::from(intercept) + f64::from(slope) * f64::from(period)))
                .collect();
            let largest_magnitude = points.iter().fold(1.0f64, |largest, &(_, y)| largest.max(y.abs()));
            let fit = linear_trend(&points);
            // The means are rounded, so the deviations and the slope may be
            // off by an ulp or so; the scale is y's magnitude per period.
            let fitted_slope = fit.slope.expect("m ≥ 2");
            prop_assert!((fitted_slope - f64::from(slope)).abs() <= 8.0 * f64::EPSILON * largest_magnitude);
            let fitted_intercept = fit.intercept.expect("m ≥ 2");
            prop_assert!((fitted_intercept - f64::from(intercept)).abs() <= 1e-12 * largest_magnitude);
            // The residuals are rounding noise (exactly 0 when the means are
            // representable), so the standard error is at most a few ulps of y.
            let standard_error = fit.slope_standard_error.expect("m ≥ 3");
            prop_assert!(standard_error <= 1e-13 * largest_magnitude);
            if slope == 0 {
                prop_assert_eq!(fit.r_squared, None);
                prop_assert_eq!(fit.direction(), TrendDirection::Flat);
            } else {
                prop_assert_eq!(fit.r_squared, Some(1.0));
                prop_assert!(fit.slope_p_value.expect("m ≥ 3") < 1e-6);
                let expected = if slope > 0 { TrendDirection::Increasing } else { TrendDirection::Decreasing };
                prop_assert_eq!(fit.direction(), expected);
            }
        }

        #[test]
        fn non_finite_points_never_panic(points in proptest::collection::vec((any::<f64>(), any::<f64>()), 0..20)) {
            let fit = linear_trend(&points);
            prop_assert_eq!(fit.point_count, points.len());
            let _ = fit.direction();
        }

        #[test]
        fn fractional_lines_fit_to_rounding(
            slope in -10.0f64..10.0,
            intercept in -100.0f64..100.0,
            point_count in 3usize..40,
        ) {
            let points: Vec<(f64, f64)> = (0..point_count).map(|period| (period as f64, intercept + slope * period as f64)).collect();
            let fit = linear_trend(&points);
            let fitted_slope = fit.slope.expect("m ≥ 2");
            prop_assert!((fitted_slope - slope).abs() <= 1e-12 * (slope.abs() + intercept.abs()));
            if slope.abs() > 1e-3 {
                prop_assert!(fit.r_squared.expect("y varies") > 1.0 - 1e-12);
            }
        }
    }
}
