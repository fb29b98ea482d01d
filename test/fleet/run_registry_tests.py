#!/usr/bin/env python3
"""nmap.registry across engines and workers: items that scripts on different hosts append to
one list, and sparse integer keys, all reach the postrule once each, as in one nmap process
(test/fleet/registry_append.nse); the NSE manual's whois pattern under nmap.mutex makes one
query per key (test/fleet/registry_whois.nse). In `nsefleet scan` (one engine per core), on
a coordinator with 4 worker processes, and on 4 workers with one killed -9 mid-scan;
nmap.new_targets_num() counts the whole fleet's added targets; the stock reverse-index
postrule equals nmap's.

Usage: run_registry_tests.py NSEFLEET_BINARY   (runs inside the lab's network namespace)"""
import os
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import testkit  # noqa: E402
from run_fleet_lab_tests import compare_scripts  # noqa: E402
from testkit import check, free_port  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
APPEND = os.path.join(HERE, "registry_append.nse")
WHOIS = os.path.join(HERE, "registry_whois.nse")
TARGETS_NSE = os.path.join(HERE, "registry_targets.nse")
LARGE = os.path.join(HERE, "registry_large.nse")
TARGETS = "127.1.0.0/26"
WANT = "items=64 distinct=64 sparse=64 wrong=0"
WHOIS_WANT = "queries=8 keys=8"


def postscript(xml, sid):
    for post in ET.parse(xml).getroot().iter("postscript"):
        for s in post.iter("script"):
            if s.get("id") == sid:
                return s.get("output", "").strip()
    return None


def host_outputs(xml, sid):
    """The outputs of script `sid` in every host's hostscript, in document order."""
    out = []
    for h in ET.parse(xml).getroot().iter("host"):
        for s in h.iter("script"):
            if s.get("id") == sid:
                out.append(s.get("output", "").strip())
    return out


def check_whois(xml, where, exact=True):
    """The whois pattern: one query per key, every host answered (a query the killed
    worker made under the lock and never published may be made again: not exact)."""
    outs = host_outputs(xml, "registry_whois")
    queried = sum(1 for o in outs if o.startswith("queried"))
    post = postscript(xml, "registry_whois")
    check(len(outs) == 64, "%s: every host ran the whois pattern (%d)" % (where, len(outs)))
    if exact:
        check(queried == 8 and post == WHOIS_WANT,
              "%s: one query per key under the fleet mutex (hosts queried %d, postrule %s)"
              % (where, queried, post))
    else:
        check(post is not None and post.endswith("keys=8") and queried >= 8,
              "%s: every key answered (hosts queried %d, postrule %s)" % (where, queried, post))


def run_fleet(binary, work, name, args, kill_after=None, targets=TARGETS, workers=4):
    """A coordinator and `workers` single-engine worker processes; with kill_after, worker 0 gets
    SIGKILL that many seconds in. Returns (coordinator rc, XML path)."""
    port = free_port()
    endpoint = "tcp://127.0.0.1:%d" % port
    xml = os.path.join(work, name + ".xml")
    log = open(os.path.join(work, name + ".coordinator.log"), "w")
    coord = subprocess.Popen([binary, "coordinator", "--listen", endpoint, "--insecure", "--state",
                              os.path.join(work, name + ".state"), "--lease-timeout", "2s"] + args +
                             ["-oX", xml, targets], stdout=subprocess.DEVNULL, stderr=log)
    time.sleep(0.3)
    workers = [subprocess.Popen([binary, "worker", "--connect", endpoint, "--insecure", "--engines", "1",
                                 "--name", "w%d" % i], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL) for i in range(workers)]
    if kill_after is not None:
        time.sleep(kill_after)
        workers[0].kill()
    rc = testkit.reap([coord], 180)[0]
    rc = "timeout" if rc is None else rc
    testkit.reap(workers, 20)
    log.close()
    return rc, xml


# Basic authentication on three addresses only: creds-summary sorts its hosts with
# ipOps.compare_ip(a, "le", b), an order function table.sort may reject ("invalid order
# function for sorting") once there are 4 hosts or more, in nmap as here, depending on the
# table's iteration order. Every other address answers /secret/ without authentication.
AUTH_HOSTS = ["127.0.1.5", "127.0.1.20", "127.0.1.40"]
NGINX_CONF = """
user root;
worker_processes 1;
daemon on;
pid %(d)s/nginx.pid;
error_log %(d)s/nginx.err;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path %(d)s/body;
  proxy_temp_path %(d)s/proxy;
  fastcgi_temp_path %(d)s/fastcgi;
  uwsgi_temp_path %(d)s/uwsgi;
  scgi_temp_path %(d)s/scgi;
  server { listen 8008; root %(d)s/www; }
%(auth)s
}
"""
AUTH_SERVER = """  server {
    listen %s:8008;
    root %%(d)s/www;
    location /secret/ { auth_basic "lab"; auth_basic_user_file %%(d)s/htpasswd; }
  }"""


