-- wrk script: POST batches of click events to /api/v1/streams/clicks/events.
-- BATCH (env) events per request; bodies are pre-built at start and rotated.
local batch = tonumber(os.getenv("BATCH") or "1")
local bodies = {}
local ts = os.date("!%Y-%m-%dT%H:%M:%SZ")
local kinds = {"click", "click", "add_to_cart", "purchase", "view"}

init = function(args)
  math.randomseed(os.time() + math.random(1000))
  for b = 1, 16 do
    local parts = {}
    for i = 1, batch do
      local k = kinds[math.random(#kinds)]
      local v = k == "purchase" and string.format(', "value": %.2f', math.random() * 100) or ""
      parts[i] = string.format('{"customer_id": %d, "ts": "%s", "event_type": "%s"%s}',
                               math.random(100000), ts, k, v)
    end
    bodies[b] = "[" .. table.concat(parts, ",") .. "]"
  end
end

local n = 0
request = function()
  n = n + 1
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, bodies[(n % 16) + 1])
end

done = function(summary, latency, requests)
  io.write(string.format("JSON {\"requests\": %d, \"duration_us\": %d, \"errors\": %d, \"non2xx\": %d, \"p50_us\": %d, \"p99_us\": %d}\n",
    summary.requests, summary.duration,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status, latency:percentile(50), latency:percentile(99)))
end
