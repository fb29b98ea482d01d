-- A well-behaved script run next to failing ones: its output must still appear.
description = "nsefleet runtime test: the run goes on"
categories = {"safe"}

prerule = function() return true end
hostrule = function() return true end

action = function()
  return "still running " .. SCRIPT_TYPE
end
