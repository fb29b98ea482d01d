-- A hostrule that raises is reported like an action error.
description = "nsefleet runtime test: rule error"
categories = {"safe"}

hostrule = function() error("deliberate rule failure") end

action = function() return "action must not run" end
