#!/usr/bin/env python3
"""Compare the service detection results (-sV) of two nmap-format XML files.

Usage: compare_services.py [-q] A.xml B.xml

Each port of each host is keyed by (address, "N/proto"); its state, the <service> attributes
name, product, version, extrainfo, ostype, hostname, devicetype, tunnel, method and conf, its
<cpe> list and whether it has a service fingerprint are compared, after masking what differs
between two runs against the same daemons (memcached's uptime). Prints each differing port
(unless -q) and "services: N ports, M differ (S of them in port state: ...), K only in A, L
only in B".
Exit status: 0 when every port of A is in B with the same service and none differ, 1
otherwise (also when A has no ports), 2 on unreadable input.
"""
import re
import sys
import xml.etree.ElementTree as ET

ATTRS = ("name", "product", "version", "extrainfo", "ostype", "hostname", "devicetype", "tunnel",
         "method", "conf")
MASKS = [(re.compile(r"uptime \d+ seconds"), "uptime N seconds")]


def mask(text):
    for pat, rep in MASKS:
        text = pat.sub(rep, text)
    return text


def services(xml_path):
    """{(address, "N/proto"): {state, attrs..., cpe: [...], servicefp: bool}}; raises on
    unreadable XML."""
    out = {}
    root = ET.parse(xml_path).getroot()
    for host in root.iter("host"):
        addr = host.find("address").get("addr")
        for port in host.iter("port"):
            key = (addr, "%s/%s" % (port.get("portid"), port.get("protocol")))
            st = port.find("state")
            d = {"state": st.get("state") if st is not None else None}
            svc = port.find("service")
            if svc is not None:
                for a in ATTRS:
                    if svc.get(a) is not None:
                        d[a] = mask(svc.get(a))
                d["cpe"] = [c.text for c in svc.findall("cpe")]
                d["servicefp"] = svc.get("servicefp") is not None
            out[key] = d
    return out


def main(argv):
    quiet = "-q" in argv
    files = [a for a in argv if a != "-q"]
    if len(files) != 2:
        print(__doc__)
        return 2
    try:
        a, b = services(files[0]), services(files[1])
    except (ET.ParseError, OSError, AttributeError) as e:
        print("compare_services: %s" % e)
        return 2
    differ = [k for k in a if k in b and a[k] != b[k]]
    only_a = [k for k in a if k not in b]
    only_b = [k for k in b if k not in a]
    if not quiet:
        for k in sorted(differ):
            print("DIFF %s %s\n  A %r\n  B %r" % (k[0], k[1], a[k], b[k]))
        for k in sorted(only_a):
            print("ONLY-A %s %s" % k)
    # A port whose state differs (a port scan that lost it under load) is no -sV difference.
    state = [k for k in differ if a[k].get("state") != b[k].get("state")]
    print("services: %d ports, %d differ (%d of them in port state: %s), %d only in A, "
          "%d only in B" % (len(a), len(differ), len(state),
                            ", ".join(sorted({"A %s/B %s" % (a[k].get("state"), b[k].get("state"))
                                              for k in state})) or "-",
                            len(only_a), len(only_b)))
    return 0 if a and not differ and not only_a else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
