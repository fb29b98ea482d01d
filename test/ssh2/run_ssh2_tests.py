#!/usr/bin/env python3
"""The libssh2 binding against a real OpenSSH server, nsefleet compared with nmap 7.93.

  test/ssh2/run_ssh2_tests.py [--binary build/nsefleet] [--nmap nmap] [--keep] [names...]

Creates a network namespace with only `lo` up and runs sshd on 127.0.0.1:22 inside it (own
host key, own config), so shortport.ssh matches without version detection and nothing on the
machine collides. Logins go to a dedicated account `nsefleet-ssh` (created with useradd when
missing, and deleted again at the end in that case) with a random password and a generated
ed25519 key. Each case scans with nsefleet and with nmap (`-sT -Pn -n -p 22 --script X
--script-args ... 127.0.0.1 -oX`) and compares the XML with test/conformance/compare.py; the
ssh2_api.nse case calls every binding function directly, and a few results are also checked
against facts known independently (ssh-keygen fingerprints, the password). Needs root.
Prints "N passed, M failed"; exit status 1 on any failure.
"""
import argparse
import base64
import hashlib
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
import testkit  # noqa: E402
from testkit import ROOT, check  # noqa: E402

COMPARE = os.path.join(ROOT, "test", "conformance", "compare.py")
USER = "nsefleet-ssh"
SCAN_TIMEOUT = 240


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


class Lab:
    """sshd in a private namespace plus the key material and the test account."""

    def __init__(self, keep):
        self.keep = keep
        self.ns = f"nsefleet-ssh2-{os.getpid()}"
        self.dir = tempfile.mkdtemp(prefix="nsefleet-ssh2.")
        self.sshd = None
        self.created_user = False
        self.password = "pw-" + secrets.token_hex(8)

    def path(self, name):
        return os.path.join(self.dir, name)

    def nsx(self, cmd):
        return testkit.ns_argv(self.ns, cmd)

    def start(self):
        # sshd reads authorized_keys with the user's privileges: the directory must be
        # traversable; private keys stay 0600.
        os.chmod(self.dir, 0o755)
        for name in ("host_key", "good_key", "bad_key"):
            run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", self.path(name)])
        shutil.copy(self.path("good_key.pub"), self.path("authorized_keys"))
        os.chmod(self.path("authorized_keys"), 0o644)
        try:
            pwd.getpwnam(USER)
        except KeyError:
            run(["useradd", "-M", "-d", "/", "-s", "/bin/sh", "-c", "nsefleet ssh tests", USER])
            self.created_user = True
        run(["chpasswd"], input=f"{USER}:{self.password}\n")
        with open(self.path("sshd_config"), "w") as f:
            f.write(f"""Port 22
ListenAddress 127.0.0.1
HostKey {self.path('host_key')}
PidFile {self.path('sshd.pid')}
AuthorizedKeysFile {self.path('authorized_keys')}
StrictModes no
UsePAM no
PasswordAuthentication yes
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin no
AllowUsers {USER}
MaxStartups 200
MaxSessions 20
LogLevel ERROR
""")
        os.makedirs("/run/sshd", exist_ok=True)
        testkit.ns_add(self.ns)
        self.sshd = subprocess.Popen(self.nsx(["/usr/sbin/sshd", "-D", "-e", "-f", self.path("sshd_config")]),
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=open(self.path("sshd.log"), "w"))
        deadline = time.time() + 15
        while time.time() < deadline:
            probe = subprocess.run(self.nsx(["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/22"]),
                                   capture_output=True)
            if probe.returncode == 0:
                return
            if self.sshd.poll() is not None:
                break
            time.sleep(0.2)
        raise RuntimeError("sshd did not come up: " + open(self.path("sshd.log")).read())

    def stop(self):
        if self.sshd and self.sshd.poll() is None:
            self.sshd.terminate()
            try:
                self.sshd.wait(5)
            except subprocess.TimeoutExpired:
                self.sshd.kill()
                self.sshd.wait(5)
        # Connection children left in our namespace were all started by this run.
        testkit.ns_delete(self.ns)
        if self.created_user:
            subprocess.run(["userdel", USER], capture_output=True)
        if self.keep:
            testkit.info(f"kept {self.dir}")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


def fingerprint(pubfile, alg):
    """colon-separated uppercase hex digest of the key blob, as hostkey_hash formats it."""
    blob = base64.b64decode(open(pubfile).read().split()[1])
    d = hashlib.new(alg, blob).hexdigest().upper()
    return ":".join(d[i:i + 2] for i in range(0, len(d), 2))


def script_outputs(xml_text):
    """{script id: output} of the first port of a scan's XML."""
    return {m.group(1): m.group(2) for m in
            re.finditer(r'<script id="([^"]+)" output="([^"]*)"', xml_text)}


