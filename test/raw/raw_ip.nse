local nmap = require "nmap"
local stdnse = require "stdnse"
local string = require "string"
local table = require "table"

description = [[
nsefleet test (issue 5): sends IPv4 packets it builds itself with dnet's ip_send: a UDP
datagram carrying raw.marker (test/raw/run_raw_tests.py captures it inside the peer
namespace) and an ICMP echo request whose reply comes back through a 7.93-form pcap socket.
Script args: raw.dev (device towards the peer), raw.peer (peer IPv4), raw.marker.
]]
categories = {"safe"}

prerule = function() return true end

local out = {}
local function check(name, cond, detail)
  out[#out + 1] = (cond and "ok " or "FAIL ") .. name .. ((not cond and detail) and (": " .. tostring(detail)) or "")
end

local function ipbin(a)
  local o = {}
  for x in a:gmatch("%d+") do o[#o + 1] = string.char(tonumber(x)) end
  return table.concat(o)
end

local function cksum(s)
  if #s % 2 == 1 then s = s .. "\0" end
  local sum = 0
  for i = 1, #s, 2 do sum = sum + string.unpack(">I2", s, i) end
  while sum > 0xffff do sum = (sum & 0xffff) + (sum >> 16) end
  return (~sum) & 0xffff
end

local function ipv4(src, dst, proto, payload, id)
  local h = string.pack(">BBI2I2I2BBI2", 0x45, 0, 20 + #payload, id, 0, 64, proto, 0)
    .. ipbin(src) .. ipbin(dst)
  return h:sub(1, 10) .. string.pack(">I2", cksum(h)) .. h:sub(13) .. payload
end

local function raises(f, ...)
  local ok, err = pcall(f, ...)
  return not ok and tostring(err) or ("no error: " .. tostring(err))
end

action = function()
  local dev = stdnse.get_script_args("raw.dev")
  local peer = stdnse.get_script_args("raw.peer")
  local marker = stdnse.get_script_args("raw.marker")
  local info = nmap.get_interface_info(dev)
  check("interface info", type(info) == "table", info)
  if type(info) ~= "table" then return table.concat(out, "\n") end
  local me = info.address

  local d = nmap.new_dnet()
  local e = raises(function() return d:ip_send("x") end)
  check("ip_send unopened raises", e:find("raw socket not open to send", 1, true), e)
  local st, err = d:ip_close()
  check("ip_close unopened", st == false and err == "raw socket already closed", err)
  check("ip_open", d:ip_open() == true)
  e = raises(function() return d:ip_send("\x45\0\0") end)
  check("short packet raises", e:find("can't parse ip packet", 1, true), e)

  local p = nmap.new_socket()
  p:set_timeout(3000)
  -- (the UDP datagram draws a port unreachable: echo replies only)
  p:pcap_open(dev, 1500, false, "icmp[icmptype] == icmp-echoreply and src host " .. peer)

  -- UDP to the discard port: the peer's capture proves it arrived.
  local udp = string.pack(">I2I2I2I2", 40000, 9, 8 + #marker, 0) .. marker
  st, err = d:ip_send(ipv4(me, peer, 17, udp, 0x4242), peer)
  check("ip_send udp", st == true, err)

  -- ICMP echo, destination taken from the header, then given as a host table.
  for i, dst in ipairs({false, {ip = peer}}) do
    local id = 0x3330 + i
    local icmp = string.pack(">BBI2I2I2", 8, 0, 0, id, 1) .. marker
    icmp = icmp:sub(1, 2) .. string.pack(">I2", cksum(icmp)) .. icmp:sub(5)
    st, err = d:ip_send(ipv4(me, peer, 1, icmp, id), dst or nil)
    check("ip_send echo " .. i, st == true, err)
    local ok, len, l2, l3 = p:pcap_receive()
    check("echo reply " .. i, ok == true and #l2 == 14 and len == #l2 + #l3, l2)
    if ok then
      check("reply id " .. i, l3:byte(21) == 0 and string.unpack(">I2", l3, 25) == id)
      check("reply payload " .. i, l3:sub(29) == marker)
    end
  end

  check("ip_close", d:ip_close() == true)
  st, err = d:ip_close()
  check("ip_close twice", st == false and err == "raw socket already closed", err)
  p:pcap_close()
  out[#out + 1] = "done"
  return table.concat(out, "\n")
end
