-- nsefleet's NSE driver, Lua half: state set-up, script loading and the body of every script
-- thread. The scheduler, timeouts and I/O live in C++ (nse/engine.cc); this file is compiled
-- into the binary and called with one argument, the engine table E:
--   E.config       scan settings (scripts, script_args, args_file, debugging, ...)
--   E.MARK         the value the yield door yields (forwarded through user coroutines)
--   E.fetchfile(p) full path of a data file, or nil
--   E.source(n)    text of an embedded Lua file ("selection", "format", "args")
--   E.current()    the base coroutine being resumed, or nil
--   E.spawn(f,...) a new worker base thread running f(...) (inherits the current identity)
--   E.write(where, s)  write to "stdout"/"stderr"
-- It returns the table D of functions the engine calls.
local E = ...

local D = {}

local function embedded(name)
  return assert(load(E.source(name), "=" .. name, "t"))()
end

local format = embedded("format")
local selection = embedded("selection")
local argparse = embedded("args")

-- Per base coroutine: {id=, host=, port=, worker=, parent=, by_name=}. Weak keys: a finished
-- thread's record goes with it.
local info = setmetatable({}, {__mode = "k"})
local worker_errors = setmetatable({}, {__mode = "k"})
D.info, D.worker_errors = info, worker_errors

-- The engine yields E.MARK from C; a user coroutine that receives it passes it outward and
-- hands the wake-up values back in (nested coroutines inside a script keep working).
local function patch_coroutines()
  local create, resume, yield, status = coroutine.create, coroutine.resume, coroutine.yield,
    coroutine.status
  local MARK = E.MARK
  local function forward(co, ok, ...)
    if ok and status(co) == "suspended" and select("#", ...) == 1 and ... == MARK then
      return forward(co, resume(co, yield(MARK)))
    end
    return ok, ...
  end
  coroutine.resume = function(co, ...)
    return forward(co, resume(co, ...))
  end
  local function unwrap(ok, ...)
    if not ok then error((...), 0) end
    return ...
  end
  coroutine.wrap = function(f)
    local co = create(f)
    return function(...) return unwrap(forward(co, resume(co, ...))) end
  end
end

-- Lua 5.4's string.unpack rejects a 'z' string that has no terminator; 5.3 (which the stock
-- nselib was written for) returned the rest of the data. Retry with the terminator added.
local function patch_unpack()
  local unpack, pack = string.unpack, table.pack
  string.unpack = function(fmt, s, ...)
    local r = pack(pcall(unpack, fmt, s, ...))
    if r[1] then return table.unpack(r, 2, r.n) end
    local err = r[2]
    if type(err) == "string" and err:find("unfinished string for format 'z'", 1, true)
        and type(s) == "string" then
      return unpack(fmt, s .. "\0", ...)
    end
    error(err, 0)
  end
end

