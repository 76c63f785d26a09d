#!/usr/bin/env bash
# Gateway benchmark: REST and grpc-web through the gateway versus direct
# native gRPC to the service, for the same RPC, in one run.
#
# What it measures
#   One unary RPC (RPC=dashboard by default: metrics GetDashboard of one
#   hour of 2,000 events with a bearer token, a typical browser call; or
#   RPC=jwks: auth GetJwks, the cheapest call, which needs no credentials),
#   called four ways against one `metrix dev` process (services and gateway
#   in one process, release build):
#     direct    native gRPC (h2c) straight to the service's gRPC port
#               (the baseline)
#     rest      the RPC's REST route on the gateway (HTTP/1.1)
#     grpc-web  POST /<service>/<method> on the gateway with
#               content-type application/grpc-web+proto (HTTP/1.1)
#     gw-grpc   native gRPC (h2c) through the gateway's passthrough; shown
#               for context only (it separates the cost of the extra hop
#               from the cost of translation), no target applies to it
#   Every request body for the gRPC cases is the 5-byte frame of an empty
#   message (00 00 00 00 00); for GetDashboard that asks for the caller's
#   organisation over the last hour.
#
# How
#   Every case uses the same load generator, h2load (nghttp2): h2c for the
#   native gRPC cases, `--h1` for REST and grpc-web, the same number of
#   connections (CLIENTS, one request in flight per connection, so the
#   same concurrency), threads (THREADS) and request count (REQUESTS). Each
#   round runs every case once, in the order above: first a discarded
#   warm-up of WARMUP_REQUESTS, then the measured run of REQUESTS with
#   `--log-file`, which records each request's duration in microseconds.
#   p50 and p99 are nearest-rank percentiles of those durations; req/s is
#   the figure h2load prints (requests done / wall-clock time of the run).
#   The server's CPU time per request (user + system, from /proc/PID/stat
#   before and after the measured run) is reported too: it shows how much
#   of the gap is work the gateway adds rather than waiting.
#   A run with any failed, errored or non-2xx request aborts the benchmark;
#   each case is also checked once beforehand for a successful answer
#   (grpc-status 0 for the gRPC and grpc-web cases). With ROUNDS > 1 the
#   reported figure of each case is the median over the rounds, which damps
#   the noise of a small machine where the load generator and the server
#   share the cores.
#
#   Targets, compared with direct native gRPC measured in the same run:
#   REST and grpc-web p50 latency <= 1.15x, throughput >= 0.8x.
#
# How to run it (from anywhere in the repository)
#   gateway/bench/run.sh
# Environment knobs (defaults in brackets): CLIENTS [16], THREADS [2],
# RPC [dashboard: metrics GetDashboard of one hour of 2,000 events, a
# typical authenticated browser call, where the targets are stated; jwks:
# auth GetJwks, the cheapest call, so the gateway's own cost shows in full],
# REQUESTS [10000 for dashboard, 50000 for jwks], WARMUP_REQUESTS [a tenth
# of REQUESTS], ROUNDS [3], SKIP_BUILD [0]
# (1 reuses target/release/metrix without calling cargo), BINARY [unset;
# a path measures that binary instead, without building], GRPC_PORT
# [50251], HTTP_PORT [18280], METRICS_PORT [50252].
# Needs h2load, curl and nghttp; installs nghttp2-client (and curl) with
# apt-get when they are missing and that is possible.

set -euo pipefail

clients="${CLIENTS:-16}"
threads="${THREADS:-2}"
rounds="${ROUNDS:-3}"
skip_build="${SKIP_BUILD:-0}"
[[ -n "${BINARY:-}" ]] && skip_build=1
grpc_port="${GRPC_PORT:-50251}"
http_port="${HTTP_PORT:-18280}"
metrics_port="${METRICS_PORT:-50252}"

repository_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
binary="${BINARY:-${repository_root}/target/release/metrix}"
rpc="${RPC:-dashboard}"
case "${rpc}" in
    jwks)
        rpc_path="/metrix.auth.v1.AuthService/GetJwks"
        rest_path="/.well-known/jwks.json"
        rest_marker='"keys"'
        default_requests=50000
        ;;
    dashboard)
        rpc_path="/metrix.metrics.v1.MetricsService/GetDashboard"
        rest_path="/v1/dashboard"
        rest_marker='"dashboard"'
        default_requests=10000
        ;;
    *)
        echo "bench: RPC must be jwks or dashboard" >&2
        exit 64
        ;;
esac
requests="${REQUESTS:-${default_requests}}"
warmup_requests="${WARMUP_REQUESTS:-$((default_requests / 10))}"

