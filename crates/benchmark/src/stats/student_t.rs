//! Student's t distribution: the quantile for confidence intervals and the
//! two-sided tail probability for the trend's slope test, both accurate to a
//! few units in the last place.
//!
//! statrs provides the distribution, but its incomplete beta function forms
//! the prefactor x^a (1 − x)^b / B(a, b) from differences of large log-gamma
//! values and from `1 − x`, which costs digits for many degrees of freedom
//! and for t near 0, and its quantile (AS 109) is only good to about 1e-6
//! for large degrees of freedom. Both figures are reported to users and
//! checked against scipy at 1e-9, so this module evaluates the tail itself:
//!
//! - P(|T| ≥ t) = I_x(ν/2, 1/2) with x = ν / (ν + t²) and 1 − x = t² / (ν + t²)
//!   both formed without cancellation, and logarithms taken with `ln_1p`;
//! - ln B(ν/2, 1/2) comes from the log-gamma difference ln Γ(a + ½) − ln Γ(a),
//!   summed from Stirling's series instead of subtracting two large
//!   log-gamma values;
//! - I_x is the classical continued fraction, evaluated by the modified Lentz
//!   method on whichever of I_x(a, b) and I_{1−x}(b, a) converges, so that the
//!   smaller of the tail and the central probability is computed directly;
//! - the quantile starts from statrs's `inverse_cdf` and is refined by
//!   safeguarded Newton steps on the tail (or, near the centre, the central
//!   probability) until the step is below an ulp or two.

use statrs::distribution::{ContinuousCDF, StudentsT};

/// The largest number of continued-fraction terms evaluated. Convergence
/// takes O(√ν) terms where it is used, far fewer than this for any sample
/// size a slice can have.
const MAX_FRACTION_TERMS: usize = 100_000;

/// The largest number of Newton (or bisection) steps of the quantile search.
const MAX_QUANTILE_STEPS: usize = 200;

/// Keeps the Lentz recurrences away from division by zero.
const LENTZ_FLOOR: f64 = 1e-300;

/// From this parameter on, ln Γ(a + ½) − ln Γ(a) is taken from Stirling's
/// series.
const STIRLING_THRESHOLD: f64 = 10.0;

/// The probability that |T| ≥ |t| for T following Student's t distribution
/// with `degrees_of_freedom` (> 0) degrees of freedom: the two-sided p-value of
/// the statistic `t`.
///
/// Returns 1 for t = 0 and 0 for infinite t; NaN when `t` is NaN or the degrees
/// of freedom are not positive and finite.
///
/// # Examples
///
/// ```
/// use metrix_benchmark::stats::student_t_two_sided_p_value;
///
/// // One degree of freedom is the Cauchy distribution: P(|T| ≥ 1) = 1/2.
/// assert!((student_t_two_sided_p_value(1.0, 1.0) - 0.5).abs() < 1e-15);
/// ```
pub fn student_t_two_sided_p_value(t: f64, degrees_of_freedom: f64) -> f64 {
    if t.is_nan() || !is_valid_freedom(degrees_of_freedom) {
        return f64::NAN;
    }
    if t.is_infinite() {
        return 0.0;
    }
    if t == 0.0 {
        return 1.0;
    }
    split_at(t.abs(), degrees_of_freedom).two_sided_tail
}

