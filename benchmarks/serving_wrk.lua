-- wrk's side of `python benchmarks/serving.py --load-generator wrk` (wrk 4, LuaJIT).
--   wrk -t1 -c32 -d10s --timeout 60s -s benchmarks/serving_wrk.lua http://127.0.0.1:8765/v1/select -- BODIES K
-- With BODIES (one JSON request body a line) each request POSTs the next body, in turn; without, each GETs
-- the URL (/healthz). Each response's status is counted; a 200 from select must hold K examples (one query a
-- body). After a 503 one request waits its Retry-After, as a well-behaved client would (and the Python client
-- does). done() prints one line, "LLMR_WRK {json}", which serving.py reads.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  statuses, wrong, waits, retry_ms = {}, 0, 0, 1000
  requests, i = {}, 0
  k = tonumber(args[2])
  if args[1] then
    for line in io.lines(args[1]) do -- formatted once here: a request string per call would cost per request
      requests[#requests + 1] = wrk.format("POST", nil, { ["Content-Type"] = "application/json" }, line)
    end
  else
    requests[1] = wrk.format("GET")
  end
end

function request()
  i = i % #requests + 1
  return requests[i]
end

-- Lua cannot tell which connection a response came on: each 503 delays the thread's next request instead
-- (the same count of waits; the latency wrk records starts after the wait).
function delay()
  if waits > 0 then
    waits = waits - 1
    return retry_ms
  end
  return 0
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  if status == 503 then
    waits = waits + 1
    retry_ms = 1000 * (tonumber(headers["retry-after"] or headers["Retry-After"]) or 1)
  elseif status ~= 200 or (k and select(2, body:gsub('"rank":', "")) ~= k) then
    wrong = wrong + 1
  end
end

function done(summary, latency, _)
  local counts, wrongs, parts = {}, 0, {}
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses")) do
      counts[status] = (counts[status] or 0) + n
    end
    wrongs = wrongs + thread:get("wrong")
  end
  for status, n in pairs(counts) do
    parts[#parts + 1] = string.format('"%d":%d', status, n)
  end
  local e = summary.errors
  io.write(string.format(
    'LLMR_WRK {"responses":%d,"seconds":%.3f,"p50_ms":%.3f,"p99_ms":%.3f,"statuses":{%s},"wrong":%d,'
      .. '"socket_errors":%d}\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1e3, latency:percentile(99) / 1e3,
    table.concat(parts, ","), wrongs, e.connect + e.read + e.write + e.timeout
  ))
end