fail() {
    echo "bench: $*" >&2
    exit 1
}

log() {
    echo "bench: $*" >&2
}

# --- tools -----------------------------------------------------------------

install_missing_tools() {
    local missing_packages=()
    command -v h2load >/dev/null 2>&1 || missing_packages+=(nghttp2-client)
    command -v nghttp >/dev/null 2>&1 || missing_packages+=(nghttp2-client)
    command -v curl >/dev/null 2>&1 || missing_packages+=(curl)
    if [[ ${#missing_packages[@]} -eq 0 ]]; then
        return
    fi
    local unique_packages
    unique_packages="$(printf '%s\n' "${missing_packages[@]}" | sort -u | tr '\n' ' ')"
    command -v apt-get >/dev/null 2>&1 \
        || fail "missing tools; install these packages by hand: ${unique_packages}"
    local sudo_prefix=()
    if [[ "$(id -u)" -ne 0 ]]; then
        command -v sudo >/dev/null 2>&1 \
            || fail "missing tools and not root; install these packages by hand: ${unique_packages}"
        sudo_prefix=(sudo)
    fi
    log "installing ${unique_packages}"
    # shellcheck disable=SC2086
    "${sudo_prefix[@]}" apt-get install -y ${unique_packages} >/dev/null \
        || { "${sudo_prefix[@]}" apt-get update >/dev/null \
            && "${sudo_prefix[@]}" apt-get install -y ${unique_packages} >/dev/null; } \
        || fail "could not install ${unique_packages} with apt-get"
}

install_missing_tools
for tool in h2load nghttp curl awk sort; do
    command -v "${tool}" >/dev/null 2>&1 || fail "${tool} not found"
done

# --- build -----------------------------------------------------------------

if [[ "${skip_build}" == "1" ]]; then
    [[ -x "${binary}" ]] || fail "SKIP_BUILD=1 but ${binary} does not exist"
    log "reusing ${binary}"
else
    log "building the release binary (cargo build --release -p metrix)"
    (cd "${repository_root}" && cargo build --release -p metrix)
fi

# --- server ----------------------------------------------------------------

for port in "${grpc_port}" "${http_port}" "${metrics_port}"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/${port}") 2>/dev/null; then
        fail "port ${port} is already in use; stop what listens there or set GRPC_PORT/HTTP_PORT"
    fi
done

work_dir="$(mktemp -d)"
data_dir="${work_dir}/data"
mkdir -p "${data_dir}"
server_log="${work_dir}/metrix.log"
server_pid=""

stop_server() {
    if [[ -n "${server_pid}" ]] && kill -0 "${server_pid}" 2>/dev/null; then
        kill -TERM "${server_pid}" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "${server_pid}" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "${server_pid}" 2>/dev/null || true
        wait "${server_pid}" 2>/dev/null || true
    fi
    rm -rf "${work_dir}"
}
trap stop_server EXIT
trap 'exit 130' INT TERM

log "starting metrix dev (gRPC 127.0.0.1:${grpc_port}, HTTP 127.0.0.1:${http_port})"
METRIX_DEV_DATA_DIR="${data_dir}" \
    METRIX_AUTH__LISTEN_ADDR="127.0.0.1:${grpc_port}" \
    METRIX_METRICS__LISTEN_ADDR="127.0.0.1:${metrics_port}" \
    METRIX_GATEWAY__LISTEN_ADDR="127.0.0.1:${http_port}" \
    METRIX_LOG=warn \
    METRIX_GATEWAY__RATE_LIMIT_PER_IP=100000000 \
    METRIX_GATEWAY__RATE_LIMIT_AUTH_PER_IP=100000000 \
    METRIX_GATEWAY__RATE_LIMIT_PER_CREDENTIAL=100000000 \
    "${binary}" dev --no-demo >"${server_log}" 2>&1 &
server_pid=$!

healthy=0
for _ in $(seq 1 300); do
    if curl -sf "http://127.0.0.1:${http_port}/healthz" >/dev/null 2>&1; then
        healthy=1
        break
    fi
    kill -0 "${server_pid}" 2>/dev/null || break
    sleep 0.2
done
if [[ "${healthy}" -ne 1 ]]; then
    tail -n 40 "${server_log}" >&2 || true
    fail "metrix dev did not become healthy within 60 s"
fi

# --- credentials and data for the dashboard RPC -----------------------------

auth_header=()
direct_port="${grpc_port}"
if [[ "${rpc}" == "dashboard" ]]; then
    direct_port="${metrics_port}"
    json_field() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
    signed_up="$(curl -sf "http://127.0.0.1:${http_port}/v1/auth:signUp" \
        -d '{"email":"bench@example.com","password":"correct horse battery","organizationName":"Bench Co"}')" \
        || fail "sign-up for the dashboard bench failed"
    token="$(json_field "['tokens']['accessToken']" <<<"${signed_up}")"
    auth_header=(-H "authorization: Bearer ${token}")
    key="$(curl -sf "http://127.0.0.1:${http_port}/v1/api-keys" "${auth_header[@]}" \
        -d '{"displayName":"bench","scopes":["events:write"]}' | json_field "['key']")" \
        || fail "creating an API key failed"
    # One hour of traffic: 2,000 events of 8 types from 300 users.
    python3 - "${http_port}" "${key}" <<'PYTHON' || fail "seeding events failed"
import json, random, sys, time, urllib.request
port, key = sys.argv[1], sys.argv[2]
random.seed(7)
now = time.time()
types = ["page_view", "click", "signup", "search", "checkout", "invite", "export", "login"]
for batch in range(4):
    events = []
    for index in range(500):
        moment = now - random.random() * 3500
        events.append({
            "eventId": f"bench-{batch}-{index}",
            "appId": random.choice(["web", "ios"]),
            "userId": f"user-{random.randrange(300)}",
            "eventType": random.choice(types),
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(moment)) + "Z",
        })
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/events:batch",
        data=json.dumps({"events": events}).encode(),
        headers={"content-type": "application/json", "x-api-key": key},
    )
    answer = json.load(urllib.request.urlopen(request))
    assert int(answer.get("rejectedCount", "0")) == 0, answer
