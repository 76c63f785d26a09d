//! Differential test of `metrix_benchmark::stats` against numpy and scipy.
//!
//! A seeded generator makes at least 10,000 slices of 1 to 5,000 values
//! (mostly small, with a steady share of large ones) from distributions that
//! stress the arithmetic: normal and log-normal KPIs, ties drawn from a few
//! values, negative values, constant slices, heavy outliers, huge offsets
//! (1e9 plus noise), tiny magnitudes, integers, mixed signs that cancel,
//! uniform and bimodal data. Each slice gets a confidence level, eight values
//! to rank (values of the slice, midpoints, values beyond both ends), and about
//! a third of the slices a trend of 2 to 40 points (noisy lines, exactly
//! linear series, constant series, large levels, pure noise, with and without
//! gaps between periods).
//!
//! The cases are written to a temporary file (little-endian, see
//! `tests/reference/numpy_reference.py`), the reference script computes the
//! same figures with numpy (`np.percentile`, `np.mean`, `np.std(ddof=1)`,
//! `min`, `max`) and scipy (`scipy.stats.t.ppf`, `percentileofscore`,
//! `linregress`, and `np.interp` for the interpolated rank of an external
//! source), deciding the outliers from numpy's own percentiles, and every
//! figure is compared: every field of `describe` and `describe_sorted`, the t
//! quantile and Student's t interval of the mean, weak, strict and mean
//! percentile ranks in both directions, z-scores, robust scores, quartiles,
//! outlier flags, interpolated ranks, and the trend fits. `describe_slices`
//! must equal `describe` exactly.
//!
//! Tolerance: a figure a agrees with its reference b when
//! |a − b| ≤ 1e-9 · max(|a|, |b|), except for figures that are differences of
//! the data (mean, standard deviation, confidence bounds, z-scores and robust
//! scores, and the regression's slope, intercept and slope standard error),
//! whose rounding error is proportional to the magnitude of the data rather
//! than of the result: for those the scale may also be the data's magnitude,
//! max |value| over the retained values (over the trend's y for the
//! regression), and for the scores that magnitude divided by the standard
//! deviation or interquartile range. r² is a ratio in [0, 1]: its scale is 1.
//! Counts, quartiles, outlier flags and whether a figure is set must match
//! exactly; percentiles, fences, extremes, percentile ranks and t quantiles
//! are compared relatively and in practice agree to the bit.
//!
//! Two documented exceptions, both where scipy's own arithmetic is not
//! accurate to 1e-9 and the reference says so rather than the tolerance:
//!
//! - linregress computes the slope's standard error and p-value from
//!   1 − r², whose absolute rounding error (a few ulps) dominates both for a
//!   near-perfect fit. The reference reports the range each takes when
//!   1 − r² moves by 4 (m + 4) ulps of 1, and the Rust figure must lie in
//!   that range (widened by the tolerance above). For a well-conditioned fit
//!   the range is narrower than the tolerance.
//! - For a constant series linregress's r is undefined (nan, or a rounding
//!   artefact), so r² must be unset, the standard error exactly 0 and the
//!   p-value exactly 1, as `TrendFit` documents; slope and intercept are still
//!   compared with linregress.
//!
//! The seed is printed; `METRIX_DIFFERENTIAL_SEED` overrides it and
//! `METRIX_DIFFERENTIAL_CASES` the number of cases (at least 10,000).
//! Python is `METRIX_PYTHON` or `python3`; numpy and scipy are installed with
//! pip when missing. Without Python, or when the installation fails, the test
//! fails and says how to install them; it never skips.

#![allow(clippy::expect_used, clippy::unwrap_used, reason = "a test fails by panicking")]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use metrix_benchmark::stats::{
    Direction, PublishedPercentiles, Quartile, ScoreKind, SliceStatistics, TrendFit, describe, describe_slices,
    describe_sorted, interpolated_percentile_rank, linear_trend, mean_confidence_interval, percentile_of_score,
    rank_against_peers, student_t_quantile,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The seed used unless `METRIX_DIFFERENTIAL_SEED` is set.
