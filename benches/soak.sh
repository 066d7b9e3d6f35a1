#!/usr/bin/env bash
# Latchkey soak run (bounded, loopback).
#
#   1. starts fast_upstream with --fail-permille (default 50: 5% of the requests answered
#      with 500, deterministic pseudo-random) and Latchkey in front of it (real lk_ key,
#      credential injection checked by the upstream), as benches/run.sh does;
#   2. measures Latchkey's capacity on the `latchkey` path (GET /proxy/openai/v1/models)
#      with wrk, closed loop, SOAK_CAPACITY_CONNS connections for SOAK_CAPACITY_DURATION;
#   3. drives it for SOAK_DURATION at SOAK_LOAD_PCT% of that rate with benches' http_load
#      (fixed request rate spread over SOAK_CONNS keep-alive connections), reporting per
#      SOAK_INTERVAL: requests, 2xx, 5xx, other statuses, connection errors, p50/p99 and
#      Latchkey's VmRSS;
#   4. reads GET /metrics from the admin listener at the end: latchkey_circuit_state and
#      latchkey_upstream_attempts_total;
#   5. writes benches/SOAK.md (SOAK_RESULTS).
#
# Environment (all optional):
#   SOAK_DURATION           seconds of soak                        (600)
#   SOAK_INTERVAL           seconds per reported interval          (60)
#   SOAK_LOAD_PCT           percent of the measured capacity       (70)
#   SOAK_FAIL_PERMILLE      injected 500s per 1000 requests        (50)
#   SOAK_CONNS              connections of the soak load           (32)
#   SOAK_CAPACITY_CONNS     wrk connections of the capacity pass   (32)
#   SOAK_CAPACITY_DURATION  wrk duration of the capacity pass      (10s)
#   SOAK_RESULTS            report path                            (benches/SOAK.md)
#   BENCH_PROXY_THREADS / BENCH_UPSTREAM_THREADS / BENCH_SKIP_BUILD / CARGO_TARGET_DIR
#                           as in benches/run.sh
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
DURATION="${SOAK_DURATION:-600}"
INTERVAL="${SOAK_INTERVAL:-60}"
LOAD_PCT="${SOAK_LOAD_PCT:-70}"
FAIL_PERMILLE="${SOAK_FAIL_PERMILLE:-50}"
CONNS="${SOAK_CONNS:-32}"
CAP_CONNS="${SOAK_CAPACITY_CONNS:-32}"
CAP_DURATION="${SOAK_CAPACITY_DURATION:-10s}"
RESULTS="${SOAK_RESULTS:-$ROOT/benches/SOAK.md}"
PROXY_THREADS="${BENCH_PROXY_THREADS:-${LATCHKEY_THREADS:-1}}"
UPSTREAM_THREADS="${BENCH_UPSTREAM_THREADS:-1}"
UPSTREAM_AUTH="Bearer sk-bench-secret"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="$TARGET_DIR/release"

log() { printf '[soak %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
    printf '\n[soak] ERROR: %s\n' "$*" >&2
    exit 1
}
for v in DURATION INTERVAL LOAD_PCT FAIL_PERMILLE CONNS CAP_CONNS PROXY_THREADS UPSTREAM_THREADS; do
    [[ "${!v}" =~ ^[0-9]+$ && "${!v}" -gt 0 || ($v == FAIL_PERMILLE && "${!v}" == 0) ]] ||
        die "$v must be a positive integer (got '${!v}')"
done
command -v wrk >/dev/null || die "wrk not found"

if [[ -z "${BENCH_SKIP_BUILD:-}" ]]; then
    cargo build --release -p latchkey-benches || die "cargo build -p latchkey-benches failed"
    cargo build --release --bin latchkey || die "cargo build --bin latchkey failed"
fi
for b in fast_upstream http_load latchkey; do [[ -x "$BIN/$b" ]] || die "$BIN/$b not built"; done