def stock_vs_nmap(binary, work):
    """ssh-hostkey (its postrule lists hosts sharing a key) and http-brute against an nginx
    location with basic authentication (on AUTH_HOSTS), then creds-summary (which reads every found account
    from the registry) and duplicates (which compares what other scripts filed in it), over
    127.0.1.0/26: nmap's single process vs a coordinator and 3
    workers. Every result nmap gives must be there with the same output."""
    d = os.path.join(work, "nginx")
    os.makedirs(os.path.join(d, "www", "secret"))
    open(os.path.join(d, "www", "secret", "index.html"), "w").write("secret\n")
    pw = subprocess.run(["openssl", "passwd", "-apr1", "secret"], capture_output=True, text=True).stdout.strip()
    open(os.path.join(d, "htpasswd"), "w").write("admin:%s\n" % pw)
    conf = os.path.join(d, "nginx.conf")
    auth = "\n".join(AUTH_SERVER % a for a in AUTH_HOSTS) % {"d": d}
    open(conf, "w").write(NGINX_CONF % {"d": d, "auth": auth})
    users, passes = os.path.join(work, "users.txt"), os.path.join(work, "pass.txt")
    open(users, "w").write("root\nadmin\nguest\n")
    open(passes, "w").write("123456\npassword\nsecret\nletmein\n")
    r = subprocess.run(["nginx", "-c", conf], capture_output=True, text=True)
    if not check(r.returncode == 0, "nginx with a basic-auth location started", r.stderr):
        return
    try:
        args = ["-sT", "-Pn", "-n", "-p", "22,8008", "--script",
                "ssh-hostkey,http-brute,creds-summary,duplicates",
                "--script-args", "http-brute.path=/secret/,userdb=%s,passdb=%s" % (users, passes)]
        nx = os.path.join(work, "stock.nmap.xml")
        # nmap 7.93 scanning the /26 as one host group fails http-brute on the addresses with
        # authentication ("The service seems to have failed or is heavily firewalled", 0
        # guesses; alone it finds the account): its reference run takes one host at a time.
        subprocess.run(["nmap"] + args + ["--max-hostgroup", "1", "-oX", nx, "127.0.1.0/26"],
                       capture_output=True, timeout=600)
        rc, fx = run_fleet(binary, work, "stock", args, targets="127.0.1.0/26", workers=3)
        check(rc == 0, "3 workers: the stock-script scan finished (rc=%s)" % rc)
        if rc != 0:
            return
        same, flaky, out = compare_scripts(nx, fx)
        if flaky:
            testkit.info("lab flake accepted: ssh-hostkey got no key from sshd for %s on one side "
                         "(compare.py otherwise equal)" % sorted(flaky))
        brute = [o for o in host_outputs(fx, "http-brute") if "admin:secret - Valid credentials" in o]
        keys = host_outputs(fx, "ssh-hostkey")
        check(len(brute) == len(AUTH_HOSTS) and len(keys) + len(flaky) >= 64,
              "3 workers: http-brute found admin:secret on %d of %d hosts, ssh-hostkey ran on %d of 64"
              % (len(brute), len(AUTH_HOSTS), len(keys)))
        post = postscript(fx, "creds-summary") or ""
        check(post.count("admin:secret - Valid credentials") == len(AUTH_HOSTS) and
              all(a + ":" in post for a in AUTH_HOSTS),
              "3 workers: creds-summary lists the account of each of %d hosts once (%d)"
              % (len(AUTH_HOSTS), post.count("admin:secret - Valid credentials")))
        check(same, "3 workers: ssh-hostkey, http-brute, creds-summary and duplicates (host and "
              "postrule results) equal nmap's", out[-3000:])
        for sid in ("ssh-hostkey", "http-brute", "creds-summary", "duplicates"):
            check(postscript(nx, sid) is not None or host_outputs(nx, sid),
                  "nmap's run gave %s results (the lab exercises it)" % sid)
    finally:
        subprocess.run(["nginx", "-c", conf, "-s", "stop"], capture_output=True)


