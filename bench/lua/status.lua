-- Diagnosis: like bearer.lua, but counts non-200 answers by "<status> <code>" (the
-- gateway's JSON error code) and prints them at the end as "BENCH<TAB>key<TAB>n".
-- Parsing bodies costs wrk CPU, so this runs only to explain a run that got non-2xx.
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN")
codes = {}

function response(status, headers, body)
  if status ~= 200 then
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
