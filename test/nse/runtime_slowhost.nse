description = [[Sleeps on hosts listed in script-arg slowhost.hosts (comma-separated) for
slowhost.secs seconds, then reports; other hosts answer at once. Used by the progress and
NDJSON streaming tests.]]
categories = {"safe"}
local stdnse = require "stdnse"

hostrule = function() return true end

action = function(host)
  local slow = stdnse.get_script_args("slowhost.hosts") or ""
  local secs = tonumber(stdnse.get_script_args("slowhost.secs") or "3")
  for ip in slow:gmatch("[^,]+") do
    if ip == host.ip then
      stdnse.sleep(secs)
      return "slow " .. host.ip
    end
  end
  return "fast " .. host.ip
end
