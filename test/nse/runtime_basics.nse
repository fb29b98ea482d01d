-- Run-time facts of the nmap module and registry persistence across phases.
-- Checked by run_runtime_tests.py (case "basics"): run with -T4, selected by path.
local nmap = require "nmap"
local stdnse = require "stdnse"

description = "nsefleet runtime test: nmap run-time information and registry phases"
categories = {"safe"}

prerule = function() return true end
hostrule = function() return true end
postrule = function() return true end

local function facts(o)
  local c = nmap.clock()
  o.clock_type = math.type(c)
  o.clock_near_os_time = math.abs(c - os.time()) <= 2
  local ms = nmap.clock_ms()
  o.clock_ms_type = math.type(ms)
  o.clock_ms_near_clock = math.abs(ms / 1000 - nmap.clock()) < 1
  o.debugging = nmap.debugging()
  o.verbosity = nmap.verbosity()
  o.timing_level = nmap.timing_level()
  local svc = nmap.fetchfile("nmap-services")
  o.fetchfile_services_type = type(svc)
  o.fetchfile_services_suffix = type(svc) == "string" and svc:match("/nmap%-services$") ~= nil
  local f = svc and io.open(svc, "r")
  o.fetchfile_services_readable = f ~= nil
  if f then f:close() end
  o.fetchfile_missing = tostring((nmap.fetchfile("no-such-file-nsefleet-test")))
  o.fetchfile_missing_nvals = select("#", nmap.fetchfile("no-such-file-nsefleet-test"))
  o.fetchfile_directory = tostring((nmap.fetchfile("nselib")))
  o.is_privileged = nmap.is_privileged()
  o.have_ssl = nmap.have_ssl()
  o.address_family = nmap.address_family()
  -- get_interface_link is an nsefleet addition (absent from nmap 7.93).
  local gil = nmap.get_interface_link or function() return "absent" end
  o.link_lo = tostring((gil("lo")))
  o.link_missing = tostring((gil("nsefleet-none0")))
  local found = false
  local ifs = nmap.list_interfaces()
  for _, i in ipairs(type(ifs) == "table" and ifs or {}) do
    if i.device == "lo" and i.address == "127.0.0.1" and i.link == "loopback" and i.up == "up"
        and i.netmask == 8 then
      found = true
    end
  end
  o.list_interfaces_lo = found
end

action = function(host)
  local o = stdnse.output_table()
  o.type = SCRIPT_TYPE
  o.name = SCRIPT_NAME
  local reg = nmap.registry
  if SCRIPT_TYPE == "prerule" then
    facts(o)
    nmap.log_write("stdout", "runtime_basics log marker")
    reg.runtime_basics = {phases = {"prerule"}, hosts = {}}
  elseif SCRIPT_TYPE == "hostrule" then
    local r = reg.runtime_basics
    o.saw_prerule = r ~= nil and r.phases[1] == "prerule"
    if r then r.hosts[host.ip] = true end
  else
    local r = reg.runtime_basics
    local hosts = {}
    for ip in pairs(r and r.hosts or {}) do hosts[#hosts + 1] = ip end
    table.sort(hosts)
    o.saw_prerule = r ~= nil and r.phases[1] == "prerule"
    o.hosts = table.concat(hosts, ",")
  end
  return o
end
