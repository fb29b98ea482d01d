-- Runs the Lua tests of nse/lua/*.lua: `lua5.4 nse/tests/lua/run.lua [filter]`
-- from anywhere. Each *_test.lua file is a chunk called with the test API T;
-- it registers cases with T.case(name, fn). Exits non-zero on any failure;
-- the last line is "N passed, M failed".
-- NSEFLEET_ORACLE=1 also runs the checks that call the installed nmap.
package.cpath = "/usr/lib/x86_64-linux-gnu/lua/5.4/?.so;" .. package.cpath

local here = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
local root = here .. "/../.."   -- nse/

local T = { cases = {} }

function T.case(name, fn) T.cases[#T.cases + 1] = { name = name, fn = fn } end

-- Loads nse/lua/<name>.lua the way the driver does: a chunk returning a table.
function T.load(name)
  local chunk = assert(loadfile(root .. "/lua/" .. name .. ".lua", "t"))
  return chunk()
end

local function show(v, depth)
  depth = depth or 0
  if type(v) == "string" then return string.format("%q", v) end
  if type(v) ~= "table" or depth > 6 then return tostring(v) end
  local keys = {}
  for k in next, v do keys[#keys + 1] = k end
  table.sort(keys, function(a, b)
    if type(a) == type(b) and (type(a) == "number" or type(a) == "string") then return a < b end
    return type(a) < type(b)
  end)
  local parts = {}
  for _, k in ipairs(keys) do
    parts[#parts + 1] = "[" .. show(k) .. "]=" .. show(v[k], depth + 1)
  end
  return "{" .. table.concat(parts, ", ") .. "}"
end
T.show = show

-- Deep equality on raw contents (metatables ignored).
local function deq(a, b)
  if type(a) ~= "table" or type(b) ~= "table" then return a == b and math.type(a) == math.type(b) end
  for k, v in next, a do if not deq(v, rawget(b, k)) then return false end end
  for k in next, b do if rawget(a, k) == nil then return false end end
  return true
end

function T.eq(got, want, what)
  if not deq(got, want) then
    error((what and (what .. ": ") or "") .. "expected " .. show(want) .. ", got " .. show(got), 2)
  end
end

function T.ok(cond, what)
  if not cond then error("check failed: " .. tostring(what), 2) end
end

local files = { "args_test.lua", "selection_test.lua", "format_test.lua" }
local filter = arg and arg[1]
for _, f in ipairs(files) do
  local chunk = assert(loadfile(here .. "/" .. f, "t"))
  chunk(T)
end

local passed, failed = 0, 0
for _, c in ipairs(T.cases) do
  if not filter or c.name:find(filter, 1, true) then
    local ok, err = xpcall(c.fn, debug.traceback)
    if ok then
      passed = passed + 1
    else
      failed = failed + 1
      io.write("FAIL ", c.name, "\n  ", tostring(err), "\n")
    end
  end
end
io.write(passed, " passed, ", failed, " failed\n")
os.exit(failed == 0 and 0 or 1)
