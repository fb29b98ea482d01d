-- Its rule is always false: it only runs when forced with '+'.
description = "nsefleet runtime test: forced script"
categories = {"safe"}

prerule = function() return false end

action = function() return "forced run" end
