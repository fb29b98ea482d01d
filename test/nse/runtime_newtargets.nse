description = [[Adds scan targets from a prerule (through nselib's target.add, which needs
--script-args newtargets) and from a hostrule (nmap.add_targets directly), and reports the
counters nmap exposes.]]
categories = {"safe"}
local nmap = require "nmap"
local stdnse = require "stdnse"
local target = require "target"

prerule = function() return true end
hostrule = function() return true end

action = function(host)
  local o = stdnse.output_table()
  if SCRIPT_TYPE == "prerule" then
    local ok, n = target.add("127.0.0.7")
    o.prerule_added = tostring(ok) .. "/" .. tostring(n)
    o.bad = tostring((nmap.add_targets("127.0.0.0/33")))
    o.total = tostring(nmap.new_targets_num())
    return o
  end
  if host.ip == "127.0.0.7" then
    o.hostrule_added = tostring(nmap.add_targets("127.0.0.8"))
  end
  o.seen = host.ip
  return o
end