WORK="$(mktemp -d "${TMPDIR:-/tmp}/latchkey-soak.XXXXXX")"
PIDS=()
cleanup() {
    local rc=$? pid
    set +e
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
    sleep 1
    for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; done
    if ((rc != 0)) || [[ -n "${BENCH_KEEP:-}" ]]; then log "logs kept in $WORK"; else rm -rf "$WORK"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
    local p
    for _ in $(seq 1 200); do
        p=$((20000 + RANDOM % 12000))
        if ! (: <"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return 0
        fi
    done
    die "no free port"
}
wait_listen() {
    local name="$1" pid="$2" url="$3" deadline=$((SECONDS + 60))
    while ((SECONDS < deadline)); do
        kill -0 "$pid" 2>/dev/null || die "$name exited during startup (see $WORK)"
        curl -s -o /dev/null --max-time 1 "$url" && return 0
        sleep 0.1
    done
    die "$name did not listen at $url"
}

UP_PORT="$(free_port)"
"$BIN/fast_upstream" --port "$UP_PORT" --threads "$UPSTREAM_THREADS" --require-auth "$UPSTREAM_AUTH" \
    --fail-permille "$FAIL_PERMILLE" >"$WORK/upstream.log" 2>&1 &
UP_PID=$!
PIDS+=("$UP_PID")
wait_listen fast_upstream "$UP_PID" "http://127.0.0.1:$UP_PORT/"

LK_PORT="$(free_port)"
LK_APORT="$(free_port)"
while [[ "$LK_APORT" == "$LK_PORT" || "$LK_APORT" == "$UP_PORT" ]]; do LK_APORT="$(free_port)"; done
mkdir -p "$WORK/lk"
LATCHKEY_ALLOW_PRIVATE_UPSTREAMS=1 LATCHKEY_THREADS="$PROXY_THREADS" "$BIN/latchkey" serve --data-dir "$WORK/lk" \
    --listen "127.0.0.1:$LK_PORT" --admin-listen "127.0.0.1:$LK_APORT" >"$WORK/latchkey.log" 2>&1 &
LK_PID=$!
PIDS+=("$LK_PID")
wait_listen "latchkey admin" "$LK_PID" "http://127.0.0.1:$LK_APORT/"
wait_listen "latchkey" "$LK_PID" "http://127.0.0.1:$LK_PORT/"
for _ in $(seq 1 100); do [[ -s "$WORK/lk/admin-token" ]] && break; sleep 0.1; done
ADMIN_TOKEN="$(tr -d '[:space:]' <"$WORK/lk/admin-token")"
admin() {
    local out code
    out="$(curl -sS --max-time 10 -X "$1" -H "Authorization: Bearer $ADMIN_TOKEN" \
        -H 'Content-Type: application/json' --data "$3" -w $'\n%{http_code}' "http://127.0.0.1:$LK_APORT$2")" ||
        die "admin $1 $2 failed"
    code="${out##*$'\n'}"
    [[ "$code" == 2* ]] || die "admin $1 $2: HTTP $code: ${out%$'\n'*}"
    printf '%s' "${out%$'\n'*}"
}
admin PATCH /api/v1/providers/openai "{\"base_url\":\"http://127.0.0.1:$UP_PORT\"}" >/dev/null
admin POST /api/v1/credentials '{"provider":"openai","value":"sk-bench-secret","label":"bench","workloads":["production"]}' >/dev/null
KEY="$(admin POST /api/v1/keys '{"name":"soak","providers":["openai"]}' |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')"
[[ "$KEY" == lk_* ]] || die "no lk_ key"
URL="http://127.0.0.1:$LK_PORT/proxy/openai/v1/models"
# Any 200 or 500 proves the path works (500 = injected failure).
code="$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $KEY" "$URL")"
[[ "$code" == 200 || "$code" == 500 ]] || die "sanity request returned HTTP $code"

metrics() { curl -sS --max-time 5 -H "Authorization: Bearer $ADMIN_TOKEN" "http://127.0.0.1:$LK_APORT/metrics"; }
rss() { awk '/^VmRSS:/ { print $2 }' "/proc/$LK_PID/status"; }

RSS_BOOT="$(rss)"
log "capacity: wrk -c$CAP_CONNS -d$CAP_DURATION against $URL"
BENCH_AUTH="Bearer $KEY" wrk -t1 -c"$CAP_CONNS" -d"$CAP_DURATION" --timeout 5s -s benches/wrk/auth.lua "$URL" \
    >"$WORK/capacity.txt" 2>&1 || die "wrk failed: $(cat "$WORK/capacity.txt")"
line="$(grep '^WRK_RESULT' "$WORK/capacity.txt")"
CAP_REQS="$(sed -n 's/.* requests=\([0-9]*\).*/\1/p' <<<"$line")"
CAP_US="$(sed -n 's/.* duration_us=\([0-9]*\).*/\1/p' <<<"$line")"
CAP_STATUS="$(sed -n 's/.* err_status=\([0-9]*\).*/\1/p' <<<"$line")"
CAP_RPS="$(awk -v r="$CAP_REQS" -v d="$CAP_US" 'BEGIN { printf "%.0f", r / (d / 1e6) }')"
RATE=$((CAP_RPS * LOAD_PCT / 100))
RSS_START="$(rss)"
log "capacity $CAP_RPS req/s (non-2xx $CAP_STATUS of $CAP_REQS); soaking ${DURATION}s at $RATE req/s ($LOAD_PCT%) on $CONNS connections"
START_DATE="$(date -u '+%Y-%m-%d %H:%M:%S UTC')"
"$BIN/http_load" --url "$URL" --header "Authorization: Bearer $KEY" --conns "$CONNS" --rate "$RATE" \
    --duration "$DURATION" --interval "$INTERVAL" --watch-pid "$LK_PID" >"$WORK/soak.txt" 2>"$WORK/soak.err" &
