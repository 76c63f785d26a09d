#!/usr/bin/env bash
# Soak benchmark (not a test) of the queued ingestion path on PostgreSQL +
# Redis, against the release build.
#
# What it does
#   1. Builds `metrix` in release (cargo build --release -p metrix) unless
#      SKIP_BUILD=1 or BINARY is set.
#   2. Creates a private PostgreSQL database metrix_soak_<random> on
#      PGHOST:PGPORT (127.0.0.1:5432, user postgres, trust auth) and starts a
#      private Redis on a free port (AOF on, `appendfsync everysec`, no RDB
#      snapshots, data in a temporary folder), so nothing shared is touched.
#   3. Starts `metrix dev --no-demo` (auth, metrics, benchmark and gateway in
#      one process) on free ports with METRIX_DATABASE_URL and
#      METRIX_REDIS_URL pointing there, signs up through the gateway's REST
#      API (POST /v1/auth:signUp) for a bearer token.
#   4. Runs loadgen.py (beside this file; native gRPC straight to the metrics
#      service's port, so no gateway rate limit applies):
#        - calibration, CALIBRATE_SECONDS: the mixed load with a feedback loop
#          that keeps the queue backed up but bounded (about TARGET_DEPTH
#          entries: the writer never idles, the lag stays a few seconds); the
#          queued events stored per second over its second half is the
#          maximum sustainable queued-ingestion rate;
#        - the soak, DURATION_SECONDS at LOAD_FRACTION of that maximum; every
#          minute: RSS of the metrix process (VmRSS), Redis used_memory, the
#          queue depth and lag gauges (GET /metrics of the metrics service),
#          XLEN of metrix:metrics:ingest, p50/p99 of the queued calls, events
#          sent and stored, refusals (RESOURCE_EXHAUSTED);
#        - the drain: waits for depth 0 and XLEN 0, then checks in PostgreSQL
#          that every event answered QUEUED is in the events table.
#      The mix: per queued TrackEvents batch of BATCH_SIZE events
#      (`asynchronous` set), SYNC_RATIO synchronous batches of the same size
#      and DASHBOARD_RATIO GetDashboard calls.
#   5. Stops metrix and Redis, drops the database, removes the folder.
#
# Targets it judges (ratios, minute 2 against the last minute): RSS and
# Redis used_memory flat within 10 %, queued p99 stable (last / minute 2
# <= 1.25 and no minute over 2x the median), every QUEUED event stored,
# XLEN back to 0. Redis holds the queued entries (about 12 KiB for 50
# events), so its memory in a minute follows the queue's depth at that
# instant; RSS and used_memory before the load and after the drain are
# printed too. Exit status 0 when every event answered QUEUED is stored and
# the stream drained; the memory and latency verdicts are printed.
#
# How to run it (from anywhere in the repository)
#   crates/metrix/bench/soak/run.sh                          # 60 s calibration + 10 min soak
#   DURATION_SECONDS=60 crates/metrix/bench/soak/run.sh      # a short check of the script
# Environment knobs (defaults in brackets): DURATION_SECONDS [600],
# CALIBRATE_SECONDS [60], LOAD_FRACTION [0.8], MAX_RATE [unset: calibrate;
# a number of queued events/s skips calibration], BATCH_SIZE [50],
# SYNC_RATIO [0.1], DASHBOARD_RATIO [0.05], USERS [5000], TARGET_DEPTH
# [200 entries], SETTLE_SECONDS [5], START_RATE [2000 events/s],
# SKIP_BUILD [0], BINARY [target/release/metrix], PGHOST [127.0.0.1],
# PGPORT [5432], PGUSER [postgres], RESULTS [unset; a path gets the
# figures as JSON], KEEP_WORK_DIR [0; 1 keeps the server log and Redis
# folder], METRIX_LOG [warn],
# VACUUM_SECONDS [0 when the server runs autovacuum; 60 when its
# `autovacuum` is off, as on the development machine: the bench then runs
# `VACUUM (ANALYZE) events, event_counts, user_sketches` that often during
# the soak, roughly what a production server's autovacuum does for the
# update-heavy rollup tables and the growing events table; 0 forces none].
# Needs: psql, redis-server, redis-cli, curl, python3 (3.11) with venv; the
# Python package grpcio is installed with pip into SOAK_VENV
# [~/.cache/metrix-soak-venv] when python3 lacks it.

set -euo pipefail

