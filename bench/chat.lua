-- wrk script for the gateway-overhead benchmark (bench/overhead.py):
-- POSTs a small OpenAI chat request.
--   BENCH_ROUTE    model/route name to ask for (default "bench-chat")
--   BENCH_API_KEY  if set, sent as "Authorization: Bearer <key>"
--   BENCH_EXTRA_HEADERS  "Name: value|Name: value", more headers (Portkey's routing)

local route = os.getenv("BENCH_ROUTE") or "bench-chat"
local key = os.getenv("BENCH_API_KEY")

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
if key ~= nil and key ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. key
end
local extra = os.getenv("BENCH_EXTRA_HEADERS") or ""
for pair in string.gmatch(extra, "[^|]+") do
  local name, value = string.match(pair, "^%s*([^:]+):%s*(.-)%s*$")
  if name ~= nil then
    wrk.headers[name] = value
  end
end
wrk.body = '{"model":"' .. route .. '","messages":[{"role":"user","content":"Say hello"}]}'
