-- wrk script: POSTs a signed webhook body with a unique delivery id per request and counts the 202 answers.
-- Environment: BENCH_BODY (file with the JSON body), BENCH_SIG (hex HMAC-SHA256 of it), BENCH_PATH (default /webhooks/github),
-- BENCH_RUN (a prefix for the delivery ids)
local f = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
local body = f:read("*a")
f:close()
local sig = os.getenv("BENCH_SIG")
local path = os.getenv("BENCH_PATH") or "/webhooks/github"
local run = os.getenv("BENCH_RUN") or ""   -- keeps delivery ids unique across runs against one Redis
local threads = {}
local next_id = 0

function setup(thread)
  next_id = next_id + 1
  thread:set("tid", next_id)
  table.insert(threads, thread)
end

function init(args)
  counter = 0
  accepted = 0
  other = 0
end

function request()
  counter = counter + 1
  return wrk.format("POST", path, {
    ["Content-Type"] = "application/json",
    ["X-GitHub-Event"] = "issue_comment",
    ["X-GitHub-Delivery"] = "bench-" .. run .. tid .. "-" .. counter,
    ["X-Hub-Signature-256"] = "sha256=" .. sig,
  }, body)
end

function response(status, headers, body)
  if status == 202 then accepted = accepted + 1 else other = other + 1 end
end

function done(summary, latency, requests)
  local a, o = 0, 0
  for _, t in ipairs(threads) do
    a = a + t:get("accepted")
    o = o + t:get("other")
  end
  io.write(string.format("RESULT requests/s=%.0f p50_ms=%.2f p99_ms=%.2f accepted=%d other=%d errors=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000, latency:percentile(99) / 1000, a, o,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.status + summary.errors.timeout))
end
