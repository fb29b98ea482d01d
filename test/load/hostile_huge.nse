-- Test script: results the fleet wire cannot carry. On 127.0.0.1 a 20 MiB output (over the
-- 16 MiB message cap), on 127.0.0.2 a structured output nested 300 levels deep (over the
-- decoder's depth limit); elsewhere a small result.
description = "load test: results too large or too deep for one fleet message"
categories = {"safe"}

hostrule = function(host) return true end

action = function(host)
  if host.ip == "127.0.0.1" then return string.rep("x", 20 * 1024 * 1024) end
  if host.ip == "127.0.0.2" then
    local t = {leaf = "bottom"}
    for _ = 1, 300 do t = {t} end
    return t
  end
  return "small result"
end
