#!/usr/bin/env python3
"""Load generator and observer of the queued-ingestion soak (see run.sh).

Talks native gRPC (h2c) straight to the metrics service's port, with the
request and answer messages encoded by hand (a handful of protobuf fields),
so it needs nothing but `grpcio`. It:

1. calibrates: runs the mixed load with a feedback loop on the queue depth
   (the `metrix_ingest_queue_depth` gauge) that keeps the ingestion queue
   backed up but bounded, so the writer never idles and the lag never runs
   away; the queued events stored per second over the second half of that
   step is the maximum sustainable queued-ingestion rate;
2. soaks: runs the same mix, open loop, at LOAD_FRACTION of that rate, and
   reports every minute the process RSS, Redis `used_memory`, the queue's
   depth and lag, the stream length, p50/p99 of the queued calls, events
   sent and stored, and refusals;
3. drains: stops the load, waits for the queue and the stream to empty,
   then checks in PostgreSQL that every event answered QUEUED is stored.

The mix, per queued TrackEvents batch (BATCH_SIZE events, `asynchronous`
set): SYNC_RATIO synchronous batches of the same size and DASHBOARD_RATIO
GetDashboard calls (last hour, all apps). Event ids are unique:
`q<run>-<batch>-<index>` for queued batches, `s<run>-<batch>-<index>` for
synchronous ones.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field

import grpc

TRACK_EVENTS = "/metrix.metrics.v1.MetricsService/TrackEvents"
GET_DASHBOARD = "/metrix.metrics.v1.MetricsService/GetDashboard"
STATUS_ACCEPTED, STATUS_QUEUED, STATUS_DUPLICATE, STATUS_REJECTED = 1, 2, 3, 4

APPS = ["web", "ios", "android"]
TYPES = ["page_view", "click", "signup", "search", "checkout", "invite", "export", "login"]
NAMES = {
    "page_view": "Page Viewed",
    "click": "Button Clicked",
    "signup": "Signed Up",
    "search": "Searched",
    "checkout": "Checkout Completed",
    "invite": "Teammate Invited",
    "export": "Report Exported",
    "login": "Logged In",
}


def log(message: str) -> None:
    print(f"soak: {message}", file=sys.stderr, flush=True)


# --- protobuf, by hand ------------------------------------------------------


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def length_delimited(tag: int, payload: bytes) -> bytes:
    return bytes([tag]) + varint(len(payload)) + payload


def read_varint(data: bytes, position: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, position
        shift += 7


def fields_of(data: bytes):
    """Yields (field number, wire type, value) of a message's fields."""
    position = 0
    while position < len(data):
        key, position = read_varint(data, position)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, position = read_varint(data, position)
        elif wire == 2:
            length, position = read_varint(data, position)
            value = data[position : position + length]
            position += length
        elif wire == 1:
            value = data[position : position + 8]
            position += 8
        elif wire == 5:
            value = data[position : position + 4]
            position += 4
        else:
            raise ValueError(f"unexpected wire type {wire}")
        yield number, wire, value


# Per (app, type) the encoded constant part of an event: app_id (3),
# event_type (5), event_name (6).
EVENT_TAILS = {
    (app, kind): length_delimited(0x1A, app.encode())
    + length_delimited(0x2A, kind.encode())
    + length_delimited(0x32, NAMES[kind].encode())
    for app in APPS
    for kind in TYPES
}


def track_events_request(prefix: str, batch: int, size: int, users: int, rng: random.Random, queued: bool) -> bytes:
    """A TrackEventsRequest of `size` events with ids `<prefix>-<batch>-<i>`."""
    parts = []
    for index in range(size):
        event = (
            length_delimited(0x0A, f"{prefix}-{batch}-{index}".encode())
            + length_delimited(0x22, f"user-{rng.randrange(users)}".encode())
            + EVENT_TAILS[(rng.choice(APPS), rng.choice(TYPES))]
        )
        parts.append(length_delimited(0x0A, event))
    if queued:
        parts.append(b"\x10\x01")
    return b"".join(parts)


def statuses_of(answer: bytes) -> dict[int, int]:
    """Counts the per-event statuses of a TrackEventsResponse."""
    counts: dict[int, int] = {}
    for number, wire, value in fields_of(answer):
        if number == 1 and wire == 2:
            status = 0
            for inner_number, inner_wire, inner_value in fields_of(value):
                if inner_number == 3 and inner_wire == 0:
                    status = inner_value
            counts[status] = counts.get(status, 0) + 1
    return counts


# --- observation --------------------------------------------------------------


