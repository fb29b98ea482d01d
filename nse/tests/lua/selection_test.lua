-- Tests for nse/lua/selection.lua (docs/runtime-contract.md "Script
-- selection"), against the installed nmap 7.93 script.db. Expected counts were
-- taken from the real nmap 7.93 with
-- `nmap --script-help '<expr>' | grep -c '^Categories:'`
-- (one block per selected script: name line, then "Categories:"); the
-- script-name sets were compared too (all equal). Set NSEFLEET_ORACLE=1 to
-- redo that comparison live.
local T = ...
local S = T.load("selection")

local SCRIPTS = "/usr/share/nmap/scripts/"
local DB = SCRIPTS .. "script.db"

local db_cache
local function db()
  if not db_cache then db_cache = assert(S.load_db(DB)) end
  return db_cache
end

-- fetchscript stand-in: db names resolve under SCRIPTS; a few extra paths.
local extra = {
  ["/tmp/mine/my.nse"] = { "file", "/tmp/mine/my.nse" },
  ["local.nse"] = { "file", "/cwd/local.nse" },
  ["mydir/"] = { "directory", "/cwd/mydir/" },
  ["mydir"] = { "bare_directory", "/cwd/mydir" },
  [SCRIPTS .. "banner.nse"] = { "file", SCRIPTS .. "banner.nse" },
  ["missing-from-disk.nse"] = nil,
}
local db_names
local function fetch(p)
  local e = extra[p]
  if e then return e[1], e[2] end
  if not db_names then
    db_names = {}
    for _, en in ipairs(db()) do db_names[en.filename] = true end
  end
  if db_names[p] then return "file", SCRIPTS .. p end
  return nil, "no path to file/directory: " .. p
end

local function names(chosen)
  local out = {}
  for _, c in ipairs(chosen) do out[#out + 1] = c.path and c.path:match("([^/]+)%.nse$") or c.dir end
  return out
end

local function count(expr)
  local ch, err = S.select(S.split({ expr }), db(), fetch)
  if not ch then return nil, err end
  return #ch, ch
end

T.case("selection.load_db reads the real script.db", function()
  local entries = db()
  T.eq(#entries, 604)
  T.eq(entries[1].filename, "acarsd-info.nse")
  T.eq(entries[1].name, "acarsd-info")
  T.eq(entries[1].categories, { "discovery", "safe" })
  T.ok(entries[1].cats.safe and not entries[1].cats.default, "category set")
end)

T.case("selection.load_db errors", function()
  local e, err = S.load_db("/nonexistent/script.db")
  T.eq(e, nil)
  T.ok(type(err) == "string", "message")
  local tmp = os.tmpname()
  local f = assert(io.open(tmp, "w"))
  f:write('Entry { filename = "a.nse", categories = { "Safe" } }\nprint("x")\n')
  f:close()
  e, err = S.load_db(tmp)       -- only Entry is visible in the env
  os.remove(tmp)
  T.eq(e, nil)
  T.ok(err:find("print"), err)
end)

-- Numbers from the real nmap 7.93 (see header).
local oracle = {
  ["default"] = 125,
  ["ssh-*"] = 5,
  ["(http-* or ssl-*) and safe"] = 72,
  ["default or version"] = 155,
  ["discovery and not (intrusive or dos or brute)"] = 264,
  ["+banner"] = 1,
  ["DEFAULT"] = 125,
  ["Default and Safe"] = 125,
  ["all"] = 604,
  ["true"] = 604,
  ["TRUE"] = 604,
  ["*"] = 604,
  ["*.nse"] = 604,
  ["http*"] = 135,
  ["http-*.nse"] = 134,
  ["http-title.nse"] = 1,
  ["not(safe)"] = 258,
  ["safe and not discovery"] = 97,
  ["not default and ssh-*"] = 4,                 -- (not default) and ssh-*
  ["ssh-* and not ssh-hostkey or banner"] = 4,   -- PEG: a and (b or c)
  ["banner or ssh-* and not ssh-hostkey"] = 5,
  ["banner or ssh-hostkey and ftp-anon"] = 1,
  ["vuln and safe or exploit"] = 74,
  ["external or broadcast and not dos"] = 79,
  ["(not default) or (not safe) and discovery"] = 479,
  ["not or"] = 604,                              -- a lone keyword is a glob
  ["not and"] = 604,
  ["banner or and"] = 1,
  ["not not banner"] = 1,
  ["( banner )"] = 1,
  ["(banner)or(ssh-hostkey)"] = 2,
  ["banner and(safe)"] = 1,
  ["banner  and  safe"] = 1,
  ["not(not(banner))"] = 1,
  ["ALL and banner"] = 1,
  ["not false and banner"] = 1,
  ["banner.nse or x"] = 1,
  ["*title"] = 2,
  ["*-*-*-*-*"] = 4,
  ["b*n*r"] = 11,
  ["ssh-hostkey,banner"] = 2,
  ["ftp-anon, ssh-hostkey , default"] = 125,
  ["not\tbanner and safe"] = 345,
}
for expr, want in pairs(oracle) do
  T.case("selection count " .. expr, function()
    local n, err = count(expr)
    T.eq(n, want, err)
  end)
end

-- Items nmap 7.93 rejects: "'<item>' did not match a category, filename, or directory".
for _, expr in ipairs { "not all", "nosuchscript", "ssh-hostkey and ftp-anon or banner",
  "SSH-*", "false", "default and", "(default", "and", "ssh-hostkey.NSE", "ban%ner",
  "ssh-host.ey", "banner.nse.nse", "banner and brute", "default and )" } do
  T.case("selection rejects " .. expr, function()
    local n, err = count(expr)
    T.eq(n, nil)
    T.eq(err, "'" .. expr .. "' did not match a category, filename, or directory")
  end)
end

T.case("selection: the default set is the db's default category", function()
  local _, ch = count("default")
  local want = {}
  for _, e in ipairs(db()) do
    for _, c in ipairs(e.categories) do if c == "default" then want[#want + 1] = e.name end end
  end
  T.eq(names(ch), want)
  T.eq(#want, 125)
  for _, c in ipairs(ch) do T.ok(not c.by_name and not c.forced, c.path) end
end)

T.case("selection: ssh-* names, by name, db order", function()
  local _, ch = count("ssh-*")
  T.eq(names(ch), { "ssh-auth-methods", "ssh-brute", "ssh-hostkey",
    "ssh-publickey-acceptance", "ssh-run" })
  for _, c in ipairs(ch) do T.ok(c.by_name, c.path) end
  T.eq(ch[3].path, SCRIPTS .. "ssh-hostkey.nse")
end)

T.case("selection: chosen order is db order, not item order", function()
  local ch = assert(S.select({ "ssh-hostkey", "banner" }, db(), fetch))
  T.eq(names(ch), { "banner", "ssh-hostkey" })
end)

T.case("selection: forced and by-name flags", function()
  local ch = assert(S.select({ "+banner" }, db(), fetch))
  T.eq(ch, { { path = SCRIPTS .. "banner.nse", forced = true, by_name = true } })
  ch = assert(S.select({ "ssh-hostkey", "+default" }, db(), fetch))
  for _, c in ipairs(ch) do
    T.ok(c.forced, c.path)
    T.eq(c.by_name, c.path == SCRIPTS .. "ssh-hostkey.nse", c.path)
  end
  ch = assert(S.select({ "banner", "+ default" }, db(), fetch))   -- "+ x": trimmed
  T.eq(#ch, 126)
end)

T.case("selection: by-name holds under not and without short circuit", function()
  local ch = assert(S.select({ "not (banner and brute)" }, db(), fetch))
  local by = {}
  for _, c in ipairs(ch) do by[c.path:match("([^/]+)%.nse$")] = c.by_name end
  T.eq(#ch, 604)
  T.eq(by["banner"], true)
  T.eq(by["ssh-hostkey"], false)
  ch = assert(S.select({ "true or banner" }, db(), fetch))
  for _, c in ipairs(ch) do T.eq(c.by_name, c.path == SCRIPTS .. "banner.nse", c.path) end
  ch = assert(S.select({ "default or ssh-hostkey" }, db(), fetch))
  for _, c in ipairs(ch) do T.eq(c.by_name, c.path == SCRIPTS .. "ssh-hostkey.nse", c.path) end
end)

T.case("selection: path items", function()
  local ch = assert(S.select({ "/tmp/mine/my.nse", "local", "banner" }, db(), fetch))
  T.eq(ch, {
    { path = SCRIPTS .. "banner.nse", forced = false, by_name = true },
    { path = "/tmp/mine/my.nse", forced = false, by_name = true },
    { path = "/cwd/local.nse", forced = false, by_name = true },
  })
  ch = assert(S.select({ "+mydir/" }, db(), fetch))
  T.eq(ch, { { dir = "/cwd/mydir/", forced = true } })
  -- a path naming a script the db already chose appears once
  ch = assert(S.select({ "banner", SCRIPTS .. "banner.nse" }, db(), fetch))
  T.eq(#ch, 1)
end)

T.case("selection: path errors", function()
  local ch, err = S.select({ "mydir" }, db(), fetch)
  T.eq(ch, nil)
  T.eq(err, "directory '/cwd/mydir' found, but will not match without '/'")
  ch, err = S.select({ "banner", "nope" }, db(), fetch)
  T.eq(ch, nil)
  T.eq(err, "'nope' did not match a category, filename, or directory")
end)

T.case("selection: implicit version item never fails", function()
  local entries = { { filename = "banner.nse", name = "banner", cats = { safe = true } } }
  local ch, err = S.select({ "safe", "version" }, entries, fetch, { version = true })
  T.ok(ch, err)
  T.eq(#ch, 1)
  ch = S.select({ "version" }, entries, fetch)
  T.eq(ch, nil)
end)

T.case("selection: db entry missing on disk gives a warning", function()
  local entries = {
    { filename = "missing-from-disk.nse", name = "missing-from-disk", cats = { safe = true } },
    { filename = "banner.nse", name = "banner", cats = { safe = true } },
  }
  local ch, warn = S.select({ "safe" }, entries, fetch)
  T.eq(names(ch), { "banner" })
  T.eq(#warn, 1)
  T.ok(warn[1]:find("^Warning: Could not load 'missing%-from%-disk.nse': "), warn[1])
end)

T.case("selection.split", function()
  T.eq(S.split({ " a , b,,c", "+d,", "" }), { "a", "b", "c", "+d" })
end)

-- Live differential check against the installed nmap (opt-in, ~20 s).
if os.getenv("NSEFLEET_ORACLE") == "1" then
  for expr in pairs(oracle) do
    T.case("selection oracle " .. expr, function()
      local p = io.popen("nmap --script-help '" .. expr .. "' 2>/dev/null | grep -B1 '^Categories:'"
        .. " | grep -v '^Categories:\\|^--$' | sort")
      local theirs = {}
      for l in p:lines() do theirs[#theirs + 1] = l end
      p:close()
      local _, ch = count(expr)
      local mine = names(ch)
      table.sort(mine)
      T.eq(mine, theirs, expr)
    end)
  end
end

-- Runlevels ("Script selection").
local function levels(scripts)
  local ok, err = S.runlevels(scripts)
  if not ok then return nil, err end
  local out = {}
  for _, s in ipairs(scripts) do out[s.id] = s.runlevel end
  return out
end

T.case("selection.runlevels", function()
  T.eq(levels({ { id = "a", dependencies = {} } }), { a = 1 })
  T.eq(levels({
    { id = "d", dependencies = { "b", "c" } },
    { id = "c", dependencies = { "b" } },
    { id = "b", dependencies = { "a", "not-chosen" } },
    { id = "a" },
    { id = "e", dependencies = { "a" } },
  }), { a = 1, b = 2, c = 3, d = 4, e = 2 })
  -- dependencies only order: an unchosen dependency counts for nothing
  T.eq(levels({ { id = "x", dependencies = { "y" } } }), { x = 1 })
end)

T.case("selection.runlevels cycles", function()
  local _, err = levels({ { id = "a", dependencies = { "b" } }, { id = "b", dependencies = { "a" } } })
  T.eq(err, "circular dependency in chain `a->b->a`")
  _, err = levels({ { id = "c", dependencies = { "a" } }, { id = "a", dependencies = { "b" } },
    { id = "b", dependencies = { "a" } } })
  T.eq(err, "circular dependency in chain `a->b->a`")
  _, err = levels({ { id = "s", dependencies = { "s" } } })
  T.eq(err, "circular dependency in chain `s->s`")
  _, err = levels({ { id = "s" }, { id = "s" } })
  T.eq(err, "duplicate script ID: 's'")
end)

T.case("selection.runlevels on real script dependencies", function()
  -- smb-brute is a dependency of many smb-* scripts in 7.93; banner has none
  local scripts = {}
  for _, name in ipairs { "smb-enum-shares", "smb-brute", "smb-os-discovery", "banner" } do
    local f = assert(io.open(SCRIPTS .. name .. ".nse"))
    local src = f:read("a")
    f:close()
    local deps = {}
    local list = src:match("\ndependencies%s*=%s*(%b{})")
    if list then for d in list:gmatch('"([^"]+)"') do deps[#deps + 1] = d end end
    scripts[#scripts + 1] = { id = name, dependencies = deps }
  end
  local lv = assert(levels(scripts))
  T.eq(lv["smb-brute"], 1)
  T.eq(lv["smb-os-discovery"], 2)
  T.eq(lv["smb-enum-shares"], 2)
  T.eq(lv["banner"], 1)
end)
