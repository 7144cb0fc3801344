-- wrk script used by the harness: POSTs the JSON body in WRK_BODY (GET when WRK_BODY is unset)
-- and prints one line "JSON {...}" with counts and latency percentiles in microseconds.
-- With WRK_KEYS=N, each request replaces __KEY__ in the body by a random integer in [0, N), so a
-- lookup benchmark reads spread keys rather than one hot key.
local body = os.getenv("WRK_BODY")
local keys = tonumber(os.getenv("WRK_KEYS") or "")
if body then
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.body = body
end

if body and keys then
  local pre, post = body:match("^(.-)__KEY__(.*)$")
  if pre then
    init = function(args)
      math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)") or "0", 16) % 100000)
    end
    request = function()
      return wrk.format(nil, nil, nil, pre .. math.random(0, keys - 1) .. post)
    end
  end
end

done = function(summary, latency, requests)
  io.write(string.format("JSON {\"requests\": %d, \"duration_us\": %d, \"errors\": %d, \"non2xx\": %d, \"p50_us\": %d, \"p90_us\": %d, \"p99_us\": %d, \"max_us\": %d, \"mean_us\": %.1f}\n",
    summary.requests, summary.duration,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
