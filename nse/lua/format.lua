-- Script results: text rendering of structured values and a plain ordered
-- tree for XML. Contract: docs/runtime-contract.md "Results and output
-- formatting". Written for nsefleet.
local type, tostring, ipairs, pairs, error = type, tostring, ipairs, pairs, error
local concat = table.concat
-- Raw metatable (like the C API): a __metatable field must not hide __tostring.
local getmetatable = (debug and debug.getmetatable) or getmetatable

local M = {}

local function has_tostring(t)
  local mt = getmetatable(t)
  return mt ~= nil and mt.__tostring ~= nil
end

-- Appends the rendering of table `t` (no __tostring) to buf; returns new n.
-- `onpath` holds the tables being rendered, to turn a cycle into an error
-- instead of unbounded recursion.
local function render_table(t, indent, buf, n, onpath)
  if onpath[t] then error("cannot format a table that contains itself", 0) end
  onpath[t] = true
  local inner = indent .. "  "
  for _, v in ipairs(t) do
    n = n + 1
    buf[n] = "\n"
    n = n + 1
    buf[n] = indent
    if type(v) == "table" and not has_tostring(v) then
      n = render_table(v, inner, buf, n, onpath)
    else
      n = n + 1
      buf[n] = tostring(v)
    end
  end
  for k, v in pairs(t) do   -- honours __pairs (stdnse.output_table order)
    if type(k) == "string" then
      n = n + 1
      buf[n] = "\n"
      n = n + 1
      buf[n] = indent
      n = n + 1
      buf[n] = k
      n = n + 1
      buf[n] = ": "
      if type(v) == "table" and not has_tostring(v) then
        n = render_table(v, inner, buf, n, onpath)
      else
        n = n + 1
        buf[n] = tostring(v)
      end
    end
  end
  onpath[t] = nil
  return n
end

-- text(v) -> string
-- NSE_FORMAT_TABLE ("Table-to-text rendering"): non-tables and tables with
-- __tostring give tostring(v); other tables give, per ipairs item,
-- "\n" .. indent .. item, then per string key (pairs order)
-- "\n" .. indent .. key .. ": " .. value,
-- indent starting at "  " and growing by "  " per level. Non-string keys and
-- integer keys after the first hole are dropped. Raises on a cyclic table.
function M.text(v)
  if type(v) ~= "table" or has_tostring(v) then return tostring(v) end
  local buf = {}
  local n = render_table(v, "  ", buf, 0, {})
  return concat(buf, "", 1, n)
end

local function tree_of(v, onpath)
  if type(v) ~= "table" then
    return { kind = "string", value = tostring(v) }
  end
  if onpath[v] then error("cannot format a table that contains itself", 0) end
  onpath[v] = true
  local out, n = { kind = "table" }, 0
  for _, e in ipairs(v) do
    n = n + 1
    out[n] = { value = tree_of(e, onpath) }
  end
  for k, e in pairs(v) do
    if type(k) == "string" then
      n = n + 1
      out[n] = { key = k, value = tree_of(e, onpath) }
    end
  end
  onpath[v] = nil
  return out
end

-- tree(v) -> node
-- The structured value in XML order ("XML output"), as plain data for the C++
-- side: a table (its __tostring ignored) gives
--   {kind="table", {key=nil, value=node}..., {key="k", value=node}...}
-- with ipairs items first, then string keys in pairs order; any other value
-- gives {kind="string", value=tostring(v)}. Raises on a cyclic table.
function M.tree(v)
  return tree_of(v, {})
end

-- result(r1, r2) -> text, tree | nil
-- "From return values to a result": from an action's return values, r2 ~= nil
-- -> tostring(r2) and the tree of r1 (nil when r1 is nil); r1 a string -> r1,
-- no tree; r1 nil -> nil (no result); anything else -> text(r1), tree(r1). May
-- raise (a __tostring or __pairs that raises, or a cyclic table): call it under
-- pcall.
function M.result(r1, r2)
  if r2 ~= nil then
    local tree = nil
    if r1 ~= nil then tree = tree_of(r1, {}) end
    return tostring(r2), tree
  end
  local t = type(r1)
  if t == "string" then return r1, nil end
  if r1 == nil then return nil end
  return M.text(r1), tree_of(r1, {})
end

return M