/// The `probability` quantile of Student's t distribution with
/// `degrees_of_freedom` (> 0) degrees of freedom: the t with P(T ≤ t) =
/// `probability`.
///
/// Returns −∞ and +∞ for probabilities 0 and 1, and NaN for a probability
/// outside [0, 1] or degrees of freedom that are not positive and finite.
///
/// # Examples
///
/// ```
/// use metrix_benchmark::stats::student_t_quantile;
///
/// // scipy.stats.t.ppf(0.975, 10) = 2.228138851986274
/// assert!((student_t_quantile(0.975, 10.0) - 2.228138851986274).abs() < 1e-14);
/// ```
pub fn student_t_quantile(probability: f64, degrees_of_freedom: f64) -> f64 {
    if !(0.0..=1.0).contains(&probability) || !is_valid_freedom(degrees_of_freedom) {
        return f64::NAN;
    }
    if probability == 0.5 {
        return 0.0;
    }
    if probability == 0.0 {
        return f64::NEG_INFINITY;
    }
    if probability == 1.0 {
        return f64::INFINITY;
    }
    // The distribution is symmetric: find the positive quantile of the
    // smaller tail and mirror it. Both `1 − probability` (for probability ≥
    // 0.5) and `|probability − 0.5|` (for probability in [0.25, 0.75]) are
    // exact, so the targets carry no rounding of their own.
    let upper_tail = probability.min(1.0 - probability);
    let target = if upper_tail > 0.25 {
        Target::HalfCentral((probability - 0.5).abs())
    } else {
        Target::UpperTail(upper_tail)
    };
    let magnitude = positive_quantile(target, upper_tail, degrees_of_freedom);
    if probability < 0.5 { -magnitude } else { magnitude }
}

/// Whether the degrees of freedom are usable: positive and finite.
fn is_valid_freedom(degrees_of_freedom: f64) -> bool {
    degrees_of_freedom.is_finite() && degrees_of_freedom > 0.0
}

/// What the quantile search solves for, chosen so that the target is a small
/// number known exactly.
#[derive(Debug, Clone, Copy)]
enum Target {
    /// P(T ≥ t) equals the value (used for tails up to 1/4).
    UpperTail(f64),
    /// P(0 ≤ T < t) equals the value (used near the centre).
    HalfCentral(f64),
}

impl Target {
    /// How far `t` (> 0) is past the solution: negative below it, positive
    /// above; increasing in t.
    fn excess(self, t: f64, degrees_of_freedom: f64) -> f64 {
        let split = split_at(t, degrees_of_freedom);
        match self {
            Target::UpperTail(tail) => tail - split.two_sided_tail / 2.0,
            Target::HalfCentral(half_central) => split.central / 2.0 - half_central,
        }
    }
}

/// The t > 0 that meets `target`; `upper_tail` is the same target as a tail
/// probability, for the starting point.
fn positive_quantile(target: Target, upper_tail: f64, degrees_of_freedom: f64) -> f64 {
    let starting_point = StudentsT::new(0.0, 1.0, degrees_of_freedom)
        .map(|distribution| distribution.inverse_cdf(1.0 - upper_tail).abs())
        .unwrap_or(f64::NAN);
    let mut estimate = if starting_point.is_finite() && starting_point > 0.0 {
        starting_point
    } else {
        1.0
    };
    // The solution stays bracketed by (below, above); Newton steps that would
    // leave the bracket are replaced by bisection or doubling.
    let (mut below, mut above) = (0.0f64, f64::INFINITY);
    for _ in 0..MAX_QUANTILE_STEPS {
        let excess = target.excess(estimate, degrees_of_freedom);
        if excess == 0.0 {
            return estimate;
        }
        if excess < 0.0 {
            below = estimate;
        } else {
            above = estimate;
        }
        // The derivative of the excess with respect to t is the density.
        let newton = estimate - excess / density(estimate, degrees_of_freedom);
        let next = if newton > below && newton < above {
            newton
        } else if above.is_finite() {
            below + (above - below) / 2.0
        } else {
            estimate * 2.0
        };
        if (next - estimate).abs() <= 2.0 * f64::EPSILON * next {
            return next;
        }
        estimate = next;
    }
    estimate
}

/// P(|T| ≥ t) and P(|T| < t) for one t > 0, each either computed directly or
/// as the complement of the other when the other is the smaller.
#[derive(Debug, Clone, Copy)]
struct TailSplit {
    /// P(|T| ≥ t).
    two_sided_tail: f64,
    /// P(|T| < t).
    central: f64,
}

