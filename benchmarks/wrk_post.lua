-- wrk script: POST one fixed body (read from a file) to the URL, and print
-- a machine-readable summary line at the end.
--   wrk -t1 -c16 -d6s -s wrk_post.lua URL -- BODY_FILE CONTENT_TYPE [HEADER]
-- HEADER, e.g. "Authorization: Bearer x", is sent with every request.
local req

function init(args)
  local f = assert(io.open(args[1], "rb"))
  local body = f:read("*a")
  f:close()
  local headers = {["Content-Type"] = args[2]}
  if args[3] then
    local name, value = args[3]:match("^([^:]+):%s*(.*)$")
    headers[name] = value
  end
  req = wrk.format("POST", nil, headers, body)
end

function request()
  return req
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_s": %.6f, "errors": %d, ' ..
    '"status_errors": %d, "timeouts": %d, "p50_ms": %.4f, "p90_ms": %.4f, ' ..
    '"p99_ms": %.4f, "mean_ms": %.4f, "max_ms": %.4f}\n',
    summary.requests, summary.duration / 1e6,
    e.connect + e.read + e.write + e.status + e.timeout,
    e.status, e.timeout,
    latency:percentile(50) / 1e3, latency:percentile(90) / 1e3,
    latency:percentile(99) / 1e3, latency.mean / 1e3, latency.max / 1e3))
end
