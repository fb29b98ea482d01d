-- A busy loop whose interruption error is caught by pcall and retried: still killed.
description = "nsefleet runtime test: pcall-wrapped busy loop timeout"
categories = {"safe"}

prerule = function() return true end

action = function()
  for _ = 1, 1000000 do
    pcall(function() while true do end end)
  end
  return "escaped the timeout"
end
