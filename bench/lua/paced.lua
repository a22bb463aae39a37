-- Moderate, non-saturating load: each connection waits BENCH_DELAY_MS (+-50% jitter)
-- between requests, so latency measures service time rather than queueing.
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN")
local base = tonumber(os.getenv("BENCH_DELAY_MS"))
math.randomseed(os.time())
function delay()
  return math.random(math.floor(base / 2), math.floor(base * 3 / 2))
end
