#!/usr/bin/env bash
# Latchkey load harness.
#
# In one run, on loopback, measures with wrk:
#   direct    wrk -> fast_upstream
#   pingora   wrk -> bare Pingora passthrough -> fast_upstream
#   latchkey  wrk -> Latchkey (real lk_ proxy key, credential injection) -> fast_upstream
#   unlocked  the same Latchkey and plain key as `latchkey`, driven exactly like `locked` (same
#             wrk script, same extra headers, which an unlocked key ignores): the baseline
#             for the lock cost, so client-side work does not count against the locks
#   locked    the same Latchkey, with a key that has every lock armed: CIDR, geo (a generated
#             MaxMind database), device fingerprint, signed requests (pre-signed, one fresh
#             nonce per request), model allow-list, velocity thresholds
#   nopolicy  the same Latchkey, a plain key, POST /proxy/openai/v1/chat/completions with a 4 KB
#             OpenAI chat body (benches/wrk/chat-4k.json, wrk script benches/wrk/post.lua): the
#             baseline for the policy cost
#   policy    the same request with a key whose 20-rule policy (benches/wrk/policy-20-rules.toml)
#             reads the prompt, tools and tool arguments: the body is buffered, parsed once and
#             evaluated against every rule (none matches; the default `allow` forwards it)
#   pingora_post  the nopolicy request (same 4 KB body, same wrk script) through bare Pingora:
#             the baseline for nopolicy (nopolicy/pingora_post ratio)
#   sse       not wrk: benches' http_load (benches/src/bin/http_load.rs) sends a streamed chat
#             request (benches/wrk/chat-stream.json, "stream": true) to direct, bare Pingora and
#             Latchkey in turn; fast_upstream answers text/event-stream with BENCH_SSE_EVENTS
#             events BENCH_SSE_GAP_US apart (first one with the head) and data: [DONE]. Reports
#             time to first body byte (TTFB) and to the end of the stream, p50/p99, and the
#             TTFB Latchkey adds over bare Pingora
# at the full connection count and at half of it, and reports req/s, p50/p99,
# CPU per request of the proxy process (utime+stime delta from /proc/PID/stat
# divided by requests) and the latchkey/pingora, pingora/direct, locked/unlocked and
# policy/nopolicy ratios.
#
# The table is printed and written to benches/RESULTS.md.
#
# Environment (all optional):
#   BENCH_DURATION       measured wrk duration per pass            (10s)
#   BENCH_WARMUP         warm-up wrk duration before each pass, 0=off (2s)
#   BENCH_CONNS          wrk connections for the full-load pass     (32)
#   BENCH_HALF_CONNS     wrk connections for the half-load pass     (BENCH_CONNS/2, 0=skip)
#   BENCH_THREADS        wrk threads                                (1)
#   BENCH_PROXY_THREADS  worker threads of Latchkey and bare Pingora (LATCHKEY_THREADS or 1)
#   BENCH_UPSTREAM_THREADS  fast_upstream tokio workers             (1)
#   BENCH_ONLY           comma list of paths:
#                        direct,pingora,latchkey,unlocked,locked,nopolicy,policy,pingora_post,sse
#                        (all)
#   BENCH_POLICY         policy document (TOML) for the `policy` path; none of its rules may
#                        match benches/wrk/chat-4k.json     (benches/wrk/policy-20-rules.toml)
#   BENCH_SSE_CONNS      http_load connections of the sse pass     (16)
#   BENCH_SSE_EVENTS     events per streamed answer                 (20)
#   BENCH_SSE_GAP_US     pause between streamed events, µs          (1000)
#   BENCH_SKIP_BUILD=1   do not run cargo build
#   BENCH_UPSTREAM_AUTH  Authorization value the upstream insists on, i.e. the
#                        injected credential ("Bearer sk-bench-secret"; empty = no check)
#   BENCH_CREDENTIAL     credential value stored in Latchkey        (sk-bench-secret)
#   BENCH_WRK_CPUS / BENCH_PROXY_CPUS / BENCH_UPSTREAM_CPUS
#                        optional taskset CPU lists to pin each component
#   BENCH_LATCHKEY_ARGS  extra arguments appended to `latchkey serve`
#   BENCH_RESULTS        where to write the Markdown report        (benches/RESULTS.md)
#   BENCH_STARTUP_TIMEOUT  seconds to wait for a component to listen (60)
#   BENCH_KEEP=1         keep the scratch dir (logs, Latchkey data dir)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

DURATION="${BENCH_DURATION:-10s}"
WARMUP="${BENCH_WARMUP:-2s}"
CONNS="${BENCH_CONNS:-32}"
HALF_CONNS="${BENCH_HALF_CONNS:-$((CONNS / 2))}"
WRK_THREADS="${BENCH_THREADS:-1}"
PROXY_THREADS="${BENCH_PROXY_THREADS:-${LATCHKEY_THREADS:-1}}"
UPSTREAM_THREADS="${BENCH_UPSTREAM_THREADS:-1}"
ONLY="${BENCH_ONLY:-direct,pingora,latchkey,unlocked,locked,nopolicy,policy,pingora_post,sse}"
SSE_CONNS="${BENCH_SSE_CONNS:-16}"
SSE_EVENTS="${BENCH_SSE_EVENTS:-20}"
SSE_GAP_US="${BENCH_SSE_GAP_US:-1000}"
SSE_BODY="$ROOT/benches/wrk/chat-stream.json"
UPSTREAM_AUTH="${BENCH_UPSTREAM_AUTH-Bearer sk-bench-secret}"
CREDENTIAL="${BENCH_CREDENTIAL:-sk-bench-secret}"
RESULTS="${BENCH_RESULTS:-$ROOT/benches/RESULTS.md}"
STARTUP_TIMEOUT="${BENCH_STARTUP_TIMEOUT:-60}"
LUA="$ROOT/benches/wrk/auth.lua"
POST_LUA="$ROOT/benches/wrk/post.lua"
CHAT_BODY="$ROOT/benches/wrk/chat-4k.json"
POLICY_DOC="${BENCH_POLICY:-$ROOT/benches/wrk/policy-20-rules.toml}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="$TARGET_DIR/release"

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
    printf '\n[bench] ERROR: %s\n' "$*" >&2
    exit 1
}

