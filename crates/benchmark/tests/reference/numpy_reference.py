#!/usr/bin/env python3
"""Reference figures for the differential test of `metrix_benchmark::stats`.

Usage: numpy_reference.py INPUT OUTPUT

Reads the cases written by `tests/differential.rs` and writes, for each case,
the figures numpy and scipy give for it. Every decision is taken here from
numpy's own numbers, independently of the Rust code: the outlier fences come
from `np.percentile` over all values, and the retained values are those within
them.

Input (little-endian):
    b"MXDIFF02", u64 case count, then per case:
    u32 n, f64 confidence level, n f64 values,
    u32 k, k f64 scores to rank,
    u32 mask of the published figures (bit 0 = min, 1 = p10, 2 = p25,
        3 = p50, 4 = p75, 5 = p90, 6 = max),
    u32 m, m f64 trend x, m f64 trend y.

Output: little-endian f64 only, NaN meaning "unset", per case:
    14 slice figures: total_count, n, outlier_count, lower_fence, upper_fence,
        mean, std_dev (ddof=1), min, max, p10, p25, p50, p75, p90;
    4 interval figures: t quantile, lower bound, upper bound, and 1.0 when all
        retained values are equal (else 0.0);
    12 figures per score: weak, strict and mean ranks (higher is better),
        weak and mean ranks on negated data (lower is better), z-score and
        robust score (s = +1), quartile for higher and for lower is better
        (1 = TOP … 4 = BOTTOM), 1.0 when the score is beyond a fence, and the
        interpolated ranks `np.interp` gives from the published figures of
        the retained values, for higher and for lower is better (nan when
        the figures tie: `np.interp` needs increasing points);
    10 trend figures when m > 0: slope, intercept, rvalue**2, stderr, the
        range of stderr, pvalue, the range of pvalue, and 1.0 when all y are
        equal (see `trend_figures`).
"""

import struct
import sys

import numpy as np
from scipy import stats

MAGIC = b"MXDIFF02"
TINY = 1.0e-20  # scipy.stats.linregress's guard against division by zero
EPSILON = np.finfo(np.float64).eps
NAN = float("nan")


def read_cases(path):
    with open(path, "rb") as handle:
        data = handle.read()
    if data[:8] != MAGIC:
        raise SystemExit(f"{path}: not a differential-test input file")
    (case_count,) = struct.unpack_from("<Q", data, 8)
    offset = 16

    def floats(count):
        nonlocal offset
        array = np.frombuffer(data, dtype="<f8", count=count, offset=offset).astype(np.float64)
        offset += 8 * count
        return array

    def unsigned():
        nonlocal offset
        (value,) = struct.unpack_from("<I", data, offset)
        offset += 4
        return value

    cases = []
    for _ in range(case_count):
        n = unsigned()
        (level,) = struct.unpack_from("<d", data, offset)
        offset += 8
        values = floats(n)
        scores = floats(unsigned())
        mask = unsigned()
        m = unsigned()
        trend_x = floats(m)
        trend_y = floats(m)
        cases.append((values, level, scores, mask, trend_x, trend_y))
    return cases


def quartile(x, p25, p50, p75, higher_is_better):
    """The contract's Quartile rule: 1 = TOP, 2 = UPPER_MIDDLE, 3 = LOWER_MIDDLE, 4 = BOTTOM."""
    if higher_is_better:
        if x >= p75:
            return 1
        if x >= p50:
            return 2
        if x >= p25:
            return 3
        return 4
    if x <= p25:
        return 1
    if x <= p50:
        return 2
    if x <= p75:
        return 3
    return 4


def slice_figures(values, level, scores, mask):
    """The slice, interval and ranking figures; the t quantile is filled in later."""
    q1, q3 = np.percentile(values, [25, 75])
    iqr = q3 - q1
    lower = q1 - 1.5 * iqr
    upper = q3 + 1.5 * iqr
    kept = values[(values >= lower) & (values <= upper)]
    n = kept.size
    p10, p25, p50, p75, p90 = np.percentile(kept, [10, 25, 50, 75, 90])
    mean = np.mean(kept)
    std = np.std(kept, ddof=1) if n >= 2 else NAN
    low, high = kept.min(), kept.max()
    # Whether the standard deviation is exactly 0 is decided from the data:
    # numpy's std of equal values can be a rounding residue such as 1e-17.
    all_equal = low == high
    figures = [values.size, n, values.size - n, lower, upper, mean, std, low, high, p10, p25, p50, p75, p90]
    interval = [NAN, NAN, NAN, 1.0 if all_equal else 0.0]

    weak = stats.percentileofscore(kept, scores, kind="weak")
    strict = stats.percentileofscore(kept, scores, kind="strict")
    mean_rank = stats.percentileofscore(kept, scores, kind="mean")
    weak_lower = stats.percentileofscore(-kept, -scores, kind="weak")
    mean_lower = stats.percentileofscore(-kept, -scores, kind="mean")
    spread = p75 - p25
    published = [(value, rank) for bit, (value, rank) in
                 enumerate([(low, 0), (p10, 10), (p25, 25), (p50, 50), (p75, 75), (p90, 90), (high, 100)])
                 if mask & (1 << bit)]
    points = np.array([value for value, _ in published])
    point_ranks = np.array([rank for _, rank in published], dtype=np.float64)
    increasing = points.size > 0 and bool(np.all(np.diff(points) > 0))
    # The mirrored rank for lower-is-better metrics, interpolated on the
    # negated points (whose ranks are 100 − r), as the contract defines ranks
    # of lower-is-better metrics on negated data; this keeps ranks near 0
    # accurate instead of forming them as 100 minus a number near 100.
    mirrored_points = -points[::-1]
    mirrored_ranks = 100 - point_ranks[::-1]
    ranking = []
    for index, x in enumerate(scores):
        z = (x - mean) / std if n >= 2 and not all_equal else NAN
        robust = (x - p50) / spread if spread != 0 else NAN
        ranking += [
            weak[index],
            strict[index],
            mean_rank[index],
            weak_lower[index],
            mean_lower[index],
            z,
            robust,
            quartile(x, p25, p50, p75, True),
            quartile(x, p25, p50, p75, False),
            1.0 if (x < lower or x > upper) else 0.0,
            float(np.interp(x, points, point_ranks)) if increasing else NAN,
            float(np.interp(-x, mirrored_points, mirrored_ranks)) if increasing else NAN,
        ]
    return figures, interval, ranking, (n, std, mean, level)


