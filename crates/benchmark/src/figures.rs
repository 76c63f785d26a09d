//! The figures of a slice as the service keeps them, and the anonymity rule
//! that decides which of them may leave.
//!
//! [`SliceFigures`] holds everything computed for a slice (or published by
//! an external source); it is what the cache stores. [`SliceFigures::anonymised`]
//! is the only way figures reach an answer. For the platform's own figures:
//! k counts distinct organisations (the caller's own is never among its
//! peers, see the engine), below k nothing is reported — not even how many
//! companies the slice holds —, the minimum and maximum are never reported
//! (each is one company's value), and below ten values the tails (P10, P90)
//! are dropped. The values themselves are noise-infused by the metrics
//! service before they arrive (`docs/benchmarks.md`).

use serde::{Deserialize, Serialize};

use crate::stats;

/// The sample size below which P10 and P90 are withheld.
pub const TAIL_MIN_SAMPLE_SIZE: u32 = 10;

/// The confidence level of every interval.
pub const CONFIDENCE_LEVEL: f64 = 0.95;

/// Whether, and how much of, a slice is withheld.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Suppression {
    /// Every figure is reported.
    NotSuppressed,
    /// P10 and P90 are withheld (fewer than ten values).
    TailsOmitted,
    /// Every figure is withheld (fewer than k values).
    BelowK,
    /// There are no values at all.
    NoData,
}

/// Where figures come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Origin {
    /// Computed from the platform's peer values.
    Computed,
    /// Published by an external source, reported as published.
    Published,
}

/// A two-sided interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// The lower bound.
    pub lower: f64,
    /// The upper bound.
    pub upper: f64,
}

/// How a median interval was bootstrapped, so that it can be reproduced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bootstrap {
    /// The seed of the generator.
    pub seed: u64,
    /// The number of resamples.
    pub resamples: u32,
}

/// Every figure of a slice. Counts are always present; the rest is `None`
/// where it does not exist (no data, n < 2, unpublished).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SliceFigures {
    /// Where the figures come from.
    pub origin: Origin,
    /// The values after outlier exclusion (the published sample size for
    /// external sources).
    pub n: u32,
    /// The values before outlier exclusion.
    pub total_count: u32,
    /// The values beyond the fences.
    pub outlier_count: u32,
    /// The anonymity decision; set by [`SliceFigures::anonymised`].
    pub suppression: Suppression,
    /// The minimum sample size k the decision was made with.
    pub min_sample_size: u32,
    /// The distinct organisations among the retained values (computed
    /// figures only; 0 for published ones).
    #[serde(default)]
    pub organization_count: u32,
    /// The arithmetic mean of the retained values.
    pub mean: Option<f64>,
    /// The sample standard deviation of the retained values (ddof = 1); `None` below two values.
    pub std_dev: Option<f64>,
    /// The smallest retained value; never reported for computed figures, as it is one company's value.
    pub min: Option<f64>,
    /// The largest retained value; never reported for computed figures, as it is one company's value.
    pub max: Option<f64>,
    /// The 10th percentile (linear interpolation for computed figures); withheld below ten values.
    pub p10: Option<f64>,
    /// The 25th percentile (linear interpolation for computed figures).
    pub p25: Option<f64>,
    /// The median, the 50th percentile (linear interpolation for computed figures).
    pub p50: Option<f64>,
    /// The 75th percentile (linear interpolation for computed figures).
    pub p75: Option<f64>,
    /// The 90th percentile (linear interpolation for computed figures); withheld below ten values.
    pub p90: Option<f64>,
    /// The lower outlier fence, P25 − 1.5 · IQR over every value before exclusion; `None` for
    /// published figures, whose outliers are not detected.
    pub lower_fence: Option<f64>,
    /// The upper outlier fence, P75 + 1.5 · IQR over every value before exclusion; `None` for
    /// published figures, whose outliers are not detected.
    pub upper_fence: Option<f64>,
    /// The Student's t interval of the mean.
    pub mean_interval: Option<Interval>,
    /// The bootstrap interval of the median.
    pub median_interval: Option<Interval>,
    /// How the median interval was (or would have been) bootstrapped.
    pub bootstrap: Option<Bootstrap>,
    /// When the figures were computed or imported, Unix microseconds.
    pub computed_at: i64,
}