PYTHON
fi

# --- request bodies and one correctness check per case ----------------------

empty_message_frame="${work_dir}/empty-message.frame"
printf '\x00\x00\x00\x00\x00' >"${empty_message_frame}"

check_native_grpc() {
    local name="$1" port="$2"
    local output
    # The answer's body is binary protobuf; drop NUL bytes before keeping it.
    output="$(nghttp -v -d "${empty_message_frame}" \
        -H 'content-type: application/grpc' -H 'te: trailers' "${auth_header[@]}" \
        "http://127.0.0.1:${port}${rpc_path}" 2>&1 | tr -d '\000')" \
        || fail "${name}: nghttp failed: ${output}"
    grep -q 'grpc-status: 0' <<<"${output}" \
        || fail "${name}: no grpc-status 0 in the answer: $(grep -E 'grpc-(status|message)|:status' <<<"${output}" | tr '\n' ' ')"
}

check_rest() {
    local body
    body="$(curl -sf "${auth_header[@]}" "http://127.0.0.1:${http_port}${rest_path}")" \
        || fail "rest: GET ${rest_path} did not answer 2xx"
    grep -q "${rest_marker}" <<<"${body}" || fail "rest: answer has no ${rest_marker}: ${body:0:200}"
}

check_grpc_web() {
    local answer_file="${work_dir}/grpc-web-answer"
    curl -sf -o "${answer_file}" -X POST "${auth_header[@]}" \
        -H 'content-type: application/grpc-web+proto' -H 'x-grpc-web: 1' \
        --data-binary "@${empty_message_frame}" \
        "http://127.0.0.1:${http_port}${rpc_path}" \
        || fail "grpc-web: POST ${rpc_path} did not answer 2xx"
    # The trailers travel in the body, in a frame whose flag byte is 0x80.
    LC_ALL=C grep -aq 'grpc-status:0' "${answer_file}" \
        || LC_ALL=C grep -aq 'grpc-status: 0' "${answer_file}" \
        || fail "grpc-web: no grpc-status 0 in the trailer frame"
}

check_native_grpc direct "${direct_port}"
check_rest
check_grpc_web
check_native_grpc gw-grpc "${http_port}"
log "every case answers correctly"

# --- load ------------------------------------------------------------------

# CPU time (user + system) the server process has used so far, in clock
# ticks, or nothing where /proc is unavailable.
server_cpu_ticks() {
    # Fields 14 and 15 of /proc/PID/stat; the command name (field 2) holds no
    # space here, so splitting on spaces is safe.
    awk '{ print $14 + $15 }' "/proc/${server_pid}/stat" 2>/dev/null || true
}
clock_ticks_per_second="$(getconf CLK_TCK 2>/dev/null || echo 100)"

