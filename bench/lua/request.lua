-- One wrk request shape for every control-plane case, set from the environment
-- (wrk's own options cannot set a method or a body), and one machine-readable
-- summary line at the end, so the harness does not parse wrk's human report.
--   BENCH_METHOD        GET, HEAD or PUT (default GET)
--   BENCH_BODY_FILE     file whose bytes are the request body (PUT manifest)
--   BENCH_CONTENT_TYPE  Content-Type of that body
--   BENCH_ACCEPT        Accept header (GET manifest)
--   BENCH_TAG_PREFIX    if set, each request appends this prefix and a counter to the
--                       URL's path: a new tag per request (PUT to a new tag)

wrk.method = os.getenv("BENCH_METHOD") or "GET"

local body_file = os.getenv("BENCH_BODY_FILE")
if body_file and body_file ~= "" then
  local handle = assert(io.open(body_file, "rb"))
  wrk.body = handle:read("*a")
  handle:close()
end

local content_type = os.getenv("BENCH_CONTENT_TYPE")
if content_type and content_type ~= "" then
  wrk.headers["Content-Type"] = content_type
end

local accept = os.getenv("BENCH_ACCEPT")
if accept and accept ~= "" then
  wrk.headers["Accept"] = accept
end

local tag_prefix = os.getenv("BENCH_TAG_PREFIX")
if tag_prefix and tag_prefix ~= "" then
  local counter = 0
  request = function()
    counter = counter + 1
    return wrk.format(nil, wrk.path .. tag_prefix .. counter)
  end
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests":%d,"duration_us":%d,"status_errors":%d,"socket_errors":%d,' ..
    '"p50_us":%d,"p99_us":%d,"mean_us":%.1f,"max_us":%d}\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99), latency.mean, latency.max))
end
