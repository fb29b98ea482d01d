description = [[
Test script (nsefleet's registry tests): every host of 127.1.0.0/24 adds one target of
127.1.1.0/24 with nmap.add_targets; the postrule reports nmap.new_targets_num(), which
counts the targets added by every engine of the scan.
]]
categories = {"safe"}

local nmap = require "nmap"

hostrule = function() return true end
postrule = function() return true end

action = function(host)
  if SCRIPT_TYPE == "postrule" then
    return ("new_targets_num=%d"):format(nmap.new_targets_num())
  end
  local d = host.ip:match("^127%.1%.0%.(%d+)$")
  if d then
    local ok = nmap.add_targets("127.1.1." .. d)
    return "added " .. tostring(ok)
  end
  return "added by a script"
end
