-- Host and port tables, port-state queries and updates, and their argument errors.
-- Checked by run_runtime_tests.py (case "hostport"). Script args: rt_p1, rt_p2 (open TCP
-- ports, p1 < p2), rt_closed (a closed TCP port); all three scanned with -p.
local nmap = require "nmap"
local stdnse = require "stdnse"

description = "nsefleet runtime test: host/port tables"
categories = {"safe"}

local function arg_port(name)
  return tonumber(stdnse.get_script_args(name))
end

hostrule = function() return true end
portrule = function(host, port) return port.number == arg_port("rt_p1") end

-- The message of a failing call, as a string.
local function err_of(f, ...)
  local ok, e = pcall(f, ...)
  if ok then return "no error" end
  return tostring(e)
end

local function ports_list(host, state)
  local out, p, n = {}, nil, 0
  repeat
    p = nmap.get_ports(host, p, "tcp", state)
    if p then out[#out + 1] = tostring(p.number) end
    n = n + 1
  until not p or n > 100
  return table.concat(out, ",")
end

local function host_action(host)
  local o = stdnse.output_table()
  local p1, p2, closed = arg_port("rt_p1"), arg_port("rt_p2"), arg_port("rt_closed")
  o.ip = host.ip
  o.name = host.name
  o.name_type = type(host.name)
  o.targetname = tostring(host.targetname)
  o.registry_type = type(host.registry)
  o.interface = tostring(host.interface)
  o.bin_ip_len = #(host.bin_ip or "")
  o.times_srtt_type = type(host.times) == "table" and math.type(host.times.srtt) or "none"

  -- host.registry is shared with runtime_hostport_peer on the same host (either may run
  -- first: each writes, then waits a bounded time for the other).
  host.registry.hp_main = host.ip
  for _ = 1, 200 do
    if host.registry.hp_peer then break end
    stdnse.sleep(0.01)
  end
  o.registry_peer = tostring(host.registry.hp_peer)

  local s1 = nmap.get_port_state(host, {number = p1, protocol = "tcp"})
  o.p1_state = s1 and s1.state or "nil"
  local sc = nmap.get_port_state(host, {number = closed, protocol = "tcp"})
  o.closed_state = sc and sc.state or "nil"
  o.unknown_port = tostring((nmap.get_port_state(host, {number = 1, protocol = "tcp"})))
  o.unknown_proto = tostring((nmap.get_port_state(host, {number = p1, protocol = "udp"})))
  o.fresh_copies = nmap.get_port_state(host, {number = p1, protocol = "tcp"}) ~= s1
  o.open_ports = ports_list(host, "open")
  o.closed_ports = ports_list(host, "closed")
  o.filtered_ports = ports_list(host, "filtered")
  -- An unknown previous port restarts the walk.
  local first = nmap.get_ports(host, {number = 3, protocol = "tcp"}, "tcp", "open")
  o.get_ports_restart = first and first.number == p1

  nmap.set_port_state(host, {number = closed, protocol = "tcp"}, "open")
  local after = nmap.get_port_state(host, {number = closed, protocol = "tcp"})
  o.set_state_after = after and after.state or "nil"
  o.set_state_reason = after and tostring(after.reason) or "nil"
  nmap.set_port_state(host, {number = p2, protocol = "tcp"}, "closed")
  local after2 = nmap.get_port_state(host, {number = p2, protocol = "tcp"})
  o.set_state_p2 = after2 and after2.state or "nil"

  o.err_float_number = err_of(function() return nmap.get_port_state(host, {number = 1.5, protocol = "tcp"}) end)
  o.err_string_number = err_of(function() return nmap.get_port_state(host, {number = "80", protocol = "tcp"}) end)
  o.err_proto_type = err_of(function() return nmap.get_port_state(host, {number = 80, protocol = 6}) end)
  o.err_proto_table = err_of(function() return nmap.get_port_state(host, {number = 80, protocol = {}}) end)
  o.err_proto_value = err_of(function() return nmap.get_port_state(host, {number = 80, protocol = "icmp"}) end)
  o.err_not_processed = err_of(function() return nmap.get_port_state({ip = "127.99.99.99"}, {number = 80, protocol = "tcp"}) end)
  o.err_no_ip = err_of(function() return nmap.get_port_state({}, {number = 80, protocol = "tcp"}) end)
  o.err_version_type = err_of(function() return nmap.set_port_version(host, {number = p1, protocol = "tcp", version = "x"}) end)
  o.err_tunnel = err_of(function() return nmap.set_port_version(host, {number = p1, protocol = "tcp", version = {service_tunnel = "tls"}}) end)
  o.err_get_ports_proto = err_of(function() return nmap.get_ports(host, nil, "icmp", "open") end)
  o.err_set_state_value = err_of(function() return nmap.set_port_state(host, {number = p1, protocol = "tcp"}, "filtered") end)
  return o
end

local function port_action(host, port)
  local o = stdnse.output_table()
  o.number = port.number
  o.number_type = math.type(port.number)
  o.protocol = port.protocol
  o.state = port.state
  o.reason = tostring(port.reason)
  o.service = tostring(port.service)
  local v = port.version or {}
  o.version_name = tostring(v.name)
  o.name_confidence = v.name_confidence
  o.name_confidence_type = math.type(v.name_confidence)
  o.service_dtype = tostring(v.service_dtype)
  o.service_tunnel = tostring(v.service_tunnel)
  o.cpe_type = type(v.cpe)

  -- Changing the copy changes nothing in the engine.
  port.state = "closed"
  local again = nmap.get_port_state(host, port)
  o.copy_change_ignored = again ~= nil and again.state == "open"

  local ver = {}
  for k, x in pairs(again.version) do ver[k] = x end
  ver.product = "RuntimeTestProduct"
  ver.version = "1.2"
  ver.extrainfo = "bell\7here"
  nmap.set_port_version(host, port, "hardmatched")
  -- set_port_version reads port.version, so pass a table carrying the new record.
  nmap.set_port_version(host, {number = port.number, protocol = "tcp", version = ver},
    "hardmatched")
  local after = nmap.get_port_state(host, port)
  o.after_product = tostring(after.version.product)
  o.after_extrainfo = tostring(after.version.extrainfo)
  o.after_confidence = after.version.name_confidence
  o.after_dtype = tostring(after.version.service_dtype)
  return o
end

action = function(host, port)
  if SCRIPT_TYPE == "portrule" then return port_action(host, port) end
  return host_action(host)
end