const DEFAULT_SEED: u64 = 20_260_701;
/// The number of cases unless `METRIX_DIFFERENTIAL_CASES` asks for more.
const MIN_CASE_COUNT: usize = 10_000;
/// The relative tolerance of every comparison.
const TOLERANCE: f64 = 1e-9;
/// How many mismatches are printed in full.
const REPORTED_MISMATCHES: usize = 20;
/// The values ranked per case.
const SCORES_PER_CASE: usize = 8;
/// Reference figures per case before the scores, per score, and per trend.
const SLICE_FIGURES: usize = 18;
const FIGURES_PER_SCORE: usize = 12;
const TREND_FIGURES: usize = 10;
/// The header of the input file.
const MAGIC: &[u8; 8] = b"MXDIFF02";

/// One generated slice with its ranking and trend inputs.
struct Case {
    family: &'static str,
    values: Vec<f64>,
    level: f64,
    scores: Vec<f64>,
    /// Which of min, P10, P25, P50, P75, P90 and max (bits 0 to 6) an
    /// external source would have published, for the interpolated rank.
    published_mask: u32,
    trend: Vec<(f64, f64)>,
    trend_family: &'static str,
}

#[test]
fn statistics_match_numpy_and_scipy() {
    let seed = environment_number("METRIX_DIFFERENTIAL_SEED").unwrap_or(DEFAULT_SEED);
    let case_count = environment_number("METRIX_DIFFERENTIAL_CASES")
        .map_or(MIN_CASE_COUNT, |count| (count as usize).max(MIN_CASE_COUNT));
    println!("differential seed: {seed} (set METRIX_DIFFERENTIAL_SEED={seed} to reproduce), {case_count} cases");

    let python = std::env::var("METRIX_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    require_numpy_and_scipy(&python);

    let mut generator = ChaCha8Rng::seed_from_u64(seed);
    let cases: Vec<Case> = (0..case_count).map(|_| generate_case(&mut generator)).collect();

    let directory = std::env::temp_dir();
    let stem = format!("metrix-differential-{}-{seed}", std::process::id());
    let input_path = directory.join(format!("{stem}.in"));
    let output_path = directory.join(format!("{stem}.out"));
    std::fs::write(&input_path, encode_cases(&cases)).expect("the temporary directory is writable");

    let started = Instant::now();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference/numpy_reference.py");
    let status = Command::new(&python)
        .arg(&script)
        .arg(&input_path)
        .arg(&output_path)
        .status()
        .unwrap_or_else(|error| panic!("cannot run {python} {}: {error}", script.display()));
    assert!(
        status.success(),
        "the numpy reference failed ({status}); input kept at {}",
        input_path.display()
    );
    let python_time = started.elapsed();
    let reference = read_reference(&output_path);
    let _ = std::fs::remove_file(&input_path);
    let _ = std::fs::remove_file(&output_path);

    let started = Instant::now();
    let mut comparison = Comparison::default();
    let mut position = 0;
    for (index, case) in cases.iter().enumerate() {
        let figure_count = SLICE_FIGURES
            + FIGURES_PER_SCORE * case.scores.len()
            + if case.trend.is_empty() { 0 } else { TREND_FIGURES };
        let figures = reference
            .get(position..position + figure_count)
            .unwrap_or_else(|| panic!("the reference output ends before case {index}"));
        position += figure_count;
        compare_case(&mut comparison, index, case, figures);
    }
    assert_eq!(position, reference.len(), "the reference output has trailing figures");
    // The parallel batch entry point must give exactly what describe gives.
    let views: Vec<&[f64]> = cases.iter().map(|case| case.values.as_slice()).collect();
    for (index, (batch, case)) in describe_slices(&views).into_iter().zip(&cases).enumerate() {
        let context = Context { index, case };
        comparison.exact(&context, "describe_slices", batch, describe(&case.values));
    }
    let rust_time = started.elapsed();

    let total_values: usize = cases.iter().map(|case| case.values.len()).sum();
    let trend_count = cases.iter().filter(|case| !case.trend.is_empty()).count();
    println!(
        "{case_count} cases, {total_values} values, {trend_count} trends, {} figures compared; \
         numpy/scipy {python_time:.2?}, Rust {rust_time:.2?}",
        comparison.compared
    );
    println!("largest error per figure, in units of its tolerance scale (|a − b| / scale):");
    for (figure, (error, case)) in &comparison.worst {
        println!("  {figure:<28} {error:9.2e}  (case {case})");
    }
    println!("{} mismatches", comparison.mismatches.len());
    for mismatch in comparison.mismatches.iter().take(REPORTED_MISMATCHES) {
        println!("  {mismatch}");
    }
    assert_eq!(
        comparison.mismatches.len(),
        0,
        "figures differ from numpy/scipy (seed {seed})"
    );
}

/// Makes sure `python` can import numpy and scipy: when it cannot, installs
/// them with pip once (so a fresh clone passes `cargo test --workspace`), and
/// fails with installation instructions when that does not help.
fn require_numpy_and_scipy(python: &str) {
    let advice = "the differential test needs Python 3 with numpy and scipy: install them with \
                  `python3 -m pip install numpy scipy` (or point METRIX_PYTHON at a Python that has them)";
    let importable = || {
        Command::new(python)
            .args(["-c", "import numpy, scipy.stats"])
            .output()
            .unwrap_or_else(|error| panic!("cannot run `{python}` ({error}); {advice}"))
    };
    if importable().status.success() {
        return;
    }
    println!("numpy or scipy is missing: installing them with `{python} -m pip install numpy scipy`");
    let installed = Command::new(python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "numpy",
            "scipy",
        ])
        .output()
        .unwrap_or_else(|error| panic!("cannot run `{python} -m pip` ({error}); {advice}"));
    let output = importable();
    assert!(
        output.status.success(),
        "`{python}` cannot import numpy and scipy ({}), and installing them failed ({}); {advice}",
        String::from_utf8_lossy(&output.stderr).trim(),
        String::from_utf8_lossy(&installed.stderr).trim()
    );
}

