-- Script arguments (--script-args, --script-args-file): joining and parsing.
-- Contract: docs/runtime-contract.md "Script arguments". Written for nsefleet.
local lpeg = require "lpeg"

local P, S, C, Cs, Ct, V = lpeg.P, lpeg.S, lpeg.C, lpeg.Cs, lpeg.Ct, lpeg.V
local type, tostring = type, tostring

local M = {}

local space = lpeg.locale().space        -- locale whitespace, includes "\n"
local ws = space ^ 0
local hspace = space - P "\n"            -- "\n" is a separator, never padding
local hws = hspace ^ 0

-- "..." or '...': only \<quote> and \\ are escapes, other backslashes stay.
local function quoted(q)
  local body = (P "\\" * P(q)) / q + P "\\\\" / "\\" + (1 - P(q))
  return P(q) * Cs(body ^ 0) * P(q)
end

-- Unquoted: anything but \n , { } =; inner blanks kept, outer blanks dropped.
local word = 1 - S "\n,{}=" - hspace
local unquoted = hws * C(word ^ 0 * (hspace ^ 1 * word ^ 1) ^ 0) * hws

-- A field is captured as a one- or two-element table: {value} for an array
-- item, {key, value} for key=value. build() assembles them in order.
local function build(fields)
  local t, n = {}, 0
  for i = 1, #fields do
    local f = fields[i]
    if f.item then
      n = n + 1
      t[n] = f[1]
    else
      t[f[1]] = f[2]
    end
  end
  return t
end

local grammar = P {
  "top",
  top = V "table" * -1,
  table = P "{" * ws * (Ct(V "fieldlist" ^ -1) / build) * ws * P "}",
  fieldlist = V "field" * (hws * S "\n," * ws * V "field") ^ 0,
  field = Ct(V "string" * hws * P "=" * hws * V "value")
        + Ct(V "value" * lpeg.Cg(lpeg.Cc(true), "item")),
  value = V "table" + V "string",
  string = quoted '"' + quoted "'" + unquoted,
}

-- parse(text) -> table | nil, errmsg
-- Parses the joined argument text as "{" .. text .. "}". The empty text gives
-- {} (no parse). Keys are always strings; array items get keys 1, 2, ...
-- Failure: nil, "arguments did not parse: <text>".
function M.parse(text)
  if type(text) ~= "string" then
    return nil, "arguments did not parse: " .. tostring(text)
  end
  if text == "" then return {} end
  local t = grammar:match("{" .. text .. "}")
  if t == nil then
    return nil, "arguments did not parse: " .. text
  end
  return t
end

-- join(file_text, cli_text) -> text
-- ("Script arguments"): file text (trailing commas stripped), then ",", then the CLI text
-- (nil counts as ""). With no file the CLI text is returned unchanged. The
-- resulting trailing "," of a file-only run is kept on purpose (it yields an
-- extra "" array item, as in nmap 7.93).
function M.join(file_text, cli_text)
  cli_text = cli_text or ""
  if file_text == nil then return cli_text end
  return (file_text:gsub(",*$", "")) .. "," .. cli_text
end

return M