# Runs h2load for one case; extra arguments select the protocol and body.
# Prints "req_per_s p50_us p99_us server_cpu_us_per_request" for a measured
# run (the last is "n/a" without /proc), nothing for a warm-up.
run_case() {
    local name="$1" phase="$2" count="$3" url="$4"
    shift 4
    local report="${work_dir}/${name}.${phase}.report"
    local timings="${work_dir}/${name}.${phase}.timings"
    local cpu_ticks_before cpu_ticks_after
    cpu_ticks_before="$(server_cpu_ticks)"
    h2load -n "${count}" -c "${clients}" -t "${threads}" -m 1 \
        --log-file="${timings}" "$@" "${url}" >"${report}" 2>&1 \
        || { cat "${report}" >&2; fail "${name}: h2load failed"; }
    cpu_ticks_after="$(server_cpu_ticks)"

    local done_requests failed errored non_2xx
    read -r done_requests failed errored < <(awk '/^requests:/ {
        for (i = 1; i <= NF; i++) {
            if ($(i + 1) ~ /^done,?$/) d = $i
            if ($(i + 1) ~ /^failed,?$/) f = $i
            if ($(i + 1) ~ /^errored,?$/) e = $i
        }
        print d, f, e
    }' "${report}")
    non_2xx="$(awk -F'\t' '$2 < 200 || $2 > 299 { n++ } END { print n + 0 }' "${timings}")"
    if [[ "${done_requests}" != "${count}" || "${failed}" != "0" || "${errored}" != "0" || "${non_2xx}" != "0" ]]; then
        cat "${report}" >&2
        fail "${name}: ${phase} run had done=${done_requests} failed=${failed} errored=${errored} non-2xx=${non_2xx}"
    fi
    if [[ "${phase}" == "warmup" ]]; then
        return
    fi

    local requests_per_second
    requests_per_second="$(awk '/^finished in/ { for (i = 1; i <= NF; i++) if ($(i + 1) ~ /^req\/s,?$/) print $i }' "${report}")"
    # Nearest-rank percentiles of the per-request durations (third column, µs).
    local percentiles
    percentiles="$(cut -f3 "${timings}" | sort -n | awk '
        { duration[NR] = $1 }
        END {
            p50 = int(NR * 0.50); if (p50 < NR * 0.50) p50++
            p99 = int(NR * 0.99); if (p99 < NR * 0.99) p99++
            print duration[p50], duration[p99]
        }')"
    local server_cpu_per_request="n/a"
    if [[ -n "${cpu_ticks_before}" && -n "${cpu_ticks_after}" ]]; then
        server_cpu_per_request="$(awk -v ticks="$((cpu_ticks_after - cpu_ticks_before))" \
            -v hz="${clock_ticks_per_second}" -v n="${count}" \
            'BEGIN { printf "%.1f", ticks / hz * 1000000 / n }')"
    fi
    echo "${requests_per_second} ${percentiles} ${server_cpu_per_request}"
}

grpc_arguments=(-d "${empty_message_frame}" -H 'content-type: application/grpc' -H 'te: trailers' "${auth_header[@]}")
grpc_web_arguments=(--h1 -d "${empty_message_frame}" -H 'content-type: application/grpc-web+proto' -H 'x-grpc-web: 1' "${auth_header[@]}")

case_names=(direct rest grpc-web gw-grpc)
declare -A case_url=(
    [direct]="http://127.0.0.1:${direct_port}${rpc_path}"
    [rest]="http://127.0.0.1:${http_port}${rest_path}"
    [grpc-web]="http://127.0.0.1:${http_port}${rpc_path}"
    [gw-grpc]="http://127.0.0.1:${http_port}${rpc_path}"
)

run_case_by_name() {
    local name="$1" phase="$2" count="$3"
    case "${name}" in
        direct | gw-grpc) run_case "${name}" "${phase}" "${count}" "${case_url[${name}]}" "${grpc_arguments[@]}" ;;
        rest) run_case "${name}" "${phase}" "${count}" "${case_url[${name}]}" --h1 "${auth_header[@]}" ;;
        grpc-web) run_case "${name}" "${phase}" "${count}" "${case_url[${name}]}" "${grpc_web_arguments[@]}" ;;
    esac
}

declare -A round_results=()
log "load: ${rounds} round(s); per case ${warmup_requests} warm-up + ${requests} measured requests, ${clients} connections, ${threads} threads"
for round in $(seq 1 "${rounds}"); do
    for name in "${case_names[@]}"; do
        run_case_by_name "${name}" warmup "${warmup_requests}"
        result="$(run_case_by_name "${name}" measured "${requests}")"
        round_results["${name},${round}"]="${result}"
        read -r rps p50 p99 cpu <<<"${result}"
        log "round ${round} ${name}: ${rps} req/s, p50 ${p50} us, p99 ${p99} us, server CPU ${cpu} us/request"
    done
done