fn environment_number(name: &str) -> Option<u64> {
    let text = std::env::var(name).ok()?;
    Some(
        text.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a non-negative integer, not {text:?}")),
    )
}

// ---------------------------------------------------------------------------
// Case generation.
// ---------------------------------------------------------------------------

/// A standard normal draw (Box–Muller).
fn normal(generator: &mut ChaCha8Rng) -> f64 {
    let radius = (-2.0 * (1.0 - generator.random::<f64>()).ln()).sqrt();
    radius * (std::f64::consts::TAU * generator.random::<f64>()).cos()
}

/// A slice size: mostly small, a quarter medium, one case in six large.
fn slice_size(generator: &mut ChaCha8Rng) -> usize {
    let draw = generator.random::<f64>();
    if draw < 0.55 {
        generator.random_range(1..=30)
    } else if draw < 0.80 {
        generator.random_range(31..=300)
    } else if draw < 0.96 {
        generator.random_range(301..=2_000)
    } else {
        generator.random_range(2_001..=5_000)
    }
}

fn generate_case(generator: &mut ChaCha8Rng) -> Case {
    let size = slice_size(generator);
    let (family, values) = generate_values(generator, size);
    let level = *[0.95, 0.95, 0.95, 0.95, 0.9, 0.99, 0.8, 0.999, 0.5]
        .get(generator.random_range(0..9))
        .expect("the index is below the length");
    let scores = generate_scores(generator, &values);
    let published_mask = generator.random_range(1..128u32);
    let (trend_family, trend) = if generator.random::<f64>() < 0.35 {
        generate_trend(generator)
    } else {
        ("none", Vec::new())
    };
    Case {
        family,
        values,
        level,
        scores,
        published_mask,
        trend,
        trend_family,
    }
}