def percentile(values: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile."""
    if not values:
        return None
    ordered = sorted(values)
    rank = math.ceil(len(ordered) * fraction)
    return ordered[min(len(ordered), max(1, rank)) - 1]


class Observer:
    """Reads the figures around the load: /metrics, Redis, /proc, PostgreSQL."""

    def __init__(self, args: argparse.Namespace):
        self.metrics_url = f"http://{args.metrics_addr}/metrics"
        self.redis_port = str(args.redis_port)
        self.stream_key = args.stream_key
        self.pid = args.pid
        self.database_url = args.database_url
        self.organization_id = args.organization_id
        self.server_log = args.server_log

    def gauges(self) -> dict[str, float]:
        wanted = (
            "metrix_ingest_queue_depth",
            "metrix_ingest_queue_lag_seconds",
            "metrix_ingest_queue_refused_total",
            "metrix_ingest_dead_letters",
            "metrix_ingest_dead_lettered_total",
        )
        text = urllib.request.urlopen(self.metrics_url, timeout=10).read().decode()
        values: dict[str, float] = {}
        for line in text.splitlines():
            if line.startswith("#"):
                continue
            name = line.split("{", 1)[0].split(" ", 1)[0]
            if name in wanted:
                values[name] = values.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
        return values

    def redis(self, *command: str) -> str:
        return subprocess.run(
            ["redis-cli", "-p", self.redis_port, *command],
            check=True,
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout

    def redis_used_memory(self) -> int:
        for line in self.redis("info", "memory").splitlines():
            if line.startswith("used_memory:"):
                return int(line.split(":", 1)[1])
        raise RuntimeError("redis INFO memory has no used_memory")

    def stream_length(self) -> int:
        return int(self.redis("XLEN", self.stream_key).strip() or 0)

    def rss_kib(self) -> int:
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def psql(self, sql: str, stdin: str | None = None) -> str:
        return subprocess.run(
            ["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", self.database_url, "-c", sql]
            if stdin is None
            else ["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", self.database_url],
            check=True,
            capture_output=True,
            text=True,
            input=stdin,
            timeout=600,
        ).stdout.strip()

    def table_stats(self) -> dict:
        """Size and live/dead rows of the tables ingestion writes (the
        rollups are updated by every batch, so they bloat unless vacuumed)."""
        output = self.psql(
            "SELECT s.relname, pg_total_relation_size(s.relid), s.n_live_tup, s.n_dead_tup "
            "FROM pg_stat_user_tables s WHERE s.relname IN ('events', 'event_counts', 'user_sketches')"
        )
        stats = {}
        for line in output.splitlines():
            name, size, live, dead = line.split("|")
            stats[name] = {"mib": int(size) / 2**20, "live": int(live), "dead": int(dead)}
        return stats

    def vacuum_rollups(self) -> None:
        self.psql("VACUUM (ANALYZE) events, event_counts, user_sketches")

    def slow_statements(self) -> int:
        """Statements the server logged as slow (sqlx warns past 1 s) so far."""
        if not self.server_log:
            return 0
        with open(self.server_log, errors="replace") as server_log:
            return sum(1 for line in server_log if "slow statement" in line)

    def stored_events(self) -> int:
        """Events stored for the organisation, from the daily count rollups
        (committed in the same transaction as the events; a few rows)."""
        return int(
            self.psql(
                "SELECT COALESCE(SUM(event_count), 0) FROM event_counts "
                f"WHERE organization_id = '{self.organization_id}' AND width_seconds = 86400"
            )
        )

    def server_cpu_seconds(self) -> float:
        with open(f"/proc/{self.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        # utime and stime are fields 14 and 15; fields[0] here is field 3.
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def snapshot(self) -> dict:
        gauges = self.gauges()
        times = os.times()
        return {
            "time": time.monotonic(),
            "server_cpu_s": self.server_cpu_seconds(),
            "client_cpu_s": times.user + times.system,
            "depth": gauges.get("metrix_ingest_queue_depth", 0.0),
            "lag": gauges.get("metrix_ingest_queue_lag_seconds", 0.0),
            "refused_total": gauges.get("metrix_ingest_queue_refused_total", 0.0),
            "dead_letters": gauges.get("metrix_ingest_dead_letters", 0.0),
            "xlen": self.stream_length(),
            "rss_kib": self.rss_kib(),
            "redis_used_memory": self.redis_used_memory(),
        }


# --- load ---------------------------------------------------------------------


@dataclass
class Interval:
    """What the calls finished within one reporting interval did."""

    queued_latencies: list = field(default_factory=list)
    sync_latencies: list = field(default_factory=list)
    dashboard_latencies: list = field(default_factory=list)
    queued_batches_sent: int = 0
    events_sent: int = 0  # events of the TrackEvents calls started, both paths
    queued_events_answered: int = 0  # events answered QUEUED
    sync_events_accepted: int = 0
    refused_batches: int = 0  # RESOURCE_EXHAUSTED, queued or not
    refused_events: int = 0
    rejected_events: int = 0
    duplicate_events: int = 0
    errors: dict = field(default_factory=dict)
    skipped: int = 0  # sends the client could not start (in-flight bound)


class Load:
    def __init__(self, args: argparse.Namespace, channels: list):
        self.args = args
        self.channels = channels
        self.track = [channel.unary_unary(TRACK_EVENTS) for channel in channels]
        self.dashboard = [channel.unary_unary(GET_DASHBOARD) for channel in channels]
        self.metadata = (("authorization", f"Bearer {args.token}"),)
        self.rng = random.Random(args.seed)
        self.batch = 0
        self.calls = 0
        self.in_flight = 0
        self.tasks: set = set()
        self.interval = Interval()
        self.queued_batches_ok: list[int] = []  # batch numbers answered QUEUED (all events)
        self.queued_batches_partial: list[tuple[int, int]] = []
        self.ambiguous_batches: list[int] = []  # queued batches whose call failed otherwise
        self.totals = Interval()
        self.queued_batches_per_second = 0.0

    def take_interval(self) -> Interval:
        finished, self.interval = self.interval, Interval()
        return finished

    def _channel(self) -> int:
        self.calls += 1
        return self.calls % len(self.channels)

    def _error(self, interval: Interval, code) -> None:
        name = code.name if code is not None else "UNKNOWN"
        interval.errors[name] = interval.errors.get(name, 0) + 1
        self.totals.errors[name] = self.totals.errors.get(name, 0) + 1

    async def _track(self, queued: bool) -> None:
        self.batch += 1
        batch = self.batch
        prefix = f"{'q' if queued else 's'}{self.args.run_id}"
        request = track_events_request(
            prefix, batch, self.args.batch_size, self.args.users, self.rng, queued
        )
        self.interval.events_sent += self.args.batch_size
        self.totals.events_sent += self.args.batch_size
        if queued:
            self.interval.queued_batches_sent += 1
            self.totals.queued_batches_sent += 1
        started = time.perf_counter()
        try:
            answer = await self.track[self._channel()](
                request, metadata=self.metadata, timeout=self.args.call_timeout
            )
        except grpc.aio.AioRpcError as error:
            interval = self.interval
            if error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                interval.refused_batches += 1
                interval.refused_events += self.args.batch_size
                self.totals.refused_batches += 1
                self.totals.refused_events += self.args.batch_size
            else:
                self._error(interval, error.code())
                if queued:
                    self.ambiguous_batches.append(batch)
            return
        latency = time.perf_counter() - started
        counts = statuses_of(answer)
        interval = self.interval
        interval.rejected_events += counts.get(STATUS_REJECTED, 0)
        interval.duplicate_events += counts.get(STATUS_DUPLICATE, 0)
        self.totals.rejected_events += counts.get(STATUS_REJECTED, 0)
        self.totals.duplicate_events += counts.get(STATUS_DUPLICATE, 0)
        if queued:
            interval.queued_latencies.append(latency)
            queued_count = counts.get(STATUS_QUEUED, 0)
            interval.queued_events_answered += queued_count
            self.totals.queued_events_answered += queued_count
            if queued_count == self.args.batch_size:
                self.queued_batches_ok.append(batch)
            elif queued_count:
                self.queued_batches_partial.append((batch, queued_count))
        else:
            interval.sync_latencies.append(latency)
            accepted = counts.get(STATUS_ACCEPTED, 0)
            interval.sync_events_accepted += accepted
            self.totals.sync_events_accepted += accepted

    async def _dashboard(self) -> None:
        started = time.perf_counter()
        try:
            await self.dashboard[self._channel()](b"", metadata=self.metadata, timeout=self.args.call_timeout)
        except grpc.aio.AioRpcError as error:
            self._error(self.interval, error.code())
            return
        self.interval.dashboard_latencies.append(time.perf_counter() - started)

    def _launch(self, coroutine) -> bool:
        if self.in_flight >= self.args.max_in_flight:
            coroutine.close()
            self.interval.skipped += 1
            self.totals.skipped += 1
            return False
        self.in_flight += 1
        task = asyncio.create_task(coroutine)
        self.tasks.add(task)

        def done(finished):
            self.in_flight -= 1
            self.tasks.discard(finished)
            if not finished.cancelled() and finished.exception() is not None:
                log(f"a call failed unexpectedly: {finished.exception()!r}")

        task.add_done_callback(done)
        return True

    async def run(self, seconds: float) -> None:
        """Sends the mix at `queued_batches_per_second` (read on every tick,
        so a controller may change it) for `seconds`."""
        tick = 0.005
        credit = {"queued": 0.0, "sync": 0.0, "dashboard": 0.0}
        weights = {"queued": 1.0, "sync": self.args.sync_ratio, "dashboard": self.args.dashboard_ratio}
        start = last = time.perf_counter()
        while True:
            now = time.perf_counter()
            if now - start >= seconds:
                return
            elapsed, last = now - last, now
            for kind, weight in weights.items():
                # At most a second of credit: a client that fell behind does
                # not burst afterwards.
                rate = self.queued_batches_per_second * weight
                credit[kind] = min(credit[kind] + rate * elapsed, max(1.0, rate))
                while credit[kind] >= 1.0:
                    credit[kind] -= 1.0
                    if kind == "queued":
                        self._launch(self._track(True))
                    elif kind == "sync":
                        self._launch(self._track(False))
                    else:
                        self._launch(self._dashboard())
            await asyncio.sleep(tick)

    async def settle(self) -> None:
        while self.tasks:
            await asyncio.gather(*list(self.tasks), return_exceptions=True)


# --- the soak -----------------------------------------------------------------


def fmt(value, digits=1, scale=1.0):
    if value is None:
        return "n/a"
    return f"{value * scale:,.{digits}f}"


async def calibrate(args, load: Load, observer: Observer) -> dict:
    """Finds the queued events stored per second with the queue kept backed
    up but bounded.

    Every second the writer's drain rate is estimated (events answered
    QUEUED in that second less the growth of the queue), smoothed, and the
    ask is set to it plus a correction that brings the queue to
    TARGET_DEPTH entries within SETTLE_SECONDS: a proportional controller
    with the drain rate fed forward. While the queue is empty the ask grows
    by TARGET_DEPTH x BATCH_SIZE / SETTLE_SECONDS events/s every second.
    """
    batch = args.batch_size
    load.queued_batches_per_second = args.start_rate / batch
    seconds = args.calibrate_seconds
    window_start = seconds / 2
    driver = asyncio.create_task(load.run(seconds))
    started = previous_time = time.monotonic()
    previous_answered = load.totals.queued_events_answered
    previous_depth = 0.0
    drain_average = None
    window = None
    depths, lags = [], []
    while not driver.done():
        await asyncio.sleep(1.0)
        gauges = await asyncio.to_thread(observer.gauges)
        now = time.monotonic()
        elapsed = now - started
        depth = gauges.get("metrix_ingest_queue_depth", 0.0)
        lag = gauges.get("metrix_ingest_queue_lag_seconds", 0.0)
        answered = load.totals.queued_events_answered
        drain = max(0.0, (answered - previous_answered) - (depth - previous_depth) * batch) / (now - previous_time)
        drain_average = drain if drain_average is None else 0.7 * drain_average + 0.3 * drain
        previous_answered, previous_depth, previous_time = answered, depth, now
        ask = drain_average + (args.target_depth - depth) * batch / args.settle_seconds
        ask = min(max(ask, 0.25 * drain_average, batch), 2.0 * drain_average + args.start_rate)
        load.queued_batches_per_second = ask / batch
        if elapsed >= window_start:
            depths.append(depth)
            lags.append(lag)
            if window is None:
                stored = await asyncio.to_thread(observer.stored_events)
                window = {
                    "time": time.monotonic(),
                    "stored": stored,
                    "sync": load.totals.sync_events_accepted,
                    "queued_answered": load.totals.queued_events_answered,
                    "depth": depth,
                }
        log(
            f"calibrating t={elapsed:4.0f}s drain~{drain_average:7.0f} ev/s ask={ask:7.0f} ev/s "
            f"depth={depth:5.0f} lag={lag:5.2f}s in-flight={load.in_flight}"
        )
    await driver
    stored = await asyncio.to_thread(observer.stored_events)
    end = time.monotonic()
    gauges = await asyncio.to_thread(observer.gauges)
    if window is None:
        raise RuntimeError("calibration too short")
    span = end - window["time"]
    sync_stored = load.totals.sync_events_accepted - window["sync"]
    queued_stored = stored - window["stored"] - sync_stored
    answered = load.totals.queued_events_answered - window["queued_answered"]
    empty = sum(1 for depth in depths if depth == 0) / len(depths)
    result = {
        "seconds": span,
        "queued_events_per_second_stored": queued_stored / span,
        "queued_events_per_second_answered": answered / span,
        "sync_events_per_second": sync_stored / span,
        "depth_min": min(depths),
        "depth_median": statistics.median(depths),
        "depth_max": max(depths),
        "lag_max": max(lags),
        "depth_end": gauges.get("metrix_ingest_queue_depth", 0.0),
        "empty_fraction": empty,
        "queue_backed_up": empty <= 0.1,
        "refused_batches": load.totals.refused_batches,
        "skipped": load.totals.skipped,
    }
    log(
        "maximum sustainable queued ingestion: "
        f"{result['queued_events_per_second_stored']:,.0f} events/s stored "
        f"(answered QUEUED {result['queued_events_per_second_answered']:,.0f}/s; plus "
        f"{result['sync_events_per_second']:,.0f}/s synchronous) over the last {span:.0f} s; "
        f"depth {result['depth_min']:.0f}..{result['depth_max']:.0f} (median {result['depth_median']:.0f}) entries, "
        f"empty {empty:.0%} of the seconds, lag <= {result['lag_max']:.2f} s"
    )
    if not result["queue_backed_up"]:
        log(
            "WARNING: the queue ran empty in more than a tenth of the measuring window: the figure may be "
            "bound by the client or the machine, not by the writer"
        )
    return result


async def soak(args, load: Load, observer: Observer, maximum: float) -> tuple[list, dict]:
    target = maximum * args.load_fraction
    load.queued_batches_per_second = target / args.batch_size
    log(
        f"soaking {args.duration_seconds} s at {args.load_fraction:.0%} of {maximum:,.0f} = "
        f"{target:,.0f} queued events/s ({load.queued_batches_per_second:.1f} batches/s of {args.batch_size}), "
        f"+{args.sync_ratio:g} sync batch and +{args.dashboard_ratio:g} GetDashboard per queued batch"
    )
    load.take_interval()
    driver = asyncio.create_task(load.run(args.duration_seconds))
    vacuum = asyncio.create_task(vacuum_rollups(args, observer, driver)) if args.vacuum_seconds > 0 else None
    started = time.monotonic()
    stored_before = await asyncio.to_thread(observer.stored_events)
    slow_before = await asyncio.to_thread(observer.slow_statements)
    minute_samples = [await asyncio.to_thread(observer.snapshot)]
    rows = []
    # Report boundaries: every REPORT seconds, and the end of the load.
    count = math.ceil(args.duration_seconds / args.report_seconds - 1e-9)
    boundaries = [min((index + 1) * args.report_seconds, args.duration_seconds) for index in range(count)]
    next_sample = args.sample_seconds
    for minute, boundary in enumerate(boundaries, start=1):
        while True:
            elapsed = time.monotonic() - started
            if elapsed >= boundary:
                break
            if elapsed >= next_sample:
                minute_samples.append(await asyncio.to_thread(observer.snapshot))
                next_sample += args.sample_seconds
                continue
            await asyncio.sleep(min(next_sample, boundary) - elapsed)
        interval = load.take_interval()
        snapshot = await asyncio.to_thread(observer.snapshot)
        stored_now = await asyncio.to_thread(observer.stored_events)
        minute_samples.append(snapshot)
        row = {
            "minute": minute,
            "elapsed_s": snapshot["time"] - started,
            "rss_mib": snapshot["rss_kib"] / 1024,
            "redis_used_memory_mib": snapshot["redis_used_memory"] / 2**20,
            "depth": snapshot["depth"],
            "depth_max": max(sample["depth"] for sample in minute_samples),
            "lag_s": snapshot["lag"],
            "lag_max_s": max(sample["lag"] for sample in minute_samples),
            "xlen": snapshot["xlen"],
            "xlen_max": max(sample["xlen"] for sample in minute_samples),
            "queued_p50_ms": percentile(interval.queued_latencies, 0.50),
            "queued_p99_ms": percentile(interval.queued_latencies, 0.99),
            "sync_p99_ms": percentile(interval.sync_latencies, 0.99),
            "dashboard_p99_ms": percentile(interval.dashboard_latencies, 0.99),
            "queued_calls": len(interval.queued_latencies),
            "events_sent": interval.events_sent,
            "queued_events_answered": interval.queued_events_answered,
            "sync_events_accepted": interval.sync_events_accepted,
            "dashboards": len(interval.dashboard_latencies),
            "stored": stored_now - stored_before,
            "refused_batches": interval.refused_batches,
            "errors": dict(interval.errors),
            "skipped": interval.skipped,
            "dead_letters": snapshot["dead_letters"],
            "load_average_1m": float(open("/proc/loadavg").read().split()[0]),
            "tables": await asyncio.to_thread(observer.table_stats),
        }
        slow_now = await asyncio.to_thread(observer.slow_statements)
        row["slow_statements"], slow_before = slow_now - slow_before, slow_now
        for key in ("queued_p50_ms", "queued_p99_ms", "sync_p99_ms", "dashboard_p99_ms"):
            if row[key] is not None:
                row[key] *= 1000
        span = row["elapsed_s"] - (rows[-1]["elapsed_s"] if rows else 0.0)
        row["server_cpu_pct"] = 100 * (snapshot["server_cpu_s"] - minute_samples[0]["server_cpu_s"]) / span
        row["client_cpu_pct"] = 100 * (snapshot["client_cpu_s"] - minute_samples[0]["client_cpu_s"]) / span
        row["sent_per_s"] = interval.events_sent / span
        row["queued_per_s"] = interval.queued_events_answered / span
        row["stored_per_s"] = row["stored"] / span
        rows.append(row)
        stored_before = stored_now
        minute_samples = [snapshot]
        log(
            f"minute {minute:2d}: RSS {row['rss_mib']:7.1f} MiB, redis {row['redis_used_memory_mib']:6.2f} MiB, "
            f"depth {row['depth']:5.0f} (max {row['depth_max']:5.0f}), lag {row['lag_s']:5.2f}s "
            f"(max {row['lag_max_s']:5.2f}s), XLEN {row['xlen']:5d} (max {row['xlen_max']:5d}), queued p50/p99 "
            f"{fmt(row['queued_p50_ms'], 2)}/{fmt(row['queued_p99_ms'], 2)} ms, sent {row['sent_per_s']:,.0f} ev/s, "
            f"QUEUED {row['queued_per_s']:,.0f} ev/s, stored {row['stored_per_s']:,.0f} ev/s, refused "
            f"{row['refused_batches']}, errors {row['errors'] or 0}, skipped {row['skipped']}, CPU metrix "
            f"{row['server_cpu_pct']:.0f} % / client {row['client_cpu_pct']:.0f} %, load {row['load_average_1m']:.2f}, "
            f"slow SQL {row['slow_statements']}, "
            + ", ".join(
                f"{name} {table['mib']:,.0f} MiB ({table['dead']:,} dead rows)" for name, table in sorted(row["tables"].items())
            )
        )
    await driver
    if vacuum is not None:
        await vacuum
    await load.settle()
    tail = load.take_interval()
    return rows, {"late_queued_events_answered": tail.queued_events_answered}


async def vacuum_rollups(args, observer: Observer, driver) -> None:
    """What autovacuum does on a server that runs it: the tables ingestion
    writes (the rollup rows every batch updates, the growing events table)
    are vacuumed and analysed every VACUUM_SECONDS while the load runs."""
    while not driver.done():
        await asyncio.wait([driver], timeout=args.vacuum_seconds)
        if driver.done():
            return
        started = time.monotonic()
        await asyncio.to_thread(observer.vacuum_rollups)
        log(f"vacuumed and analysed events, event_counts and user_sketches in {time.monotonic() - started:.1f} s")


async def drain(args, observer: Observer) -> dict:
    started = time.monotonic()
    quiet = 0
    while True:
        snapshot = await asyncio.to_thread(observer.snapshot)
        waited = time.monotonic() - started
        if snapshot["depth"] == 0 and snapshot["xlen"] == 0:
            quiet += 1
            if quiet >= 2:
                break
        else:
            quiet = 0
        if waited > args.drain_timeout:
            log(f"the queue did not drain within {args.drain_timeout} s")
            break
        await asyncio.sleep(1.0)
    snapshot["drain_seconds"] = time.monotonic() - started
    log(
        f"drained in {snapshot['drain_seconds']:.1f} s: depth {snapshot['depth']:.0f}, XLEN {snapshot['xlen']}, "
        f"RSS {snapshot['rss_kib'] / 1024:.1f} MiB, redis {snapshot['redis_used_memory'] / 2**20:.2f} MiB"
    )
    return snapshot


def verify(args, load: Load, observer: Observer) -> dict:
    """Every event answered QUEUED is stored; nothing else of the queued
    kind is, except possibly events of calls whose outcome is unknown."""
    with tempfile.NamedTemporaryFile("w", delete=False, suffix=".tsv") as listing:
        for batch in load.queued_batches_ok:
            listing.write(f"{batch}\t{args.batch_size}\n")
        for batch, count in load.queued_batches_partial:
            listing.write(f"{batch}\t{count}\n")
        path = listing.name
    organization = args.organization_id
    script = f"""