duration_seconds="${DURATION_SECONDS:-600}"
calibrate_seconds="${CALIBRATE_SECONDS:-60}"
load_fraction="${LOAD_FRACTION:-0.8}"
batch_size="${BATCH_SIZE:-50}"
sync_ratio="${SYNC_RATIO:-0.1}"
dashboard_ratio="${DASHBOARD_RATIO:-0.05}"
users="${USERS:-5000}"
target_depth="${TARGET_DEPTH:-200}"
settle_seconds="${SETTLE_SECONDS:-5}"
start_rate="${START_RATE:-2000}"
max_rate="${MAX_RATE:-0}"
skip_build="${SKIP_BUILD:-0}"
[[ -n "${BINARY:-}" ]] && skip_build=1
pg_host="${PGHOST:-127.0.0.1}"
pg_port="${PGPORT:-5432}"
pg_user="${PGUSER:-postgres}"

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repository_root="$(cd "${script_dir}/../../../.." && pwd)"
binary="${BINARY:-${repository_root}/target/release/metrix}"
venv="${SOAK_VENV:-${XDG_CACHE_HOME:-${HOME}/.cache}/metrix-soak-venv}"

log() { echo "soak: $*" >&2; }
fail() {
    echo "soak: $*" >&2
    exit 1
}

for tool in psql redis-server redis-cli curl python3; do
    command -v "${tool}" >/dev/null 2>&1 || fail "${tool} not found"
done

# --- the load generator's Python --------------------------------------------

python=python3
if ! python3 -c 'import grpc' >/dev/null 2>&1; then
    if ! "${venv}/bin/python" -c 'import grpc' >/dev/null 2>&1; then
        log "installing grpcio into ${venv}"
        python3 -m venv "${venv}" || fail "python3 -m venv failed (apt-get install python3-venv?)"
        "${venv}/bin/pip" install --quiet grpcio || fail "pip install grpcio failed"
    fi
    python="${venv}/bin/python"
fi

# --- build -------------------------------------------------------------------

if [[ "${skip_build}" == "1" ]]; then
    [[ -x "${binary}" ]] || fail "${binary} does not exist (SKIP_BUILD=1 or BINARY set)"
    log "reusing ${binary}"
else
    log "building the release binary (cargo build --release -p metrix)"
    (cd "${repository_root}" && cargo build --release -p metrix)
fi

# --- private Redis, database and server ---------------------------------------

free_ports() {
    python3 - "$1" <<'PYTHON'
import socket, sys
sockets = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    sockets.append(s)
print(" ".join(str(s.getsockname()[1]) for s in sockets))
PYTHON
}
read -r redis_port auth_port metrics_port benchmark_port gateway_port <<<"$(free_ports 5)"

work_dir="$(mktemp -d -t metrix-soak.XXXXXX)"
database="metrix_soak_$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')"
database_url="postgres://${pg_user}@${pg_host}:${pg_port}/${database}"
admin_psql=(psql -X -q -At -v ON_ERROR_STOP=1 -h "${pg_host}" -p "${pg_port}" -U "${pg_user}" -d postgres)
redis_pid=""
server_pid=""
database_created=0