impl SliceFigures {
    /// The figures of a slice with no values.
    pub fn empty(origin: Origin, computed_at: i64) -> Self {
        Self {
            origin,
            n: 0,
            total_count: 0,
            outlier_count: 0,
            suppression: Suppression::NoData,
            min_sample_size: 0,
            organization_count: 0,
            mean: None,
            std_dev: None,
            min: None,
            max: None,
            p10: None,
            p25: None,
            p50: None,
            p75: None,
            p90: None,
            lower_fence: None,
            upper_fence: None,
            mean_interval: None,
            median_interval: None,
            bootstrap: None,
            computed_at,
        }
    }

    /// Computes every figure of `description` (a slice's values, described),
    /// bootstrapping the median interval with `bootstrap`. CPU-bound: run it
    /// on the blocking pool.
    pub fn compute(description: &stats::Description, bootstrap: Bootstrap, computed_at: i64) -> Self {
        let summary = description.statistics();
        let mean_interval = stats::mean_confidence_interval(summary, CONFIDENCE_LEVEL).map(|bounds| Interval {
            lower: bounds.lower,
            upper: bounds.upper,
        });
        let median_interval = stats::median_bootstrap_interval(
            description.sorted_retained(),
            bootstrap.resamples,
            bootstrap.seed,
            CONFIDENCE_LEVEL,
        )
        .map(|bounds| Interval {
            lower: bounds.lower,
            upper: bounds.upper,
        });
        Self {
            origin: Origin::Computed,
            n: count(summary.n),
            total_count: count(summary.total_count),
            outlier_count: count(summary.outlier_count),
            suppression: Suppression::NotSuppressed,
            min_sample_size: 0,
            organization_count: 0,
            mean: Some(summary.mean),
            std_dev: summary.std_dev,
            min: Some(summary.min),
            max: Some(summary.max),
            p10: Some(summary.p10),
            p25: Some(summary.p25),
            p50: Some(summary.p50),
            p75: Some(summary.p75),
            p90: Some(summary.p90),
            lower_fence: Some(summary.lower_fence),
            upper_fence: Some(summary.upper_fence),
            mean_interval,
            median_interval,
            bootstrap: Some(bootstrap),
            computed_at,
        }
    }

    /// The figures that may be reported with the anonymity threshold
    /// `min_sample_size` (k). Computed figures: below k distinct
    /// organisations nothing at all (the counts included), never the
    /// minimum or maximum, below ten values no tails. Published figures
    /// (an external source's) are the source's own: below k values only the
    /// counts, below ten no tails.
    pub fn anonymised(&self, min_sample_size: u32) -> Self {
        let computed = self.origin == Origin::Computed;
        let withheld = |suppression: Suppression| {
            let mut figures = Self {
                suppression,
                min_sample_size,
                bootstrap: self.bootstrap,
                ..Self::empty(self.origin, self.computed_at)
            };
            if !computed {
                figures.n = self.n;
                figures.total_count = self.total_count;
                figures.outlier_count = self.outlier_count;
            }
            figures
        };
        if self.n == 0 {
            return withheld(Suppression::NoData);
        }
        let contributors = if computed { self.organization_count } else { self.n };
        if contributors < min_sample_size {
            return withheld(Suppression::BelowK);
        }
        let mut figures = self.clone();
        figures.min_sample_size = min_sample_size;
        if computed {
            figures.min = None;
            figures.max = None;
        }
        if self.n < TAIL_MIN_SAMPLE_SIZE {
            figures.p10 = None;
            figures.p90 = None;
            figures.suppression = Suppression::TailsOmitted;
        } else {
            figures.suppression = Suppression::NotSuppressed;
        }
        figures
    }

