description = [[
Test script (nsefleet's registry tests): a registry larger than one fleet message (16 MiB).
The prerule files `registry_large.seed` strings of 512 KiB; every host checks it sees all of
them whole and files 640 KiB of its own; the postrule checks every host's entry.
]]
categories = {"safe"}

local stdnse = require "stdnse"

prerule = function() return true end
hostrule = function() return true end
postrule = function() return true end

local function blob(tag, n)
  -- Content that says where it came from: a cut or mixed-up value does not pass.
  local unit = tag .. ";"
  return string.rep(unit, n // #unit) .. string.rep("#", n % #unit)
end

local SEED = 512 * 1024
local HOST = 640 * 1024

action = function(host)
  local seeds = tonumber(stdnse.get_script_args("registry_large.seed")) or 24
  if SCRIPT_TYPE == "prerule" then
    nmap.registry.nsefleet_large_seed = {}
    for i = 1, seeds do
      nmap.registry.nsefleet_large_seed[i] = blob("seed" .. i, SEED)
    end
    return
  end
  local function seed_ok()
    local s = nmap.registry.nsefleet_large_seed or {}
    if #s ~= seeds then return false end
    for i = 1, seeds do
      if s[i] ~= blob("seed" .. i, SEED) then return false end
    end
    return true
  end
  if SCRIPT_TYPE == "postrule" then
    local hosts, good = 0, 0
    for ip, v in pairs(nmap.registry.nsefleet_large_hosts or {}) do
      hosts = hosts + 1
      if v == blob(ip, HOST) then good = good + 1 end
    end
    return ("seed=%s hosts=%d good=%d"):format(seed_ok() and "ok" or "bad", hosts, good)
  end
  nmap.registry.nsefleet_large_hosts = nmap.registry.nsefleet_large_hosts or {}
  nmap.registry.nsefleet_large_hosts[host.ip] = blob(host.ip, HOST)
  return seed_ok() and "seed ok" or "seed missing"
end
