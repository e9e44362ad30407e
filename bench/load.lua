-- wrk script for the benches (bench/load.py): requests read from a generated data file, each connection's
-- thread walking its own share of them; per-status counts and latency percentiles as JSON.
-- wrk arguments (after --): data file, number of threads, delay between requests in ms (0: none).

local requests_data, step, pause, index
local threads = {}

function setup(thread)
  thread:set("first", #threads)
  table.insert(threads, thread)
end

function init(args)
  requests_data = dofile(args[1])
  step = tonumber(args[2])
  pause = tonumber(args[3])
  index = first
  statuses = {}
end

function request()
  local item = requests_data[(index % #requests_data) + 1]
  index = index + step
  return wrk.format(item.method, item.path, item.headers, item.body)
end

function delay()
  return pause
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local counts = {}
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses")) do
      counts[tostring(status)] = (counts[tostring(status)] or 0) + count
    end
  end
  local parts = {}
  for status, count in pairs(counts) do
    table.insert(parts, string.format('"%s": %d', status, count))
  end
  io.write(string.format(
    'WRK-RESULT {"requests": %d, "seconds": %.3f, "socket_errors": %d, "statuses": {%s}, ' ..
      '"p50_ms": %.2f, "p95_ms": %.2f, "p99_ms": %.2f, "max_ms": %.2f}\n',
    summary.requests, summary.duration / 1e6,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    table.concat(parts, ", "),
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000))
end
