-- wrk script: every request is a new order attempt with its own Idempotency-Key.
-- Environment: SALE (sale id), RUN (a prefix unique to this run, so keys never repeat across runs),
-- BUYERS (optional): draw each buyer at random from 1…BUYERS, as `crest loadtest --buyers` does,
-- instead of giving every request its own buyer in sequence. Random buyers land all over the
-- orders' buyer index, sequential ones at its end; the server's cost differs (see RESULTS.md).
local thread_count = 0

function setup(thread)
  thread_count = thread_count + 1
  thread:set("tid", thread_count)
end

function init(args)
  counter = 0
  sale = os.getenv("SALE")
  run = os.getenv("RUN") or "run"
  buyers = tonumber(os.getenv("BUYERS") or "")
  path = "/v1/sales/" .. sale .. "/orders"
  math.randomseed(os.time() * 1000 + tid)
end

function request()
  counter = counter + 1
  local id = run .. "-" .. tid .. "-" .. counter
  local buyer = buyers and ("b-" .. math.random(buyers)) or ("b-" .. id)
  return wrk.format("POST", path,
    { ["Content-Type"] = "application/json", ["Idempotency-Key"] = "k-" .. id },
    '{"buyer":"' .. buyer .. '","quantity":1}')
end
