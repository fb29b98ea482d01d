description = [[Lua 5.3 semantics the stock scripts rely on, restored on Lua 5.4.]]
categories = {"safe"}
local stdnse = require "stdnse"
prerule = function() return true end
action = function()
  local o = stdnse.output_table()
  o.add = tostring("10" + 1)
  o.mul = tostring("3" * "4")
  o.idiv = tostring("7" // 2)
  o.num = tostring(10 + 1)
  o.band = tostring("3" & 1)
  o.shl = tostring("1" << 4)
  o.unm = tostring(-"2")
  o.bad_arith = select(2, pcall(function() return "abc" + 1 end)):match("attempt to perform arithmetic on a string value") and "raises" or "no"
  o.bad_bits = select(2, pcall(function() return "1.5" | 1 end)):match("no integer representation") and "raises" or "no"
  -- strings combine with lpeg patterns through the pattern's metamethods
  local lpeg = require "lpeg"
  o.lpeg = tostring(lpeg.match("ab" * lpeg.P("c") + "zz", "abc"))
  -- string.unpack 'z' without terminator: 5.3 returned the rest
  local s, pos = string.unpack("z", "abc")
  o.unpack = s .. "/" .. pos
  return o
end
