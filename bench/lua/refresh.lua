-- Refresh storm: every request rotates a distinct refresh token.
-- Tokens (one per line, pre-minted by logins) come from BENCH_REFRESH_FILE and form
-- a FIFO pool: a request takes the oldest token, a 200 puts the rotated one back.
-- Run with one wrk thread: each thread would load its own copy and reuse tokens.
-- wrk calls request() once on thread 0 before the run to check the request it
-- builds (script_verify_request); that first call gets a probe, not a token.
local pool, head, tail = {}, 1, 0
local f = assert(io.open(os.getenv("BENCH_REFRESH_FILE"), "r"))
for line in f:lines() do
  if #line > 0 then tail = tail + 1; pool[tail] = line end
end
f:close()
local path = os.getenv("BENCH_REFRESH_PATH")
codes = {}  -- non-200 answers by "<status> <code>", and "pool exhausted" (tokens lost)
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

local probed = false

function request()
  if not probed then
    probed = true
    return wrk.format("POST", path, nil, '{"refresh":"verify-probe"}')
  end
  local token = "pool-exhausted"
  if head <= tail then
    token = pool[head]; pool[head] = nil; head = head + 1
  else
    codes["pool exhausted"] = (codes["pool exhausted"] or 0) + 1
  end
  return wrk.format("POST", path, nil, '{"refresh":"' .. token .. '"}')
end

function response(status, headers, body)
  if status == 200 then
    local token = body:match('"refresh"%s*:%s*"([^"]+)"')
    if token then tail = tail + 1; pool[tail] = token end
  else
    local key = status .. " " .. (body:match('"code"%s*:%s*"([^"]+)"') or "?")
    codes[key] = (codes[key] or 0) + 1
  end
end

local threads = {}
function setup(thread) table.insert(threads, thread) end

function done(summary, latency, requests)
  for _, t in ipairs(threads) do
    for key, n in pairs(t:get("codes")) do io.write("BENCH\t" .. key .. "\t" .. n .. "\n") end
  end
end