/// Splits the probability at t > 0: the tail is I_x(ν/2, ½) and the central
/// part I_{1−x}(½, ν/2), with x = ν / (ν + t²).
fn split_at(t: f64, degrees_of_freedom: f64) -> TailSplit {
    let half_freedom = degrees_of_freedom / 2.0;
    let t_squared = t * t;
    // x and y = 1 − x and their logarithms, formed from whichever of
    // u = t²/ν and v = ν/t² is at most 1, so that nothing cancels or
    // overflows.
    let (x, y, ln_x, ln_y) = if t_squared <= degrees_of_freedom {
        let u = t_squared / degrees_of_freedom;
        let ln_one_plus_u = u.ln_1p();
        let ln_u = if u >= f64::MIN_POSITIVE {
            u.ln()
        } else {
            2.0 * t.ln() - degrees_of_freedom.ln()
        };
        (1.0 / (1.0 + u), u / (1.0 + u), -ln_one_plus_u, ln_u - ln_one_plus_u)
    } else {
        let v = degrees_of_freedom / t / t;
        let ln_one_plus_v = v.ln_1p();
        let ln_v = if v >= f64::MIN_POSITIVE {
            v.ln()
        } else {
            degrees_of_freedom.ln() - 2.0 * t.ln()
        };
        (v / (1.0 + v), 1.0 / (1.0 + v), ln_v - ln_one_plus_v, -ln_one_plus_v)
    };
    let ln_beta = ln_beta_with_half(half_freedom);
    // The continued fraction of I_x(a, b) converges quickly for
    // x < (a + 1) / (a + b + 2); beyond that its mirror I_y(b, a) does.
    if x < (half_freedom + 1.0) / (half_freedom + 2.5) {
        let tail = incomplete_beta(half_freedom, 0.5, x, ln_x, ln_y, ln_beta);
        TailSplit {
            two_sided_tail: tail,
            central: 1.0 - tail,
        }
    } else {
        let central = incomplete_beta(0.5, half_freedom, y, ln_y, ln_x, ln_beta);
        TailSplit {
            two_sided_tail: 1.0 - central,
            central,
        }
    }
}

/// The density of Student's t distribution at t:
/// Γ((ν+1)/2) / (Γ(ν/2) √(νπ)) · (1 + t²/ν)^(−(ν+1)/2).
fn density(t: f64, degrees_of_freedom: f64) -> f64 {
    let ln_density = ln_gamma_ratio_half(degrees_of_freedom / 2.0)
        - 0.5 * (degrees_of_freedom * std::f64::consts::PI).ln()
        - (degrees_of_freedom + 1.0) / 2.0 * (t * t / degrees_of_freedom).ln_1p();
    ln_density.exp()
}

/// I_x(a, b) = x^a y^b / (a B(a, b)) · F, with F the continued fraction
/// 1 / (1 + d₁ / (1 + d₂ / (1 + …))) and y = 1 − x; the logarithms of x and y
/// and ln B(a, b) are passed in, already accurate. Meant for
/// x < (a + 1) / (a + b + 2), where F converges fast.
fn incomplete_beta(a: f64, b: f64, x: f64, ln_x: f64, ln_y: f64, ln_beta: f64) -> f64 {
    let ln_prefactor = a * ln_x + b * ln_y - ln_beta - a.ln();
    ln_prefactor.exp() * continued_fraction(a, b, x)
}