fn generate_values(generator: &mut ChaCha8Rng, size: usize) -> (&'static str, Vec<f64>) {
    let family = generator.random_range(0..13);
    let draw = |generator: &mut ChaCha8Rng| -> Vec<f64> { (0..size).map(|_| normal(generator)).collect() };
    match family {
        0 => {
            let (center, spread) = (
                generator.random_range(-100.0..100.0),
                10f64.powf(generator.random_range(-2.0..2.0)),
            );
            (
                "normal",
                draw(generator).into_iter().map(|z| center + spread * z).collect(),
            )
        }
        1 => {
            let (location, shape) = (generator.random_range(-2.0..5.0), generator.random_range(0.2..2.0));
            (
                "lognormal",
                draw(generator)
                    .into_iter()
                    .map(|z| (location + shape * z).exp())
                    .collect(),
            )
        }
        2 => {
            let distinct = generator.random_range(1..=6);
            let palette: Vec<f64> = (0..distinct)
                .map(|_| f64::from(generator.random_range(-8i32..=8)) / 4.0)
                .collect();
            (
                "ties",
                (0..size)
                    .map(|_| palette[generator.random_range(0..distinct)])
                    .collect(),
            )
        }
        3 => {
            let shape = generator.random_range(0.3..1.5);
            (
                "negative",
                draw(generator).into_iter().map(|z| -(shape * z).exp() * 50.0).collect(),
            )
        }
        4 => {
            let constant = *[0.1, -3.7, 1e9 + 0.1, 0.0, 42.0, 1.0 / 3.0, -1e-7]
                .get(generator.random_range(0..7))
                .expect("the index is below the length");
            ("constant", vec![constant; size])
        }
        5 => {
            let scale = 10f64.powf(generator.random_range(-3.0..3.0));
            let values = (0..size)
                .map(|_| {
                    if generator.random::<f64>() < 0.05 {
                        let magnitude = 10f64.powf(generator.random_range(3.0..8.0));
                        if generator.random::<bool>() {
                            magnitude * scale
                        } else {
                            -magnitude * scale
                        }
                    } else {
                        normal(generator) * scale
                    }
                })
                .collect();
            ("heavy outliers", values)
        }
        6 => {
            let (offset, noise) = if generator.random::<bool>() {
                (1e9, 1.0)
            } else {
                (1e12, 100.0)
            };
            (
                "huge offset",
                draw(generator).into_iter().map(|z| offset + noise * z).collect(),
            )
        }
        7 => {
            let scale = 10f64.powf(generator.random_range(-100.0..-10.0));
            (
                "tiny",
                draw(generator)
                    .into_iter()
                    .map(|z| scale * (1.0 + z.abs()) * z.signum())
                    .collect(),
            )
        }
        8 => {
            let range = *[5i32, 100, 1_000_000]
                .get(generator.random_range(0..3))
                .expect("in range");
            (
                "integers",
                (0..size)
                    .map(|_| f64::from(generator.random_range(-range..=range)))
                    .collect(),
            )
        }
        9 => {
            let values = (0..size)
                .map(|index| {
                    let magnitude = if index % 3 == 0 {
                        generator.random_range(1e6..1e9)
                    } else {
                        generator.random_range(0.0..10.0)
                    };
                    if generator.random::<bool>() {
                        magnitude
                    } else {
                        -magnitude
                    }
                })
                .collect();
            ("mixed signs", values)
        }
        10 => {
            let (low, width) = (generator.random_range(-1e3..1e3), generator.random_range(1e-3..1e3));
            (
                "uniform",
                (0..size).map(|_| low + width * generator.random::<f64>()).collect(),
            )
        }
        11 => {
            let values = (0..size)
                .map(|_| {
                    if generator.random::<f64>() < 0.6 {
                        -50.0 + 5.0 * normal(generator)
                    } else {
                        80.0 + 10.0 * normal(generator)
                    }
                })
                .collect();
            ("bimodal", values)
        }
        _ => (
            "percentages",
            (0..size)
                .map(|_| (generator.random_range(0.0..1000.0f64)).round() / 10.0)
                .collect(),
        ),
    }
}

/// Values to rank: two values of the slice, a midpoint of two values, a
/// value a hair above one, one below and one above every value, 0 and the
/// slice's rough centre.
fn generate_scores(generator: &mut ChaCha8Rng, values: &[f64]) -> Vec<f64> {
    let pick = |generator: &mut ChaCha8Rng| values[generator.random_range(0..values.len())];
    let (low, high) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(low, high), &value| {
            (low.min(value), high.max(value))
        });
    let width = (high - low).max(high.abs().max(low.abs()) * 1e-3).max(1e-300);
    let first = pick(generator);
    let second = pick(generator);
    let near = pick(generator);
    let scores = vec![
        first,
        second,
        first / 2.0 + second / 2.0,
        near + near.abs() * 4.0 * f64::EPSILON,
        low - width * generator.random_range(0.01..2.0),
        high + width * generator.random_range(0.01..2.0),
        0.0,
        values.iter().sum::<f64>() / values.len() as f64,
    ];
    debug_assert_eq!(scores.len(), SCORES_PER_CASE);
    scores
}

