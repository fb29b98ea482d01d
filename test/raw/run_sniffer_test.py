#!/usr/bin/env python3
"""sniffer-detect (stock script, raw Ethernet + pcap) against nmap 7.93, in namespaces.

  test/raw/run_sniffer_test.py [--binary build/nsefleet]

Two namespaces joined by a veth pair: scanner 198.51.100.1/24, target 198.51.100.2/24 (IPv6
off, no default route; deleted at the end). For each target setting below, `nmap -sn -n
--script sniffer-detect` and `nsefleet scan -sn -n --script sniffer-detect` run from the
scanner and their script outputs must match (test/conformance/compare.py):
  promisc off / promisc on   `ip link set dev X promisc on|off` on the target's interface
  nic-filter                 an nftables netdev ingress filter on the target drops six of the
                             script's eight test destination MACs, as a NIC's hardware filter
                             would: the answer pattern is "1_____1_" and the script returns
                             nothing, so instead both runs must have no result and must send
                             the same number of test frames (counted by nftables), >0
  unknown                    only ff:ff:ff:ff:ff:fe dropped: "Unknown (tests: ...)"
(A Linux veth answers the group-addressed ARP probes whether or not it is promiscuous, so
nmap says "Likely in promiscuous mode" in both of the first two settings.) Needs root; exits
77 (skipped) when namespaces cannot be created. Prints "N passed, M failed".
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
import testkit  # noqa: E402
from testkit import ROOT, check, nsx as nx, sh  # noqa: E402

COMPARE = os.path.join(ROOT, "test", "conformance", "compare.py")
TAG = f"{os.getpid() % 100000}"
NS_S, NS_T = f"nsf-snf-s{TAG}", f"nsf-snf-t{TAG}"
VS, VT = f"nfs{TAG}", f"nft{TAG}"
TARGET = "198.51.100.2"
TARGET2 = "198.51.100.3"
MAC_SCRIPT = os.path.join(HERE, "mac_addr.nse")

NIC_FILTER = ["ff:ff:ff:ff:ff:fe", "ff:ff:00:00:00:00", "ff:00:00:00:00:00",
              "01:00:00:00:00:00", "01:00:5e:00:00:00", "01:00:5e:00:00:03"]
UNKNOWN_FILTER = ["ff:ff:ff:ff:ff:fe"]


def setup():
    for ns in (NS_S, NS_T):
        testkit.ns_add(ns, ipv6=False)
    testkit.veth(VS, NS_S, ["198.51.100.1/24"], VT, NS_T, [TARGET + "/24"])


def set_filter(drop):
    """Replaces the target's ingress filter: drops frames to the MACs in `drop` and counts
    the ARP frames sent to any non-broadcast address (the script's test frames)."""
    nx(NS_T, "nft", "delete", "table", "netdev", "snf", check=False)
    drop_rule = f"ether daddr {{ {', '.join(drop)} }} counter drop" if drop else ""
    rules = f"""
table netdev snf {{
  chain in {{
    type filter hook ingress device "{VT}" priority 0; policy accept;
    ether type arp ether daddr != ff:ff:ff:ff:ff:ff counter
    {drop_rule}
  }}
}}
"""
    nx(NS_T, "nft", "-f", "-", input=rules)


def test_frames():
    out = nx(NS_T, "nft", "list", "table", "netdev", "snf").stdout
    m = re.search(r"daddr != ff:ff:ff:ff:ff:ff counter packets (\d+)", out)
    return int(m.group(1)) if m else -1


def script_outputs(xml_text):
    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError:
        return None
    return [s.get("output") for s in root.iter("script") if s.get("id") == "sniffer-detect"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=os.path.join(ROOT, "build", "nsefleet"))
    args = ap.parse_args()
    binary = os.path.abspath(args.binary)
    can, why = testkit.ns_can_create(NS_S)
    if not can:
        testkit.info(f"skipped: sniffer-detect tests: {why}")
        return 77

    def scan(cmd):
        """Runs one scan in the scanner namespace; (xml, stderr, test frames it sent)."""
        # Rule counters cannot be reset by nft (only named ones): take the difference.
        before = test_frames()
        try:
            r = nx(NS_S, *cmd, "-oX", "-", TARGET, check=False, timeout=120)
        except subprocess.TimeoutExpired:
            return "", "timed out after 120s", test_frames() - before
        return ((r.stdout if r.returncode == 0 else ""), r.stderr.strip()[:300],
                test_frames() - before)

    cases = (("promisc off", "off", []), ("promisc on", "on", []),
             ("nic-filter", "off", NIC_FILTER), ("unknown", "off", UNKNOWN_FILTER))
    tmp = tempfile.mkdtemp(prefix="nsf-sniffer.")
    seen = {}
    try:
        setup()
        for name, promisc, drop in cases:
            nx(NS_T, "ip", "link", "set", "dev", VT, "promisc", promisc)
            set_filter(drop)
            flags = nx(NS_T, "ip", "-o", "link", "show", "dev", VT).stdout
            check(("PROMISC" in flags) == (promisc == "on"), f"{name}: target promisc {promisc}")
            nm_xml, nm_err, nm_frames = scan(["nmap", "-sn", "-n", "--script", "sniffer-detect"])
            # -sS selects the raw discovery that fills host.mac_addr and friends.
            us_xml, us_err, us_frames = scan([binary, "scan", "-sn", "-n",
                                              "--script", "sniffer-detect"])
            nm_out, us_out = script_outputs(nm_xml), script_outputs(us_xml)
            seen[name] = nm_out
            check(nm_out is not None, f"{name}: nmap ran ({nm_err})")
            check(us_out is not None, f"{name}: nsefleet ran ({us_err})")
            if nm_out is None or us_out is None:
                continue
            if nm_out:
                a, b = os.path.join(tmp, f"{name}.nmap.xml"), os.path.join(tmp, f"{name}.ours.xml")
                with open(a, "w") as f:
                    f.write(nm_xml)
                with open(b, "w") as f:
                    f.write(us_xml)
                c = sh(sys.executable, COMPARE, "-q", a, b, check=False)
                check(c.returncode == 0,
                       f"{name}: outputs match (nmap {nm_out}, nsefleet {us_out}) "
                       + ("" if c.returncode == 0 else c.stdout.strip()[-300:]))
            else:
                check(not us_out, f"{name}: no result from either (nsefleet {us_out})")
            # Both scanners must really have run the script: the same test frames reached
            # the target (each of the 8 tests sends 1 frame, or 3 when unanswered).
            check(nm_frames == us_frames and us_frames > 0,
                   f"{name}: test frames at target: nmap {nm_frames}, nsefleet {us_frames}")
        # host.mac_addr for hosts of every host group (one host per group): each must carry
        # the target's MAC, as nmap's raw discovery gives it.
        set_filter([])
        nx(NS_T, "ip", "addr", "add", TARGET2 + "/24", "dev", VT)
        mac = nx(NS_T, "cat", f"/sys/class/net/{VT}/address").stdout.strip().lower().replace(":", "")
        macs = {}
        for who, cmd in (("nmap", ["nmap", "-sn", "-n"]), ("nsefleet", [binary, "scan", "-sn", "-n"])):
            r = nx(NS_S, *cmd, "--max-hostgroup", "1", "--script", MAC_SCRIPT, "-oX", "-",
                   TARGET, TARGET2, check=False, timeout=120)
            try:
                root = ET.fromstring(r.stdout)
                macs[who] = {h.find("address").get("addr"): [s.get("output") for s in h.iter("script")]
                             for h in root.iter("host")}
            except ET.ParseError:
                macs[who] = r.stderr.strip()[:200]
        want = {TARGET: [mac], TARGET2: [mac]}
        check(macs.get("nmap") == want and macs.get("nsefleet") == want,
               f"host.mac_addr in two host groups: want {want}, nmap {macs.get('nmap')}, "
               f"nsefleet {macs.get('nsefleet')}")
        # The settings must really lead the script down its different endings (a positive
        # answer, no answer, "Unknown"), else matching nmap proves little.
        check(str(seen.get("promisc off")).startswith("['Likely in promiscuous mode")
               and seen.get("nic-filter") == []
               and str(seen.get("unknown")).startswith("['Unknown (tests:"),
               f"nmap's answers cover the script's endings: {seen}")
    finally:
        testkit.ns_delete(NS_S, NS_T)
        subprocess.run(["rm", "-rf", tmp])
        check(testkit.ns_gone(NS_S, NS_T), "namespaces deleted")
    return testkit.summary()


if __name__ == "__main__":
    sys.exit(main())
