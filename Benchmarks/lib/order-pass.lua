-- wrk script: every request is a new order attempt with its own Idempotency-Key, sent by a buyer
-- drawn at random from the buyer passes in the file $PASSES (lines "buyer pass"), with that
-- buyer's pass and no buyer in the body. Each pass is used many times, as a buyer's retries are in
-- a sale: Crest verifies it once and then remembers it.
-- Environment: SALE (sale id), RUN (a prefix unique to this run), PASSES (the file).
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
  passes = {}
  for line in io.lines(os.getenv("PASSES")) do
    local _, pass = line:match("^(%S+) (%S+)$")
    passes[#passes + 1] = "Bearer " .. pass
  end
  math.randomseed(os.time() * 1000 + tid)
end

function request()
  counter = counter + 1
  return wrk.format("POST", path,
    { ["Content-Type"] = "application/json", ["Idempotency-Key"] = "k-" .. run .. "-" .. tid .. "-" .. counter,
      ["Authorization"] = passes[math.random(#passes)] },
    '{"quantity":1}')
end
