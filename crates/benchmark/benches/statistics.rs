//! Slice statistics throughput: `describe` on 1,000,000 values in 50 slices
//! against numpy computing the same figures, measured in the same run.
//!
//! The slices are seeded, KPI-like data: log-normal revenue and payback
//! figures, normal retention percentages, growth rates with a few wild
//! values, and rounded scores with many ties, of uneven sizes (about 2,000 to
//! 60,000 values). Every slice gets the full computation of the contract:
//! fences over all values, outlier exclusion, mean, sample standard
//! deviation, minimum, maximum and five percentiles of the retained values.
//!
//! The data is written to a temporary file and `benches/numpy_statistics.py`
//! times numpy on it (`np.percentile` with the fences' two q's, then one call
//! with all five q's on the retained values, `np.mean`, `np.std(ddof=1)`,
//! `min`, `max`): two warm-up runs, then the median of the timed runs. The
//! Rust side is timed the same way, once on one thread (one
//! `SliceDescriber` reused across the slices) and once with `describe_slices`
//! on the rayon pool; `describe_sorted`, which ranking needs and which sorts
//! each slice, is timed too for information. numpy's figures are read back
//! and checked against Rust's, so both sides provably computed the same
//! thing.
//!
//! ```text
//! cargo bench -p metrix-benchmark --bench statistics      # RUNS=15 by default
//! ```
//!
//! Python is `METRIX_PYTHON` or `python3`, with numpy installed
//! (`python3 -m pip install numpy`).

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "a benchmark stops at its first failure"
)]

use std::hint::black_box;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use metrix_benchmark::stats::{SliceDescriber, SliceStatistics, describe_slices, describe_sorted};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The number of values across all slices.
const TOTAL_VALUES: usize = 1_000_000;
/// The number of slices.
const SLICE_COUNT: usize = 50;
/// The seed of the data.
const SEED: u64 = 2_026;
/// The warm-up runs discarded on the Rust side, as on the numpy side.
const WARM_UP_RUNS: usize = 2;
/// The speed-up over numpy that the statistics path should reach.
const TARGET_RATIO: f64 = 3.0;

fn runs() -> usize {
    std::env::var("RUNS")
        .ok()
        .and_then(|value| value.parse().ok())
        .filter(|&runs| runs > 0)
        .unwrap_or(15)
}

fn normal(generator: &mut ChaCha8Rng) -> f64 {
    let radius = (-2.0 * (1.0 - generator.random::<f64>()).ln()).sqrt();
    radius * (std::f64::consts::TAU * generator.random::<f64>()).cos()
}

/// 50 slices of uneven sizes adding up to 1,000,000 values.
fn generate_slices() -> Vec<Vec<f64>> {
    let mut generator = ChaCha8Rng::seed_from_u64(SEED);
    let weights: Vec<f64> = (0..SLICE_COUNT).map(|_| (0.8 * normal(&mut generator)).exp()).collect();
    let weight_sum: f64 = weights.iter().sum();
    let mut sizes: Vec<usize> = weights
        .iter()
        .map(|weight| ((weight / weight_sum) * TOTAL_VALUES as f64) as usize)
        .collect();
    let shortfall = TOTAL_VALUES - sizes.iter().sum::<usize>();
    sizes[0] += shortfall;

    sizes
        .into_iter()
        .enumerate()
        .map(|(index, size)| {
            (0..size)
                .map(|_| match index % 5 {
                    // ARR in dollars: log-normal around 3 million.
                    0 => (15.0 + 1.2 * normal(&mut generator)).exp(),
                    // Net dollar retention in percent.
                    1 => 104.0 + 14.0 * normal(&mut generator),
                    // CAC payback in months, right-skewed.
                    2 => (2.8 + 0.6 * normal(&mut generator)).exp(),
                    // Year-over-year growth with a few wild values.
                    3 => {
                        if generator.random::<f64>() < 0.02 {
                            40.0 * normal(&mut generator).abs() + 5.0
                        } else {
                            0.35 + 0.25 * normal(&mut generator)
                        }
                    }
                    // A 0–100 score with one decimal, many ties.
                    _ => (generator.random_range(0.0..1000.0f64)).round() / 10.0,
                })
                .collect()
        })
        .collect()
}

fn write_slices(path: &Path, slices: &[Vec<f64>]) {
    let mut bytes = Vec::with_capacity(16 + 8 * (TOTAL_VALUES + SLICE_COUNT));
    bytes.extend_from_slice(b"MXBENCH1");
    bytes.extend_from_slice(&(slices.len() as u64).to_le_bytes());
    for slice in slices {
        bytes.extend_from_slice(&(slice.len() as u64).to_le_bytes());
        for value in slice {
            bytes.extend_from_slice(&value.to_le_bytes());
        }
    }
    std::fs::write(path, bytes).expect("the temporary directory is writable");
}

/// Runs `work` for the warm-up and the timed runs; returns the median and the
/// fastest timed run.
fn time_runs(runs: usize, mut work: impl FnMut()) -> (Duration, Duration) {
    for _ in 0..WARM_UP_RUNS {
        work();
    }
    let mut timings: Vec<Duration> = (0..runs)
        .map(|_| {
            let started = Instant::now();
            work();
            started.elapsed()
        })
        .collect();
    timings.sort();
    let median = if runs % 2 == 1 {
        timings[runs / 2]
    } else {
        (timings[runs / 2 - 1] + timings[runs / 2]) / 2
    };
    (median, timings[0])
}