fn generate_trend(generator: &mut ChaCha8Rng) -> (&'static str, Vec<(f64, f64)>) {
    let point_count = generator.random_range(2..=40usize);
    let periods: Vec<f64> = if generator.random::<bool>() {
        (0..point_count).map(|period| period as f64).collect()
    } else {
        // Periods with gaps: distinct indexes within ten years of months.
        let mut chosen = std::collections::BTreeSet::new();
        while chosen.len() < point_count {
            chosen.insert(generator.random_range(0u32..120));
        }
        chosen.into_iter().map(f64::from).collect()
    };
    let family = generator.random_range(0..7);
    let slope = generator.random_range(-5.0..5.0);
    let intercept = generator.random_range(-100.0..100.0);
    let (name, y): (&'static str, Vec<f64>) = match family {
        0 => {
            let noise = 10f64.powf(generator.random_range(-2.0..1.5));
            (
                "noisy line",
                periods
                    .iter()
                    .map(|&x| intercept + slope * x + noise * normal(generator))
                    .collect(),
            )
        }
        1 => {
            let (slope, intercept) = (
                f64::from(generator.random_range(-20i32..=20)),
                f64::from(generator.random_range(-1000i32..=1000)),
            );
            ("integer line", periods.iter().map(|&x| intercept + slope * x).collect())
        }
        2 => (
            "fractional line",
            periods.iter().map(|&x| intercept + slope * x).collect(),
        ),
        3 => {
            let constant = *[0.1, 7.0, -2.5, 1e6 + 0.3]
                .get(generator.random_range(0..4))
                .expect("in range");
            ("constant", vec![constant; periods.len()])
        }
        4 => (
            "large level",
            periods
                .iter()
                .map(|&x| 1e9 + 1000.0 * slope * x + 500.0 * normal(generator))
                .collect(),
        ),
        5 => ("noise", periods.iter().map(|_| normal(generator)).collect()),
        _ => (
            "near-perfect line",
            periods
                .iter()
                .map(|&x| intercept + slope * x + 1e-9 * normal(generator))
                .collect(),
        ),
    };
    (name, periods.into_iter().zip(y).collect())
}

// ---------------------------------------------------------------------------
// Exchange with the reference.
// ---------------------------------------------------------------------------

fn encode_cases(cases: &[Case]) -> Vec<u8> {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&(cases.len() as u64).to_le_bytes());
    let put_floats = |bytes: &mut Vec<u8>, values: &mut dyn Iterator<Item = f64>| {
        for value in values {
            bytes.extend_from_slice(&value.to_le_bytes());
        }
    };
    for case in cases {
        bytes.extend_from_slice(&(case.values.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&case.level.to_le_bytes());
        put_floats(&mut bytes, &mut case.values.iter().copied());
        bytes.extend_from_slice(&(case.scores.len() as u32).to_le_bytes());
        put_floats(&mut bytes, &mut case.scores.iter().copied());
        bytes.extend_from_slice(&case.published_mask.to_le_bytes());
        bytes.extend_from_slice(&(case.trend.len() as u32).to_le_bytes());
        put_floats(&mut bytes, &mut case.trend.iter().map(|&(x, _)| x));
        put_floats(&mut bytes, &mut case.trend.iter().map(|&(_, y)| y));
    }
    bytes
}

fn read_reference(path: &PathBuf) -> Vec<f64> {
    let bytes = std::fs::read(path).unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
    assert_eq!(bytes.len() % 8, 0, "the reference output is not a whole number of f64");
    bytes
        .chunks_exact(8)
        .map(|chunk| f64::from_le_bytes(chunk.try_into().expect("chunks_exact yields 8 bytes")))
        .collect()
}

// ---------------------------------------------------------------------------
// Comparison.
// ---------------------------------------------------------------------------