# Median of the values of one column (1 req/s, 2 p50, 3 p99, 4 server CPU
# per request) over the rounds; "n/a" when the column holds no number.
median_over_rounds() {
    local name="$1" column="$2"
    for round in $(seq 1 "${rounds}"); do
        awk -v column="${column}" '{ print $column }' <<<"${round_results["${name},${round}"]}"
    done | sort -g | awk '
        $1 !~ /^[0-9.]+$/ { missing = 1 }
        { value[NR] = $1 }
        END {
            if (missing) print "n/a"
            else if (NR % 2 == 1) print value[(NR + 1) / 2]
            else printf "%.2f\n", (value[NR / 2] + value[NR / 2 + 1]) / 2
        }'
}

declare -A requests_per_second_of=() p50_of=() p99_of=() server_cpu_of=()
for name in "${case_names[@]}"; do
    requests_per_second_of[${name}]="$(median_over_rounds "${name}" 1)"
    p50_of[${name}]="$(median_over_rounds "${name}" 2)"
    p99_of[${name}]="$(median_over_rounds "${name}" 3)"
    server_cpu_of[${name}]="$(median_over_rounds "${name}" 4)"
done

# --- report ----------------------------------------------------------------

echo
echo "${rpc_path##*/}, ${clients} connections x 1 request in flight, ${threads} h2load threads,"
echo "${requests} measured requests per case per round, median of ${rounds} round(s)"
echo "machine: nproc=$(nproc), $(rustc --version 2>/dev/null || echo 'rustc unknown')"
echo
printf '| %-34s | %9s | %9s | %10s | %22s |\n' case "p50 (ms)" "p99 (ms)" "req/s" "server CPU (µs/request)"
printf '|%s|%s|%s|%s|%s|\n' "------------------------------------" "----------:" "----------:" "-----------:" "-------------------------:"
describe() {
    case "$1" in
        direct) echo "direct native gRPC (h2c, baseline)" ;;
        rest) echo "REST via gateway (HTTP/1.1)" ;;
        grpc-web) echo "grpc-web via gateway (HTTP/1.1)" ;;
        gw-grpc) echo "native gRPC via gateway (h2c)" ;;
    esac
}
for name in "${case_names[@]}"; do
    printf '| %-34s | %9.3f | %9.3f | %10.0f | %23s |\n' "$(describe "${name}")" \
        "$(awk -v us="${p50_of[${name}]}" 'BEGIN { print us / 1000 }')" \
        "$(awk -v us="${p99_of[${name}]}" 'BEGIN { print us / 1000 }')" \
        "${requests_per_second_of[${name}]}" "${server_cpu_of[${name}]}"
done

echo
all_targets_met=1
for name in rest grpc-web gw-grpc; do
    # The verdicts compare the unrounded ratios with the targets.
    read -r latency_ratio throughput_ratio latency_verdict throughput_verdict < <(awk \
        -v p50="${p50_of[${name}]}" -v base_p50="${p50_of[direct]}" \
        -v rps="${requests_per_second_of[${name}]}" -v base_rps="${requests_per_second_of[direct]}" \
        'BEGIN {
            latency = p50 / base_p50; throughput = rps / base_rps
            printf "%.2f %.2f %s %s\n", latency, throughput,
                (latency <= 1.15) ? "met" : "NOT_met", (throughput >= 0.80) ? "met" : "NOT_met"
        }')
    latency_verdict="${latency_verdict/_/ }"
    throughput_verdict="${throughput_verdict/_/ }"
    if [[ "${name}" == "gw-grpc" ]]; then
        echo "${name}/direct: p50 ${latency_ratio}x, throughput ${throughput_ratio}x (context only, no target)"
        continue
    fi
    [[ "${latency_verdict}" == "met" && "${throughput_verdict}" == "met" ]] || all_targets_met=0
    echo "${name}/direct: p50 ${latency_ratio}x (target <= 1.15x: ${latency_verdict}), throughput ${throughput_ratio}x (target >= 0.80x: ${throughput_verdict})"
done
echo
# With METRIX_LOG=warn the server logs only warnings and errors (after its
# start-up banner); any of them during the load is worth seeing.
server_warning_count="$(grep -cE 'WARN|ERROR' "${server_log}" || true)"
if [[ "${server_warning_count}" -gt 0 ]]; then
    log "the server logged ${server_warning_count} warning or error line(s); the last ones:"
    grep -E 'WARN|ERROR' "${server_log}" | tail -n 10 >&2
fi
if [[ "${all_targets_met}" -eq 1 ]]; then
    echo "all targets met"
else
    echo "targets NOT all met"
fi