CREATE TEMP TABLE soak_queued (batch BIGINT, events INTEGER);
\\copy soak_queued FROM '{path}'
SELECT
  (SELECT COALESCE(SUM(events), 0) FROM soak_queued),
  (SELECT COUNT(*) FROM soak_queued b CROSS JOIN LATERAL generate_series(0, b.events - 1) AS i
     WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.organization_id = '{organization}'
       AND e.event_id = 'q{args.run_id}-' || b.batch || '-' || i)),
  (SELECT COUNT(*) FROM events WHERE organization_id = '{organization}' AND event_id LIKE 'q{args.run_id}-%'),
  (SELECT COUNT(*) FROM events WHERE organization_id = '{organization}' AND event_id LIKE 's{args.run_id}-%'),
  (SELECT COUNT(*) FROM events WHERE organization_id = '{organization}'),
  (SELECT COALESCE(SUM(event_count), 0) FROM event_counts WHERE organization_id = '{organization}' AND width_seconds = 86400),
  pg_database_size(current_database()),
  (SELECT string_agg(relname || ' ' || pg_size_pretty(size), ', ' ORDER BY size DESC)
     FROM (SELECT c.relname, pg_total_relation_size(c.oid) AS size FROM pg_class c
           JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = 'public' AND c.relkind = 'r'
           ORDER BY size DESC LIMIT 5) AS largest);