#[derive(Default)]
struct Comparison {
    compared: usize,
    mismatches: Vec<String>,
    /// The largest |a − b| / scale seen per figure, with its case.
    worst: BTreeMap<&'static str, (f64, usize)>,
}

/// Where a case stands, for mismatch messages.
struct Context<'case> {
    index: usize,
    case: &'case Case,
}

impl Comparison {
    fn fail(&mut self, context: &Context<'_>, figure: &str, detail: String) {
        let case = context.case;
        let mut message = format!(
            "case {} ({}, {} values, level {}; trend {} of {} points): {figure}: {detail}",
            context.index,
            case.family,
            case.values.len(),
            case.level,
            case.trend_family,
            case.trend.len()
        );
        if case.values.len() <= 12 {
            let _ = write!(message, "; values {:?}", case.values);
        }
        self.mismatches.push(message);
    }

    /// Compares an optional figure with a reference (NaN = unset) within the
    /// tolerance at `scale` (0 for a purely relative comparison).
    fn figure(&mut self, context: &Context<'_>, figure: &'static str, actual: Option<f64>, expected: f64, scale: f64) {
        self.compared += 1;
        match (actual, expected.is_nan()) {
            (None, true) => {}
            (Some(actual), false) => {
                let allowed_scale = actual.abs().max(expected.abs()).max(scale);
                let difference = (actual - expected).abs();
                if allowed_scale > 0.0 {
                    let error = difference / allowed_scale;
                    let worst = self.worst.entry(figure).or_insert((0.0, context.index));
                    if error > worst.0 {
                        *worst = (error, context.index);
                    }
                }
                if difference.is_nan() || difference > TOLERANCE * allowed_scale {
                    self.fail(
                        context,
                        figure,
                        format!("Rust {actual:e}, reference {expected:e}, difference {difference:e} at scale {allowed_scale:e}"),
                    );
                }
            }
            (actual, _) => self.fail(
                context,
                figure,
                format!("Rust {actual:?}, reference {expected:e} (set status differs)"),
            ),
        }
    }

    /// Requires an optional figure to lie within [low, high] (NaN = unset for
    /// both), each end widened by the tolerance at `scale`.
    fn within(
        &mut self,
        context: &Context<'_>,
        figure: &'static str,
        actual: Option<f64>,
        (low, high): (f64, f64),
        scale: f64,
    ) {
        self.compared += 1;
        match (actual, low.is_nan()) {
            (None, true) => {}
            (Some(actual), false) => {
                let low_slack = TOLERANCE * low.abs().max(scale);
                let high_slack = TOLERANCE * high.abs().max(scale);
                if !(actual >= low - low_slack && actual <= high + high_slack) {
                    self.fail(
                        context,
                        figure,
                        format!("Rust {actual:e} outside the reference range [{low:e}, {high:e}]"),
                    );
                }
            }
            (actual, _) => self.fail(
                context,
                figure,
                format!("Rust {actual:?}, reference range [{low:e}, {high:e}] (set status differs)"),
            ),
        }
    }

    fn exact<T: PartialEq + std::fmt::Debug>(
        &mut self,
        context: &Context<'_>,
        figure: &'static str,
        actual: T,
        expected: T,
    ) {
        self.compared += 1;
        if actual != expected {
            self.fail(context, figure, format!("Rust {actual:?}, reference {expected:?}"));
        }
    }
}

fn quartile_number(quartile: Quartile) -> f64 {
    match quartile {
        Quartile::Unspecified => 0.0,
        Quartile::Top => 1.0,
        Quartile::UpperMiddle => 2.0,
        Quartile::LowerMiddle => 3.0,
        Quartile::Bottom => 4.0,
    }
}

