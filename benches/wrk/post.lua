-- wrk script for the `nopolicy` and `policy` paths of benches/run.sh (the policy-cost
-- benchmark): both paths send the very same request, only the proxy key differs.
--
-- * `POST` with the JSON body read from $BENCH_BODY_FILE (benches/wrk/chat-4k.json, a 4 KB
--   OpenAI chat request), `Content-Type: application/json`, and `Authorization: $BENCH_AUTH`.
-- * No request() function: wrk formats the request once per thread and resends those bytes,
--   so the client costs the same on both paths and no Lua runs per request.
-- * The same WRK_RESULT summary line as auth.lua.

local path = assert(os.getenv("BENCH_BODY_FILE"), "BENCH_BODY_FILE is not set")
local file = assert(io.open(path, "rb"), "cannot open BENCH_BODY_FILE " .. path)
local body = file:read("*a")
file:close()

wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = "application/json"
local auth = os.getenv("BENCH_AUTH")
if auth ~= nil and auth ~= "" then
  wrk.headers["Authorization"] = auth
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRK_RESULT requests=%d duration_us=%d bytes=%d p50_us=%.1f p90_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f mean_us=%.1f err_connect=%d err_read=%d err_write=%d err_status=%d err_timeout=%d\n",
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean,
    e.connect, e.read, e.write, e.status, e.timeout))
end
