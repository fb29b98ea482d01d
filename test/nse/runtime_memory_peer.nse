description = [[Runs beside runtime_memory: proves the engine survives a script hitting the cap.]]
categories = {"safe"}
prerule = function() return true end
action = function()
  return "still alive"
end
