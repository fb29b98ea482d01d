-- One output form per target (last octet of 127.0.0.N, N = 1..9), checked exactly in XML
-- and normal output by run_runtime_tests.py (case "output").
local stdnse = require "stdnse"

description = "nsefleet runtime test: output formatting"
categories = {"safe"}

hostrule = function() return true end

local cases = {
  -- 1: a plain string
  function() return "plain string" end,
  -- 2: the nested table example of contract 7.3
  function()
    local o = stdnse.output_table()
    o.list = {"a", {"b", "c"}}
    o.n = 3
    return o
  end,
  -- 3: (table, string)
  function() return {x = "1"}, "custom text" end,
  -- 4: a number
  function() return 42 end,
  -- 5: nil: no result
  function() return nil end,
  -- 6: the empty string
  function() return "" end,
  -- 7: control bytes
  function() return "a\rb\1c\127d\tt\255" end,
  -- 8: a multi-line string with a trailing newline
  function() return "line1\nline2\n" end,
  -- 9: XML-special characters and a plain (unordered) array table
  function() return {"<&>\"'", "two"} end,
}

action = function(host)
  local n = tonumber(host.ip:match("(%d+)$"))
  local f = cases[n]
  if f then return f() end
end