/// The continued fraction F of the incomplete beta function by the modified
/// Lentz method. Its coefficients are
/// d₂ₘ₊₁ = −(a + m)(a + b + m) x / ((a + 2m)(a + 2m + 1)) and
/// d₂ₘ = m (b − m) x / ((a + 2m − 1)(a + 2m)).
fn continued_fraction(a: f64, b: f64, x: f64) -> f64 {
    let floor = |value: f64| if value.abs() < LENTZ_FLOOR { LENTZ_FLOOR } else { value };
    // The term before the loop is 1 / (1 + d₁).
    let mut numerator_ratio = 1.0;
    let mut denominator_ratio = 1.0 / floor(1.0 - (a + b) * x / (a + 1.0));
    let mut fraction = denominator_ratio;
    for term in 1..=MAX_FRACTION_TERMS {
        let m = term as f64;
        let even = m * (b - m) * x / ((a + 2.0 * m - 1.0) * (a + 2.0 * m));
        denominator_ratio = 1.0 / floor(1.0 + even * denominator_ratio);
        numerator_ratio = floor(1.0 + even / numerator_ratio);
        fraction *= denominator_ratio * numerator_ratio;
        let odd = -(a + m) * (a + b + m) * x / ((a + 2.0 * m) * (a + 2.0 * m + 1.0));
        denominator_ratio = 1.0 / floor(1.0 + odd * denominator_ratio);
        numerator_ratio = floor(1.0 + odd / numerator_ratio);
        let change = denominator_ratio * numerator_ratio;
        fraction *= change;
        if (change - 1.0).abs() <= f64::EPSILON / 2.0 {
            break;
        }
    }
    fraction
}

/// ln B(a, ½) = ln Γ(½) − (ln Γ(a + ½) − ln Γ(a)).
fn ln_beta_with_half(a: f64) -> f64 {
    0.5 * std::f64::consts::PI.ln() - ln_gamma_ratio_half(a)
}

/// ln Γ(a + ½) − ln Γ(a), for a > 0.
///
/// The two log-gammas are nearly equal for large a, and a difference of
/// two separately rounded log-gammas loses the digits they share (about
/// 1e-13 already at a = 100 with statrs's `ln_gamma`). The difference is
/// therefore summed directly: from Stirling's series,
/// ½ ln a + (a ln(1 + 1/(2a)) − ½) + S(a + ½) − S(a), where S is the series
/// part of ln Γ (1/(12z) − 1/(360z³) + …) whose truncation error is below
/// 1e-16 for a ≥ 10; smaller a are first raised to 10 or more with
/// Γ(z + 1) = z Γ(z), each step subtracting ln(1 + 1/(2z)).
fn ln_gamma_ratio_half(a: f64) -> f64 {
    let mut shifted = a;
    let mut shift_correction = 0.0;
    while shifted < STIRLING_THRESHOLD {
        shift_correction += (0.5 / shifted).ln_1p();
        shifted += 1.0;
    }
    0.5 * shifted.ln() + (shifted * (0.5 / shifted).ln_1p() - 0.5) + stirling_series(shifted + 0.5)
        - stirling_series(shifted)
        - shift_correction
}

