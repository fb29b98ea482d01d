#!/usr/bin/env python3
"""Runtime conformance tests for nsefleet: runs test/nse/runtime_*.nse through the binary and
checks their results exactly (XML, normal output, stdout/stderr, exit status, time).

  test/nse/run_runtime_tests.py [path/to/nsefleet] [case ...]

With no case names every case runs. Prints one line per case, details under a failing one,
then "N passed, M failed"; exit status 1 if any case failed. Only 127.0.0.1 listeners that
this runner starts itself are used. The expected values were cross-checked against the
stock nmap 7.93 binary (`nmap` in place of `nsefleet scan`) where nmap has the feature.
"""
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
import testkit  # noqa: E402
from testkit import ROOT  # noqa: E402

ERROR_TEXT = "ERROR: Script execution failed (use -d to debug)"


def script(name):
    return os.path.join(HERE, name + ".nse")


# ---------------------------------------------------------------- listeners

class Listener:
    """A TCP listener on 127.0.0.1 that accepts and closes connections until stopped."""

    def __init__(self, port=0):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stop_flag = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop_flag:
            try:
                conn, _ = self.sock.accept()
                conn.close()
            except OSError:
                continue

    def stop(self):
        self.stop_flag = True
        self.thread.join(2)
        self.sock.close()


def services_name(port):
    """The nmap-services name of port/tcp, or None."""
    for path in ("/usr/share/nmap/nmap-services",):
        try:
            with open(path) as f:
                for line in f:
                    parts = line.split()
                    if len(parts) >= 2 and parts[1] == f"{port}/tcp":
                        return parts[0]
        except OSError:
            pass
    return None


def known_service_listener():
    """A listener on a free port that nmap-services names (falls back to an ephemeral one)."""
    for port in (9929, 31337, 12345, 6667):
        try:
            return Listener(port)
        except OSError:
            continue
    return Listener(0)


# ---------------------------------------------------------------- running and parsing

class Run:
    def __init__(self, rc, out, err, elapsed, xml_text, normal_text):
        self.rc, self.out, self.err, self.elapsed = rc, out, err, elapsed
        self.normal = normal_text
        self.root = None
        self.xml_error = None
        try:
            self.root = ET.fromstring(xml_text) if xml_text else None
            if self.root is None:
                self.xml_error = "no XML output"
        except ET.ParseError as e:
            self.xml_error = f"XML does not parse: {e}"

    # Script elements by place.
    def prescript(self, sid):
        return self._find("prescript", sid)

    def postscript(self, sid):
        return self._find("postscript", sid)

    def _find(self, where, sid):
        if self.root is None:
            return None
        for cont in self.root.iter(where):
            for s in cont.findall("script"):
                if s.get("id") == sid:
                    return s
        return None

    def host(self, ip):
        if self.root is None:
            return None
        for h in self.root.findall("host"):
            for a in h.findall("address"):
                if a.get("addr") == ip:
                    return h
        return None

    def hostscript(self, ip, sid):
        h = self.host(ip)
        if h is None:
            return None
        for s in h.findall("hostscript/script"):
            if s.get("id") == sid:
                return s
        return None

    def port(self, ip, portid):
        h = self.host(ip)
        if h is None:
            return None
        for p in h.findall("ports/port"):
            if p.get("portid") == str(portid):
                return p
        return None

    def portscript(self, ip, portid, sid):
        p = self.port(ip, portid)
        if p is None:
            return None
        for s in p.findall("script"):
            if s.get("id") == sid:
                return s
        return None

    def all_script_ids(self):
        if self.root is None:
            return set()
        return {s.get("id") for s in self.root.iter("script")}


