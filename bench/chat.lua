-- wrk script for the gateway-overhead benchmark (bench/overhead.py):
-- POSTs a small OpenAI chat request.
--   BENCH_ROUTE    model/route name to ask for (default "bench-chat")
--   BENCH_API_KEY  if set, sent as "Authorization: Bearer <key>"

local route = os.getenv("BENCH_ROUTE") or "bench-chat"
local key = os.getenv("BENCH_API_KEY")

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
if key ~= nil and key ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. key
end
wrk.body = '{"model":"' .. route .. '","messages":[{"role":"user","content":"Say hello"}]}'
