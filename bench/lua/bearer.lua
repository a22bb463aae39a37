-- Steady state: every request carries the same bearer token (from BENCH_TOKEN).
-- The request is static, so wrk builds it once and the generator costs nothing.
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN")