# ---------------------------------------------------------------- validation
for v in CONNS HALF_CONNS WRK_THREADS PROXY_THREADS UPSTREAM_THREADS STARTUP_TIMEOUT SSE_CONNS SSE_EVENTS SSE_GAP_US; do
    [[ "${!v}" =~ ^[0-9]+$ ]] || die "$v must be a non-negative integer (got '${!v}')"
done
((CONNS > 0)) || die "BENCH_CONNS must be > 0"
((PROXY_THREADS > 0 && UPSTREAM_THREADS > 0 && WRK_THREADS > 0)) || die "thread counts must be > 0"
((WRK_THREADS <= CONNS)) || die "BENCH_THREADS ($WRK_THREADS) must be <= BENCH_CONNS ($CONNS)"
if ((HALF_CONNS > 0 && HALF_CONNS < WRK_THREADS)); then
    die "BENCH_HALF_CONNS ($HALF_CONNS) must be >= BENCH_THREADS ($WRK_THREADS)"
fi

# wrk duration string ("10s", "1m", "500ms" not supported by wrk) -> seconds, for timeouts.
dur_secs() {
    local d="$1"
    case "$d" in
        *h) echo $((${d%h} * 3600)) ;;
        *m) echo $((${d%m} * 60)) ;;
        *s) echo "${d%s}" ;;
        *) echo "$d" ;;
    esac
}
[[ "$(dur_secs "$DURATION")" =~ ^[0-9]+$ ]] || die "BENCH_DURATION must look like 10s, 2m or 15 (got '$DURATION')"
[[ "$(dur_secs "$WARMUP")" =~ ^[0-9]+$ ]] || die "BENCH_WARMUP must look like 2s or 0 (got '$WARMUP')"

declare -A WANT=()
PATHS=()
IFS=',' read -r -a _only <<<"$ONLY"
for p in "${_only[@]}"; do
    p="${p// /}"
    case "$p" in
        direct | pingora | latchkey | unlocked | locked | nopolicy | policy | pingora_post | sse) WANT[$p]=1 ;;
        "") ;;
        *) die "BENCH_ONLY: unknown path '$p' (valid: direct,pingora,latchkey,unlocked,locked,nopolicy,policy,pingora_post,sse)" ;;
    esac
done
# wrk paths (sse is a separate http_load pass).
for p in direct pingora latchkey unlocked locked nopolicy policy pingora_post; do
    if [[ -n "${WANT[$p]:-}" ]]; then PATHS+=("$p"); fi