def run(binary, args, timeout=60):
    """Runs `binary scan args -oX tmp -oN tmp`; never raises on a timeout."""
    tmp = tempfile.mkdtemp(prefix="nsefleet-rt-")
    xml_path, normal_path = os.path.join(tmp, "o.xml"), os.path.join(tmp, "o.nmap")
    cmd = [binary, "scan"] + args + ["-oX", xml_path, "-oN", normal_path]
    t0 = time.monotonic()
    try:
        p = subprocess.run(cmd, capture_output=True, timeout=timeout)
        rc, out, err = p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired as e:
        rc, out, err = "timeout", e.stdout or b"", e.stderr or b""
    elapsed = time.monotonic() - t0

    def read(path):
        try:
            with open(path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    r = Run(rc, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"), elapsed,
            read(xml_path), read(normal_path))
    r.cmd = cmd
    shutil.rmtree(tmp, ignore_errors=True)
    return r


def struct(el):
    """A <script>/<table> element as Python data: dict when some child has a key (unkeyed
    children get "[i]"), list when none has, the element text when it has no children."""
    kids = [k for k in el if k.tag in ("elem", "table")]
    if not kids:
        return (el.text or "") if el.tag != "script" else el.get("output")
    vals = []
    for k in kids:
        vals.append((k.get("key"), (k.text or "") if k.tag == "elem" else struct(k)))
    if all(key is None for key, _ in vals):
        return [v for _, v in vals]
    out, i = {}, 0
    for key, v in vals:
        if key is None:
            i += 1
            key = f"[{i}]"
        out[key] = v
    return out


def normal_block(text, sid, section_start):
    """Lines of script `sid` in normal output, within the section that starts with the line
    `section_start` (e.g. "Nmap scan report for 127.0.0.2" or "Pre-scan script results:")."""
    lines = text.splitlines()
    try:
        i = lines.index(section_start)
    except ValueError:
        return None
    out = []
    for line in lines[i + 1:]:
        if line.startswith("Nmap scan report for ") or line.startswith("Post-scan script"):
            break
        if out:
            if not line.startswith("|"):
                break
            out.append(line)
            if line.startswith("|_"):
                break
        elif line.startswith("| " + sid + ":") or line.startswith("|_" + sid + ":"):
            out.append(line)
            if line.startswith("|_"):
                break
    return out or None


# ---------------------------------------------------------------- checking

class Case:
    def __init__(self, name):
        self.name = name
        self.problems = []

    def eq(self, label, got, want):
        if got == want:
            return
        if isinstance(got, dict) and isinstance(want, dict):
            for k in want:
                if k not in got:
                    self.problems.append(f"{label}.{k}: missing (want {want[k]!r})")
                elif got[k] != want[k]:
                    self.problems.append(f"{label}.{k}: got {got[k]!r}, want {want[k]!r}")
            for k in got:
                if k not in want:
                    self.problems.append(f"{label}.{k}: unexpected {got[k]!r}")
            if list(got) != list(want) and not self.problems:
                self.problems.append(f"{label}: key order {list(got)} != {list(want)}")
        else:
            self.problems.append(f"{label}: got {got!r}, want {want!r}")

    def subset(self, label, got, want):
        if not isinstance(got, dict):
            self.problems.append(f"{label}: got {got!r}, want a table with {want!r}")
            return
        for k, v in want.items():
            if got.get(k) != v:
                self.problems.append(f"{label}.{k}: got {got.get(k)!r}, want {v!r}")

    def true(self, label, cond, detail=""):
        if not cond:
            self.problems.append(f"{label}" + (f": {detail}" if detail else ""))

    def ran(self, r, rc=0):
        """Common checks of a run that must succeed."""
        if r.rc != rc:
            self.problems.append(f"exit status {r.rc}, want {rc}; stderr: {r.err.strip()[:400]!r}")
        if r.xml_error:
            self.problems.append(r.xml_error)

    def value(self, label, el):
        if el is None:
            self.problems.append(f"{label}: no script result")
            return None
        return struct(el)


def b(x):
    return "true" if x else "false"


# ---------------------------------------------------------------- cases

def case_basics(binary, c):
    r = run(binary, ["-Pn", "-n", "-sn", "-T4", "--script", script("runtime_basics"),
                     "127.0.0.1-3"])
    c.ran(r)
    c.eq("prerule", c.value("prerule", r.prescript("runtime_basics")), {
        "type": "prerule", "name": "runtime_basics",
        "clock_type": "float", "clock_near_os_time": "true",
        "clock_ms_type": "float", "clock_ms_near_clock": "true",
        "debugging": "0", "verbosity": "1", "timing_level": "4",
        "fetchfile_services_type": "string", "fetchfile_services_suffix": "true",
        "fetchfile_services_readable": "true",
        "fetchfile_missing": "nil", "fetchfile_missing_nvals": "1",
        "fetchfile_directory": "nil",
        "is_privileged": b(os.geteuid() == 0), "have_ssl": "true",
        "address_family": "inet",
        "link_lo": "loopback", "link_missing": "nil",
        "list_interfaces_lo": "true",
    })
    for ip in ("127.0.0.1", "127.0.0.2", "127.0.0.3"):
        c.eq(f"hostrule {ip}", c.value(f"hostrule {ip}", r.hostscript(ip, "runtime_basics")),
             {"type": "hostrule", "name": "runtime_basics", "saw_prerule": "true"})
    c.eq("postrule", c.value("postrule", r.postscript("runtime_basics")), {
        "type": "postrule", "name": "runtime_basics", "saw_prerule": "true",
        "hosts": "127.0.0.1,127.0.0.2,127.0.0.3"})
    c.true("log_write to stdout", "NSE: runtime_basics log marker\n" in r.out,
           "no 'NSE: runtime_basics log marker' line on stdout")


def case_hostport(binary, c):
    l1, l2 = known_service_listener(), Listener(0)
    closed = testkit.free_port()  # nothing listens there: closed
    try:
        p1, p2 = l1.port, l2.port
        svc = services_name(p1)
        args = ["--script-args", f"rt_p1={p1},rt_p2={p2},rt_closed={closed}",
                "--script", script("runtime_hostport") + "," + script("runtime_hostport_peer")]
        r = run(binary, ["-sT", "-Pn", "-n", "-p", f"{p1},{p2},{closed}"] + args + ["127.0.0.1"])
        c.ran(r)
        opened = ",".join(str(p) for p in sorted((p1, p2)))
        where = "runtime_hostport.nse"

        def err(line, msg):
            return f"{HERE}/{where}:{line}: {msg}"

        lines = {}
        with open(script("runtime_hostport")) as f:
            for n, text in enumerate(f, 1):
                if text.lstrip().startswith("o.err_"):
                    lines[text.split("=")[0].strip()[2:]] = n
        c.eq("hostrule", c.value("hostrule", r.hostscript("127.0.0.1", "runtime_hostport")), {
            "ip": "127.0.0.1", "name": "", "name_type": "string", "targetname": "nil",
            "registry_type": "table", "interface": "nil", "bin_ip_len": "4",
            "times_srtt_type": "float",
            "registry_peer": "peer:127.0.0.1",
            "p1_state": "open", "closed_state": "closed",
            "unknown_port": "nil", "unknown_proto": "nil", "fresh_copies": "true",
            "open_ports": opened, "closed_ports": str(closed), "filtered_ports": "",
            "get_ports_restart": "true",
            "set_state_after": "open", "set_state_reason": "script-set",
            "set_state_p2": "closed",
            # Messages as the stock nmap 7.93 raises them (its checks are lua_isstring,
            # so a number protocol gets the "must be udp/sctp/tcp" message).
            "err_float_number": err(lines["err_float_number"],
                                    "port 'number' field must be an integer"),
            "err_string_number": err(lines["err_string_number"],
                                     "port 'number' field must be an integer"),
            "err_proto_type": err(lines["err_proto_type"],
                                  "port 'protocol' field must be \"udp\", \"sctp\" or \"tcp\""),
            "err_proto_table": err(lines["err_proto_table"],
                                   "port 'protocol' field must be a string"),
            "err_proto_value": err(lines["err_proto_value"],
                                   "port 'protocol' field must be \"udp\", \"sctp\" or \"tcp\""),
            "err_not_processed": err(lines["err_not_processed"],
                                     "bad argument #1 to 'get_port_state' (host is not being "
                                     "processed right now)"),
            "err_no_ip": err(lines["err_no_ip"],
                             "host table does not have a 'ip' or 'targetname' field"),
            "err_version_type": err(lines["err_version_type"],
                                    "port 'version' field must be a table"),
            "err_tunnel": err(lines["err_tunnel"],
                              "bad argument #2 to 'set_port_version' (invalid value for "
                              "port.version.service_tunnel)"),
            "err_get_ports_proto": err(lines["err_get_ports_proto"],
                                       "bad argument #3 to 'get_ports' (invalid option 'icmp')"),
            "err_set_state_value": err(lines["err_set_state_value"],
                                       "bad argument #3 to 'set_port_state' (invalid option "
                                       "'filtered')"),
        })
        c.eq("portrule", c.value("portrule", r.portscript("127.0.0.1", p1, "runtime_hostport")), {
            "number": str(p1), "number_type": "integer", "protocol": "tcp", "state": "open",
            "reason": "syn-ack", "service": str(svc), "version_name": str(svc),
            "name_confidence": "3.0", "name_confidence_type": "float",
            "service_dtype": "table", "service_tunnel": "none", "cpe_type": "table",
            "copy_change_ignored": "true",
            "after_product": "RuntimeTestProduct", "after_extrainfo": "bell.here",
            "after_confidence": "10.0", "after_dtype": "probed",
        })
        peer = r.hostscript("127.0.0.1", "runtime_hostport_peer")
        c.eq("peer", peer.get("output") if peer is not None else None, "main saw 127.0.0.1")
        c.true("no portrule on other ports",
               r.portscript("127.0.0.1", p2, "runtime_hostport") is None)
        # Final engine data in XML.
        pc, pp2, pp1 = r.port("127.0.0.1", closed), r.port("127.0.0.1", p2), r.port("127.0.0.1", p1)
        st = lambda p: None if p is None or p.find("state") is None else (
            p.find("state").get("state"), p.find("state").get("reason"))
        c.eq("xml state of closed port after set_port_state", st(pc), ("open", "script-set"))
        c.eq("xml state of p2 after set_port_state", st(pp2), ("closed", "script-set"))
        svc_el = pp1.find("service") if pp1 is not None else None
        c.eq("xml <service> of p1",
             None if svc_el is None else (svc_el.get("product"), svc_el.get("version"),
                                          svc_el.get("extrainfo"), svc_el.get("method"),
                                          svc_el.get("conf")),
             ("RuntimeTestProduct", "1.2", "bell.here", "probed", "10"))

        # A target given by name: host.targetname.
        r2 = run(binary, ["-Pn", "-n", "-p", str(p1)] + args + ["localhost"])
        c.ran(r2)
        c.subset("hostrule localhost",
                 c.value("hostrule localhost", r2.hostscript("127.0.0.1", "runtime_hostport")),
                 {"ip": "127.0.0.1", "name": "", "targetname": "localhost",
                  "registry_peer": "peer:127.0.0.1"})
    finally:
        l1.stop()
        l2.stop()


def case_mutex(binary, c):
    r = run(binary, ["-Pn", "-n", "-sn", "--script", script("runtime_mutex"), "127.0.0.1"])
    c.ran(r)
    c.eq("prerule", c.value("prerule", r.prescript("runtime_mutex")), {
        "contention_finished": "true", "contention_counter": "50",
        "contention_max_inside": "1", "contention_free_after": "true",
        "same_function": "true", "table_keys_distinct": "true", "table_key_same": "true",
        "number_key_error": "true",
        "trylock_free": "true", "running_is_me": "true",
        "running_after_done": "nil", "running_after_done_nvals": "1",
        "done_unlocked": "do not have a lock on this mutex",
        "trylock_held": "false", "running_is_worker": "true",
        "done_by_non_owner": "do not have a lock on this mutex",
        "trylock_after_release": "true",
        "fifo_order": "1,2,3,4,5",
        "waiter_got_lock_after_error": "true", "dead_holder_status": "dead",
        "dead_holder_error": "true", "lock_free_after_return": "true",
    })


def case_condvar(binary, c):
    r = run(binary, ["-Pn", "-n", "-sn", "--script", script("runtime_condvar"), "127.0.0.1"])
    c.ran(r)
    c.eq("prerule", c.value("prerule", r.prescript("runtime_condvar")), {
        "same_function": "true",
        "after_first_signal": "3", "after_second_signal": "3,2", "after_broadcast": "3,2,1",
        "bad_op": "true", "boolean_key_error": "true", "broadcast_woken": "8",
        "woken_by_worker_return": "true", "woken_by_worker_error": "true",
    })


def case_try(binary, c):
    r = run(binary, ["-Pn", "-n", "-sn", "--script",
                     script("runtime_try") + "," + script("runtime_try_silent"), "127.0.0.1"])
    c.ran(r)
    c.eq("prerule", c.value("prerule", r.prescript("runtime_try")), {
        "true_values": "1,2", "true_count": "3", "true_only_count": "0",
        "handler_nargs": "0", "false_ok": "false", "false_err_type": "table",
        "false_errtype": "nmap.new_try", "false_message": "the message", "handler_calls": "1",
        "nil_ok": "false", "nil_errtype": "nmap.new_try", "handler_calls_after_nil": "2",
        "no_message_ok": "false", "no_message": "nil", "string_first": "5",
        "yielding_handler_ran": "true", "yielding_handler_message": "after sleep",
        "yielding_handler_ok": "false",
    })
    c.true("non-boolean warning on stderr",
           "finalizing a non-conforming function that did not first return a boolean" in r.err)
    c.true("failing try leaves no XML result", "runtime_try_silent" not in r.all_script_ids())
    c.true("failing try leaves no normal output",
           not any("runtime_try_silent" in line for line in (r.normal + r.out).splitlines()
                   if line.startswith("|")))


def case_stdnse(binary, c):
    l1 = Listener(0)
    try:
        p1 = l1.port
        r = run(binary, ["-Pn", "-n", "-p", str(p1), "--script-args", f"rt_p1={p1}",
                         "--script", script("runtime_stdnse"), "127.0.0.1"])
        c.ran(r)
        both = {
            "base_is_running": "true", "gettid_is_running": "true",
            "getid": "runtime_stdnse", "getinfo_main": "true", "isworker_main": "false",
            "new_thread_returns_coroutine": "true", "status_before": "suspended",
            "status_ok": "dead,nil", "worker_args": "x,7", "worker_base_is_self": "true",
            "worker_gettid_is_parent": "true", "worker_getid": "runtime_stdnse",
            "worker_getinfo": "true", "worker_isworker": "true",
            "status_error": "dead,true", "new_thread_bad_arg": "true",
        }
        c.eq("prerule", c.value("prerule", r.prescript("runtime_stdnse")), dict(
            {"type": "prerule"}, **both, gethostport_count="2", gethostport_host="nil",
            worker_gethostport_host="nil"))
        c.eq("portrule", c.value("portrule", r.portscript("127.0.0.1", p1, "runtime_stdnse")),
             dict({"type": "portrule"}, **both, host_original_differs="true",
                  port_original_differs="true", host_ip="127.0.0.1",
                  port_number_matches="true", registry_shared="true",
                  worker_gets_originals="true"))
    finally:
        l1.stop()


def case_coroutine(binary, c):
    r = run(binary, ["-Pn", "-n", "-sn", "--script", script("runtime_coroutine"), "127.0.0.1"])
    c.ran(r)
    c.eq("prerule", c.value("prerule", r.prescript("runtime_coroutine")), {
        "wrap_values": "first:a,second:b,last", "resume_values": "true,2,true,10",
        "resume_sleep_waited": "true", "resume_status_end": "dead",
        "nested": "inner,inner-done", "mutex_owner_is_inner": "true",
        "mutex_done_by_outer": "do not have a lock on this mutex",
        "mutex_released": "true", "wrap_error": "false,inner failure",
    })


def case_errors(binary, c):
    scripts = ",".join(script(s) for s in ("runtime_error", "runtime_error_rule", "runtime_ok",
                                           "runtime_try_silent"))
    r = run(binary, ["-Pn", "-n", "-sn", "--script", scripts, "127.0.0.1"])
    c.ran(r)
    get = lambda el: None if el is None else el.get("output")
    c.eq("action error", get(r.hostscript("127.0.0.1", "runtime_error")), ERROR_TEXT)
    c.eq("rule error", get(r.hostscript("127.0.0.1", "runtime_error_rule")), ERROR_TEXT)
    c.eq("other script (host)", get(r.hostscript("127.0.0.1", "runtime_ok")),
         "still running hostrule")
    c.eq("other script (pre)", get(r.prescript("runtime_ok")), "still running prerule")
    c.true("no try output", "runtime_try_silent" not in r.all_script_ids())
    c.eq("normal output", normal_block(r.normal, "runtime_error",
                                       "Nmap scan report for 127.0.0.1"),
         ["|_runtime_error: " + ERROR_TEXT])
    c.true("no traceback without -d", "deliberate runtime_error failure" not in r.err)

    d = run(binary, ["-d", "-Pn", "-n", "-sn", "--script", scripts, "127.0.0.1"])
    c.ran(d)
    c.true("-d: no result for the failing action", d.hostscript("127.0.0.1", "runtime_error") is None)
    c.true("-d: no result for the failing rule",
           d.hostscript("127.0.0.1", "runtime_error_rule") is None)
    c.eq("-d: other script", get(d.hostscript("127.0.0.1", "runtime_ok")), "still running hostrule")
    c.true("-d: error message on stderr", "deliberate runtime_error failure" in d.err)
    c.true("-d: rule error message on stderr", "deliberate rule failure" in d.err)
    c.true("-d: traceback on stderr", "stack traceback" in d.err)
    c.true("-d: new_try exit reported",
           "Finished runtime_try_silent against 127.0.0.1. Reason: quiet exit" in d.err + d.out)


def case_timeouts(binary, c):
    scripts = ",".join(script(s) for s in ("runtime_timeout_loop", "runtime_timeout_pcall",
                                           "runtime_timeout_sleep", "runtime_ok"))
    r = run(binary, ["-Pn", "-n", "-sn", "--script-timeout", "2s", "--script", scripts,
                     "127.0.0.1"], timeout=30)
    c.ran(r)
    c.true("finishes in < 10 s", r.elapsed < 10, f"took {r.elapsed:.1f} s")
    c.true("killed after the timeout, not before", r.elapsed >= 1.5, f"took {r.elapsed:.1f} s")
    ids = r.all_script_ids()
    for s in ("runtime_timeout_loop", "runtime_timeout_pcall", "runtime_timeout_sleep"):
        c.true(f"no output for {s}", s not in ids)
    get = lambda el: None if el is None else el.get("output")
    c.eq("other script (pre)", get(r.prescript("runtime_ok")), "still running prerule")
    c.eq("other script (host)", get(r.hostscript("127.0.0.1", "runtime_ok")),
         "still running hostrule")


def case_output(binary, c):
    r = run(binary, ["-Pn", "-n", "-sn", "--script", script("runtime_output"), "127.0.0.1-9"])
    c.ran(r)
    sid = "runtime_output"

    def el(n):
        return r.hostscript(f"127.0.0.{n}", sid)

    def out(n):
        e = el(n)
        return None if e is None else e.get("output")

    def normal(n):
        return normal_block(r.normal, sid, f"Nmap scan report for 127.0.0.{n}")

    # 1: string
    c.eq("string xml", out(1), "plain string")
    c.eq("string has no children", None if el(1) is None else (len(list(el(1))), el(1).text), (0, None))
    c.eq("string normal", normal(1), ["|_runtime_output: plain string"])
    # 2: nested table (contract 7.3)
    c.eq("table output attr", out(2), "\n  list: \n    a\n    \n      b\n      c\n  n: 3")
    c.eq("table xml", c.value("table xml", el(2)), {"list": ["a", ["b", "c"]], "n": "3"})
    c.eq("table normal", normal(2), [
        "| runtime_output: ", "|   list: ", "|     a", "|     ", "|       b", "|       c",
        "|_  n: 3"])
    # 3: (table, string)
    c.eq("pair output attr", out(3), "custom text")
    c.eq("pair xml", c.value("pair xml", el(3)) if el(3) is not None and len(list(el(3))) else None,
         {"x": "1"})
    c.eq("pair normal", normal(3), ["|_runtime_output: custom text"])
    # 4: number
    c.eq("number output attr", out(4), "42")
    c.eq("number xml text", None if el(4) is None else el(4).text, "42")
    c.eq("number normal", normal(4), ["|_runtime_output: 42"])
    # 5: nil
    c.true("nil: no result", el(5) is None)
    # 6: empty string: XML only
    c.eq("empty xml", out(6), "")
    c.eq("empty normal", normal(6), None)
    c.true("empty: 'Bug in runtime_output: no string output.' on stderr",
           "Bug in runtime_output: no string output." in r.err)
    # 7: control bytes
    c.eq("control xml", out(7), "a\rb\\x01c\\x7Fd\tt\\xFF")
    c.eq("control normal", normal(7), ["|_runtime_output: a\\x0Db\\x01c\\x7Fd\tt\\xFF"])
    # 8: multi-line string
    c.eq("multiline xml", out(8), "line1\nline2\n")
    c.eq("multiline normal", normal(8), ["| runtime_output: line1", "|_line2"])
    # 9: XML-special characters
    c.eq("special xml", c.value("special xml", el(9)), ["<&>\"'", "two"])
    c.eq("special output attr", out(9), "\n  <&>\"'\n  two")
    c.eq("special normal", normal(9), ["| runtime_output: ", "|   <&>\"'", "|_  two"])


def case_args(binary, c):
    r = run(binary, ["-Pn", "-n", "-sn", "--script", script("runtime_args"), "--script-args",
                     'a=1,b={x,y},c="q,u\\"oted",runtime_args.k=pv', "127.0.0.1"])
    c.ran(r)
    c.eq("--script-args", c.value("--script-args", r.prescript("runtime_args")), {
        "a": "string:1", "b": "{string:x;string:y}", "c": 'string:q,u"oted',
        "prefixed": "string:pv", "from_file": "nil:nil", "missing": "nil:nil",
        "registry_type": "table", "registry_a": "string:1",
        "registry_b": "{string:x;string:y}", "registry_c": 'string:q,u"oted',
    })
    tmp = tempfile.mkdtemp(prefix="nsefleet-rt-args-")
    try:
        path = os.path.join(tmp, "args.txt")
        with open(path, "w") as f:
            f.write("fa=fromfile\nb={z}\na=fromfile\n")
        r2 = run(binary, ["-Pn", "-n", "-sn", "--script", script("runtime_args"),
                          "--script-args-file", path, "--script-args", "a=2", "127.0.0.1"])
        c.ran(r2)
        c.eq("--script-args-file", c.value("--script-args-file", r2.prescript("runtime_args")), {
            "a": "string:2", "b": "{string:z}", "c": "nil:nil", "prefixed": "nil:nil",
            "from_file": "string:fromfile", "missing": "nil:nil", "registry_type": "table",
            "registry_a": "string:2", "registry_b": "{string:z}", "registry_c": "nil:nil",
        })
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def case_selection(binary, c):
    get = lambda el: None if el is None else el.get("output")
    tmp = tempfile.mkdtemp(prefix="nsefleet-rt-dir-")
    try:
        for s in ("runtime_dep_a", "runtime_dep_b", "runtime_ok"):
            shutil.copy(script(s), tmp)
        with open(os.path.join(tmp, "not_a_script.txt"), "w") as f:
            f.write("not lua\n")
        r = run(binary, ["-Pn", "-n", "-sn", "--script", tmp + "/", "127.0.0.1"])
        c.ran(r)
        c.eq("dir: A", get(r.prescript("runtime_dep_a")), "A done")
        c.eq("dir: B", get(r.prescript("runtime_dep_b")), "B saw written by A")
        c.eq("dir: ok", get(r.prescript("runtime_ok")), "still running prerule")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    r = run(binary, ["-Pn", "-n", "-sn", "--script",
                     script("runtime_dep_b") + "," + script("runtime_dep_a"), "127.0.0.1"])
    c.ran(r)
    c.eq("dependencies: B after A", get(r.prescript("runtime_dep_b")), "B saw written by A")
    c.eq("dependencies: A", get(r.prescript("runtime_dep_a")), "A done")

    r = run(binary, ["-Pn", "-n", "-sn", "--script", "+" + script("runtime_forced"), "127.0.0.1"])
    c.ran(r)
    c.eq("forced '+'", get(r.prescript("runtime_forced")), "forced run")
    r = run(binary, ["-Pn", "-n", "-sn", "--script", script("runtime_forced"), "127.0.0.1"])
    c.ran(r)
    c.true("not forced: rule false, no output", r.prescript("runtime_forced") is None)


def case_memory(binary, c):
    # A script that keeps allocating hits the engine's cap: it fails alone, the engine and
    # the other script of the same phase go on.
    scripts = ",".join(script(s) for s in ("runtime_memory", "runtime_memory_peer"))
    r = run(binary, ["-Pn", "-n", "-sn", "--engine-memory", "64", "--script", scripts,
                     "127.0.0.1"], timeout=60)
    c.ran(r)
    get = lambda el: None if el is None else el.get("output")
    c.eq("capped script fails", get(r.prescript("runtime_memory")), ERROR_TEXT)
    c.eq("peer unaffected", get(r.prescript("runtime_memory_peer")), "still alive")
    d = run(binary, ["-d", "-Pn", "-n", "-sn", "--engine-memory", "64", "--script", scripts,
                     "127.0.0.1"], timeout=60)
    c.true("-d: memory error named", "not enough memory" in d.err)


def case_nselib_unittest(binary, c):
    # nmap's own nselib test suites (loads ~100 modules: openssl, lpeg, zlib, the 5.4 shims).
    r = run(binary, ["-Pn", "-n", "-sn", "--script", "unittest", "--script-args",
                     "unittest.run", "127.0.0.1"], timeout=120)
    c.ran(r)
    out = r.prescript("unittest")
    c.eq("unittest result", None if out is None else out.get("output"), "All tests passed")


def case_newtargets(binary, c):
    # Targets added by a prerule (target.add) and by a hostrule (nmap.add_targets) are scanned.
    r = run(binary, ["-Pn", "-n", "-sn", "--script", script("runtime_newtargets"),
                     "--script-args", "newtargets", "127.0.0.1"])
    c.ran(r)
    pre = r.prescript("runtime_newtargets")
    c.eq("prerule counters", None if pre is None else struct(pre),
         {"prerule_added": "true/1", "bad": "0", "total": "1"})
    for ip in ("127.0.0.1", "127.0.0.7", "127.0.0.8"):
        el = r.hostscript(ip, "runtime_newtargets")
        c.true("host %s scanned" % ip, el is not None and struct(el).get("seen") == ip)
    el = r.hostscript("127.0.0.7", "runtime_newtargets")
    c.eq("hostrule add", None if el is None else struct(el).get("hostrule_added"), "1")


def case_lua53(binary, c):
    # Lua 5.3 arithmetic/bitwise coercions and string.unpack 'z', as nmap 7.93 (Lua 5.3) gives.
    r = run(binary, ["-Pn", "-n", "-sn", "--script", script("runtime_lua53"), "127.0.0.1"])
    c.ran(r)
    el = r.prescript("runtime_lua53")
    c.eq("5.3 semantics", None if el is None else struct(el), {
        "add": "11.0", "mul": "12.0", "idiv": "3.0", "num": "11", "band": "1", "shl": "16",
        "unm": "-2.0", "bad_arith": "raises", "bad_bits": "raises", "lpeg": "4",
        "unpack": "abc/5"})


def case_script_trace(binary, c):
    # --script-trace prints each script socket's connect, data (text, or a hex dump when
    # more than 5% is unprintable) and close, in nmap's layout.
    banner = b"HELLO-TRACE banner sent by the runtime test\n"
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    port = srv.getsockname()[1]
    stop = threading.Event()

    def serve():
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            try:
                conn.sendall(banner)
                time.sleep(0.5)
            except OSError:
                pass
            conn.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        r = run(binary, ["-sT", "-Pn", "-n", "-p", str(port), "--script", "banner",
                         "--script-trace", "127.0.0.1"])
        c.ran(r)
        flow = r"NSE: TCP 127\.0\.0\.1:(\d+) %s 127\.0\.0\.1:" + str(port) + r" \| %s"
        m = re.search(flow % (">", "CONNECT"), r.out)
        c.true("trace: CONNECT line", m, r.out[-1500:])
        if m:
            local = m.group(1)
            c.true("trace: the banner received, as text",
                   re.search((flow % ("<", re.escape(banner.decode().strip()))).replace(
                       r"(\d+)", local), r.out), r.out[-1500:])
            c.true("trace: CLOSE line",
                   re.search((flow % (">", "CLOSE")).replace(r"(\d+)", local), r.out),
                   r.out[-1500:])
    finally:
        stop.set()
        t.join(timeout=5)
        srv.close()


CASES = [
    ("basics", case_basics),
    ("hostport", case_hostport),
    ("mutex", case_mutex),
    ("condvar", case_condvar),
    ("try", case_try),
    ("stdnse", case_stdnse),
    ("coroutine", case_coroutine),
    ("errors", case_errors),
    ("timeouts", case_timeouts),
    ("output", case_output),
    ("args", case_args),
    ("selection", case_selection),
    ("memory", case_memory),
    ("nselib_unittest", case_nselib_unittest),
    ("newtargets", case_newtargets),
    ("lua53", case_lua53),
    ("script_trace", case_script_trace),
]


def main():
    argv = sys.argv[1:]
    binary = os.path.join(ROOT, "build", "nsefleet")
    if argv and (os.sep in argv[0] or os.path.isfile(argv[0])):
        binary = os.path.abspath(argv.pop(0))
    wanted = set(argv)
    if not os.access(binary, os.X_OK):
        print(f"binary not found or not executable: {binary}")
        return 2
    t0 = time.monotonic()
    for name, fn in CASES:
        if wanted and name not in wanted:
            continue
        c = Case(name)
        t = time.monotonic()
        try:
            fn(binary, c)
        except Exception as e:  # a broken runtime must fail the case, not the runner
            c.problems.append(f"runner exception: {type(e).__name__}: {e}")
        dt = time.monotonic() - t
        testkit.check(not c.problems, f"{name} ({dt:.1f}s)", "\n".join([""] + c.problems))
    testkit.info(f"total time {time.monotonic() - t0:.1f}s")
    return testkit.summary()


if __name__ == "__main__":
    sys.exit(main())