-- Lua 5.3, which the stock scripts were written for, turned numeric strings into floats for
-- arithmetic ("10" + 1 == 11.0) and into integers for bitwise operators ("3" & 1 == 1);
-- 5.4 keeps the numeral's type and refuses bitwise on strings. Restore 5.3's rules through
-- the string metatable (numbers never reach these metamethods).
local function patch_string_arith()
  local mt = getmetatable("")
  local tonumber, tointeger, type, error = tonumber, math.tointeger, type, error
  local function float(v)
    if type(v) == "string" then
      local n = tonumber(v)
      if n then return n + 0.0 end
    end
    return v
  end
  local function integer(v)
    if type(v) == "string" then
      local n = tonumber(v)
      if n then
        local i = tointeger(n)
        if not i then error("number has no integer representation", 3) end
        return i
      end
    end
    return v
  end
  local getmt = debug.getmetatable
  -- Like 5.4's own string metamethods: when an operand is no number, the other operand's
  -- metamethod gets the call ("x" + lpeg.P(...) builds a pattern).
  local function fallback(a, b, x, y, event, what)
    local other = type(a) == "string" and b or a
    if type(other) ~= "string" then
      local mt2 = getmt(other)
      local h = mt2 and rawget(mt2, event)
      if h then return h(a, b) end
    end
    local bad = (type(x) == "number") and y or x
    error(("attempt to perform %s on a %s value"):format(what, type(bad)), 3)
  end
  local function arith(f, event)
    return function(a, b)
      local x, y = float(a), float(b)
      if type(x) == "number" and type(y) == "number" then return f(x, y) end
      return fallback(a, b, x, y, event, "arithmetic")
    end
  end
  local function bitwise(f, event)
    return function(a, b)
      local x, y = integer(a), integer(b)
      if math.type(x) == "integer" and math.type(y) == "integer" then return f(x, y) end
      return fallback(a, b, x, y, event, "bitwise operation")
    end
  end
  mt.__add = arith(function(x, y) return x + y end, "__add")
  mt.__sub = arith(function(x, y) return x - y end, "__sub")
  mt.__mul = arith(function(x, y) return x * y end, "__mul")
  mt.__div = arith(function(x, y) return x / y end, "__div")
  mt.__mod = arith(function(x, y) return x % y end, "__mod")
  mt.__pow = arith(function(x, y) return x ^ y end, "__pow")
  mt.__idiv = arith(function(x, y) return x // y end, "__idiv")
  mt.__unm = arith(function(x) return -x end, "__unm")
  mt.__band = bitwise(function(x, y) return x & y end, "__band")
  mt.__bor = bitwise(function(x, y) return x | y end, "__bor")
  mt.__bxor = bitwise(function(x, y) return x ~ y end, "__bxor")
  mt.__shl = bitwise(function(x, y) return x << y end, "__shl")
  mt.__shr = bitwise(function(x, y) return x >> y end, "__shr")
  mt.__bnot = bitwise(function(x) return ~x end, "__bnot")
end

-- require "a.b" finds nselib/a/b.lua through the data-file search, before anything else.
local function install_searcher()
  table.insert(package.searchers, 1, function(name)
    local rel = "nselib/" .. name:gsub("%.", "/") .. ".lua"
    local path = E.fetchfile(rel)
    if not path then
      return "\n\tNSE failed to find " .. rel .. " in search paths."
    end
    local chunk, err = loadfile(path, "t")
    if not chunk then error(err, 0) end
    return chunk, path
  end)
end

local SILENT = setmetatable({}, {__tostring = function() return "silent_require failure" end})

local function current_info()
  local co = E.current()
  return co and info[co], co
end

local function inject_stdnse(stdnse)
  rawset(stdnse, "silent_require", function(name)
    local ok, mod = pcall(require, name)
    if ok then return mod end
    if E.config.debugging > 0 then
      E.write("stderr", "NSE: silent_require of '" .. name .. "' failed: " .. tostring(mod) .. "\n")
    end
    error(SILENT, 0)
  end)
  rawset(stdnse, "new_thread", function(fn, ...)
    local me, co = current_info()
    if not me then error("stdnse.new_thread can only be run from an active script", 2) end
    if type(fn) ~= "function" then error("function expected", 2) end
    local root = me.worker and me.parent or co
    local w = E.spawn(fn, ...)
    info[w] = {id = me.id, host = me.host, port = me.port, worker = true, parent = root,
      by_name = me.by_name}
    return w, function() return coroutine.status(w), worker_errors[w] end
  end)
  rawset(stdnse, "base", function() return E.current() end)
  rawset(stdnse, "gettid", function()
    local me, co = current_info()
    if not me then return nil end
    return tostring(me.worker and me.parent or co)
  end)
  rawset(stdnse, "getid", function()
    local me = current_info()
    return me and me.id
  end)
  rawset(stdnse, "getinfo", function()
    local me, co = current_info()
    if not me then return nil end
    return ("%s %s:%s"):format(me.id, me.worker and "W" or "M",
      tostring(co):match("0x(%x+)") or tostring(co))
  end)
  rawset(stdnse, "gethostport", function()
    local me = current_info()
    if not me then return nil end
    return me.host, me.port
  end)
  rawset(stdnse, "isworker", function()
    local me = current_info()
    return me ~= nil and me.worker
  end)
end

-- fetchscript per nmap: absolute as is; scripts/<p> in the data dirs; then <p> relative to
-- the current directory. Returns kind, path or nil, message.
local function kind_of(path)
  local attr = lfs.attributes(path)
  if not attr then return nil end
  if attr.mode == "directory" then
    return path:sub(-1) == "/" and "directory" or "bare_directory"
  end
  if attr.mode == "file" then return "file" end
  return nil
end

local function fetchscript(p)
  if p:sub(1, 1) == "/" then
    local k = kind_of(p)
    if k then return k, p end
  else
    local found = E.fetchfile("scripts/" .. p)
    if found then return "file", found end
    local k = kind_of(p)
    if k then return k, p end
  end
  return nil, "no path to file/directory: " .. p
end

local function read_file(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  local text = f:read("a")
  f:close()
  return text
end

-- Compiles a script so that its body runs as function(...) inside function(_ENV), with the
-- line numbers of the file.
local function compile(path)
  local text, err = read_file(path)
  if not text then return nil, err end
  if text:sub(1, 2) == "#!" then text = "--" .. text end
  return load("return function (_ENV) return function (...) " .. text .. "\n end end",
    "@" .. path, "t")
end

local RULES = {"prerule", "hostrule", "portrule", "postrule"}

local function load_script(entry)
  local path = entry.path
  local base = path:match("([^/]+)$")
  local id = base:match("^(.*)%.nse$")
  if not id then
    if E.config.verbosity >= 0 then
      E.write("stderr", ("Warning: Loading '%s' -- the recommended file extension is '.nse'.\n"):format(path))
    end
    id = base:match("^(.+)%.[^.]*$") or base
  end
  local chunk, err = compile(path)
  if not chunk then error(("failed to load script '%s': %s"):format(path, err), 0) end
  local env = setmetatable({SCRIPT_PATH = path, SCRIPT_NAME = id, categories = {},
    dependencies = {}}, {__index = _G})
  local body = chunk()(env)
  local co = coroutine.create(body)
  local ok, lerr = coroutine.resume(co)
  if not ok then
    if lerr == SILENT then
      if E.config.verbosity > 0 then E.write("stderr", "Failed to load '" .. path .. "'.\n") end
      return nil
    end
    error(("failed to load script '%s': %s"):format(path, tostring(lerr)), 0)
  end
  local s = {id = id, path = path, chunk = chunk(), forced = entry.forced,
    by_name = entry.by_name, rules = {}}
  local description = rawget(env, "description")
  if type(description) == "string" then s.description = description end
  local action = rawget(env, "action")
  if type(action) ~= "function" then
    error(("%s is missing required field: 'action'"):format(path), 0)
  end
  for _, f in ipairs({"categories", "dependencies"}) do
    local v = rawget(env, f)
    if type(v) ~= "table" then
      error(("%s field '%s' is of improper type '%s', expected type 'table'"):format(
        path, f, type(v)), 0)
    end
    for _, x in ipairs(v) do
      if type(x) ~= "string" then
        error(("%s field '%s' contains a non-string entry"):format(path, f), 0)
      end
    end
    s[f] = v
  end
  local any = false
  for _, r in ipairs(RULES) do
    local fn = rawget(env, r)
    if fn ~= nil then
      if type(fn) ~= "function" then error(("%s %s must be a function!"):format(path, r), 0) end
      s.rules[r] = true
      any = true
    end
  end
  if not any then error(("%s is missing required function: 'rule'"):format(path), 0) end
  return s
end

local function list_dir(dir)
  local out = {}
  for name in lfs.dir(dir) do
    if name:match("%.nse$") then out[#out + 1] = dir:gsub("/$", "") .. "/" .. name end
  end
  table.sort(out)
  return out
end

-- Everything that must hold before any script runs. Raises a one-line message on failure.
function D.init()
  local cfg = E.config
  patch_coroutines()
  patch_unpack()
  patch_string_arith()
  install_searcher()
  package.cpath = "/usr/lib/x86_64-linux-gnu/lua/5.4/?.so;" .. package.cpath
  for _, m in ipairs({"nmap", "lfs", "lpeg", "libssh2", "openssl", "zlib"}) do
    local ok, mod = pcall(require, m)
    if ok then _G[m] = mod end
  end
  if lfs and not lfs.get_path_separator then
    lfs.get_path_separator = function() return "/" end
  end
  local stdnse = require "stdnse"
  inject_stdnse(stdnse)

  -- Script arguments: file first, then the command line; later keys win.
  local file_text = ""
  if cfg.args_file ~= "" then
    local path = cfg.args_file:sub(1, 1) == "/" and cfg.args_file or E.fetchfile(cfg.args_file)
    local text = path and read_file(path)
    if not text then
      error(("cannot read --script-args-file '%s'"):format(cfg.args_file), 0)
    end
    file_text = text
  end
  local joined = argparse.join(file_text, cfg.script_args)
  local args, aerr = argparse.parse(joined)
  if not args then
    error(("invalid --script-args: '%s' did not parse"):format(
      file_text == "" and cfg.script_args or joined), 0)
  end
  nmap.registry.args = args

  -- Selection.
  local items = {}
  for _, it in ipairs(cfg.scripts) do items[#items + 1] = it end
  if cfg.default and #items == 0 then items[1] = "default" end
  D.scripts = {}
  if #items > 0 then
    local dbpath = E.fetchfile("scripts/script.db")
    local entries = {}
    if dbpath then
      local e, err = selection.load_db(dbpath)
      if not e then error("cannot read script.db: " .. tostring(err), 0) end
      entries = e
    end
    local chosen, err = selection.select(items, entries, fetchscript)
    if not chosen then error(err, 0) end
    local seen = {}
    for _, c in ipairs(chosen) do
      local paths = c.dir and list_dir(c.dir) or {c.path}
      for _, p in ipairs(paths) do
        if not seen[p] then
          seen[p] = true
          local s = load_script({path = p, forced = c.forced, by_name = c.by_name and not c.dir})
          if s then
            for _, other in ipairs(D.scripts) do
              if other.id == s.id then error(("duplicate script ID: '%s'"):format(s.id), 0) end
            end
            D.scripts[#D.scripts + 1] = s
          end
        end
      end
    end
    local ok, rerr = selection.runlevels(D.scripts)
    if not ok then error(rerr, 0) end
  end
  if cfg.announce and cfg.debugging > 0 then
    E.write("stdout", ("NSE: Using %s.\nNSE: Arguments from CLI: %s\n"):format(_VERSION,
      cfg.script_args or ""))
  end
  if cfg.announce and (cfg.verbosity > 0 or cfg.debugging > 0) then
    E.write("stdout", ("NSE: Loaded %d scripts for scanning.\n"):format(#D.scripts))
  end
  -- Reading an undeclared global is an error from here on, as nselib expects.
  require("strict")(_G)
  return #D.scripts
end

-- Facts the C++ scheduler needs: per script its runlevel and rules.
function D.script_info(i)
  local s = D.scripts[i]
  return s.id, s.runlevel or 1, s.rules.prerule or false, s.rules.hostrule or false,
    s.rules.portrule or false, s.rules.postrule or false, s.by_name or false
end

-- --script-help: each selected script's id, categories, NSEDoc address and description
-- (indented by two spaces, blank lines kept), sorted by id, as nmap prints them.
function D.script_help()
  local list = {}
  for _, s in ipairs(D.scripts) do list[#list + 1] = s end
  table.sort(list, function(a, b) return a.id < b.id end)
  local out = {}
  for _, s in ipairs(list) do
    out[#out + 1] = ("\n%s\nCategories: %s\nhttps://nmap.org/nsedoc/scripts/%s.html\n"):format(
      s.id, table.concat(s.categories or {}, " "), s.id)
    local d = (s.description or ""):gsub("^%s*\n", ""):gsub("%s+$", "")
    for line in (d .. "\n"):gmatch("(.-)\n") do
      out[#out + 1] = (line:match("^%s*$") and "" or "  " .. line) .. "\n"
    end
  end
  return table.concat(out)
end

local function copy(t, seen)
  if type(t) ~= "table" then return t end
  seen = seen or {}
  if seen[t] then return seen[t] end
  local c = {}
  seen[t] = c
  for k, v in pairs(t) do
    if k == "registry" then c[k] = v else c[k] = copy(v, seen) end
  end
  return c
end

-- The body of one script instance (a base coroutine). Returns text, tree for a result, or
-- nothing. Errors propagate to the engine, which reports them.
function D.run_instance(i, rtype, host, port)
  local s = D.scripts[i]
  local co = coroutine.running()
  info[co] = {id = s.id, host = host, port = port, worker = false, by_name = s.by_name}
  local env = setmetatable({SCRIPT_PATH = s.path, SCRIPT_NAME = s.id, SCRIPT_TYPE = rtype},
    {__index = _G})
  s.chunk(env)()
  local h, p = copy(host), copy(port)
  if not s.forced then
    local rule = rawget(env, rtype)
    if type(rule) ~= "function" then return nil end
    local verdict = rule(h, p)
    -- At -dd a line per evaluated rule, so a test can count what was exercised.
    if E.config.debugging >= 2 then
      local where = host and (host.ip or "?") or "-"
      if port then where = where .. ":" .. tostring(port.number) end
      E.write("stderr", ("NSE: rule %s %s %s -> %s\n"):format(s.id, rtype, where,
        verdict and "true" or "false"))
    end
    if not verdict then return nil end
  end
  -- nmap's -d lines around each script instance.
  local target = host and (host.ip .. (port and (":" .. tostring(port.number)) or "")) or nil
  if E.config.debugging > 0 then
    E.write("stdout", ("NSE: Starting %s%s.\n"):format(s.id, target and (" against " .. target) or ""))
  end
  local text, tree = format.result(rawget(env, "action")(h, p))
  if E.config.debugging > 0 then
    E.write("stdout", ("NSE: Finished %s%s.\n"):format(s.id, target and (" against " .. target) or ""))
  end
  return text, tree
end

function D.worker_failed(co, msg)
  worker_errors[co] = msg
end

D.SILENT = SILENT
return D
