-- Script selection (--script items against scripts/script.db) and runlevels.
-- Contract: docs/runtime-contract.md "Script selection". Written for nsefleet.
local type, ipairs, load, pcall, tostring = type, ipairs, load, pcall, tostring
local open = io.open
local find, sub, lower, gsub, format = string.find, string.sub, string.lower, string.gsub, string.format
local concat = table.concat

local M = {}

-- ---------------------------------------------------------------- database

-- load_db(path) -> entries | nil, err
-- Evaluates script.db with an environment holding only `Entry`. Each entry is
-- {filename=, categories={...}} plus precomputed `name` (base name without
-- .nse) and `cats` (set of lowercased categories).
function M.load_db(path)
  local f, err = open(path, "r")
  if not f then return nil, err end
  local text = f:read("a")
  f:close()
  local entries = {}
  local env = {
    Entry = function(e)
      if type(e) ~= "table" or type(e.filename) ~= "string" then
        return  -- malformed line: ignored like a script that is not in the db
      end
      local cats = {}
      if type(e.categories) == "table" then
        for _, c in ipairs(e.categories) do
          if type(c) == "string" then cats[lower(c)] = true end
        end
      end
      local base = gsub(gsub(e.filename, "^.*/", ""), "%.nse$", "")
      entries[#entries + 1] = {
        filename = e.filename, categories = e.categories, name = base, cats = cats,
      }
    end,
  }
  local chunk, lerr = load(text, "@" .. path, "t", env)
  if not chunk then return nil, lerr end
  local ok, rerr = pcall(chunk)
  if not ok then return nil, tostring(rerr) end
  return entries
end

-- ------------------------------------------------------ expression parsing
-- Grammar ("Script selection"; a PEG, so `a and b or c` is `a and (b or c)` exactly as in
-- nmap 7.93; checked against the real binary):
--   expr  := value (('and' | 'or') expr)?
--   value := 'not' value | '(' expr ')' | 'true' | 'false' | word
-- A word is 'all', a category of the entry, or else a glob on its name.

