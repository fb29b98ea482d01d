local nmap = require "nmap"
local stdnse = require "stdnse"
local string = require "string"
local table = require "table"

description = [[
nsefleet test (issue 5): builds an ARP request and ICMP echo requests itself, sends them with
a dnet Ethernet handle and receives the replies through pcap sockets: the hash form
(test function + pcap_register, two worker threads sharing one capture, each receiving only
its own reply), the 7.93 form (a BPF filter only), timeouts and misuse errors.
Script args: raw.dev (Ethernet device), raw.peer (an IPv4 neighbour on it).
Run by test/raw/run_raw_tests.py inside a network namespace it creates.
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

local function echo_request(src, dst, id, data)
  local icmp = string.pack(">BBI2I2I2", 8, 0, 0, id, 1) .. data
  icmp = icmp:sub(1, 2) .. string.pack(">I2", cksum(icmp)) .. icmp:sub(5)
  return ipv4(src, dst, 1, icmp, id)
end

local function ether(dst, src, etype, payload)
  return dst .. src .. string.pack(">I2", etype) .. payload
end

-- The hash function of the hash form: ARP replies by sender IP, ICMP echo replies by id.
local function hash(size, l2, l3)
  local etype = #l2 >= 14 and string.unpack(">I2", l2, 13) or 0
  if etype == 0x0806 and #l3 >= 28 and string.unpack(">I2", l3, 7) == 2 then
    return "arp:" .. l3:sub(15, 18)
  end
  if etype == 0x0800 and #l3 >= 28 and l3:byte(10) == 1 then
    local ihl = (l3:byte(1) & 0x0f) * 4
    if l3:byte(ihl + 1) == 0 then return "icmp:" .. string.unpack(">I2", l3, ihl + 5) end
  end
  return "other"
end

local function raises(f, ...)
  local ok, err = pcall(f, ...)
  return not ok and tostring(err) or ("no error: " .. tostring(err))
end

action = function()
  local dev = stdnse.get_script_args("raw.dev")
  local peer = stdnse.get_script_args("raw.peer")
  local info = nmap.get_interface_info(dev)
  check("interface info", type(info) == "table" and info.mac and #info.mac == 6, info)
  if type(info) ~= "table" then return table.concat(out, "\n") end
  local me, mac = info.address, info.mac

  -- misuse raises
  local e = raises(function() return nmap.new_dnet():ethernet_send("x") end)
  check("send unopened raises", e:find("dnet ethernet interface is not open", 1, true), e)
  e = raises(function() return nmap.new_dnet():ethernet_open("lo") end)
  check("lo is not ethernet", e:find("device is not valid ethernet interface", 1, true), e)
  e = raises(function() return nmap.new_dnet():ethernet_open(string.rep("a", 40)) end)
  check("long name raises", e:find("device name too long", 1, true), e)
  e = raises(function() return nmap.new_socket():pcap_receive() end)
  check("receive on plain socket raises", e:find("not a pcap socket", 1, true), e)
  e = raises(function() return nmap.new_socket():pcap_open("", 100, false, "") end)
  check("empty device raises", e:find("bad device name", 1, true), e)
  e = raises(function() return nmap.new_socket():pcap_open("nsfnodev0", 100, false, "") end)
  check("missing device raises", e:find("can't open pcap reader on nsfnodev0", 1, true), e)
  e = raises(function() return nmap.new_socket():pcap_open(dev, 100, false, "not a filter (") end)
  check("bad filter raises", e:find("can't open pcap reader on " .. dev, 1, true), e)

  local dnet = nmap.new_dnet()
  check("ethernet_open", dnet:ethernet_open(dev) == true)

  -- ARP, hash form
  local p = nmap.new_socket()
  p:set_timeout(3000)
  p:pcap_open(dev, 1500, false, hash, "arp or icmp")
  e = raises(function() return p:pcap_open(dev, 1500, false, "") end)
  check("pcap_open twice raises", e:find("socket is already open", 1, true), e)
  p:pcap_register("arp:" .. ipbin(peer))
  local bcast = string.rep("\xff", 6)
  local arp = string.pack(">I2I2BBI2", 1, 0x0800, 6, 4, 1) .. mac .. ipbin(me)
    .. string.rep("\0", 6) .. ipbin(peer)
  check("ethernet_send arp", dnet:ethernet_send(ether(bcast, mac, 0x0806, arp)) == true)
  local status, len, l2, l3, time = p:pcap_receive()
  check("arp reply", status == true and #l2 == 14 and #l3 >= 28, l3)
  if not status then return table.concat(out, "\n") end
  check("captured_len", len == #l2 + #l3, len)
  check("time", math.type(time) == "float" and math.abs(time - os.time()) < 60, time)
  check("arp sender ip", l3:sub(15, 18) == ipbin(peer))
  local peer_mac = l3:sub(9, 14)
  check("frame to us", l2:sub(1, 6) == mac)

  -- 7.93 form on another key, opened before the echoes: it sees every echo reply.
  local p4 = nmap.new_socket()
  p4:set_timeout(3000)
  p4:pcap_open(dev, 1500, false, "icmp and src host " .. peer)

  -- Two worker threads wait on one shared capture, each for its own echo reply.
  local got, ready, done = {}, {}, {}
  for _, id in ipairs({0x1111, 0x2222}) do
    stdnse.new_thread(function()
      local s = nmap.new_socket()
      s:set_timeout(3000)
      s:pcap_open(dev, 1500, false, hash, "arp or icmp")
      s:pcap_register("icmp:" .. id)
      ready[id] = true
      local st, _, _, r3 = s:pcap_receive()
      got[id] = st and string.unpack(">I2", r3, 25) or ("error " .. tostring(r3))
      s:pcap_close()
      done[id] = true
    end)
  end
  for _ = 1, 100 do
    if ready[0x1111] and ready[0x2222] then break end
    stdnse.sleep(0.02)
  end
  check("workers ready", ready[0x1111] and ready[0x2222])
  -- Both requests come from this thread, the second one's first.
  for _, id in ipairs({0x2222, 0x1111}) do
    local frame = ether(peer_mac, mac, 0x0800, echo_request(me, peer, id, "nsefleet-" .. id))
    check("ethernet_send echo " .. id, dnet:ethernet_send(frame) == true)
  end
  for _ = 1, 250 do
    if done[0x1111] and done[0x2222] then break end
    stdnse.sleep(0.02)
  end
  check("worker 0x1111 got its reply", got[0x1111] == 0x1111, got[0x1111])
  check("worker 0x2222 got its reply", got[0x2222] == 0x2222, got[0x2222])

  local ids = {}
  for i = 1, 2 do
    local st, _, r2, r3 = p4:pcap_receive()
    check("7.93 form receive " .. i, st == true and #r2 == 14, r3)
    if st then ids[string.unpack(">I2", r3, 25)] = true end
  end
  check("7.93 form saw both replies", ids[0x1111] and ids[0x2222])
  p4:set_timeout(200)
  local st, err = p4:pcap_receive()
  check("7.93 form then times out", st == nil and err == "TIMEOUT", err)

  -- Nothing matches: the socket timeout ends the wait.
  p:pcap_register("never")
  p:set_timeout(300)
  local t0 = nmap.clock_ms()
  st, err = p:pcap_receive()
  local dt = nmap.clock_ms() - t0
  check("hash form timeout", st == nil and err == "TIMEOUT", err)
  check("timeout took ~300 ms", dt >= 250 and dt < 2000, dt)

  check("pcap_close", p:pcap_close() == true)
  st, err = p:pcap_close()
  check("pcap_close twice", st == false and err == "socket already closed", err)
  e = raises(function() return p:pcap_receive() end)
  check("receive after close raises", e:find("not a pcap socket", 1, true), e)
  p4:close()
  check("ethernet_close", dnet:ethernet_close() == true)
  e = raises(function() return dnet:ethernet_send("x") end)
  check("send after close raises", e:find("dnet ethernet interface is not open", 1, true), e)
  out[#out + 1] = "done"
  return table.concat(out, "\n")
end