done
((${#PATHS[@]} > 0)) || [[ -n "${WANT[sse]:-}" ]] || die "BENCH_ONLY selects nothing"
want() { [[ -n "${WANT[$1]:-}" ]]; }
# Whether any selected path goes through Latchkey / bare Pingora.
want_latchkey() { want latchkey || want unlocked || want locked || want nopolicy || want policy || want sse; }
want_pingora() { want pingora || want pingora_post || want sse; }

command -v wrk >/dev/null || die "wrk not found (apt-get install -y wrk)"
command -v curl >/dev/null || die "curl not found"
for f in "$LUA" "$POST_LUA" "$CHAT_BODY" "$POLICY_DOC" "$SSE_BODY"; do [[ -f "$f" ]] || die "missing $f"; done
# The policy's name, which labels its decisions in latchkey_policy_decisions_total.
POLICY_NAME="$(sed -n 's/^name[[:space:]]*=[[:space:]]*"\([^"]*\)".*/\1/p' "$POLICY_DOC" | head -n1)"
[[ -n "$POLICY_NAME" ]] || die "$POLICY_DOC has no top-level name = \"...\" line"
POLICY_RULES="$(grep -c '^\[\[rule\]\]' "$POLICY_DOC" || true)"

pin() { # pin CPULIST -> prefix words for a command
    if [[ -n "$1" ]]; then
        command -v taskset >/dev/null || die "taskset not found but a BENCH_*_CPUS variable is set"
        echo "taskset -c $1"
    fi
}
PIN_WRK="$(pin "${BENCH_WRK_CPUS:-}")"
PIN_PROXY="$(pin "${BENCH_PROXY_CPUS:-}")"
PIN_UPSTREAM="$(pin "${BENCH_UPSTREAM_CPUS:-}")"

# ---------------------------------------------------------------- processes
WORK="$(mktemp -d "${TMPDIR:-/tmp}/latchkey-bench.XXXXXX")"
PIDS=()
WRK_PID=""
cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    if [[ -n "${WRK_PID:-}" ]]; then kill -TERM "$WRK_PID" 2>/dev/null; fi
    local pid
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for _ in $(seq 1 30); do
        local alive=0
        for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        ((alive)) || break
        sleep 0.1
    done
    for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [[ -n "${BENCH_KEEP:-}" || $rc -ne 0 ]]; then
        log "logs kept in $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

declare -A TAKEN=()
free_port() {
    local p
    for _ in $(seq 1 200); do
        # Below Linux's default ephemeral range (32768-60999), so an outgoing connection of
        # another process cannot take the port between this check and the bind.
        p=$((20000 + RANDOM % 12000))
        [[ -n "${TAKEN[$p]:-}" ]] && continue
        # Something answering a connect means the port is in use.
        if ! (: <"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            TAKEN[$p]=1
            echo "$p"
            return 0
        fi
    done
    die "could not find a free loopback port"
}

# wait_listen NAME PID URL LOGFILE: poll URL until anything answers over HTTP.
wait_listen() {
    local name="$1" pid="$2" url="$3" logfile="$4"
    local deadline=$((SECONDS + STARTUP_TIMEOUT))
    while ((SECONDS < deadline)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "----- last lines of $logfile -----" >&2
            tail -n 40 "$logfile" >&2 || true
            die "$name exited during startup (see $logfile)"
        fi
        if curl -s -o /dev/null --max-time 1 "$url"; then
            return 0
        fi
        sleep 0.1
    done
    echo "----- last lines of $logfile -----" >&2
    tail -n 40 "$logfile" >&2 || true
    die "$name did not start listening at $url within ${STARTUP_TIMEOUT}s (see $logfile)"
}

# cpu_ticks PID -> utime+stime of the whole process (all threads), in clock ticks.
cpu_ticks() {
    local stat
    stat="$(cat "/proc/$1/stat" 2>/dev/null)" || die "process $1 is gone (crashed during the run?)"
    # Fields after "(comm)": 3=state ... 14=utime 15=stime -> \$12 \$13 of the rest.
    awk '{ print $12 + $13 }' <<<"${stat##*) }"
}
CLK_TCK="$(getconf CLK_TCK)"

# ---------------------------------------------------------------- build
if [[ -z "${BENCH_SKIP_BUILD:-}" ]]; then
    log "building latchkey-benches (release)"
    cargo build --release -p latchkey-benches || die "cargo build -p latchkey-benches failed"
    if want_latchkey; then
        log "building latchkey (release)"
        cargo build --release --bin latchkey || die "cargo build --bin latchkey failed (run with BENCH_ONLY=direct,pingora to skip it)"
    fi
fi
for b in fast_upstream bare_pingora http_load; do
    [[ -x "$BIN/$b" ]] || die "$BIN/$b not built"
done
if want_latchkey; then [[ -x "$BIN/latchkey" ]] || die "$BIN/latchkey not built"; fi

# ---------------------------------------------------------------- start components
UP_PORT="$(free_port)"
log "starting fast_upstream on 127.0.0.1:$UP_PORT ($UPSTREAM_THREADS thread(s))"
up_args=(--port "$UP_PORT" --threads "$UPSTREAM_THREADS" --sse-events "$SSE_EVENTS" --sse-gap-us "$SSE_GAP_US")
if [[ -n "$UPSTREAM_AUTH" ]]; then up_args+=(--require-auth "$UPSTREAM_AUTH"); fi
$PIN_UPSTREAM "$BIN/fast_upstream" "${up_args[@]}" >"$WORK/upstream.log" 2>&1 &
UP_PID=$!
PIDS+=("$UP_PID")
wait_listen fast_upstream "$UP_PID" "http://127.0.0.1:$UP_PORT/" "$WORK/upstream.log"

declare -A URL=() AUTH=() PID_OF=() LUA_OF=()
URL[direct]="http://127.0.0.1:$UP_PORT/v1/models"
AUTH[direct]="$UPSTREAM_AUTH"
PID_OF[direct]=""

if want_pingora; then
    PG_PORT="$(free_port)"
    log "starting bare_pingora on 127.0.0.1:$PG_PORT ($PROXY_THREADS thread(s))"
    $PIN_PROXY "$BIN/bare_pingora" --listen "127.0.0.1:$PG_PORT" --upstream "127.0.0.1:$UP_PORT" \
        --threads "$PROXY_THREADS" >"$WORK/bare_pingora.log" 2>&1 &
    PG_PID=$!
    PIDS+=("$PG_PID")
    wait_listen bare_pingora "$PG_PID" "http://127.0.0.1:$PG_PORT/" "$WORK/bare_pingora.log"
    URL[pingora]="http://127.0.0.1:$PG_PORT/v1/models"
    AUTH[pingora]="$UPSTREAM_AUTH"
    PID_OF[pingora]="$PG_PID"
    URL[pingora_post]="http://127.0.0.1:$PG_PORT/v1/chat/completions"
    AUTH[pingora_post]="$UPSTREAM_AUTH"
    PID_OF[pingora_post]="$PG_PID"
    LUA_OF[pingora_post]="$POST_LUA"
fi

LATCHKEY_CMD=""
if want_latchkey; then
    LK_PORT="$(free_port)"
    LK_APORT="$(free_port)"
    LK_DATA="$WORK/latchkey-data"
    mkdir -p "$LK_DATA"
    # shellcheck disable=SC2206
    lk_extra=(${BENCH_LATCHKEY_ARGS:-})
    LATCHKEY_CMD="LATCHKEY_ALLOW_PRIVATE_UPSTREAMS=1 LATCHKEY_THREADS=$PROXY_THREADS latchkey serve --data-dir DIR --listen 127.0.0.1:PORT --admin-listen 127.0.0.1:APORT${BENCH_LATCHKEY_ARGS:+ $BENCH_LATCHKEY_ARGS}"
    log "starting latchkey on 127.0.0.1:$LK_PORT, admin 127.0.0.1:$LK_APORT ($PROXY_THREADS thread(s))"
    "$BIN/make_geo_db" "$WORK/geo.mmdb" "127.0.0.0/8=US:San Francisco" "10.0.0.0/8=DE:Berlin" ||
        die "make_geo_db failed"
    LATCHKEY_ALLOW_PRIVATE_UPSTREAMS=1 LATCHKEY_THREADS="$PROXY_THREADS" LATCHKEY_GEOIP_DATABASE="$WORK/geo.mmdb" \
        $PIN_PROXY "$BIN/latchkey" serve --data-dir "$LK_DATA" \
        --listen "127.0.0.1:$LK_PORT" --admin-listen "127.0.0.1:$LK_APORT" \
        "${lk_extra[@]}" >"$WORK/latchkey.log" 2>&1 &
    LK_PID=$!
    PIDS+=("$LK_PID")
    wait_listen "latchkey admin API" "$LK_PID" "http://127.0.0.1:$LK_APORT/" "$WORK/latchkey.log"
    wait_listen "latchkey data plane" "$LK_PID" "http://127.0.0.1:$LK_PORT/" "$WORK/latchkey.log"

    deadline=$((SECONDS + STARTUP_TIMEOUT))
    until [[ -s "$LK_DATA/admin-token" ]]; do
        ((SECONDS < deadline)) || die "latchkey did not write $LK_DATA/admin-token within ${STARTUP_TIMEOUT}s"
        sleep 0.1
    done
    ADMIN_TOKEN="$(tr -d '[:space:]' <"$LK_DATA/admin-token")"

    # admin METHOD PATH JSON -> prints response body, fails unless 2xx.
    admin() {
        local method="$1" path="$2" body="$3" out code
        out="$(curl -sS --max-time 10 -X "$method" \
            -H "Authorization: Bearer $ADMIN_TOKEN" -H 'Content-Type: application/json' \
            --data "$body" -w $'\n%{http_code}' "http://127.0.0.1:$LK_APORT$path")" ||
            die "admin $method $path: curl failed"
        code="${out##*$'\n'}"
        out="${out%$'\n'*}"
        [[ "$code" == 2* ]] || die "admin $method $path returned HTTP $code: $out"
        printf '%s' "$out"
    }
    log "configuring latchkey through the admin API"
    admin PATCH /api/v1/providers/openai "{\"base_url\":\"http://127.0.0.1:$UP_PORT\"}" >/dev/null
    admin POST /api/v1/credentials \
        "{\"provider\":\"openai\",\"value\":\"$CREDENTIAL\",\"label\":\"bench\",\"workloads\":[\"production\"]}" >/dev/null
    key_json="$(admin POST /api/v1/keys '{"name":"bench","providers":["openai"]}')"
    if command -v jq >/dev/null; then
        PROXY_KEY="$(jq -r '.key // empty' <<<"$key_json")"
    else
        PROXY_KEY="$(sed -n 's/.*"key"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p' <<<"$key_json" | head -n1)"
    fi
    [[ "$PROXY_KEY" == lk_* ]] || die "POST /api/v1/keys did not return an lk_ key: $key_json"

    URL[latchkey]="http://127.0.0.1:$LK_PORT/proxy/openai/v1/models"
    AUTH[latchkey]="Bearer $PROXY_KEY"
    PID_OF[latchkey]="$LK_PID"

    locked_json="$(admin POST /api/v1/keys '{"name":"bench-locked","providers":["openai"],"ip":"127.0.0.0/8","countries":["US"],"cities":["San Francisco"],"device_fingerprint":"bench-device-1","signed":true,"models":["gpt-4o-mini"],"velocity":{"window_secs":60,"max_requests":1000000000,"max_distinct_ips":100}}')"
    json_field() { python3 -c 'import json,sys; print(json.loads(sys.stdin.read())[sys.argv[1]])' "$1"; }
    LOCKED_KEY="$(json_field key <<<"$locked_json")"
    SIGNING_SECRET="$(json_field signing_secret <<<"$locked_json")"
    [[ "$LOCKED_KEY" == lk_* && -n "$SIGNING_SECRET" ]] || die "could not create the locked key: $locked_json"
    URL[locked]="http://127.0.0.1:$LK_PORT/proxy/openai/v1/models"
    AUTH[locked]="Bearer $LOCKED_KEY"
    PID_OF[locked]="$LK_PID"
    LUA_OF[locked]="$ROOT/benches/wrk/locked.lua"
    URL[unlocked]="${URL[latchkey]}"
    AUTH[unlocked]="${AUTH[latchkey]}"
    PID_OF[unlocked]="$LK_PID"
    LUA_OF[unlocked]="$ROOT/benches/wrk/locked.lua"

    # Policy cost: two fresh plain keys created alike, the second with the 20-rule policy
    # attached; both paths send the same 4 KB chat body with the same wrk script.
    CHAT_URL="http://127.0.0.1:$LK_PORT/proxy/openai/v1/chat/completions"
    nopolicy_json="$(admin POST /api/v1/keys '{"name":"bench-nopolicy","providers":["openai"]}')"
    policy_json="$(admin POST /api/v1/keys '{"name":"bench-policy","providers":["openai"]}')"
    NOPOLICY_KEY="$(json_field key <<<"$nopolicy_json")"
    POLICY_KEY="$(json_field key <<<"$policy_json")"
    POLICY_KEY_ID="$(json_field id <<<"$policy_json")"
    [[ "$NOPOLICY_KEY" == lk_* && "$POLICY_KEY" == lk_* && -n "$POLICY_KEY_ID" ]] ||
        die "could not create the policy-cost keys: $nopolicy_json $policy_json"
    policy_body="$(python3 -c 'import json,sys; print(json.dumps({"document": open(sys.argv[1]).read(), "key": sys.argv[2]}))' \
        "$POLICY_DOC" "$POLICY_KEY_ID")"
    admin POST /api/v1/policies "$policy_body" >/dev/null
    for p in nopolicy policy; do
        URL[$p]="$CHAT_URL"
        PID_OF[$p]="$LK_PID"
        LUA_OF[$p]="$POST_LUA"
    done
    AUTH[nopolicy]="Bearer $NOPOLICY_KEY"
    AUTH[policy]="Bearer $POLICY_KEY"
fi

# policy_decisions ACTION -> latchkey_policy_decisions_total of the bench policy for ACTION
# (enforce mode), from the admin listener's /metrics (0 when the series does not exist yet).
policy_decisions() {
    local text
    text="$(curl -sS --max-time 5 -H "Authorization: Bearer $ADMIN_TOKEN" "http://127.0.0.1:$LK_APORT/metrics")" ||
        die "GET /metrics failed"
    awk -v pol="$POLICY_NAME" -v act="$1" '
        /^latchkey_policy_decisions_total\{/ && index($0, "policy=\"" pol "\"") &&
            index($0, "action=\"" act "\"") && index($0, "mode=\"enforce\"") { s += $NF }
        END { printf "%d\n", s }' <<<"$text"
}
# policy_outcomes -> "allow=N other=M": how the bench policy decided so far. Every decision
# must be the default allow (no rule matches the bench body).
policy_outcomes() {
    local a other=0 n
    a="$(policy_decisions allow)"
    for n in block warn hold route redact; do other=$((other + $(policy_decisions "$n"))); done
    echo "allow=$a other=$other"
}

# sign_for PATH_URL COUNT -> writes $WORK/signed.txt with COUNT pre-signed requests.
sign_for() {
    local path="/${1#http://*/}"
    python3 "$ROOT/benches/wrk/sign_requests.py" "$SIGNING_SECRET" "$2" GET "$path" >"$WORK/signed.txt" ||
        die "sign_requests.py failed"
}

# Every path must return 200 before we load it (with the upstream checking the
# Authorization header, a 200 through latchkey proves the credential was injected).
for p in "${PATHS[@]}"; do
    hdr=()
    if [[ -n "${AUTH[$p]}" ]]; then hdr=(-H "Authorization: ${AUTH[$p]}"); fi
    if [[ "$p" == locked || "$p" == unlocked ]]; then
        sign_for "${URL[$p]}" 1
        read -r ts nonce sig <"$WORK/signed.txt"
        hdr+=(-H "x-device-fingerprint: bench-device-1" -H "x-latchkey-timestamp: $ts"
            -H "x-latchkey-nonce: $nonce" -H "x-latchkey-signature: $sig")
    fi
    if [[ "$p" == nopolicy || "$p" == policy || "$p" == pingora_post ]]; then
        hdr+=(-H 'Content-Type: application/json' --data-binary "@$CHAT_BODY")
    fi
    code="$(curl -s -o "$WORK/check.$p" -w '%{http_code}' --max-time 5 "${hdr[@]}" "${URL[$p]}" || true)"
    [[ "$code" == 200 ]] || die "sanity request for '$p' (${URL[$p]}) returned HTTP ${code:-none}: $(head -c 300 "$WORK/check.$p" 2>/dev/null)"
done
if want policy; then
    # The policy must have decided the sanity request, and by its default: a rule matching
    # the bench body would measure a different outcome instead of the evaluation cost.
    [[ "$(policy_outcomes)" == "allow=1 other=0" ]] ||
        die "the bench policy did not decide the sanity request with its default allow ($(policy_outcomes)); does a rule in $POLICY_DOC match $CHAT_BODY?"
fi
if want sse; then
    # The streamed request must come back as an event stream ending with [DONE] on each hop.
    for u in "http://127.0.0.1:$UP_PORT/v1/chat/completions|$UPSTREAM_AUTH" \
        "http://127.0.0.1:$PG_PORT/v1/chat/completions|$UPSTREAM_AUTH" "$CHAT_URL|Bearer $PROXY_KEY"; do
        out="$(curl -sS -N --max-time 10 -D - -H "Authorization: ${u#*|}" -H 'Content-Type: application/json' \
            --data-binary "@$SSE_BODY" "${u%%|*}" 2>&1 || true)"
        grep -qi '^content-type: text/event-stream' <<<"$out" && grep -q '^data: \[DONE\]' <<<"$out" ||
            die "sanity streamed request to ${u%%|*} did not return an event stream ending with [DONE]: $(head -c 400 <<<"$out")"
    done
fi
log "all paths answer 200: ${PATHS[*]}${WANT[sse]:+ sse}"

# ---------------------------------------------------------------- load
declare -A RPS=() P50=() P99=() P999=() PCPU=() UCPU=() ERRS=() REQS=() POLICY_EVALS=()

# run_wrk PATH CONNS DURATION -> sets WRK_OUT
run_wrk() {
    local p="$1" c="$2" d="$3" limit
    limit=$(($(dur_secs "$d") + 30))
    # Run in the background and `wait`, so INT/TERM interrupt the run at once.
    if [[ "$p" == locked || "$p" == unlocked ]]; then
        # One fresh nonce per request: sign more than this machine can send in $d.
        sign_for "${URL[$p]}" $((60000 * $(dur_secs "$d") + 10000))
    fi
    BENCH_AUTH="${AUTH[$p]}" BENCH_DEVICE=bench-device-1 BENCH_SIGNED_FILE="$WORK/signed.txt" BENCH_BODY_FILE="$CHAT_BODY" \
        timeout "$limit" $PIN_WRK wrk -t"$WRK_THREADS" -c"$c" -d"$d" \
        --timeout 5s -s "${LUA_OF[$p]:-$LUA}" "${URL[$p]}" >"$WORK/wrk.out" 2>&1 &
    WRK_PID=$!
    local rc=0
    wait "$WRK_PID" || rc=$?
    WRK_PID=""
    WRK_OUT="$(cat "$WORK/wrk.out")"
    if ((rc == 124)); then die "wrk against $p did not finish within ${limit}s: $WRK_OUT"; fi
    ((rc == 0)) || die "wrk against $p failed (exit $rc): $WRK_OUT"
}

field() { # field NAME <<< WRK_RESULT line
    sed -n "s/.*[[:space:]]$1=\([^[:space:]]*\).*/\1/p"
}

measure() {
    local p="$1" c="$2" k="$1,$2"
    if [[ "$(dur_secs "$WARMUP")" -gt 0 ]]; then
        log "$p: warm-up ${WARMUP} at -c$c"
        run_wrk "$p" "$c" "$WARMUP"
    fi
    local ppid="${PID_OF[$p]}" p0=0 p1=0 u0 u1 d0=""
    if [[ "$p" == policy ]]; then d0="$(policy_outcomes)"; fi
    if [[ -n "$ppid" ]]; then p0="$(cpu_ticks "$ppid")"; fi
    u0="$(cpu_ticks "$UP_PID")"
    log "$p: measuring ${DURATION} at -t$WRK_THREADS -c$c"
    run_wrk "$p" "$c" "$DURATION"
    if [[ -n "$ppid" ]]; then p1="$(cpu_ticks "$ppid")"; fi
    u1="$(cpu_ticks "$UP_PID")"

    printf '%s\n' "$WRK_OUT" >"$WORK/wrk.$p.c$c.txt"
    local line
    line="$(grep '^WRK_RESULT ' <<<"$WRK_OUT" | tail -n1 || true)"
    [[ -n "$line" ]] || die "no WRK_RESULT line from wrk for $p: $WRK_OUT"
    local reqs dur_us
    reqs="$(field requests <<<"$line")"
    dur_us="$(field duration_us <<<"$line")"
    [[ "$reqs" =~ ^[0-9]+$ && "$reqs" -gt 0 ]] || die "wrk completed 0 requests against $p"
    REQS[$k]="$reqs"
    RPS[$k]="$(awk -v r="$reqs" -v d="$dur_us" 'BEGIN { printf "%.0f", r / (d / 1e6) }')"
    P50[$k]="$(field p50_us <<<"$line")"
    P99[$k]="$(field p99_us <<<"$line")"
    P999[$k]="$(field p999_us <<<"$line")"
    ERRS[$k]="$(awk -v l="$line" 'BEGIN { n = split(l, a, " "); s = 0
        for (i = 1; i <= n; i++) if (a[i] ~ /^err_/) { split(a[i], kv, "="); s += kv[2] }
        print s }')"
    UCPU[$k]="$(awk -v a="$u0" -v b="$u1" -v t="$CLK_TCK" -v r="$reqs" 'BEGIN { printf "%.2f", (b - a) / t * 1e6 / r }')"
    if [[ -n "$ppid" ]]; then
        PCPU[$k]="$(awk -v a="$p0" -v b="$p1" -v t="$CLK_TCK" -v r="$reqs" 'BEGIN { printf "%.2f", (b - a) / t * 1e6 / r }')"
    else
        PCPU[$k]=""
    fi
    if [[ "${ERRS[$k]}" -gt 0 ]]; then
        log "WARNING: $p at -c$c had ${ERRS[$k]} errors/non-2xx responses: $line"
    fi
    if [[ -n "$d0" ]]; then
        # Every measured request was evaluated by the policy and allowed by its default.
        local d1 a0 a1
        d1="$(policy_outcomes)"
        a0="$(sed -n 's/^allow=\([0-9]*\) .*/\1/p' <<<"$d0")"
        a1="$(sed -n 's/^allow=\([0-9]*\) .*/\1/p' <<<"$d1")"
        [[ "${d1#* }" == "other=0" ]] || die "the bench policy decided something other than allow during the $p pass ($d1)"
        ((a1 - a0 >= reqs)) || die "only $((a1 - a0)) policy decisions for $reqs requests in the $p pass"
        POLICY_EVALS[$k]=$((a1 - a0))
    fi
    log "$p -c$c: ${RPS[$k]} req/s, p50 ${P50[$k]}us, p99 ${P99[$k]}us, proxy CPU ${PCPU[$k]:-n/a} us/req, upstream CPU ${UCPU[$k]} us/req"
}

LEVELS=("$CONNS")
if ((HALF_CONNS > 0 && HALF_CONNS != CONNS)); then LEVELS+=("$HALF_CONNS"); fi
START_DATE="$(date -u '+%Y-%m-%d %H:%M:%S UTC')"
for c in "${LEVELS[@]}"; do
    for p in "${PATHS[@]}"; do
        measure "$p" "$c"
    done
done

# ---------------------------------------------------------------- sse (http_load)
declare -A SSE=() SSE_CPU=()
SSE_HOPS=(direct pingora latchkey)
# run_sse HOP DURATION_SECS -> prints http_load's RESULT line
run_sse() {
    local hop="$1" d="$2" url auth
    case "$hop" in
        direct) url="http://127.0.0.1:$UP_PORT/v1/chat/completions" auth="$UPSTREAM_AUTH" ;;
        pingora) url="http://127.0.0.1:$PG_PORT/v1/chat/completions" auth="$UPSTREAM_AUTH" ;;
        latchkey) url="$CHAT_URL" auth="Bearer $PROXY_KEY" ;;
    esac
    timeout $((d + 30)) $PIN_WRK "$BIN/http_load" --url "$url" --method POST --body-file "$SSE_BODY" \
        --header "Authorization: $auth" --header 'Content-Type: application/json' \
        --conns "$SSE_CONNS" --duration "$d" >"$WORK/sse.out" 2>&1 || die "http_load against sse $hop failed: $(cat "$WORK/sse.out")"
    grep '^RESULT ' "$WORK/sse.out" | tail -n1
}
if want sse; then
    for hop in "${SSE_HOPS[@]}"; do
        if [[ "$(dur_secs "$WARMUP")" -gt 0 ]]; then
            log "sse $hop: warm-up ${WARMUP}"
            run_sse "$hop" "$(dur_secs "$WARMUP")" >/dev/null
        fi
        ppid=""
        case "$hop" in pingora) ppid="$PG_PID" ;; latchkey) ppid="$LK_PID" ;; esac
        if [[ -n "$ppid" ]]; then c0="$(cpu_ticks "$ppid")"; fi
        log "sse $hop: measuring $(dur_secs "$DURATION")s at $SSE_CONNS connections"
        SSE[$hop]="$(run_sse "$hop" "$(dur_secs "$DURATION")")"
        if [[ -n "$ppid" ]]; then
            c1="$(cpu_ticks "$ppid")"
            SSE_CPU[$hop]="$(awk -v a="$c0" -v b="$c1" -v t="$CLK_TCK" -v r="$(field requests <<<"${SSE[$hop]}")" \
                'BEGIN { printf "%.1f", (b - a) / t * 1e6 / r }')"
        fi
        log "sse $hop: ${SSE[$hop]}"
    done
fi

# ---------------------------------------------------------------- report
fmt_lat() { awk -v v="$1" 'BEGIN { printf "%.0f", v }'; }
total_cpu() { # proxy + upstream CPU per request
    awk -v a="${PCPU[$1]:-0}" -v b="${UCPU[$1]}" 'BEGIN { printf "%.2f", a + b }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b + 0 == 0) print "n/a"; else if (a / b < 0.1) printf "%.3f", a / b; else printf "%.2f", a / b }'; }
delta() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%+.0f", a - b }'; }

CPU_MODEL="$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
[[ -n "$CPU_MODEL" ]] || CPU_MODEL="$(uname -m)"
GIT_REV="$(git rev-parse --short HEAD 2>/dev/null || echo 'uncommitted')"
ENV_DESC="BENCH_DURATION=$DURATION BENCH_WARMUP=$WARMUP BENCH_CONNS=$CONNS BENCH_HALF_CONNS=$HALF_CONNS BENCH_THREADS=$WRK_THREADS BENCH_PROXY_THREADS=$PROXY_THREADS BENCH_UPSTREAM_THREADS=$UPSTREAM_THREADS BENCH_ONLY=$(
    IFS=,
    echo "${PATHS[*]}${WANT[sse]:+,sse}"
)"
for v in BENCH_WRK_CPUS BENCH_PROXY_CPUS BENCH_UPSTREAM_CPUS BENCH_POLICY; do
    if [[ -n "${!v:-}" ]]; then ENV_DESC+=" $v=${!v}"; fi
done

report() {
    echo "# Latchkey load-harness results"
    echo
    echo "- Date: $START_DATE (git $GIT_REV)"
    echo "- Machine: $(nproc) CPUs, $CPU_MODEL, Linux $(uname -r)"
    echo "- Command: \`$ENV_DESC benches/run.sh\`"
    echo "- Load: \`wrk -t$WRK_THREADS -c<conns> -d$DURATION --timeout 5s -s benches/wrk/auth.lua <url>\`, ${WARMUP} warm-up before each pass, $(wrk --version 2>&1 | head -n1 | awk '{print $1, $2}')"
    echo "- Threads: proxy (Latchkey and bare Pingora) $PROXY_THREADS, fast_upstream $UPSTREAM_THREADS, wrk $WRK_THREADS"
    echo "- Paths (all loopback, same upstream, 92-byte JSON response):"
    if want direct; then echo "  - \`direct\`: wrk → fast_upstream \`GET /v1/models\`"; fi
    if want pingora; then echo "  - \`pingora\`: wrk → bare Pingora 0.9.1 passthrough (\`benches/src/bin/bare_pingora.rs\`) → fast_upstream"; fi
    if want latchkey; then echo "  - \`latchkey\`: wrk → \`$LATCHKEY_CMD\` \`GET /proxy/openai/v1/models\` with an \`lk_\` key → fast_upstream (which answers 401 unless the stored credential was injected)"; fi
    if want unlocked; then echo "  - \`unlocked\`: the \`latchkey\` key driven exactly like \`locked\` (same wrk script and headers, which an unlocked key ignores and Latchkey strips): the baseline for the lock cost"; fi
    if want locked; then echo "  - \`locked\`: the same Latchkey process and request, with a key that has every lock armed: IP \`127.0.0.0/8\`, country US + city San Francisco (generated MaxMind database), device fingerprint header, signed requests (a fresh nonce and HMAC per request, pre-signed by \`benches/wrk/sign_requests.py\`, wrk script \`benches/wrk/locked.lua\`), model allow-list, velocity thresholds"; fi
    if want nopolicy; then echo "  - \`nopolicy\`: the same Latchkey process, \`POST /proxy/openai/v1/chat/completions\` with a 4 096-byte OpenAI chat body (\`benches/wrk/chat-4k.json\`: system prompt, code-review conversation with a tool call and its result, two tools offered) and a plain key, wrk script \`benches/wrk/post.lua\`: the baseline for the policy cost (Latchkey streams the body through without reading it)"; fi
    if want policy; then echo "  - \`policy\`: the same request with a key whose $POLICY_RULES-rule policy (\`${POLICY_DOC#"$ROOT"/}\`$(
        if [[ "$POLICY_DOC" == "$ROOT/benches/wrk/policy-20-rules.toml" ]]; then
            echo ": prompt substrings and regexes, tool globs, tool-argument substrings and regexes, models, headers, paths, methods, workloads; block/warn/hold/route"
        fi
    )) reads the prompt: Latchkey buffers the body, parses it once and evaluates every rule (none matches; the default \`allow\` forwards it — checked through \`latchkey_policy_decisions_total\`)"; fi
    if want pingora_post; then echo "  - \`pingora_post\`: the \`nopolicy\` request (same 4 KB body, same wrk script \`benches/wrk/post.lua\`) through bare Pingora to fast_upstream \`POST /v1/chat/completions\`: the baseline for \`nopolicy\`"; fi
    echo "- CPU/req = (utime+stime delta from \`/proc/PID/stat\` over the measured pass) / requests. *Proxy* is the proxy process alone; *total* adds fast_upstream (for \`direct\` it is the upstream alone)."
    echo
    echo "| path | conns | req/s | p50 (µs) | p99 (µs) | p99.9 (µs) | proxy CPU/req (µs) | total CPU/req (µs) | errors |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    local c p k
    for c in "${LEVELS[@]}"; do
        for p in "${PATHS[@]}"; do
            k="$p,$c"
            echo "| $p | $c | ${RPS[$k]} | $(fmt_lat "${P50[$k]}") | $(fmt_lat "${P99[$k]}") | $(fmt_lat "${P999[$k]}") | ${PCPU[$k]:-—} | $(total_cpu "$k") | ${ERRS[$k]} |"
        done
    done
    local pairs=()
    if want latchkey && want pingora; then pairs+=("latchkey pingora"); fi
    if want locked && want unlocked; then pairs+=("locked unlocked"); fi
    if want policy && want nopolicy; then pairs+=("policy nopolicy"); fi
    if want nopolicy && want pingora_post; then pairs+=("nopolicy pingora_post"); fi
    if want pingora && want direct; then pairs+=("pingora direct"); fi
    if want latchkey && want direct && ! want pingora; then pairs+=("latchkey direct"); fi
    if ((${#pairs[@]} > 0)); then
        echo
        echo "| ratio | conns | req/s | proxy CPU/req | total CPU/req | added p50 (µs) | added p99 (µs) |"
        echo "|---|---:|---:|---:|---:|---:|---:|"
        local pair a b ka kb pc
        for c in "${LEVELS[@]}"; do
            for pair in "${pairs[@]}"; do
                read -r a b <<<"$pair"
                ka="$a,$c"
                kb="$b,$c"
                pc="$(ratio "${PCPU[$ka]:-}" "${PCPU[$kb]:-}")"
                echo "| $a/$b | $c | $(ratio "${RPS[$ka]}" "${RPS[$kb]}") | $pc | $(ratio "$(total_cpu "$ka")" "$(total_cpu "$kb")") | $(delta "${P50[$ka]}" "${P50[$kb]}") | $(delta "${P99[$ka]}" "${P99[$kb]}") |"
            done
        done
    fi
    if want policy; then
        local evals=()
        for c in "${LEVELS[@]}"; do evals+=("-c$c: ${POLICY_EVALS[policy,$c]} for ${REQS[policy,$c]} requests"); done
        echo
        echo "Policy decisions during the measured \`policy\` passes (\`latchkey_policy_decisions_total\`, all by the default \`allow\`, none by a rule): $(
            IFS=';'
            echo "${evals[*]}" | sed 's/;/; /g'
        ). Counted when the gateway decides, so requests still in flight when wrk stops add a few."
    fi
    if want sse; then
        echo
        echo "### Streaming (SSE): time to first byte"
        echo
        echo "\`benches/src/bin/http_load.rs\`, closed loop, $SSE_CONNS keep-alive connections, $(dur_secs "$DURATION") s per hop (after ${WARMUP} warm-up): \`POST .../v1/chat/completions\` with \`benches/wrk/chat-stream.json\` (\`\"stream\": true\`); fast_upstream answers \`text/event-stream\` (chunked) with $SSE_EVENTS chat-completion-chunk events, the first written with the response head, the next ones ${SSE_GAP_US} µs apart, then \`data: [DONE]\`. *TTFB* = request written → first byte of response body data (a proxy that sent the head early but held the first event back would still show); *stream* = request written → end of the stream. Hops: \`direct\` → fast_upstream; \`pingora\` → bare Pingora → fast_upstream; \`latchkey\` → Latchkey (\`/proxy/openai/v1/chat/completions\`, plain \`lk_\` key) → fast_upstream."
        echo
        echo "| hop | streams/s | TTFB p50 (µs) | TTFB p99 (µs) | TTFB p99.9 (µs) | stream p50 (µs) | stream p99 (µs) | proxy CPU/stream (µs) | TCP connects | errors / non-2xx |"
        echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        local h l
        for h in "${SSE_HOPS[@]}"; do
            l="${SSE[$h]}"
            echo "| $h | $(field rps <<<"$l") | $(field ttfb_p50_us <<<"$l") | $(field ttfb_p99_us <<<"$l") | $(field ttfb_p999_us <<<"$l") | $(field total_p50_us <<<"$l") | $(field total_p99_us <<<"$l") | ${SSE_CPU[$h]:-—} | $(field connects <<<"$l") | $(($(field errors <<<"$l") + $(field s5xx <<<"$l") + $(field sother <<<"$l"))) |"
        done
        echo
        echo "| added by | TTFB p50 (µs) | TTFB p99 (µs) | stream p50 (µs) | stream p99 (µs) |"
        echo "|---|---:|---:|---:|---:|"
        local pr a b
        for pr in "latchkey pingora" "pingora direct" "latchkey direct"; do
            read -r a b <<<"$pr"
            echo "| $a − $b | $(delta "$(field ttfb_p50_us <<<"${SSE[$a]}")" "$(field ttfb_p50_us <<<"${SSE[$b]}")") | $(delta "$(field ttfb_p99_us <<<"${SSE[$a]}")" "$(field ttfb_p99_us <<<"${SSE[$b]}")") | $(delta "$(field total_p50_us <<<"${SSE[$a]}")" "$(field total_p50_us <<<"${SSE[$b]}")") | $(delta "$(field total_p99_us <<<"${SSE[$a]}")" "$(field total_p99_us <<<"${SSE[$b]}")") |"
        done
    fi
    echo
    echo "Notes: wrk's p50/p99 are closed-loop latencies (each connection waits for its response before sending the next request), so at full load they mostly reflect queueing at the slowest component; the half-load pass (-c$HALF_CONNS) shows the per-request latency each layer adds with less queueing. All components share $(nproc) CPUs with wrk itself, so absolute numbers are machine-bound — compare the ratios."
}

REPORT="$(report)"
if [[ -f "$ROOT/benches/analysis.md" ]]; then
    REPORT+=$'\n\n'"$(cat "$ROOT/benches/analysis.md")"
fi
printf '\n%s\n' "$REPORT"
mkdir -p "$(dirname "$RESULTS")"
printf '%s\n' "$REPORT" >"$RESULTS"
log "wrote $RESULTS"