fn compare_slice(
    comparison: &mut Comparison,
    context: &Context<'_>,
    label: [&'static str; 14],
    actual: &SliceStatistics,
    expected: &[f64],
    data_scale: f64,
) {
    comparison.exact(context, label[0], actual.total_count as f64, expected[0]);
    comparison.exact(context, label[1], actual.n as f64, expected[1]);
    comparison.exact(context, label[2], actual.outlier_count as f64, expected[2]);
    comparison.figure(context, label[3], Some(actual.lower_fence), expected[3], 0.0);
    comparison.figure(context, label[4], Some(actual.upper_fence), expected[4], 0.0);
    comparison.figure(context, label[5], Some(actual.mean), expected[5], data_scale);
    comparison.figure(context, label[6], actual.std_dev, expected[6], data_scale);
    let order_statistics = [
        actual.min, actual.max, actual.p10, actual.p25, actual.p50, actual.p75, actual.p90,
    ];
    for (offset, value) in order_statistics.into_iter().enumerate() {
        comparison.figure(context, label[7 + offset], Some(value), expected[7 + offset], 0.0);
    }
}

fn compare_case(comparison: &mut Comparison, index: usize, case: &Case, reference: &[f64]) {
    let context = Context { index, case };
    let (slice, rest) = reference.split_at(14);
    let (interval, rest) = rest.split_at(4);
    let (ranking, trend) = rest.split_at(FIGURES_PER_SCORE * case.scores.len());
    // The data's magnitude over the reference's retained values.
    let data_scale = slice[7].abs().max(slice[8].abs());

    let fast = describe(&case.values).expect("generated slices are not empty");
    compare_slice(
        comparison,
        &context,
        [
            "total_count",
            "n",
            "outlier_count",
            "lower_fence",
            "upper_fence",
            "mean",
            "std_dev",
            "min",
            "max",
            "p10",
            "p25",
            "p50",
            "p75",
            "p90",
        ],
        &fast,
        slice,
        data_scale,
    );
    let description = describe_sorted(&case.values).expect("generated slices are not empty");
    let statistics = description.statistics();
    compare_slice(
        comparison,
        &context,
        [
            "sorted: total_count",
            "sorted: n",
            "sorted: outlier_count",
            "sorted: lower_fence",
            "sorted: upper_fence",
            "sorted: mean",
            "sorted: std_dev",
            "sorted: min",
            "sorted: max",
            "sorted: p10",
            "sorted: p25",
            "sorted: p50",
            "sorted: p75",
            "sorted: p90",
        ],
        statistics,
        slice,
        data_scale,
    );

    // Student's t interval of the mean.
    let n = statistics.n as f64;
    let quantile = (statistics.n >= 2).then(|| student_t_quantile(1.0 - (1.0 - case.level) / 2.0, n - 1.0));
    comparison.figure(&context, "t quantile", quantile, interval[0], 0.0);
    let bounds = mean_confidence_interval(&fast, case.level);
    comparison.figure(
        &context,
        "mean CI lower",
        bounds.map(|bounds| bounds.lower),
        interval[1],
        data_scale,
    );
    comparison.figure(
        &context,
        "mean CI upper",
        bounds.map(|bounds| bounds.upper),
        interval[2],
        data_scale,
    );
    let all_equal = interval[3] == 1.0;
    comparison.exact(
        &context,
        "std_dev is 0",
        statistics.std_dev == Some(0.0),
        all_equal && statistics.n >= 2,
    );

    // Rankings, both directions.
    let sorted = description.sorted_retained();
    let publish = |bit: u32, value: f64| (case.published_mask & (1 << bit) != 0).then_some(value);
    let published = PublishedPercentiles {
        min: publish(0, statistics.min),
        p10: publish(1, statistics.p10),
        p25: publish(2, statistics.p25),
        p50: publish(3, statistics.p50),
        p75: publish(4, statistics.p75),
        p90: publish(5, statistics.p90),
        max: publish(6, statistics.max),
    };
    for (score_index, &score) in case.scores.iter().enumerate() {
        let expected = &ranking[FIGURES_PER_SCORE * score_index..FIGURES_PER_SCORE * (score_index + 1)];
        let higher = rank_against_peers(&description, score, Direction::HigherIsBetter);
        let lower = rank_against_peers(&description, score, Direction::LowerIsBetter);
        comparison.figure(&context, "weak rank", Some(higher.percentile_rank), expected[0], 0.0);
        comparison.figure(
            &context,
            "strict rank",
            Some(percentile_of_score(sorted, score, ScoreKind::Strict)),
            expected[1],
            0.0,
        );
        comparison.figure(&context, "mean rank (score)", Some(higher.score), expected[2], 0.0);
        comparison.figure(
            &context,
            "lower: weak rank",
            Some(lower.percentile_rank),
            expected[3],
            0.0,
        );
        comparison.figure(
            &context,
            "lower: mean rank (score)",
            Some(lower.score),
            expected[4],
            0.0,
        );
        let score_magnitude = score.abs().max(data_scale);
        let z_scale = statistics
            .std_dev
            .filter(|&std_dev| std_dev > 0.0)
            .map_or(0.0, |std_dev| score_magnitude / std_dev);
        comparison.figure(&context, "z-score", higher.z_score, expected[5], z_scale);
        comparison.figure(&context, "lower: z-score", lower.z_score, -expected[5], z_scale);
        let spread = statistics.interquartile_range().abs();
        let robust_scale = if spread > 0.0 { score_magnitude / spread } else { 0.0 };
        comparison.figure(&context, "robust score", higher.robust_score, expected[6], robust_scale);
        comparison.figure(
            &context,
            "lower: robust score",
            lower.robust_score,
            -expected[6],
            robust_scale,
        );
        comparison.exact(&context, "quartile", quartile_number(higher.quartile), expected[7]);
        comparison.exact(
            &context,
            "lower: quartile",
            quartile_number(lower.quartile),
            expected[8],
        );
        comparison.exact(&context, "outlier flag", higher.outlier, expected[9] == 1.0);
        // The interpolated rank from the figures an external source would
        // have published (ties excluded by the reference, see its doc).
        if !expected[10].is_nan() {
            let higher = interpolated_percentile_rank(&published, score, Direction::HigherIsBetter);
            let lower = interpolated_percentile_rank(&published, score, Direction::LowerIsBetter);
            comparison.figure(&context, "interpolated rank", higher, expected[10], 0.0);
            comparison.figure(&context, "lower: interpolated rank", lower, expected[11], 0.0);
        }
    }

    if !case.trend.is_empty() {
        compare_trend(comparison, &context, &linear_trend(&case.trend), trend);
    }
}

fn compare_trend(comparison: &mut Comparison, context: &Context<'_>, fit: &TrendFit, expected: &[f64]) {
    let y_scale = context
        .case
        .trend
        .iter()
        .fold(0.0f64, |scale, &(_, y)| scale.max(y.abs()));
    let x_scale = context
        .case
        .trend
        .iter()
        .fold(0.0f64, |scale, &(x, _)| scale.max(x.abs()));
    comparison.exact(context, "trend point_count", fit.point_count, context.case.trend.len());
    comparison.figure(context, "trend slope", fit.slope, expected[0], y_scale);
    // The intercept is ȳ − slope · x̄: its terms reach y's and slope · x's magnitudes.
    let intercept_scale = y_scale.max(fit.slope.unwrap_or(0.0).abs() * x_scale);
    comparison.figure(context, "trend intercept", fit.intercept, expected[1], intercept_scale);
    let constant = expected[9] == 1.0;
    if constant {
        comparison.exact(context, "constant trend r²", fit.r_squared, None);
        let has_test = context.case.trend.len() >= 3;
        comparison.exact(
            context,
            "constant trend stderr",
            fit.slope_standard_error,
            has_test.then_some(0.0),
        );
        comparison.exact(
            context,
            "constant trend p-value",
            fit.slope_p_value,
            has_test.then_some(1.0),
        );
        return;
    }
    comparison.figure(context, "trend r²", fit.r_squared, expected[2], 1.0);
    comparison.within(
        context,
        "trend stderr",
        fit.slope_standard_error,
        (expected[4], expected[5]),
        y_scale,
    );
    comparison.within(
        context,
        "trend p-value",
        fit.slope_p_value,
        (expected[7], expected[8]),
        0.0,
    );
    // Where scipy's range is no wider than the tolerance, the figures are also
    // compared directly, which records how close they are.
    if expected[5] - expected[4] <= TOLERANCE * expected[5].abs().max(y_scale) {
        comparison.figure(
            context,
            "trend stderr (direct)",
            fit.slope_standard_error,
            expected[3],
            y_scale,
        );
    }
    if expected[8] - expected[7] <= TOLERANCE * expected[8].abs() {
        comparison.figure(context, "trend p-value (direct)", fit.slope_p_value, expected[6], 0.0);
    }
}
