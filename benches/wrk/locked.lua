-- wrk script for the `locked` path of benches/run.sh: a proxy key with every lock armed.
--
-- * `Authorization: $BENCH_AUTH` and `x-device-fingerprint: $BENCH_DEVICE` on every request.
-- * Signed-request headers from $BENCH_SIGNED_FILE, one pre-signed line per request
--   ("<timestamp> <nonce> <signature>", written by sign_requests.py), so every request carries
--   a fresh nonce.
-- * The same WRK_RESULT summary line as auth.lua.

local auth = os.getenv("BENCH_AUTH")
local device = os.getenv("BENCH_DEVICE")
local file = assert(io.open(os.getenv("BENCH_SIGNED_FILE"), "r"), "BENCH_SIGNED_FILE")

function request()
  local line = file:read("*l")
  if line == nil then
    file:seek("set", 0) -- out of signatures: replays will be refused and counted as errors
    line = file:read("*l")
  end
  local ts, nonce, sig = line:match("^(%S+) (%S+) (%S+)$")
  local h = {
    ["Authorization"] = auth,
    ["x-device-fingerprint"] = device,
    ["x-latchkey-timestamp"] = ts,
    ["x-latchkey-nonce"] = nonce,
    ["x-latchkey-signature"] = sig,
  }
  return wrk.format("GET", nil, h, nil)
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