LOAD_PID=$!
PIDS+=("$LOAD_PID")
wait "$LOAD_PID" || die "http_load failed: $(cat "$WORK/soak.err")"
kill -0 "$LK_PID" 2>/dev/null || die "latchkey died during the soak"
RSS_END="$(rss)"
metrics >"$WORK/metrics.txt" || die "GET /metrics failed"
cat "$WORK/soak.txt" >&2

kv() { sed -n "s/.*[[:space:]]$1=\([^[:space:]]*\).*/\1/p"; }
report() {
    echo "# Latchkey soak run"
    echo
    echo "- Date: $START_DATE (git $(git rev-parse --short HEAD 2>/dev/null || echo '?')), $(nproc) CPUs, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
    echo "- Command: \`SOAK_DURATION=$DURATION SOAK_INTERVAL=$INTERVAL SOAK_LOAD_PCT=$LOAD_PCT SOAK_FAIL_PERMILLE=$FAIL_PERMILLE SOAK_CONNS=$CONNS SOAK_CAPACITY_CONNS=$CAP_CONNS SOAK_CAPACITY_DURATION=$CAP_DURATION BENCH_PROXY_THREADS=$PROXY_THREADS benches/soak.sh\`"
    echo "- Path: \`GET /proxy/openai/v1/models\` through Latchkey (plain \`lk_\` key, credential injected and checked by the mock) → \`fast_upstream --fail-permille $FAIL_PERMILLE\` (answers 500 to $FAIL_PERMILLE‰ of the requests, deterministic pseudo-random), loopback; default circuit-breaker and retry settings."
    echo "- Capacity: wrk -t1 -c$CAP_CONNS -d$CAP_DURATION closed loop: **$CAP_RPS req/s** (with the injected 500s; $CAP_STATUS non-2xx of $CAP_REQS)."
    echo "- Soak load: \`benches/src/bin/http_load.rs\` at a fixed **$RATE req/s** ($LOAD_PCT%) over $CONNS connections (each on its own schedule; latency measured from the actual send), ${DURATION}s, reported every ${INTERVAL}s. *errors* are connection-level failures (connect, reset, 5 s timeout, malformed response); *5xx* are all 5xx answers the client saw; *other* are non-2xx non-5xx answers; *connects* are the TCP connections the client opened (equal to the requests when the gateway answers with close-delimited bodies)."
    echo "- Latchkey VmRSS: $RSS_BOOT kB after start, $RSS_START kB after the capacity pass, $RSS_END kB at the end."
    echo
    echo "| interval (${INTERVAL} s) | req/s | requests | 2xx | 5xx | 5xx % | other | errors | p50 (µs) | p99 (µs) | p99.9 (µs) | max (µs) | connects | Latchkey RSS (kB) |"
    echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    local l
    while read -r l; do
        echo "| $(kv n <<<"$l") | $(kv rps <<<"$l") | $(kv requests <<<"$l") | $(kv ok <<<"$l") | $(kv s5xx <<<"$l") | $(kv s5xx_pct <<<"$l") | $(kv sother <<<"$l") | $(kv errors <<<"$l") | $(kv total_p50_us <<<"$l") | $(kv total_p99_us <<<"$l") | $(kv total_p999_us <<<"$l") | $(kv total_max_us <<<"$l") | $(kv connects <<<"$l") | $(kv rss_kb <<<"$l") |"
    done < <(grep '^INTERVAL ' "$WORK/soak.txt")
    l="$(grep '^RESULT ' "$WORK/soak.txt")"
    echo "| **all** | $(kv rps <<<"$l") | $(kv requests <<<"$l") | $(kv ok <<<"$l") | $(kv s5xx <<<"$l") | $(kv s5xx_pct <<<"$l") | $(kv sother <<<"$l") | $(kv errors <<<"$l") | $(kv total_p50_us <<<"$l") | $(kv total_p99_us <<<"$l") | $(kv total_p999_us <<<"$l") | $(kv total_max_us <<<"$l") | $(kv connects <<<"$l") | $(kv rss_kb <<<"$l") |"
    echo
    echo "Gateway metrics at the end (admin \`GET /metrics\`):"
    echo
    echo '```'
    grep -E '^latchkey_(circuit_state|upstream_attempts_total|circuit)' "$WORK/metrics.txt" || echo "(no latchkey_circuit_state / latchkey_upstream_attempts_total series)"
    echo '```'
}
report >"$RESULTS"
cat "$RESULTS"
log "wrote $RESULTS"