    /// Whether figures beyond the counts may be reported.
    pub fn is_reported(&self) -> bool {
        matches!(self.suppression, Suppression::NotSuppressed | Suppression::TailsOmitted)
    }

    /// Why figures are withheld, in words; empty when nothing is.
    pub fn suppression_reason(&self) -> String {
        match self.suppression {
            Suppression::NotSuppressed => String::new(),
            Suppression::TailsOmitted => format!(
                "{} companies, fewer than {TAIL_MIN_SAMPLE_SIZE}: P10 and P90 are withheld",
                self.n
            ),
            Suppression::BelowK if self.origin == Origin::Computed => format!(
                "fewer than {} organisations besides your own have a value in this slice; \
                 how many is withheld",
                self.min_sample_size
            ),
            Suppression::BelowK => format!(
                "{} {}, fewer than the minimum of {}",
                self.n,
                if self.n == 1 { "company" } else { "companies" },
                self.min_sample_size
            ),
            Suppression::NoData => "no company has a value in this slice".to_owned(),
        }
    }
}

/// A count as reported (saturating; slices never come close).
fn count(value: usize) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures_of(values: &[f64]) -> SliceFigures {
        let description = stats::describe_sorted(values).expect("values");
        SliceFigures::compute(
            &description,
            Bootstrap {
                seed: 7,
                resamples: 200,
            },
            0,
        )
    }

    #[test]
    fn below_k_organisations_nothing_is_reported_not_even_the_counts() {
        // Six values from four organisations: k counts organisations.
        let mut figures = figures_of(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        figures.organization_count = 4;
        let figures = figures.anonymised(5);
        assert_eq!(figures.suppression, Suppression::BelowK);
        assert_eq!((figures.n, figures.total_count, figures.outlier_count), (0, 0, 0));
        assert!(figures.mean.is_none() && figures.min.is_none() && figures.p50.is_none());
        assert!(figures.mean_interval.is_none() && figures.median_interval.is_none());
        assert_eq!(
            figures.suppression_reason(),
            "fewer than 5 organisations besides your own have a value in this slice; how many is withheld"
        );
    }

    #[test]
    fn published_sources_below_k_keep_their_counts() {
        let mut figures = figures_of(&[1.0, 2.0, 3.0, 4.0]);
        figures.origin = Origin::Published;
        let figures = figures.anonymised(5);
        assert_eq!(figures.suppression, Suppression::BelowK);
        assert_eq!((figures.n, figures.total_count), (4, 4));
        assert_eq!(figures.suppression_reason(), "4 companies, fewer than the minimum of 5");
    }

    #[test]
    fn below_ten_the_tails_are_withheld_and_extremes_never_leave() {
        let mut figures = figures_of(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        figures.organization_count = 6;
        let figures = figures.anonymised(5);
        assert_eq!(figures.suppression, Suppression::TailsOmitted);
        assert!(figures.p10.is_none() && figures.p90.is_none());
        assert!(figures.min.is_none() && figures.max.is_none());
        assert_eq!(figures.p50, Some(3.5));
        assert_eq!(figures.n, 6);
        let mut full = figures_of(&(1..=10).map(f64::from).collect::<Vec<_>>());
        full.organization_count = 10;
        let full = full.anonymised(5);
        assert_eq!(full.suppression, Suppression::NotSuppressed);
        assert!(full.p10.is_some() && full.p90.is_some());
        assert!(full.min.is_none() && full.max.is_none());
    }

    #[test]
    fn an_empty_slice_has_no_data() {
        let figures = SliceFigures::empty(Origin::Computed, 0).anonymised(5);
        assert_eq!(figures.suppression, Suppression::NoData);
        assert!(!figures.is_reported());
    }
}
