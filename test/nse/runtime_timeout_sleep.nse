-- Blocked in a long sleep: killed by --script-timeout while waiting.
description = "nsefleet runtime test: sleeping script timeout"
categories = {"safe"}

prerule = function() return true end

action = function()
  require("stdnse").sleep(60)
  return "slept through the timeout"
end
