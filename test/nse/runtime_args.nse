-- Script arguments through stdnse.get_script_args and nmap.registry.args.
-- Checked by run_runtime_tests.py (case "args": --script-args and --script-args-file).
local nmap = require "nmap"
local stdnse = require "stdnse"

description = "nsefleet runtime test: script arguments"
categories = {"safe"}

prerule = function() return true end

local function show(v)
  if type(v) == "table" then
    local parts = {}
    for i, x in ipairs(v) do parts[i] = show(x) end
    local keys = {}
    for k in pairs(v) do
      if type(k) ~= "number" then keys[#keys + 1] = tostring(k) end
    end
    table.sort(keys)
    for _, k in ipairs(keys) do parts[#parts + 1] = k .. "=" .. show(v[k]) end
    return "{" .. table.concat(parts, ";") .. "}"
  end
  return type(v) .. ":" .. tostring(v)
end

action = function()
  local o = stdnse.output_table()
  local a, b, c = stdnse.get_script_args("a", "b", "c")
  o.a = show(a)
  o.b = show(b)
  o.c = show(c)
  o.prefixed = show(stdnse.get_script_args(SCRIPT_NAME .. ".k"))
  o.from_file = show(stdnse.get_script_args("fa"))
  o.missing = show(stdnse.get_script_args("nosuch"))
  local r = nmap.registry.args
  o.registry_type = type(r)
  o.registry_a = show(r.a)
  o.registry_b = show(r.b)
  o.registry_c = show(r.c)
  return o
end