def inner(binary):
    work = tempfile.mkdtemp(prefix="registry-")
    try:
        base = ["-sn", "-Pn", "-n", "--max-hostgroup", "4", "--script", APPEND + "," + WHOIS]
        # ---- nsefleet scan: the engines of one process share the registry
        for i in (1, 2):
            xml = os.path.join(work, "scan%d.xml" % i)
            r = subprocess.run([binary, "scan"] + base + ["-oX", xml, TARGETS], capture_output=True,
                               text=True, timeout=120)
            got = postscript(xml, "registry_append") if r.returncode == 0 else None
            check(got == WANT, "scan run %d: every host's append and sparse key reach the postrule "
                  "once (%s)" % (i, got or r.stderr.strip()[-200:]))
            if r.returncode == 0:
                check_whois(xml, "scan run %d" % i)

        # ---- a coordinator and 4 worker processes
        rc, xml = run_fleet(binary, work, "fleet", base)
        got = postscript(xml, "registry_append") if rc == 0 else None
        check(got == WANT, "4 workers: every host's append and sparse key reach the postrule once (%s)"
              % (got or "coordinator rc=%s" % rc))
        if rc == 0:
            check_whois(xml, "4 workers")

        # ---- the same with one worker killed -9 mid-scan: its groups go to the others
        slow = base + ["--script-args", "registry_append.delay=1.5"]
        rc, xml = run_fleet(binary, work, "killed", slow, kill_after=2.5)
        got = postscript(xml, "registry_append") if rc == 0 else None
        check(got == WANT, "4 workers, one killed -9 mid-scan: every host's append reaches the "
              "postrule once (%s)" % (got or "coordinator rc=%s" % rc))
        if rc == 0:
            check_whois(xml, "4 workers, one killed", exact=False)
            with open(os.path.join(work, "killed.coordinator.log")) as f:
                check("lost" in f.read(), "the coordinator saw the killed worker go")

        # ---- nmap.new_targets_num() counts the targets every worker's scripts added
        rc, xml = run_fleet(binary, work, "targets", ["-sn", "-Pn", "-n", "--max-hostgroup", "2",
                                                     "--script", TARGETS_NSE], targets="127.1.0.1-16")
        got = postscript(xml, "registry_targets") if rc == 0 else None
        added = [o for o in host_outputs(xml, "registry_targets") if o == "added by a script"] if rc == 0 else []
        check(got == "new_targets_num=16" and len(added) == 16,
              "4 workers: nmap.new_targets_num() counts the 16 targets added fleet-wide (%s; %d added hosts "
              "scanned)" % (got or "coordinator rc=%s" % rc, len(added)))

        # ---- a registry larger than one fleet message (16 MiB): 12 MiB from the prerule, then
        # 640 KiB per host, 22 MiB in all; every engine and the postrule must see all of it
        large = ["-sn", "-Pn", "-n", "--max-hostgroup", "4", "--script", LARGE]
        want = "seed=ok hosts=16 good=16"
        xml = os.path.join(work, "large.xml")
        r = subprocess.run([binary, "scan"] + large + ["-oX", xml, "127.0.2.1-16"], capture_output=True,
                           text=True, timeout=300)
        got = postscript(xml, "registry_large") if r.returncode == 0 else None
        hosts = host_outputs(xml, "registry_large") if r.returncode == 0 else []
        check(got == want and hosts == ["seed ok"] * 16,
              "scan: a 22 MiB registry reaches every host and the postrule whole (%s; %d/16 hosts saw "
              "the seed)" % (got or r.stderr.strip()[-200:], hosts.count("seed ok")))
        rc, xml = run_fleet(binary, work, "large", large, targets="127.0.2.1-16", workers=2)
        got = postscript(xml, "registry_large") if rc == 0 else None
        hosts = host_outputs(xml, "registry_large") if rc == 0 else []
        check(got == want and hosts == ["seed ok"] * 16,
              "2 workers: a 22 MiB registry reaches every host and the postrule whole (%s; %d/16 hosts "
              "saw the seed)" % (got or "coordinator rc=%s" % rc, hosts.count("seed ok")))

        # ---- stock scripts whose postrules read the registry, on 3 workers vs nmap
        stock_vs_nmap(binary, work)

        # ---- the stock reverse-index postrule (port numbers are sparse integer keys)
        args = ["-sT", "-Pn", "-n", "-p", "21,22,6379,11211", "--script", "reverse-index", "127.0.0.1"]
        nx, fx = os.path.join(work, "ri.nmap.xml"), os.path.join(work, "ri.nsefleet.xml")
        subprocess.run(["nmap"] + args + ["-oX", nx], capture_output=True, timeout=120)
        subprocess.run([binary, "scan"] + args + ["-oX", fx], capture_output=True, timeout=120)
        want, got = postscript(nx, "reverse-index"), postscript(fx, "reverse-index")
        check(want is not None and got == want, "reverse-index postrule equals nmap's (nmap %r, nsefleet %r)"
              % (want, got))
    finally:
        if testkit.failed:
            testkit.info("outputs kept in " + work)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    testkit.lab_main(__file__, inner, __doc__, "nsefleet-registry-%d" % os.getpid(), 600, "registry tests")