cleanup() {
    local status=$?
    if [[ -n "${server_pid}" ]] && kill -0 "${server_pid}" 2>/dev/null; then
        kill -TERM "${server_pid}" 2>/dev/null || true
        for _ in $(seq 1 100); do
            kill -0 "${server_pid}" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "${server_pid}" 2>/dev/null || true
        wait "${server_pid}" 2>/dev/null || true
    fi
    if [[ -n "${redis_pid}" ]] && kill -0 "${redis_pid}" 2>/dev/null; then
        kill -TERM "${redis_pid}" 2>/dev/null || true
        wait "${redis_pid}" 2>/dev/null || true
    fi
    if [[ "${database_created}" == "1" ]]; then
        "${admin_psql[@]}" -c "DROP DATABASE IF EXISTS ${database} WITH (FORCE)" >/dev/null 2>&1 \
            || log "could not drop ${database}; drop it by hand"
    fi
    if [[ "${KEEP_WORK_DIR:-0}" == "1" ]]; then
        log "kept ${work_dir}"
    else
        rm -rf "${work_dir}"
    fi
    exit "${status}"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "${work_dir}/redis" "${work_dir}/data"
log "starting redis-server on 127.0.0.1:${redis_port} (AOF everysec) in ${work_dir}/redis"
redis-server --port "${redis_port}" --bind 127.0.0.1 --save "" --appendonly yes \
    --appendfsync everysec --dir "${work_dir}/redis" --daemonize no \
    >"${work_dir}/redis.log" 2>&1 &
redis_pid=$!
for _ in $(seq 1 100); do
    [[ "$(redis-cli -p "${redis_port}" ping 2>/dev/null)" == "PONG" ]] && break
    kill -0 "${redis_pid}" 2>/dev/null || { cat "${work_dir}/redis.log" >&2; fail "redis-server exited"; }
    sleep 0.1
done
[[ "$(redis-cli -p "${redis_port}" ping 2>/dev/null)" == "PONG" ]] || fail "redis-server did not answer"

autovacuum="$("${admin_psql[@]}" -c 'SHOW autovacuum' 2>/dev/null || echo unknown)"
if [[ -z "${VACUUM_SECONDS:-}" ]]; then
    if [[ "${autovacuum}" == "off" ]]; then
        vacuum_seconds=60
        log "the PostgreSQL server runs without autovacuum: events, event_counts and user_sketches are vacuumed and analysed every ${vacuum_seconds} s (VACUUM_SECONDS=0 to measure without)"
    else
        vacuum_seconds=0
    fi
else
    vacuum_seconds="${VACUUM_SECONDS}"
fi

log "creating database ${database} on ${pg_host}:${pg_port}"
"${admin_psql[@]}" -c "CREATE DATABASE ${database}" >/dev/null || fail "cannot create ${database}"
database_created=1

server_log="${work_dir}/metrix.log"
log "starting metrix dev (metrics ${metrics_port}, gateway ${gateway_port})"
METRIX_DATABASE_URL="${database_url}" \
    METRIX_REDIS_URL="redis://127.0.0.1:${redis_port}" \
    METRIX_AUTH__LISTEN_ADDR="127.0.0.1:${auth_port}" \
    METRIX_METRICS__LISTEN_ADDR="127.0.0.1:${metrics_port}" \
    METRIX_BENCHMARK__LISTEN_ADDR="127.0.0.1:${benchmark_port}" \
    METRIX_GATEWAY__LISTEN_ADDR="127.0.0.1:${gateway_port}" \
    METRIX_GATEWAY__RATE_LIMIT_PER_IP=100000000 \
    METRIX_GATEWAY__RATE_LIMIT_AUTH_PER_IP=100000000 \
    METRIX_GATEWAY__RATE_LIMIT_PER_CREDENTIAL=100000000 \
    METRIX_AUTH__ACCESS_TOKEN_TTL_SECONDS=86400 \
    METRIX_LOG="${METRIX_LOG:-warn}" \
    "${binary}" dev --no-demo --data-dir "${work_dir}/data" >"${server_log}" 2>&1 &
server_pid=$!

healthy=0
for _ in $(seq 1 600); do
    if curl -sf "http://127.0.0.1:${gateway_port}/healthz" >/dev/null 2>&1; then
        healthy=1
        break
    fi
    kill -0 "${server_pid}" 2>/dev/null || break
    sleep 0.2
done
if [[ "${healthy}" -ne 1 ]]; then
    tail -n 40 "${server_log}" >&2 || true
    fail "metrix dev did not become healthy within 120 s"
fi

signed_up="$(curl -sf "http://127.0.0.1:${gateway_port}/v1/auth:signUp" \
    -H 'content-type: application/json' \
    -d '{"email":"soak@example.com","password":"correct horse battery","organizationName":"Soak Co"}')" \
    || fail "sign-up failed"
read -r token organization_id < <(python3 -c '
import json, sys
answer = json.load(sys.stdin)
print(answer["tokens"]["accessToken"], answer["user"]["organizationId"])' <<<"${signed_up}")
[[ -n "${token}" && -n "${organization_id}" ]] || fail "no token in the sign-up answer"

log "machine: nproc=$(nproc), load average $(cut -d' ' -f1-3 /proc/loadavg), $("${binary}" --version 2>/dev/null || echo metrix), PostgreSQL autovacuum ${autovacuum}"
loadgen_arguments=(
    --metrics-addr "127.0.0.1:${metrics_port}"
    --token "${token}"
    --organization-id "${organization_id}"
    --pid "${server_pid}"
    --redis-port "${redis_port}"
    --stream-key "metrix:metrics:ingest"
    --database-url "${database_url}"
    --duration-seconds "${duration_seconds}"
    --calibrate-seconds "${calibrate_seconds}"
    --load-fraction "${load_fraction}"
    --batch-size "${batch_size}"
    --sync-ratio "${sync_ratio}"
    --dashboard-ratio "${dashboard_ratio}"
    --users "${users}"
    --target-depth "${target_depth}"
    --settle-seconds "${settle_seconds}"
    --start-rate "${start_rate}"
    --max-rate "${max_rate}"
    --vacuum-seconds "${vacuum_seconds}"
    --server-log "${server_log}"
)
[[ -n "${RESULTS:-}" ]] && loadgen_arguments+=(--results "${RESULTS}")

status=0
"${python}" "${script_dir}/loadgen.py" "${loadgen_arguments[@]}" || status=$?

echo
echo "machine: nproc=$(nproc), load average now $(cut -d' ' -f1-3 /proc/loadavg)"
# With METRIX_LOG=warn the server logs only warnings and errors after its
# banner; any of them during the soak is worth seeing.
warnings="$(grep -cE 'WARN|ERROR' "${server_log}" || true)"
if [[ "${warnings}" -gt 0 ]]; then
    log "the server logged ${warnings} warning or error line(s); the last ones:"
    grep -E 'WARN|ERROR' "${server_log}" | tail -n 10 >&2
fi
exit "${status}"