"""
    try:
        output = observer.psql("", stdin=script)
    finally:
        os.unlink(path)
    last = output.strip().splitlines()[-1].split("|")
    expected, missing, queued_stored, sync_stored, total, rollup, database_bytes = (int(value) for value in last[:7])
    return {
        "queued_answered": expected,
        "queued_missing": missing,
        "queued_stored": queued_stored,
        "queued_extra": queued_stored - (expected - missing),
        "ambiguous_batches": len(load.ambiguous_batches),
        "sync_accepted": load.totals.sync_events_accepted,
        "sync_stored": sync_stored,
        "total_stored": total,
        "rollup_total": rollup,
        "database_mib": database_bytes / 2**20,
        "largest_tables": last[7],
    }


def ratio(later, earlier):
    if later is None or earlier in (None, 0):
        return None
    return later / earlier


def verdicts(rows: list) -> dict:
    """Minute 2 against the last minute (minute 10 in the full run)."""
    if len(rows) < 2:
        return {"note": "fewer than two minutes: no trend can be judged"}
    base, last = rows[1], rows[-1]
    if len(rows) == 2:
        base = rows[0]
    rss = ratio(last["rss_mib"], base["rss_mib"])
    redis = ratio(last["redis_used_memory_mib"], base["redis_used_memory_mib"])
    p99 = ratio(last["queued_p99_ms"], base["queued_p99_ms"])
    steady = [row["queued_p99_ms"] for row in rows[1:] if row["queued_p99_ms"] is not None]
    p99_median = statistics.median(steady) if steady else None
    p99_spread = ratio(max(steady), p99_median) if steady else None
    return {
        "compared": f"minute {last['minute']} / minute {base['minute']}",
        "rss_ratio": rss,
        "rss_flat": rss is not None and abs(rss - 1) <= 0.10,
        "redis_ratio": redis,
        "redis_flat": redis is not None and abs(redis - 1) <= 0.10,
        "p99_ratio": p99,
        "p99_max_over_median": p99_spread,
        "p99_stable": p99 is not None and p99 <= 1.25 and p99_spread is not None and p99_spread <= 2.0,
        "lag_max_first": base["lag_max_s"],
        "lag_max_last": last["lag_max_s"],
        "lag_max_overall": max(row["lag_max_s"] for row in rows[1:]),
    }


def markdown(rows: list) -> str:
    lines = [
        "| min | RSS (MiB) | Redis used_memory (MiB) | depth end / max | lag end / max (s) | XLEN end / max "
        "| queued p50 (ms) | queued p99 (ms) | sync p99 (ms) | dashboard p99 (ms) | sent (ev/s) | QUEUED (ev/s) "
        "| stored (ev/s) | refused | errors | slow SQL | CPU metrix / client (%) | load (1 min) | rollup tables (MiB) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        errors = sum(row["errors"].values()) + row["skipped"]
        lines.append(
            f"| {row['minute']} | {row['rss_mib']:.1f} | {row['redis_used_memory_mib']:.2f} "
            f"| {row['depth']:.0f} / {row['depth_max']:.0f} | {row['lag_s']:.2f} / {row['lag_max_s']:.2f} "
            f"| {row['xlen']} / {row['xlen_max']} | {fmt(row['queued_p50_ms'], 2)} | {fmt(row['queued_p99_ms'], 2)} "
            f"| {fmt(row['sync_p99_ms'], 1)} | {fmt(row['dashboard_p99_ms'], 1)} "
            f"| {row['sent_per_s']:,.0f} | {row['queued_per_s']:,.0f} | {row['stored_per_s']:,.0f} | {row['refused_batches']} | {errors} | {row['slow_statements']} "
            f"| {row['server_cpu_pct']:.0f} / {row['client_cpu_pct']:.0f} | {row['load_average_1m']:.2f} "
            f"| {sum(table['mib'] for name, table in row['tables'].items() if name != 'events'):,.0f} |"
        )
    return "\n".join(lines)


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--metrics-addr", required=True, help="host:port of the metrics service (gRPC and /metrics)")
    parser.add_argument("--token", required=True)
    parser.add_argument("--organization-id", required=True)
    parser.add_argument("--pid", type=int, required=True, help="the metrix process")
    parser.add_argument("--redis-port", type=int, required=True)
    parser.add_argument("--stream-key", default="metrix:metrics:ingest")
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--run-id", default=f"{random.getrandbits(24):06x}")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--sync-ratio", type=float, default=0.1)
    parser.add_argument("--dashboard-ratio", type=float, default=0.05)
    parser.add_argument("--calibrate-seconds", type=float, default=60)
    parser.add_argument("--start-rate", type=float, default=2000, help="queued events/s at the start of calibration")
    parser.add_argument("--target-depth", type=float, default=200, help="entries calibration holds the queue at")
    parser.add_argument("--settle-seconds", type=float, default=5, help="how fast calibration corrects the depth")
    parser.add_argument("--max-rate", type=float, default=0, help="skip calibration: queued events/s taken as the maximum")
    parser.add_argument("--load-fraction", type=float, default=0.8)
    parser.add_argument("--duration-seconds", type=float, default=600)
    parser.add_argument("--report-seconds", type=float, default=60)
    parser.add_argument("--sample-seconds", type=float, default=5)
    parser.add_argument("--drain-timeout", type=float, default=600)
    parser.add_argument("--call-timeout", type=float, default=30)
    parser.add_argument("--max-in-flight", type=int, default=256)
    parser.add_argument("--channels", type=int, default=2)
    parser.add_argument(
        "--vacuum-seconds", type=float, default=0, help="VACUUM the rollup tables this often during the soak (0: never)"
    )
    parser.add_argument("--server-log", help="the metrix process's log, for its slow-statement warnings")
    parser.add_argument("--results", help="write the figures here as JSON")
    args = parser.parse_args()

    observer = Observer(args)
    channels = [
        grpc.aio.insecure_channel(args.metrics_addr, options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(args.channels)
    ]
    load = Load(args, channels)
    log(f"run id {args.run_id}: queued event ids q{args.run_id}-<batch>-<i>, synchronous s{args.run_id}-<batch>-<i>")

    baseline = await asyncio.to_thread(observer.snapshot)
    # A first call of each kind must succeed before anything is measured.
    load.queued_batches_per_second = 0
    await load._track(True)
    await load._track(False)
    await load._dashboard()
    if load.totals.errors or load.totals.refused_batches or load.totals.queued_events_answered != args.batch_size:
        log(f"the first calls failed: {load.totals}")
        return 1

    if args.max_rate > 0:
        calibration = {"queued_events_per_second_stored": args.max_rate, "given": True}
        log(f"calibration skipped: maximum taken as {args.max_rate:,.0f} queued events/s")
    else:
        calibration = await calibrate(args, load, observer)
    maximum = calibration["queued_events_per_second_stored"]

    rows, tail = await soak(args, load, observer, maximum)
    drained = await drain(args, observer)
    check = await asyncio.to_thread(verify, args, load, observer)
    judged = verdicts(rows)
    for channel in channels:
        await channel.close()

    print()
    print(
        f"Soak: {args.duration_seconds:.0f} s at {args.load_fraction:.0%} of {maximum:,.0f} queued events/s "
        f"(batches of {args.batch_size}; per queued batch +{args.sync_ratio:g} synchronous batch, "
        f"+{args.dashboard_ratio:g} GetDashboard); "
        + (
            f"events, event_counts and user_sketches vacuumed and analysed every {args.vacuum_seconds:g} s"
            if args.vacuum_seconds > 0
            else "not vacuumed or analysed by the bench"
        )
    )
    if "given" not in calibration:
        print(
            f"Calibration ({args.calibrate_seconds:.0f} s; over its last {calibration['seconds']:.0f} s the queue held "
            f"{calibration['depth_min']:.0f}..{calibration['depth_max']:.0f} entries, median {calibration['depth_median']:.0f}, "
            f"lag <= {calibration['lag_max']:.2f} s): {maximum:,.0f} queued events/s stored, "
            f"+{calibration['sync_events_per_second']:,.0f} synchronous events/s"
            + ("" if calibration["queue_backed_up"] else " (WARNING: the queue ran empty: client- or machine-bound)")
        )
    print()
    print(markdown(rows))
    print()
    print(
        f"Drain: {drained['drain_seconds']:.1f} s to depth {drained['depth']:.0f} and XLEN {drained['xlen']}; after it RSS "
        f"{drained['rss_kib'] / 1024:.1f} MiB, Redis used_memory {drained['redis_used_memory'] / 2**20:.2f} MiB, "
        f"dead letters {drained['dead_letters']:.0f}"
    )
    print(
        f"Before the load: RSS {baseline['rss_kib'] / 1024:.1f} MiB, Redis used_memory "
        f"{baseline['redis_used_memory'] / 2**20:.2f} MiB; after the drain: RSS {drained['rss_kib'] / 1024:.1f} MiB "
        f"({drained['rss_kib'] / baseline['rss_kib']:.2f}x), Redis used_memory {drained['redis_used_memory'] / 2**20:.2f} MiB "
        f"({drained['redis_used_memory'] / baseline['redis_used_memory']:.2f}x); Redis holds the queued entries, so its "
        "memory in a minute follows the depth at that instant"
    )
    print(
        f"Stored check: {check['queued_answered']:,} events answered QUEUED, {check['queued_missing']:,} of them missing "
        f"in PostgreSQL, {check['queued_stored']:,} queued-kind events stored ({check['queued_extra']:,} beyond those "
        f"answered QUEUED; {check['ambiguous_batches']} queued calls had an unknown outcome); synchronous "
        f"{check['sync_accepted']:,} accepted / {check['sync_stored']:,} stored; total {check['total_stored']:,} "
        f"events (rollups {check['rollup_total']:,}); database {check['database_mib']:,.0f} MiB "
        f"(largest tables with their indexes: {check['largest_tables']})"
    )
    print(
        f"Totals: {load.totals.refused_batches} batches refused (RESOURCE_EXHAUSTED), errors {load.totals.errors or 0}, "
        f"{load.totals.skipped} sends skipped by the client (in-flight bound), rejected {load.totals.rejected_events}, "
        f"duplicates {load.totals.duplicate_events}"
    )
    all_stored = check["queued_missing"] == 0 and check["queued_extra"] <= check["ambiguous_batches"] * args.batch_size
    drained_ok = drained["depth"] == 0 and drained["xlen"] == 0
    print(f"every QUEUED event stored: {'yes' if all_stored else 'NO'}; stream back to 0: {'yes' if drained_ok else 'NO'}")
    if "note" in judged:
        print(f"verdict: {judged['note']}")
    else:
        print(
            f"verdict ({judged['compared']}): RSS {fmt(judged['rss_ratio'], 3)}x "
            f"({'flat within 10 %' if judged['rss_flat'] else 'NOT flat within 10 %'}); Redis used_memory "
            f"{fmt(judged['redis_ratio'], 3)}x ({'flat within 10 %' if judged['redis_flat'] else 'NOT flat within 10 %'}); "
            f"queued p99 {fmt(judged['p99_ratio'], 2)}x, worst minute {fmt(judged['p99_max_over_median'], 2)}x the median "
            f"({'stable' if judged['p99_stable'] else 'NOT stable'}: <= 1.25x and <= 2x); max lag per minute "
            f"{judged['lag_max_first']:.2f} s -> {judged['lag_max_last']:.2f} s (worst {judged['lag_max_overall']:.2f} s)"
        )
    if args.results:
        with open(args.results, "w") as output:
            json.dump(
                {
                    "calibration": calibration,
                    "rows": rows,
                    "drain": drained,
                    "baseline": baseline,
                    "check": check,
                    "verdict": judged,
                    "tail": tail,
                    "totals": {
                        "refused_batches": load.totals.refused_batches,
                        "errors": load.totals.errors,
                        "skipped": load.totals.skipped,
                    },
                    "arguments": {key: value for key, value in vars(args).items() if key != "token"},
                },
                output,
                indent=2,
            )
    return 0 if all_stored and drained_ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