def trend_figures(x, y):
    """scipy.stats.linregress's figures, with the ranges its own rounding allows.

    linregress derives stderr and the p-value from 1 - r**2, which carries an
    absolute rounding error of a few ulps; for a near-perfect fit that error
    dominates both figures (an exactly linear series can come out with r just
    below 1 and a p-value of 1e-8 for one degree of freedom). The ranges are
    the values the two figures take when 1 - r**2 moves by
    delta = 4 (m + 4) eps, computed with scipy's own formulas and `t.sf`.
    All y equal is flagged: linregress's r is then nan (or a rounding
    artefact when numpy's mean of the equal values is not exact), and the
    contract's rules decide instead.
    """
    m = x.size
    result = [NAN] * 10
    result[9] = 1.0 if np.all(y == y[0]) else 0.0
    if m < 2:
        return result, None
    fit = stats.linregress(x, y)
    r = fit.rvalue
    result[0] = fit.slope
    result[1] = fit.intercept
    result[2] = r * r
    if m < 3:
        return result, None
    df = m - 2
    ssxm, _, _, ssym = np.cov(x, y, bias=1).flat
    scale = ssym / ssxm / df
    one_minus_r_squared = 1 - r**2
    delta = 4 * (m + 4) * EPSILON
    low_q = max(one_minus_r_squared - delta, 0.0)
    high_q = one_minus_r_squared + delta
    result[3] = fit.stderr
    result[4] = np.sqrt(low_q * scale)
    result[5] = np.sqrt(high_q * scale)
    result[6] = fit.pvalue
    # t**2 = df r**2 / (1 - r**2): the largest t comes with the smallest 1 - r**2.
    t_low = np.sqrt(df * max(1 - high_q, 0.0) / high_q)
    t_high = np.sqrt(df * (1 - low_q) / low_q) if low_q > 0 else np.inf
    return result, (t_low, t_high, df)


def main():
    if len(sys.argv) != 3:
        raise SystemExit("usage: numpy_reference.py INPUT OUTPUT")
    cases = read_cases(sys.argv[1])
    outputs = []
    quantile_requests = []
    tail_requests = []
    for values, level, scores, mask, trend_x, trend_y in cases:
        figures, interval, ranking, request = slice_figures(values, level, scores, mask)
        quantile_requests.append((len(outputs), request))
        trend = []
        tails = None
        if trend_x.size > 0:
            trend, tails = trend_figures(trend_x, trend_y)
        tail_requests.append(tails)
        outputs.append([figures, interval, ranking, trend])

    # scipy's distribution methods have a large fixed cost per call, so the
    # t quantiles and tail probabilities are computed in two vectorised calls.
    usable = [(index, request) for index, request in quantile_requests if request[0] >= 2]
    if usable:
        probabilities = np.array([1 - (1 - level) / 2 for _, (_, _, _, level) in usable])
        freedoms = np.array([n - 1 for _, (n, _, _, _) in usable], dtype=np.float64)
        quantiles = stats.t.ppf(probabilities, freedoms)
        for (index, (n, std, mean, _)), quantile in zip(usable, quantiles):
            half_width = quantile * std / np.sqrt(n)
            outputs[index][1][0:3] = [quantile, mean - half_width, mean + half_width]

    with_tails = [(index, tails) for index, tails in enumerate(tail_requests) if tails is not None]
    if with_tails:
        t_values = np.array([tails[0] for _, tails in with_tails] + [tails[1] for _, tails in with_tails])
        freedoms = np.array([tails[2] for _, tails in with_tails] * 2, dtype=np.float64)
        probabilities = 2 * stats.t.sf(t_values, freedoms)
        count = len(with_tails)
        for position, (index, _) in enumerate(with_tails):
            # The smallest t gives the largest p-value.
            outputs[index][3][7] = probabilities[count + position]
            outputs[index][3][8] = probabilities[position]

    flat = []
    for figures, interval, ranking, trend in outputs:
        flat += figures
        flat += interval
        flat += ranking
        flat += trend
    np.asarray(flat, dtype="<f8").tofile(sys.argv[2])


if __name__ == "__main__":
    main()