/// numpy's figures for a slice in `SliceStatistics` order.
fn figures(statistics: &SliceStatistics) -> [f64; 14] {
    [
        statistics.total_count as f64,
        statistics.n as f64,
        statistics.outlier_count as f64,
        statistics.lower_fence,
        statistics.upper_fence,
        statistics.mean,
        statistics.std_dev.unwrap_or(f64::NAN),
        statistics.min,
        statistics.max,
        statistics.p10,
        statistics.p25,
        statistics.p50,
        statistics.p75,
        statistics.p90,
    ]
}

fn main() {
    let runs = runs();
    let python = std::env::var("METRIX_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let slices = generate_slices();
    let slice_views: Vec<&[f64]> = slices.iter().map(Vec::as_slice).collect();

    let directory = std::env::temp_dir();
    let stem = format!("metrix-statistics-bench-{}", std::process::id());
    let input_path = directory.join(format!("{stem}.in"));
    let output_path = directory.join(format!("{stem}.out"));
    write_slices(&input_path, &slices);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/numpy_statistics.py");
    let output = Command::new(&python)
        .arg(&script)
        .arg(&input_path)
        .arg(&output_path)
        .arg(runs.to_string())
        .output()
        .unwrap_or_else(|error| {
            panic!("cannot run `{python}` ({error}); install numpy with `python3 -m pip install numpy`")
        });
    let _ = std::fs::remove_file(&input_path);
    assert!(
        output.status.success(),
        "the numpy side failed; it needs numpy (`python3 -m pip install numpy`): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report = String::from_utf8_lossy(&output.stdout).into_owned();
    let field = |name: &str| -> f64 {
        report
            .split_whitespace()
            .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
            .unwrap_or_else(|| panic!("the numpy side did not report {name}: {report}"))
    };
    let numpy_median = Duration::from_secs_f64(field("median_seconds"));
    let numpy_fastest = Duration::from_secs_f64(field("min_seconds"));
    let numpy_version = report
        .split_whitespace()
        .find_map(|pair| pair.strip_prefix("numpy="))
        .unwrap_or("?")
        .to_owned();

    // Check that numpy computed the same figures (the differential test does
    // this thoroughly; here it guards against timing different work).
    let numpy_figures: Vec<f64> = std::fs::read(&output_path)
        .expect("the numpy side wrote its figures")
        .chunks_exact(8)
        .map(|chunk| f64::from_le_bytes(chunk.try_into().expect("chunks_exact yields 8 bytes")))
        .collect();
    let _ = std::fs::remove_file(&output_path);
    let rust_results = describe_slices(&slice_views);
    for (index, (result, expected)) in rust_results.iter().zip(numpy_figures.chunks_exact(14)).enumerate() {
        let result = result.expect("generated slices are not empty");
        let scale = result.min.abs().max(result.max.abs());
        for (actual, expected) in figures(&result).into_iter().zip(expected) {
            assert!(
                (actual - expected).abs() <= 1e-9 * scale.max(actual.abs()),
                "slice {index}: Rust {actual} and numpy {expected} differ"
            );
        }
    }

    let mut describer = SliceDescriber::new();
    let (sequential_median, sequential_fastest) = time_runs(runs, || {
        for slice in &slice_views {
            black_box(describer.describe(black_box(slice)));
        }
    });
    let (parallel_median, parallel_fastest) = time_runs(runs, || {
        black_box(describe_slices(black_box(&slice_views)));
    });
    let (sorted_median, sorted_fastest) = time_runs(runs, || {
        for slice in &slice_views {
            black_box(describe_sorted(black_box(slice)));
        }
    });

    let threads = rayon::current_num_threads();
    let milliseconds = |duration: Duration| duration.as_secs_f64() * 1e3;
    let ratio = |duration: Duration| numpy_median.as_secs_f64() / duration.as_secs_f64();
    println!(
        "slice statistics: {TOTAL_VALUES} values in {SLICE_COUNT} slices, median of {runs} runs after {WARM_UP_RUNS} warm-up runs"
    );
    println!("figures checked equal between numpy {numpy_version} and Rust");
    println!();
    println!("| implementation | median (ms) | fastest (ms) | numpy / this |");
    println!("|---|---:|---:|---:|");
    println!(
        "| numpy (`np.percentile`, `np.mean`, `np.std`, 1 thread) | {:.2} | {:.2} | 1.00 |",
        milliseconds(numpy_median),
        milliseconds(numpy_fastest)
    );
    println!(
        "| Rust `SliceDescriber::describe`, 1 thread | {:.2} | {:.2} | {:.2} |",
        milliseconds(sequential_median),
        milliseconds(sequential_fastest),
        ratio(sequential_median)
    );
    println!(
        "| Rust `describe_slices`, rayon ({threads} threads) | {:.2} | {:.2} | {:.2} |",
        milliseconds(parallel_median),
        milliseconds(parallel_fastest),
        ratio(parallel_median)
    );
    println!(
        "| Rust `describe_sorted` (also keeps the sorted retained values), 1 thread | {:.2} | {:.2} | {:.2} |",
        milliseconds(sorted_median),
        milliseconds(sorted_fastest),
        ratio(sorted_median)
    );
    println!();
    for (label, duration) in [("one thread", sequential_median), ("rayon", parallel_median)] {
        let verdict = if ratio(duration) >= TARGET_RATIO {
            "met"
        } else {
            "NOT met"
        };
        println!("target numpy / Rust ≥ {TARGET_RATIO} ({label}): {verdict}");
    }
}
