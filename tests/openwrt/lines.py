"""Simulated FLET'S lines for the OpenWrt test bed (stdlib only).

    up  (the line: NTT NGN, or a home gateway; radvd + ISC dhcpd -6, configured by
         tests/vm/ngn.py, the same text the VM tier's line uses)
     |  veth up0 <-> eth1 (the bed's wan/wan6 device)
    bed (OpenWrt root: odhcp6c behind netifd's proto dhcpv6 is the client)
     |  veth eth0 (in br-lan) <-> lan0
    lan (a LAN host; only there so that br-lan has a port and comes up)

The three lines of issue 10 (prefixes chosen inside real rules, each mapped by `mape-py calc`):

  ra64   BIGLOBE, RA-only /64 (the seed's case): SLAAC on the WAN link, M/O flags off, no PD.
  pd56   v6plus, DHCPv6-PD /56: RA with M/O on and no prefix (link-local-only WAN, as on
         FLET'S Cross), the /56 delegated.
  hgw60  OCN behind a home gateway: the HGW holds the /56, announces its subnet 0 /64 on the
         router's WAN link (SLAAC, M flag on) and delegates a /60 that is NOT subnet 0.
         The BR still expects the CE in subnet 0 of the /56 (RFC 7597 5.2).
"""
import ipaddress
import json
import os
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "vm"))
sys.path.insert(0, HERE)

import bed as B  # noqa: E402
import ngn  # noqa: E402  (radvd / dhcpd -6 configuration text, shared with tests/vm/line.py)

LINES = {
    "ra64": {
        "provider": "biglobe",
        "ra": ["2404:7a80:1234:5600::/64"],
        "managed": False,
        "link": None,
        "pd": None,
        "customer56": "2404:7a80:1234:5600::/56",
        "calc": "2404:7a80:1234:5600::/64",
    },
    "pd56": {
        "provider": "v6plus",
        "ra": [],
        "managed": True,
        "link": "fd00:ffff::1/64",
        "pd": "240b:10:3f6c:d400::/56",
        "customer56": "240b:10:3f6c:d400::/56",
        "calc": "240b:10:3f6c:d400::/56",
    },
    "hgw60": {
        "provider": "ocn_vc",
        "ra": ["2400:4050:1234:5600::/64"],
        "managed": True,
        "link": "2400:4050:1234:5600::1/64",
        "pd": "2400:4050:1234:5610::/60",
        "customer56": "2400:4050:1234:5600::/56",
        "calc": "2400:4050:1234:5610::/60",
    },
}


def sh(argv, check=True, timeout=60):
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                       timeout=timeout)
    if check and p.returncode != 0:
        raise RuntimeError("%s -> %d: %s" % (" ".join(argv), p.returncode, (p.stderr or p.stdout).strip()[:500]))
    return p.stdout


class Line:
    """One line attached to a bed's network namespace ``bed_ns``."""

    def __init__(self, name, bed_ns, work):
        self.name = name
        self.spec = LINES[name]
        self.bed_ns = bed_ns
        tag = bed_ns.replace("owb", "")
        self.ns = "owl%s" % tag            # the line (NGN / HGW)
        self.lan_ns = "owl%s-lan" % tag    # the LAN host
        self.work = os.path.join(work, "line")
        self.procs = {}

    def _ns(self, ns, *argv, **kw):
        return sh(["ip", "netns", "exec", ns] + list(argv), **kw)

    def attach(self):
        """Namespaces, veths and the line's daemons (before netifd configures eth1)."""
        self.detach()
        os.makedirs(self.work, exist_ok=True)
        for ns in (self.ns, self.lan_ns):
            sh(["ip", "netns", "add", ns])
            sh(["ip", "-n", ns, "link", "set", "lo", "up"])
        sh(["ip", "link", "add", "up0", "netns", self.ns, "type", "veth", "peer", "name", "eth1", "netns", self.bed_ns])
        sh(["ip", "link", "add", "lan0", "netns", self.lan_ns, "type", "veth", "peer", "name", "eth0",
            "netns", self.bed_ns])
        self._ns(self.ns, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
        if self.spec["link"]:
            sh(["ip", "-n", self.ns, "addr", "add", self.spec["link"], "dev", "up0", "nodad"])
        sh(["ip", "-n", self.ns, "link", "set", "up0", "up"])
        sh(["ip", "-n", self.lan_ns, "link", "set", "lan0", "up"])
        self._radvd()
        if self.spec["pd"]:
            self._dhcpd()

    def _start(self, name, argv):
        out = open(os.path.join(self.work, name + ".log"), "ab")
        self.procs[name] = subprocess.Popen(["ip", "netns", "exec", self.ns] + argv, stdout=out,
                                            stderr=subprocess.STDOUT, start_new_session=True,
                                            preexec_fn=B.die_with_parent)
        out.close()

    def _radvd(self):
        conf = os.path.join(self.work, "radvd.conf")
        with open(conf, "w") as f:
            f.write(ngn.radvd_conf("up0", self.spec["ra"], managed=self.spec["managed"]))
        self._start("radvd", ["radvd", "-n", "-C", conf, "-p", os.path.join(self.work, "radvd.pid"),
                              "-u", "root", "-m", "stderr"])

    def _dhcpd(self):
        conf = os.path.join(self.work, "dhcpd6.conf")
        link = str(ipaddress.IPv6Interface(self.spec["link"]).network)
        with open(conf, "w") as f:
            f.write(ngn.dhcpd6_conf(link, self.spec["pd"]))
        leases = os.path.join(self.work, "dhcpd6.leases")
        open(leases, "w").close()
        self._start("dhcpd", ["dhcpd", "-6", "-f", "-cf", conf, "-lf", leases,
                              "-pf", os.path.join(self.work, "dhcpd6.pid"), "up0"])

    def upstream_ll(self):
        """The line's link-local address on the router's WAN link (the one real gateway)."""
        for a in json.loads(sh(["ip", "-n", self.ns, "-json", "-6", "addr", "show", "dev", "up0"])):
            for ai in a.get("addr_info", []):
                if ai.get("scope") == "link":
                    return ai["local"]
        return None

    def delegated(self):
        """Prefixes really delegated to the router (ipaddress networks)."""
        return [ipaddress.IPv6Network(self.spec["pd"])] if self.spec["pd"] else []

    def logtail(self, n=20):
        parts = []
        for name in sorted(self.procs):
            try:
                with open(os.path.join(self.work, name + ".log"), errors="replace") as f:
                    parts.append("== line %s\n%s" % (name, "".join(f.readlines()[-n:])))
            except OSError:
                pass
        return "\n".join(parts)

    def detach(self):
        for name, p in list(self.procs.items()):
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except OSError:
                    pass
                p.wait(10)
        self.procs = {}
        for ns in (self.ns, self.lan_ns):
            if os.path.exists("/run/netns/" + ns):
                for pid in sh(["ip", "netns", "pids", ns], check=False).split():
                    try:
                        os.kill(int(pid), signal.SIGKILL)
                    except (OSError, ValueError):
                        pass
                sh(["ip", "netns", "del", ns], check=False)
        time.sleep(0)
