description = [[
Test script (nsefleet's registry tests): the NSE manual's whois pattern. Under nmap.mutex,
look the host's key up in nmap.registry and "query the service" (a short sleep standing for
it) only when the key is absent, then file the answer. Each query is also logged in the
registry; the postrule reports how many queries were made and how many keys were filed.
]]
categories = {"safe"}

local nmap = require "nmap"
local stdnse = require "stdnse"

hostrule = function() return true end
postrule = function() return true end

local KEYS = 8

action = function(host)
  if SCRIPT_TYPE == "postrule" then
    local keys = 0
    for _ in pairs(nmap.registry.nsefleet_whois or {}) do keys = keys + 1 end
    return ("queries=%d keys=%d"):format(#(nmap.registry.nsefleet_whois_log or {}), keys)
  end
  local d = tonumber(host.ip:match("(%d+)$"))
  local key = "net" .. (d % KEYS)
  local mutex = nmap.mutex("nsefleet-whois-" .. key)
  mutex "lock"
  nmap.registry.nsefleet_whois = nmap.registry.nsefleet_whois or {}
  local cached = nmap.registry.nsefleet_whois[key]
  local how = "cached"
  if not cached then
    stdnse.sleep(0.05)  -- the outside service
    cached = "answer for " .. key
    nmap.registry.nsefleet_whois[key] = cached
    nmap.registry.nsefleet_whois_log = nmap.registry.nsefleet_whois_log or {}
    table.insert(nmap.registry.nsefleet_whois_log, key)
    how = "queried"
  end
  mutex "done"
  return how .. " " .. key
end
