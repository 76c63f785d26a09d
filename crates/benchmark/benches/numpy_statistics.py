#!/usr/bin/env python3
"""The numpy side of `benches/statistics.rs`: the same slice statistics, timed.

Usage: numpy_statistics.py INPUT OUTPUT RUNS

INPUT (little-endian): b"MXBENCH1", u64 slice count, then per slice a u64
length and that many f64 values. For every slice the script computes what
`metrix_benchmark::stats::describe` computes: the fences from
`np.percentile(values, [25, 75])`, the retained values within them, then
`np.percentile(kept, [10, 25, 50, 75, 90])`, `np.mean`, `np.std(ddof=1)`,
`min` and `max`.

The computation over all slices is run twice to warm up and then RUNS times;
only the computation is timed (the data is already in numpy arrays). The
script prints one line, `median_seconds=… min_seconds=… runs=…`, and writes
the figures of the last run to OUTPUT (14 little-endian f64 per slice, in the
order of `SliceStatistics`) so that the caller can check both sides computed
the same thing.
"""

import struct
import sys
import time

import numpy as np

MAGIC = b"MXBENCH1"
WARM_UP_RUNS = 2


def read_slices(path):
    with open(path, "rb") as handle:
        data = handle.read()
    if data[:8] != MAGIC:
        raise SystemExit(f"{path}: not a benchmark input file")
    (count,) = struct.unpack_from("<Q", data, 8)
    offset = 16
    slices = []
    for _ in range(count):
        (length,) = struct.unpack_from("<Q", data, offset)
        offset += 8
        slices.append(np.frombuffer(data, dtype="<f8", count=length, offset=offset).astype(np.float64))
        offset += 8 * length
    return slices


def describe(values):
    q1, q3 = np.percentile(values, [25, 75])
    iqr = q3 - q1
    lower = q1 - 1.5 * iqr
    upper = q3 + 1.5 * iqr
    kept = values[(values >= lower) & (values <= upper)]
    p10, p25, p50, p75, p90 = np.percentile(kept, [10, 25, 50, 75, 90])
    n = kept.size
    std = np.std(kept, ddof=1) if n >= 2 else float("nan")
    return (values.size, n, values.size - n, lower, upper, np.mean(kept), std,
            kept.min(), kept.max(), p10, p25, p50, p75, p90)


def main():
    if len(sys.argv) != 4:
        raise SystemExit("usage: numpy_statistics.py INPUT OUTPUT RUNS")
    slices = read_slices(sys.argv[1])
    runs = int(sys.argv[3])
    timings = []
    results = None
    for run in range(WARM_UP_RUNS + runs):
        started = time.perf_counter()
        results = [describe(values) for values in slices]
        elapsed = time.perf_counter() - started
        if run >= WARM_UP_RUNS:
            timings.append(elapsed)
    np.asarray([figure for result in results for figure in result], dtype="<f8").tofile(sys.argv[2])
    print(f"median_seconds={np.median(timings):.9f} min_seconds={min(timings):.9f} runs={runs} "
          f"numpy={np.__version__}")


if __name__ == "__main__":
    main()