BRUTE_STATS = re.compile(r"Performed \d+ guesses in \d+ seconds, average tps: [0-9.]+")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=os.path.join(ROOT, "build", "nsefleet"))
    ap.add_argument("--nmap", default="nmap")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (outputs, logs)")
    ap.add_argument("names", nargs="*")
    a = ap.parse_args()
    if os.geteuid() != 0:
        check(False, "needs root (ip netns, useradd)")
        testkit.summary()
        return 2

    # meson's timeout sends SIGTERM: unwind through the finally below so the lab is removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    lab = Lab(a.keep)
    try:
        lab.start()
        p = lab.path
        userdb, passdb = p("users.lst"), p("pass.lst")
        with open(userdb, "w") as f:
            f.write(f"{USER}\nnosuchuser\n")
        with open(passdb, "w") as f:
            f.write(f"letmein\n{lab.password}\nqwerty\n")
        cases = [
            ("auth-methods", "ssh-auth-methods", f"ssh.user={USER}"),
            ("auth-methods-random-user", "ssh-auth-methods", ""),
            ("publickey-acceptance-pub", "ssh-publickey-acceptance",
             f"ssh.usernames={{{USER}}},ssh.publickeys={{{p('good_key.pub')},{p('bad_key.pub')}}}"),
            ("publickey-acceptance-priv", "ssh-publickey-acceptance",
             f"ssh.usernames={{{USER},nosuchuser}},ssh.privatekeys={{{p('good_key')},{p('bad_key')}}}"),
            ("publickey-acceptance-knownbad", "ssh-publickey-acceptance", ""),
            ("run-password", "ssh-run",
             f"ssh-run.username={USER},ssh-run.password={lab.password},ssh-run.cmd=\"echo hi; id -un\""),
            ("run-privatekey", "ssh-run",
             f"ssh-run.username={USER},ssh-run.privatekey={p('good_key')},ssh-run.cmd=\"printf 'x\\ty\\n'\""),
            ("run-badpassword", "ssh-run",
             f"ssh-run.username={USER},ssh-run.password=nope,ssh-run.cmd=\"echo hi\""),
            ("brute", "ssh-brute", f"userdb={userdb},passdb={passdb},ssh-brute.timeout=5s"),
            ("api", os.path.join(HERE, "ssh2_api.nse"),
             f"ssh2_api.user={USER},ssh2_api.pass={lab.password},ssh2_api.key={p('good_key')},"
             f"ssh2_api.badkey={p('bad_key')},ssh2_api.closed=23"),
            # nsefleet only: nmap's binding ignores set_timeout (its waits use the NSE
            # socket's 30 s), so this case is checked against known facts below.
            ("wait", os.path.join(HERE, "ssh2_wait.nse"),
             f"ssh2_wait.user={USER},ssh2_wait.pass={lab.password}"),
        ]
        only_nsefleet = {"wait"}
        outs = {}
        for name, script, args in cases:
            if a.names and name not in a.names:
                continue
            xmls = {}
            scanners = [("nsefleet", [a.binary, "scan"]), ("nmap", [a.nmap])]
            if name in only_nsefleet:
                scanners = scanners[:1]
            for who, cmd in scanners:
                xml = p(f"{name}.{who}.xml")
                full = lab.nsx(cmd + ["-sT", "-Pn", "-n", "-p", "22", "--script", script] +
                               (["--script-args", args] if args else []) + ["127.0.0.1", "-oX", xml])
                t0 = time.time()
                # nmap 7.93's own libssh2 bridge occasionally dies of SIGSEGV: retry the
                # oracle (never nsefleet) a bounded number of times.
                for attempt in range(3 if who == "nmap" else 1):
                    try:
                        r = subprocess.run(full, capture_output=True, text=True, timeout=SCAN_TIMEOUT)
                        rc = r.returncode
                    except subprocess.TimeoutExpired:
                        rc = "timeout"
                    if not (isinstance(rc, int) and rc < 0):
                        break
                    testkit.info(f"{name}: nmap died (rc={rc}), retrying")
                dt = time.time() - t0
                text = open(xml).read() if os.path.exists(xml) else ""
                # ssh-brute's statistics line carries wall-clock figures.
                masked = BRUTE_STATS.sub("Performed N guesses in S seconds, average tps: TPS", text)
                with open(xml + ".masked", "w") as f:
                    f.write(masked)
                xmls[who] = xml + ".masked"
                outs[(name, who)] = script_outputs(text)
                testkit.info(f"{name}: {who} rc={rc} {dt:.1f}s")
            if name in only_nsefleet:
                continue
            cmp = subprocess.run([sys.executable, COMPARE, xmls["nsefleet"], xmls["nmap"]],
                                 capture_output=True, text=True)
            check(cmp.returncode == 0, f"{name} (nsefleet == nmap)", "\n" + cmp.stdout + cmp.stderr)

        # Facts known without either scanner.
        def out(name, who="nsefleet"):
            return "\n".join(outs.get((name, who), {}).values())

        if not a.names or "api" in a.names:
            api = out("api").replace("&#xa;", "\n").replace("&#10;", "\n")
            for alg in ("md5", "sha1"):
                want = f"{alg}: {fingerprint(p('host_key.pub'), alg)}"
                check(want in api, f"api hostkey_hash {alg} matches ssh-keygen", f"want {want!r}")
            check("bad password: false" in api and "good password: true" in api,
                  "api password auth false then true")
            check("canauth good: true" in api and "canauth bad key: false" in api, "api canauth good/bad")
            check("hi" in api and "to-stderr" in api, "api exec output")
        if not a.names or "wait" in a.names:
            w = out("wait")
            check("slow read: false TIMEOUT, within 2s: true" in w,
                  "wait: read past set_timeout raises TIMEOUT promptly", w)
            check("worker finished first: true" in w and "slow" in w.split("slow output:")[-1],
                  "wait: a waiting thread does not block another", w)
            check("user sshd processes: 1" in w,
                  "wait: a session left open by a finished thread is closed", w)
        if not a.names or "brute" in a.names:
            b = out("brute")
            check(f"{USER}:{lab.password} - Valid credentials" in b and b.count("Valid credentials") == 1,
                  "brute finds the one valid account", b)
        if not a.names or "run-password" in a.names:
            check(re.search(r"hi\s*&#xa;\s*" + USER, out("run-password")) is not None
                  or f"hi\n{USER}" in out("run-password").replace("&#xa;", "\n").replace("\r", ""),
                  "ssh-run output",
                  out("run-password"))
    except Exception as e:  # report setup failures as a failed test, then clean up
        check(False, "setup", repr(e))
    finally:
        lab.stop()
    return testkit.summary()


if __name__ == "__main__":
    sys.exit(main())