/// The series part of Stirling's expansion of ln Γ(z), for z ≥ 10.
fn stirling_series(z: f64) -> f64 {
    let inverse = 1.0 / z;
    let inverse_squared = inverse * inverse;
    // Bernoulli-number coefficients B₂ₖ / (2k (2k − 1)) for k = 1 … 6,
    // evaluated by Horner's rule in 1/z².
    let coefficients = [
        1.0 / 12.0,
        -1.0 / 360.0,
        1.0 / 1260.0,
        -1.0 / 1680.0,
        1.0 / 1188.0,
        -691.0 / 360_360.0,
    ];
    let polynomial = coefficients.iter().rev().fold(0.0, |accumulated, &coefficient| {
        accumulated * inverse_squared + coefficient
    });
    polynomial * inverse
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_relative(actual: f64, expected: f64, tolerance: f64) {
        let error = (actual - expected).abs() / expected.abs();
        assert!(
            error <= tolerance,
            "{actual} differs from {expected} by {error:e} (relative)"
        );
    }

    #[test]
    fn quantiles_match_scipy() {
        // scipy.stats.t.ppf(p, df)
        assert_relative(student_t_quantile(0.975, 1.0), 12.706204736174694, 1e-14);
        assert_relative(student_t_quantile(0.975, 2.0), 4.302652729749462, 1e-14);
        assert_relative(student_t_quantile(0.975, 30.0), 2.0422724563012378, 1e-14);
        // Many degrees of freedom need about √ν continued-fraction terms, whose
        // rounding adds up to a few parts in 1e14.
        assert_relative(student_t_quantile(0.975, 4999.0), 1.9604386466615247, 1e-12);
        assert_relative(student_t_quantile(0.995, 3.0), 5.840909309733355, 1e-14);
        assert_relative(student_t_quantile(0.025, 7.0), -2.3646242515927844, 1e-14);
        assert_eq!(student_t_quantile(0.5, 5.0), 0.0);
        assert_eq!(student_t_quantile(1.0, 5.0), f64::INFINITY);
        assert!(student_t_quantile(1.5, 5.0).is_nan());
        assert!(student_t_quantile(0.9, 0.0).is_nan());
    }

    #[test]
    fn quantiles_near_the_centre_keep_relative_accuracy() {
        // For one degree of freedom the quantile is tan(π (p − ½)).
        let probability = 0.5000001;
        let expected = (std::f64::consts::PI * (probability - 0.5)).tan();
        assert_relative(student_t_quantile(probability, 1.0), expected, 1e-14);
        // For two degrees of freedom it is (2p − 1) √(2 / (4 p (1 − p))).
        let probability: f64 = 0.7;
        let expected = (2.0 * probability - 1.0) * (2.0 / (4.0 * probability * (1.0 - probability))).sqrt();
        assert_relative(student_t_quantile(probability, 2.0), expected, 1e-14);
    }

    #[test]
    fn p_values_match_closed_forms_and_scipy() {
        // One degree of freedom.
        for t in [1e-8f64, 1e-3, 0.5, 1.0, 3.0, 1e3, 1e200] {
            // 2 atan(1/t) / π, which equals 1 − 2 atan(t) / π without cancelling.
            let expected = 2.0 * (1.0 / t).atan() / std::f64::consts::PI;
            assert_relative(student_t_two_sided_p_value(t, 1.0), expected, 1e-13);
        }
        // Two degrees of freedom: 1 − t / √(2 + t²).
        for t in [1e-6f64, 0.3, 2.0, 50.0] {
            let expected = if t > 10.0 {
                // 1 − t/√(2 + t²) without cancellation.
                2.0 / ((2.0 + t * t).sqrt() * ((2.0 + t * t).sqrt() + t))
            } else {
                1.0 - t / (2.0 + t * t).sqrt()
            };
            assert_relative(student_t_two_sided_p_value(t, 2.0), expected, 1e-13);
        }
        // 2 * scipy.stats.t.sf(abs(t), df)
        assert_relative(student_t_two_sided_p_value(2.0, 5.0), 0.10193947882985835, 1e-13);
        assert_relative(student_t_two_sided_p_value(-0.3, 12.0), 0.7693104740882523, 1e-13);
        assert_relative(student_t_two_sided_p_value(40.0, 3.0), 3.4380680789158506e-05, 1e-13);
        assert_relative(student_t_two_sided_p_value(10.0, 1000.0), 1.6670702958600137e-22, 1e-12);
        assert_relative(student_t_two_sided_p_value(1e6, 38.0), 1.3337662618101733e-199, 1e-12);
        assert_eq!(student_t_two_sided_p_value(0.0, 4.0), 1.0);
        assert_eq!(student_t_two_sided_p_value(f64::INFINITY, 4.0), 0.0);
    }

    #[test]
    fn log_gamma_differences_are_exact_to_rounding() {
        // ln Γ(a + ½) − ln Γ(a), rounded to double precision.
        let expected = [
            (0.5, -0.572_364_942_924_700_1),
            (1.0, -0.120_782_237_635_245_22),
            (2.5, 0.408_464_310_087_026_16),
            (10.0, 1.138_797_739_322_294_1),
        ];
        for (a, difference) in expected {
            assert!((ln_gamma_ratio_half(a) - difference).abs() < 1e-15, "a = {a}");
        }
    }
}
