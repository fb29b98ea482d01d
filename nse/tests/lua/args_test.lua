-- Tests for nse/lua/args.lua (docs/runtime-contract.md "Script arguments").
local T = ...
local A = T.load("args")

local function parses(text, want)
  T.case("args.parse " .. string.format("%q", text), function()
    local got, err = A.parse(text)
    T.ok(got, err)
    T.eq(got, want, text)
  end)
end

local function fails(text)
  T.case("args.parse fails " .. string.format("%q", text), function()
    local got, err = A.parse(text)
    T.eq(got, nil, text)
    T.eq(err, "arguments did not parse: " .. text)
  end)
end

-- The grammar examples ("Script arguments").
parses('a=1,b={x,y},unsafe', { [1] = "unsafe", a = "1", b = { "x", "y" } })
parses('c="q,u\\"oted",d={k=v,{n}}', { c = 'q,u"oted', d = { [1] = { "n" }, k = "v" } })
parses('  spaced key = spaced value ,x=', { ["spaced key"] = "spaced value", x = "" })
parses('f={a=1 , b = {2,3}}', { f = { a = "1", b = { "2", "3" } } })
fails('x=a=b')
fails('k={')

-- Other stated rules.
parses('', {})
parses(',,', { "", "", "" })
parses('a=', { a = "" })
parses('"1"=x,y', { ["1"] = "x", "y" })                      -- keys stay strings
parses('1=x', { ["1"] = "x" })
parses("a=1\nb=2", { a = "1", b = "2" })                     -- newline separates
parses("a=1\r\nb = two words \t,c", { a = "1", b = "two words", "c" })
parses([['it\'s',"a\\b","c\d"]], { "it's", "a\\b", "c\\d" })  -- only \q and \\ escape
parses([['say "hi"',"x\'y"]], { 'say "hi"', "x\\'y" })
parses('a=1,a=2', { a = "2" })                               -- later key wins
parses('x={}', { x = { "" } })                               -- empty unquoted item
parses('x={ {a=b} , {c} }', { x = { { a = "b" }, { "c" } } })
parses('userdb=/tmp/u.txt,passdb=/tmp/p.txt,http.useragent=Mozilla/5.0 (X11)',
  { userdb = "/tmp/u.txt", passdb = "/tmp/p.txt", ["http.useragent"] = "Mozilla/5.0 (X11)" })
parses('k = "quoted value" , z', { k = "quoted value", "z" })
fails('a}')
fails('a={b}c')
fails('"a"b')
fails('{')
fails('a=b}')

T.case("args.parse rejects non-strings", function()
  local t, err = A.parse(nil)
  T.eq(t, nil)
  T.ok(err:find("^arguments did not parse"), err)
end)

-- Joining file and command-line text ("Script arguments").
T.case("args.join", function()
  T.eq(A.join(nil, "a=1"), "a=1")
  T.eq(A.join(nil, nil), "")
  T.eq(A.join("a=1,b=2,,", "c=3"), "a=1,b=2,c=3")
  T.eq(A.join("a=1", ""), "a=1,")
  T.eq(A.join("a=1", nil), "a=1,")
  T.eq(A.join("a=1\n", ""), "a=1\n,")
end)

T.case("args.join then parse: CLI beats file, file-only quirks kept", function()
  T.eq(A.parse(A.join("a=1,b=2", "a=3")), { a = "3", b = "2" })
  -- file only: the trailing ',' gives one "" item, a trailing newline another
  T.eq(A.parse(A.join("a=1,", "")), { a = "1", "" })
  T.eq(A.parse(A.join("a=1\n", "")), { a = "1", "", "" })
  T.eq(A.parse(A.join(nil, "")), {})
end)
