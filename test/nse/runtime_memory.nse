description = [[Grows a table until the engine's memory cap stops it (test of --engine-memory).]]
categories = {"safe"}
prerule = function() return true end
action = function()
  local t, n = {}, 0
  -- Bounded: 2^20 chunks of 1 KiB would be 1 GiB, far above the 64 MiB cap of the test.
  for i = 1, 1 << 20 do
    t[i] = string.rep("x", 1000) .. i
    n = i
  end
  return "grew to " .. n
end
