-- wrk script: every request is a new order attempt with its own buyer and Idempotency-Key.
-- Environment: SALE (sale id), RUN (a prefix unique to this run, so keys never repeat across runs).
local thread_count = 0

function setup(thread)
  thread_count = thread_count + 1
  thread:set("tid", thread_count)
end

function init(args)
  counter = 0
  sale = os.getenv("SALE")
  run = os.getenv("RUN") or "run"
  path = "/v1/sales/" .. sale .. "/orders"
end

function request()
  counter = counter + 1
  local id = run .. "-" .. tid .. "-" .. counter
  return wrk.format("POST", path,
    { ["Content-Type"] = "application/json", ["Idempotency-Key"] = "k-" .. id },
    '{"buyer":"b-' .. id .. '","quantity":1}')
end
