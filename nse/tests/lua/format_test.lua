-- Tests for nse/lua/format.lua (docs/runtime-contract.md "Results and output formatting").
local T = ...
local F = T.load("format")

-- Same behaviour as stdnse.output_table(): insertion-ordered pairs through
-- __pairs, values stored in a hidden table reached through __index.
local function output_table()
  local t, order = {}, {}
  return setmetatable({}, {
    __newindex = function(_, k, v)
      if t[k] == nil and v ~= nil then order[#order + 1] = k end
      rawset(t, k, v)
    end,
    __index = t,
    __pairs = function()
      return coroutine.wrap(function()
        for _, k in ipairs(order) do coroutine.yield(k, t[k]) end
      end)
    end,
  })
end

local function str(v) return { kind = "string", value = v } end

T.case("format.text: the normal-output probe example", function()
  local o = output_table()
  o.list = { "a" }
  o.n = 3
  T.eq(F.text(o), "\n  list: \n    a\n  n: 3")
  -- and the screen lines of "Normal output" follow from it
  local lines = {}
  for l in (F.text(o) .. "\n"):gmatch("([^\n]*)\n") do lines[#lines + 1] = l end
  T.eq(lines, { "", "  list: ", "    a", "  n: 3" })
  T.eq(F.text(42), "42")
end)

T.case("format.text: non-tables use tostring", function()
  T.eq(F.text("x"), "x")
  T.eq(F.text(1.5), "1.5")
  T.eq(F.text(2.0), "2.0")
  T.eq(F.text(true), "true")
  T.eq(F.text(false), "false")
  T.eq(F.text({}), "")
end)

T.case("format.text: arrays first, then string keys; nesting indents by two", function()
  local o = output_table()
  o.z = "last?"
  o[1] = "one"               -- integer key inside an output_table: ipairs sees it
  o.a = { "x", { "deep" }, k = true }
  T.eq(F.text(o), "\n  one\n  z: last?\n  a: \n    x\n    \n      deep\n    k: true")
  T.eq(F.text({ "a", "b" }), "\n  a\n  b")
  T.eq(F.text({ { "a" } }), "\n  \n    a")
end)

T.case("format.text: holes and non-string keys are dropped", function()
  local t = { "a", "b", nil, "d", [10] = "ten", [1.5] = "f", [true] = "b" }
  T.eq(F.text(t), "\n  a\n  b")
  T.eq(F.text({ [2] = "x" }), "")
  local single = F.text({ "a", k = "v" })
  T.eq(single, "\n  a\n  k: v")
  -- plain string keys: order unspecified, lines all there
  local txt = F.text({ x = "1", y = "2" })
  T.ok(txt == "\n  x: 1\n  y: 2" or txt == "\n  y: 2\n  x: 1", txt)
end)

T.case("format.text: __tostring tables render with tostring, at any level", function()
  local mt = { __tostring = function() return "OBJ" end }
  local obj = setmetatable({ "hidden" }, mt)
  T.eq(F.text(obj), "OBJ")
  T.eq(F.text({ obj, k = obj }), "\n  OBJ\n  k: OBJ")
  -- __metatable does not hide __tostring (tostring itself does not care either)
  local prot = setmetatable({}, { __tostring = function() return "P" end, __metatable = false })
  T.eq(F.text({ prot }), "\n  P")
end)

T.case("format.text: cycles raise instead of looping", function()
  local t = {}
  t[1] = t
  T.ok(not pcall(F.text, t), "cycle")
  T.ok(not pcall(F.tree, t), "cycle")
  local shared = { "s" }
  T.eq(F.text({ shared, shared }), "\n  \n    s\n  \n    s")   -- a DAG is fine
end)

T.case("format.tree: shape and order", function()
  T.eq(F.tree(42), str("42"))
  T.eq(F.tree(true), str("true"))
  T.eq(F.tree("s"), str("s"))
  T.eq(F.tree({}), { kind = "table" })
  local o = output_table()
  o.b = "2"
  o.a = { 1, 2.5 }
  o[1] = "first"
  T.eq(F.tree(o), {
    kind = "table",
    { value = str("first") },
    { key = "b", value = str("2") },
    { key = "a", value = { kind = "table", { value = str("1") }, { value = str("2.5") } } },
  })
end)

T.case("format.tree: ignores __tostring, drops other keys", function()
  local obj = setmetatable({ "in", k = "v" }, { __tostring = function() return "OBJ" end })
  T.eq(F.tree(obj), { kind = "table", { value = str("in") }, { key = "k", value = str("v") } })
  T.eq(F.tree({ "a", nil, "c", [false] = 1 }), { kind = "table", { value = str("a") } })
end)

T.case("format.result: from return values to a result", function()
  -- string: text only
  local text, tree = F.result("hello\n")
  T.eq(text, "hello\n")
  T.eq(tree, nil)
  -- nil: no result at all
  T.eq(select("#", F.result(nil)), 1)
  T.eq(F.result(nil), nil)
  T.eq(F.result(), nil)
  -- number / boolean: text and a string tree
  text, tree = F.result(42)
  T.eq(text, "42")
  T.eq(tree, str("42"))
  text, tree = F.result(false)
  T.eq(text, "false")
  T.eq(tree, str("false"))
  -- table: formatted text and the tree
  local o = output_table()
  o.list = { "a" }
  o.n = 3
  text, tree = F.result(o)
  T.eq(text, "\n  list: \n    a\n  n: 3")
  T.eq(tree, { kind = "table",
    { key = "list", value = { kind = "table", { value = str("a") } } },
    { key = "n", value = str("3") } })
end)

T.case("format.result: (table, string) pair, e.g. http-title", function()
  local o = output_table()
  o.title = "Directory listing for /"
  local text, tree = F.result(o, "Directory listing for /")
  T.eq(text, "Directory listing for /")
  T.eq(tree, { kind = "table", { key = "title", value = str("Directory listing for /") } })
  -- r2 is passed through tostring; r1 nil gives no tree
  text, tree = F.result(nil, 7)
  T.eq(text, "7")
  T.eq(tree, nil)
  text, tree = F.result("structured string", "shown")
  T.eq(text, "shown")
  T.eq(tree, str("structured string"))
  -- a __tostring r2 object
  text = F.result({}, setmetatable({}, { __tostring = function() return "S" end }))
  T.eq(text, "S")
end)

T.case("format: a large result renders quickly", function()
  local o = output_table()
  for i = 1, 2000 do o["k" .. i] = { "v" .. i, i } end
  local t0 = os.clock()
  local text, tree = F.result(o)
  T.ok(os.clock() - t0 < 1.0, "took " .. (os.clock() - t0) .. " s")
  T.eq(#tree, 2000)
  T.eq(text:sub(1, 22), "\n  k1: \n    v1\n    1\n ")
end)
