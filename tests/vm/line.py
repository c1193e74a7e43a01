"""A simulated FLET'S line in network namespaces (runs INSIDE the VM, as root, stdlib only).

    ngn  (NTT NGN: radvd announces the /64, ISC dhcpd -6 delegates a /56; routes the
          customer prefix to the router and the BR address to the BR)
     |  veth ngn-rt <-> eth1
    rt   (the router: mape-py daemon --platform linux; lan 192.168.1.1/24)
     |  veth lan <-> eth0
    lan  (a LAN client, 192.168.1.100)

    ngn  veth ngn-br <-> br-ngn
    br   (the provider's BR 2404:9200:225:100::64: ip6tnl ip4ip6 to the ONE CE address
          the provider computes, nft counters that accept only valid packets)
     |  veth br-inet <-> inet-br
    inet (an IPv4 internet host 203.0.113.80 serving HTTP on :80 and :8080)

The BR, the internet host and the LAN-side clients are provider.py's (shared with the
OpenWrt scenarios, tests/vm/openwrt_scenarios.py).

All addresses live in namespaces this harness makes inside the VM; nothing leaves it.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import ngn  # noqa: E402  (radvd / dhcpd -6 configurations, shared with tests/openwrt)
import provider  # noqa: E402  (the BR and the internet host, shared with openwrt_scenarios.py)
from provider import (BR_ADDR, BR_INET_ADDR, INET_ADDR, NGN_BR_ADDR, TUNNEL_BR,  # noqa: E402,F401
                      nsx, sh, wait_for)

TOP = os.path.dirname(os.path.dirname(HERE))
SRC = os.path.join(TOP, "src")
WORK = "/tmp/mape-vm"

NS = ("ngn", "rt", "lan", "br", "inet")
NGN_LINK = "fd00:ffff::1/64"            # ngn's own address on the customer link (dhcpd needs one)
LAN_ROUTER = "192.168.1.1"
LAN_CLIENT = "192.168.1.100"
WAN_DEV = "eth1"
STATUS = "/run/mape-py/status.json"


def log(msg):
    sys.stderr.write("[%7.1f] %s\n" % (time.time() - T0, msg))
    sys.stderr.flush()


T0 = time.time()



class Line:
    def __init__(self):
        self.procs = {}
        self.provider = provider.Provider("ngn", self.start, br="br", inet="inet")

    @property
    def br_expect(self):
        return self.provider.expect

    # -- topology --------------------------------------------------------------------
    def build(self):
        self.teardown()
        os.makedirs(WORK, exist_ok=True)
        for ns in NS:
            sh("ip", "netns", "add", ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        for a, an, b, bn in (("ngn-rt", "ngn", WAN_DEV, "rt"), ("lan", "rt", "eth0", "lan")):
            sh("ip", "link", "add", a, "netns", an, "type", "veth", "peer", "name", b, "netns", bn)
        for ns in ("ngn", "rt"):
            nsx(ns, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
        nsx("rt", "sysctl", "-qw", "net.ipv4.ip_forward=1")
        nsx("rt", "sysctl", "-qw", "net.ipv6.conf.%s.accept_ra=2" % WAN_DEV)
        nsx("rt", "sysctl", "-qw", "net.ipv6.conf.%s.autoconf=1" % WAN_DEV)
        # ngn
        sh("ip", "-n", "ngn", "addr", "add", NGN_LINK, "dev", "ngn-rt")
        # rt + lan
        sh("ip", "-n", "rt", "addr", "add", LAN_ROUTER + "/24", "dev", "lan")
        sh("ip", "-n", "lan", "addr", "add", LAN_CLIENT + "/24", "dev", "eth0")
        for ns, dev in (("ngn", "ngn-rt"), ("rt", "lan"), ("lan", "eth0")):
            sh("ip", "-n", ns, "link", "set", dev, "up")
        sh("ip", "-n", "lan", "route", "add", "default", "via", LAN_ROUTER)
        # the BR and the internet host (their namespaces exist already: NS)
        self.provider.build(make_namespaces=False)

    def link_up(self):
        """Bring the router's wan up last, as a real router boots with the line already there."""
        sh("ip", "-n", "rt", "link", "set", WAN_DEV, "up")

    def teardown(self):
        for name in list(self.procs):
            self.stop(name)
        for ns in NS:
            if os.path.exists("/run/netns/" + ns):
                for pid in sh("ip", "netns", "pids", ns, check=False).split():
                    try:
                        os.kill(int(pid), signal.SIGKILL)
                    except (OSError, ValueError):
                        pass
                sh("ip", "netns", "del", ns, check=False)
        for path in (WORK, "/run/mape-py", "/var/lib/dhcpcd"):
            shutil.rmtree(path, ignore_errors=True)
        os.makedirs(WORK, exist_ok=True)

    # -- processes -------------------------------------------------------------------
    def start(self, name, ns, argv, env=None):
        out = open(os.path.join(WORK, name + ".log"), "ab")
        full = ["ip", "netns", "exec", ns] + argv
        e = dict(os.environ)
        e.update(env or {})
        self.procs[name] = subprocess.Popen(full, stdout=out, stderr=subprocess.STDOUT, env=e,
                                            start_new_session=True)
        return self.procs[name]

    def stop(self, name, sig=signal.SIGTERM, wait=10):
        p = self.procs.pop(name, None)
        if p is None:
            return None
        if p.poll() is None:
            try:
                os.killpg(p.pid, sig)
            except OSError:
                pass
            try:
                p.wait(wait)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(5)
        return p.returncode

    def logtail(self, name, n=30):
        try:
            with open(os.path.join(WORK, name + ".log"), errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    # -- the line: RA /64 or DHCPv6-PD /56 -----------------------------------------------
    def announce_ra(self, prefix64, deprecated=()):
        """radvd on ngn-rt announcing ``prefix64`` (SLAAC) and, with zero lifetimes, the
        ``deprecated`` ones (what a line does when it takes a prefix back)."""
        self._radvd(ngn.radvd_conf("ngn-rt", [prefix64], deprecated, managed=False))
        sh("ip", "-n", "ngn", "-6", "route", "replace", self._eu56(prefix64), "dev", "ngn-rt")

    def _eu56(self, prefix):
        import ipaddress
        return str(ipaddress.IPv6Network(prefix.split("/")[0] + "/56", strict=False))

    def _radvd(self, text):
        self.stop("radvd")
        conf = os.path.join(WORK, "radvd.conf")
        with open(conf, "w") as f:
            f.write(text)
        self.start("radvd", "ngn", ["radvd", "-n", "-C", conf, "-p", os.path.join(WORK, "radvd.pid"),
                                    "-u", "root", "-m", "stderr"])

    def delegate_pd(self, prefix56):
        """RA with M/O flags and no prefix (link-local only wan, as on FLET'S Cross), ISC dhcpd
        delegating ``prefix56``, and dhcpcd on the router asking for it."""
        self._radvd(ngn.radvd_conf("ngn-rt", managed=True))
        conf = os.path.join(WORK, "dhcpd6.conf")
        with open(conf, "w") as f:
            f.write(ngn.dhcpd6_conf("fd00:ffff::/64", prefix56))
        leases = os.path.join(WORK, "dhcpd6.leases")
        open(leases, "w").close()
        self.start("dhcpd", "ngn", ["dhcpd", "-6", "-f", "-cf", conf, "-lf", leases,
                                    "-pf", os.path.join(WORK, "dhcpd6.pid"), "ngn-rt"])
        cconf = os.path.join(WORK, "dhcpcd.conf")
        with open(cconf, "w") as f:
            f.write("ipv6only\nnoipv6rs\nduid\nnohook resolv.conf, hostname, ntp\n"
                    "interface %s\n  ia_pd 1 lan/0/64\n" % WAN_DEV)
        self.start("dhcpcd", "rt", ["dhcpcd", "-f", cconf, "-B", WAN_DEV])
        rt_ll = wait_for("the router's link-local address", lambda: self._ll("rt", WAN_DEV))
        sh("ip", "-n", "ngn", "-6", "route", "replace", prefix56, "via", rt_ll, "dev", "ngn-rt")

    def _ll(self, ns, dev):
        for a in json.loads(sh("ip", "-n", ns, "-json", "-6", "addr", "show", "dev", dev)):
            for ai in a.get("addr_info", []):
                if ai.get("scope") == "link" and "tentative" not in ai:
                    return ai["local"]
        return None

    # -- the BR -------------------------------------------------------------------------
    def br_configure(self, exp):
        """Make the BR accept exactly ``exp`` (from expect.expect): see provider.Provider."""
        self.provider.br_configure(exp)

    def br_counters(self, reset=False):
        return self.provider.br_counters(reset)

    # -- the router ----------------------------------------------------------------------
    def start_daemon(self, argv):
        return self.start("daemon", "rt", argv, env={"PYTHONPATH": SRC, "PYTHONDONTWRITEBYTECODE": "1"})

    def status(self):
        try:
            with open(STATUS) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def router_snapshot(self):
        """Everything on the router a MAP-E client could touch (minus counters/lifetimes)."""
        import re
        snap = {}
        snap["links"] = sorted(l["ifname"] for l in json.loads(sh("ip", "-n", "rt", "-json", "link")))
        addrs = []
        for l in json.loads(sh("ip", "-n", "rt", "-json", "addr")):
            for a in l.get("addr_info", []):
                if a.get("scope") == "link":
                    continue
                addrs.append("%s %s/%s" % (l["ifname"], a["local"], a["prefixlen"]))
        snap["addrs"] = sorted(addrs)
        snap["routes4"] = sorted(sh("ip", "-n", "rt", "-4", "route", "show", "table", "all").splitlines())
        snap["routes6"] = sorted(re.sub(r" expires \d+sec", "", r)
                                 for r in sh("ip", "-n", "rt", "-6", "route", "show", "table", "all").splitlines()
                                 if " proto ra " not in r or r.startswith("default"))
        snap["rules"] = sh("ip", "-n", "rt", "rule").splitlines() + sh("ip", "-n", "rt", "-6", "rule").splitlines()
        # rules only: iptables-nft leaves empty built-in tables/chains behind once used,
        # which change nothing (policy accept, no rule)
        snap["nft"] = [l.strip() for l in nsx("rt", "nft", "list", "ruleset").splitlines()
                       if l.strip() and not re.match(r"(table |chain |type |policy |}|$)", l.strip())]
        snap["iptables"] = [l for l in nsx("rt", "iptables-save", check=False).splitlines()
                            if l.startswith("-") or re.match(r":\S+ - ", l)]
        snap["sysctl_fwd"] = nsx("rt", "sysctl", "-n", "net.ipv4.ip_forward").strip()
        return snap

    def tunnels(self):
        """ip6tnl devices on the router as [{ifname, local, remote}]."""
        out = []
        for l in json.loads(sh("ip", "-n", "rt", "-d", "-json", "link")):
            info = l.get("linkinfo", {})
            if info.get("info_kind") == "ip6tnl" and l["ifname"] != "ip6tnl0":
                d = info.get("info_data", {})
                out.append({"ifname": l["ifname"], "local": d.get("local"), "remote": d.get("remote"),
                            "mtu": l.get("mtu"), "up": "UP" in l.get("flags", [])})
        return out

    def router_addrs(self, dev, family="inet6", settled=True):
        """Addresses on a router device ("inet" or "inet6"; settled: not tentative)."""
        try:
            data = json.loads(sh("ip", "-n", "rt", "-json", "addr", "show", "dev", dev))
        except RuntimeError:
            return []
        return ["%s/%s" % (a["local"], a["prefixlen"]) for l in data for a in l.get("addr_info", [])
                if a.get("family") == family and not (settled and a.get("tentative"))]

    # -- the LAN client -----------------------------------------------------------------
    def fetch(self, url="http://%s/" % INET_ADDR, timeout=3):
        """One HTTP GET from the LAN client: the server's JSON (what source it saw), or None."""
        return provider.fetch("lan", url, timeout)

    def start_probe(self, ipv4, interval=0.2):
        """A prober in the LAN namespace: one HTTP try every ``interval`` s (0.5 s timeout)
        until the server sees ``ipv4``; it writes the wall-clock time of that success."""
        path = os.path.join(WORK, "probe-%s.json" % ipv4)
        if os.path.exists(path):
            os.unlink(path)
        self.start("probe", "lan", provider.probe_argv(ipv4, interval, path))
        return path

    def probe_result(self, path, timeout=180):
        result = wait_for("IPv4 from %s" % path, lambda: provider.read_probe(path), timeout=timeout, interval=0.1)
        self.stop("probe")
        return result

    def many(self, count, port=8080, hold=4.0, timeout=60):
        """``count`` connections open at once from the LAN (the server holds each for ``hold``
        seconds); returns the list of per-connection results."""
        out = nsx("lan", *provider.many_argv(count, port, hold), timeout=timeout + 30)
        return json.loads(out)

