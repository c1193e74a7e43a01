"""Print `ubus call mape status` (the rpcd plugin's output) for the three sample lines:
RA /64 (wan6_status_ra64_userprefix.json), PD /56 (wan6_status_dhcpv6_pd56.json) and a
prefix no MAP rule covers, each from the daemon running on the fake router.
Usage: python3 tests/service/show_status.py"""
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from fakerouter import DATA, TOP, Router  # noqa: E402

CONNTRACK = (
    "ipv4     2 tcp      6 431999 ESTABLISHED src=192.168.8.23 dst=93.184.215.14 sport=51234 dport=443 "
    "src=93.184.215.14 dst=106.73.34.51 sport=443 dport=5190 [ASSURED] mark=0 zone=0 use=2\n"
    "ipv4     2 tcp      6 431999 ESTABLISHED src=192.168.8.23 dst=93.184.215.14 sport=51236 dport=443 "
    "src=93.184.215.14 dst=106.73.34.51 sport=443 dport=9283 [ASSURED] mark=0 zone=0 use=2\n"
    "ipv4     2 udp      17 29 src=192.168.8.40 dst=8.8.8.8 sport=40000 dport=53 "
    "src=8.8.8.8 dst=106.73.34.51 sport=53 dport=13380 mark=0 zone=0 use=2\n")


def show(title, sample=None, text=None):
    r = Router(tempfile.mkdtemp(prefix="mape-show-") + "/root")
    r.write("proc/net/nf_conntrack", CONNTRACK)
    r.set_wan6(sample, text)
    p = r.start()
    try:
        r.wait_for(lambda: (r.status() or {}).get("state") in ("ok", "unsupported-prefix"), what="settled")
        env = dict(r.env(), MAPE_PY_RUN_DIR=r.path("var/run/mape-py"))
        out = subprocess.run(["sh", os.path.join(TOP, "files/usr/libexec/rpcd/mape"), "call", "status"],
                             env=env, stdout=subprocess.PIPE, universal_newlines=True).stdout
    finally:
        r.kill_all()
    doc = json.loads(out)
    body = ",\n".join("  %s: %s" % (json.dumps(k), json.dumps(v, ensure_ascii=False)) for k, v in doc.items())
    print("### %s\n\n$ ubus call mape status   (one top-level key per line)\n```json\n{\n%s\n}\n```\n" % (title, body))


def main():
    show("RA /64 (wan6_status_ra64_userprefix.json)", "wan6_status_ra64_userprefix.json")
    show("PD /56 (wan6_status_dhcpv6_pd56.json)", "wan6_status_dhcpv6_pd56.json")
    with open(os.path.join(DATA, "wan6_status_dhcpv6_pd56.json")) as f:
        st = json.load(f)
    st["ipv6-prefix"][0]["address"] = "2a01:4f8:c0c:1200::"
    st["ipv6-address"][0]["address"] = "2a01:4f8:c0c:1200::2"
    show("unsupported prefix (2a01:4f8:c0c:1200::/56)", text=json.dumps(st))


if __name__ == "__main__":
    main()