local function tokenize(s)
  local toks, i, n = {}, 1, #s
  while i <= n do
    local _, e = find(s, "^%s+", i)
    if e then
      i = e + 1
    else
      local c = sub(s, i, i)
      if c == "(" or c == ")" then
        toks[#toks + 1] = c
        i = i + 1
      else
        local _, we = find(s, "^[\33-\39\42-\126]+", i)  -- printable, no space/parens
        if not we then return nil end                   -- unparsable byte
        toks[#toks + 1] = sub(s, i, we)
        i = we + 1
      end
    end
  end
  return toks
end

local function glob_pattern(tok)
  tok = gsub(tok, "%.nse$", "")
  local p = gsub(tok, "[%^%$%(%)%%%.%[%]%+%-%?]", "%%%0")
  p = gsub(p, "%*", ".*")
  return "^" .. p .. "$"
end

local parse_expr

local function parse_value(toks, i)
  local t = toks[i]
  if t == nil then return nil end
  if t == "(" then
    local e, j = parse_expr(toks, i + 1)
    if e and toks[j] == ")" then return e, j + 1 end
    return nil
  elseif t == ")" then
    return nil
  end
  local l = lower(t)
  if l == "not" then
    local v, j = parse_value(toks, i + 1)
    if v then return { op = "not", v }, j end
    -- otherwise 'not' falls back to being a plain word
  elseif l == "true" then
    return { op = "const", value = true }, i + 1
  elseif l == "false" then
    return { op = "const", value = false }, i + 1
  end
  return { op = "word", lower = l, pattern = glob_pattern(t) }, i + 1
end

function parse_expr(toks, i)
  local v, j = parse_value(toks, i)
  if not v then return nil end
  local t = toks[j]
  if t then
    local l = lower(t)
    if l == "and" or l == "or" then
      local r, k = parse_expr(toks, j + 1)
      if r then return { op = l, v, r }, k end
    end
  end
  return v, j
end

-- compile(item) -> tree | nil (syntax error: the item matches no entry)
local function compile(item)
  local toks = tokenize(item)
  if not toks then return nil end
  local e, j = parse_expr(toks, 1)
  if e and j == #toks + 1 then return e end
  return nil
end

-- eval(node, entry, st) -> boolean; st.by_name set when a glob matched the
-- name. Both sides are always evaluated (no short circuit) so by-name is seen
-- even under `not` or behind a false operand.
local function eval(node, entry, st)
  local op = node.op
  if op == "word" then
    if node.lower == "all" or entry.cats[node.lower] then return true end
    if find(entry.name, node.pattern) then
      st.by_name = true
      return true
    end
    return false
  elseif op == "and" then
    local a = eval(node[1], entry, st)
    local b = eval(node[2], entry, st)
    return a and b
  elseif op == "or" then
    local a = eval(node[1], entry, st)
    local b = eval(node[2], entry, st)
    return a or b
  elseif op == "not" then
    return not eval(node[1], entry, st)
  else
    return node.value
  end
end

-- ---------------------------------------------------------------- select

-- select(items, entries, fetchscript[, implicit]) -> chosen, warnings | nil, err
-- items: --script items (strings; trimmed, empty ones skipped, a leading '+'
-- forces). entries: from load_db. fetchscript(p) -> kind, path | nil, msg.
-- implicit: optional set {[item]=true} of items whose failure to match is
-- silent (the -sV "version" item).
-- chosen: array, db matches first (db order), then path items (item order):
--   {path=, forced=bool, by_name=bool}  a script file
--   {dir=, forced=bool}                 a directory: the caller lists *.nse
-- Each script path appears once (flags of all matching items are OR-ed).
-- warnings: array of "Warning: Could not load '<f>': <msg>" for db entries
-- that fetchscript could not find.
-- Errors: "'<item>' did not match a category, filename, or directory",
--         "directory '<p>' found, but will not match without '/'".
function M.select(items, entries, fetchscript, implicit)
  local rules = {}
  for _, raw in ipairs(items) do
    local item = gsub(gsub(raw, "^%s+", ""), "%s+$", "")
    local forced = false
    if sub(item, 1, 1) == "+" then
      forced = true
      item = gsub(sub(item, 2), "^%s+", "")
    end
    if item ~= "" then
      rules[#rules + 1] = { item = item, forced = forced, expr = compile(item), matched = false }
    end
  end

  local chosen, warnings, by_path = {}, {}, {}
  local function add(path, forced, by_name)
    local c = by_path[path]
    if c then
      c.forced = c.forced or forced
      c.by_name = c.by_name or by_name
    else
      c = { path = path, forced = forced, by_name = by_name }
      by_path[path] = c
      chosen[#chosen + 1] = c
    end
  end

  local st = {}
  for _, entry in ipairs(entries) do
    local hit, forced, by_name = false, false, false
    for _, r in ipairs(rules) do
      if r.expr then
        st.by_name = false
        if eval(r.expr, entry, st) then
          r.matched = true
          hit = true
          forced = forced or r.forced
          by_name = by_name or st.by_name
        end
      end
    end
    if hit then
      local kind, p = fetchscript(entry.filename)
      if kind == "file" then
        add(p, forced, by_name)
      else
        warnings[#warnings + 1] = format("Warning: Could not load '%s': %s", entry.filename,
          tostring(kind and ("not a file: " .. tostring(p)) or p))
      end
    end
  end

  for _, r in ipairs(rules) do
    if not r.matched then
      local kind, p = fetchscript(r.item)
      if not kind then kind, p = fetchscript(r.item .. ".nse") end
      if kind == "file" then
        add(p, r.forced, true)
      elseif kind == "directory" then
        if not by_path[p] then
          local d = { dir = p, forced = r.forced }
          by_path[p] = d
          chosen[#chosen + 1] = d
        else
          by_path[p].forced = by_path[p].forced or r.forced
        end
      elseif kind == "bare_directory" then
        return nil, format("directory '%s' found, but will not match without '/'", p)
      elseif not (implicit and implicit[r.item]) then
        return nil, format("'%s' did not match a category, filename, or directory", r.item)
      end
    end
  end
  return chosen, warnings
end

-- split(values) -> items
-- ("Script selection"): splits each --script option value on every comma, trims, drops empty
-- items. `values` is an array of option strings (repeated options append).
function M.split(values)
  local items = {}
  for _, v in ipairs(values) do
    for piece in (v .. ","):gmatch("([^,]*),") do
      piece = gsub(gsub(piece, "^%s+", ""), "%s+$", "")
      if piece ~= "" then items[#items + 1] = piece end
    end
  end
  return items
end

-- ---------------------------------------------------------------- runlevels

-- runlevels(scripts) -> true | nil, err
-- scripts: array of {id=, dependencies={ids}}. Sets s.runlevel = 1 + max
-- runlevel of its dependencies that are among `scripts` (others ignored), or
-- 1. Errors: "circular dependency in chain `a->b->a`",
-- "duplicate script ID: '<id>'".
function M.runlevels(scripts)
  local by_id = {}
  for _, s in ipairs(scripts) do
    if by_id[s.id] then return nil, format("duplicate script ID: '%s'", tostring(s.id)) end
    by_id[s.id] = s
  end
  local state = {}   -- id -> "visiting" | "done"
  local chain = {}   -- ids on the current DFS path

  local function visit(s)
    local id = s.id
    if state[id] == "done" then return true end
    if state[id] == "visiting" then
      local from = 1
      for k = #chain, 1, -1 do
        if chain[k] == id then from = k; break end
      end
      local parts = {}
      for k = from, #chain do parts[#parts + 1] = tostring(chain[k]) end
      parts[#parts + 1] = tostring(id)
      return nil, "circular dependency in chain `" .. concat(parts, "->") .. "`"
    end
    state[id] = "visiting"
    chain[#chain + 1] = id
    local level = 1
    for _, dep in ipairs(s.dependencies or {}) do
      local d = by_id[dep]
      if d then
        local ok, err = visit(d)
        if not ok then return nil, err end
        if d.runlevel + 1 > level then level = d.runlevel + 1 end
      end
    end
    chain[#chain] = nil
    state[id] = "done"
    s.runlevel = level
    return true
  end

  for _, s in ipairs(scripts) do
    local ok, err = visit(s)
    if not ok then return nil, err end
  end
  return true
end

return M
