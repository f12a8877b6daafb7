-- Case (e) of bench/run.sh: a hand-written Envoy Lua peer of switchyard with
-- examples/support-copilot/policy.json, for the benchmark's requests (POST /v1/chat/completions).
-- Same decision as flag support_answer_model_route: consent (support_copilot is opt_out; globex
-- opted out -> fallback), override (acme -> candidate), rules (regulated_accounts -> control,
-- staff -> candidate, paid plans -> 5/95 split by conversation), default control. The split uses
-- djb2 (mod 2^32) instead of XXH3, so *which* conversations land on the candidate differs from
-- switchyard, not the shape of the work. Not a switchyard replacement: no exposure headers, no
-- metrics, no filter state, no other flags, no policy loading or validation.
local SUPPORT_COPILOT_OPT_OUT = { ["globex"] = true }
local OVERRIDE_CANDIDATE = { ["acme"] = true }
local REGULATED = { ["bank-one"] = true, ["bank-two"] = true }
local STAFF = { ["our-company"] = true }
local PAID = { ["pro"] = true, ["enterprise"] = true }
local SALT = "support_answer_model_route:"
local PREFIX = "/v1/chat/completions"
local ROUTE_HEADER = "x-switchyard-cluster"
local byte = string.byte
local sub = string.sub

local function bucket100(key)
  local h = 5381
  for i = 1, #key do
    h = (h * 33 + byte(key, i)) % 4294967296
  end
  return h % 100
end

function envoy_on_request(handle)
  local headers = handle:headers()
  headers:remove(ROUTE_HEADER) -- a client must not pick the cluster
  local path = headers:get(":path") or ""
  if sub(path, 1, #PREFIX) ~= PREFIX then
    return
  end
  local tenant = headers:get("x-tenant-id") or ""
  local cluster
  if SUPPORT_COPILOT_OPT_OUT[tenant] then
    cluster = "support_rules"
  elseif OVERRIDE_CANDIDATE[tenant] then
    cluster = "support_model_b"
  elseif REGULATED[tenant] then
    cluster = "support_model_a"
  elseif STAFF[tenant] then
    cluster = "support_model_b"
  else
    local plan = headers:get("x-plan")
    if plan ~= nil and PAID[plan] then
      local conv = headers:get("x-conversation-id")
      if conv == nil then
        cluster = "support_model_a" -- no unit: off_variation
      elseif bucket100(SALT .. conv) < 5 then
        cluster = "support_model_b"
      else
        cluster = "support_model_a"
      end
    else
      cluster = "support_model_a"
    end
  end
  headers:replace(ROUTE_HEADER, cluster)
  handle:clearRouteCache()
end
