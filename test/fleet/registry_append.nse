description = [[
Test script (nsefleet's registry tests): every host appends its address to one list in
nmap.registry (table.insert, as creds.lua and ssh-hostkey do) and files it under a sparse
integer key; the postrule reports what reached it.
]]
categories = {"safe"}

local stdnse = require "stdnse"

hostrule = function() return true end
postrule = function() return true end

local function octets(ip)
  local a, b, c, d = ip:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  return tonumber(c) * 256 + tonumber(d)
end

action = function(host)
  if SCRIPT_TYPE == "postrule" then
    local list = nmap.registry.nsefleet_test_list or {}
    local seen, distinct = {}, 0
    for _, ip in ipairs(list) do
      if not seen[ip] then seen[ip] = true; distinct = distinct + 1 end
    end
    local sparse, wrong = 0, 0
    for k, ip in pairs(nmap.registry.nsefleet_test_sparse or {}) do
      sparse = sparse + 1
      if math.type(k) ~= "integer" or k ~= octets(ip) * 7 then wrong = wrong + 1 end
    end
    return ("items=%d distinct=%d sparse=%d wrong=%d"):format(#list, distinct, sparse, wrong)
  end
  -- registry_append.delay: seconds each host takes first (so a worker can die mid-scan)
  local delay = tonumber(stdnse.get_script_args("registry_append.delay"))
  if delay then stdnse.sleep(delay) end
  nmap.registry.nsefleet_test_list = nmap.registry.nsefleet_test_list or {}
  table.insert(nmap.registry.nsefleet_test_list, host.ip)
  nmap.registry.nsefleet_test_sparse = nmap.registry.nsefleet_test_sparse or {}
  nmap.registry.nsefleet_test_sparse[octets(host.ip) * 7] = host.ip
end
