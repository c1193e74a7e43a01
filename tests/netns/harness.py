"""A MAP-E NAT lab in network namespaces (used by tests/netns and bench/nat.py).

    lan (10.77.0.2, 10.77.0.3) -- rtr (NAT rules under test; "map-wan" stands for the tunnel)
        -- br (strict BR: counts and drops every packet whose source is not the shared
               IPv4 with an allowed port) -- srv (198.51.100.1..40: TCP hold, UDP echo)

The allowed ports are computed here from the RFC 7597 formula, not by mape.core.
Namespaces are named mpn-<pid>-<n>-{lan,rtr,br,srv}; down() removes them (and kills the
processes started inside them).
"""
import itertools
import json
import os
import re
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
TRAFFIC = os.path.join(HERE, "traffic.py")
SHARED = "192.0.2.10"
LAN_HOSTS = ("10.77.0.2", "10.77.0.3")   # two LAN hosts (addresses of the lan namespace)
WAN = "map-wan"
_count = itertools.count()


def allowed_ranges(psid, offset, psid_len):
    """Allowed ports as merged ranges, from p = A*2^(16-a) + psid*2^m + j, A > 0 when a > 0."""
    m = 16 - offset - psid_len
    ports = [p for p in range(1, 65536)
             if (offset == 0 or p >> (16 - offset) != 0) and (p >> m) & ((1 << psid_len) - 1) == psid]
    out = []
    for p in ports:
        if out and out[-1][1] == p - 1:
            out[-1][1] = p
        else:
            out.append([p, p])
    return [tuple(r) for r in out]


def sh(argv, input=None, check=True):
    proc = subprocess.run(argv, input=input, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True)
    if check and proc.returncode != 0:
        raise RuntimeError("%s: exit %d: %s" % (" ".join(argv), proc.returncode, proc.stderr.strip()[:500]))
    return proc


class Lab:
    def __init__(self, psid=0x34, offset=4, psid_len=8, iptables="iptables-legacy", servers=40, shared=SHARED):
        tag = "mpn-%d-%d" % (os.getpid(), next(_count))
        self.ns = {k: "%s-%s" % (tag, k) for k in ("lan", "rtr", "br", "srv")}
        self.psid, self.offset, self.psid_len = psid, offset, psid_len
        self.shared = shared   # miniupnpd refuses a documentation address as ext_ip: its lab passes another
        self.allowed = allowed_ranges(psid, offset, psid_len)
        self.iptables = iptables
        self.server_ips = ["198.51.100.%d" % i for i in range(1, servers + 1)]
        self.tmp = tempfile.mkdtemp(prefix=tag + "-")
        self.run_dir = os.path.join(self.tmp, "run")
        self.server = None
        self.record = os.path.join(self.tmp, "server.log")

    # -- plumbing ----------------------------------------------------------------------
    def ex(self, ns, argv, input=None, check=True, env=None):
        full = ["ip", "netns", "exec", self.ns[ns]]
        if env:
            full += ["env"] + ["%s=%s" % kv for kv in env.items()]
        return sh(full + list(argv), input=input, check=check)

    def nft(self, ns, script):
        return self.ex(ns, ["nft", "-f", "-"], input=script)

    def mape(self, *args, check=True, backend="iptables"):
        env = {"PYTHONPATH": os.path.join(TOP, "src"), "MAPE_PY_IPTABLES": self.iptables,
               "MAPE_PY_RUN_DIR": self.run_dir, "MAPE_PY_FW_BACKEND": backend}
        return self.ex("rtr", [sys.executable, "-m", "mape", "firewall"] + list(args), env=env, check=check)

    def mapping_args(self):
        return ["--ipv4", self.shared, "--psid", str(self.psid), "--psid-offset", str(self.offset),
                "--psid-len", str(self.psid_len), "--wan-if", WAN]

    def traffic(self, cmd, *args, ns="lan"):
        out = self.ex(ns, [sys.executable, TRAFFIC, cmd] + [str(a) for a in args]).stdout
        return json.loads(out.strip().splitlines()[-1])

    # -- lifecycle ---------------------------------------------------------------------
    def up(self):
        try:
            self._up()
        except Exception:
            self.down()
            raise
        return self

    def _up(self):
        for name in self.ns.values():
            sh(["ip", "netns", "add", name])
        links = [("lan", "lan-rtr", "rtr", "rtr-lan"), ("rtr", WAN, "br", "br-rtr"),
                 ("br", "br-srv", "srv", "srv-br")]
        for a, ia, b, ib in links:
            sh(["ip", "-n", self.ns[a], "link", "add", ia, "type", "veth", "peer", "name", ib,
                "netns", self.ns[b]])
        addrs = [("lan", "lan-rtr", ["%s/24" % ip for ip in LAN_HOSTS]), ("rtr", "rtr-lan", ["10.77.0.1/24"]),
                 ("rtr", WAN, ["100.64.0.2/30", self.shared + "/32"]),   # MAP-E puts the IPv4 on the tunnel
                 ("br", "br-rtr", ["100.64.0.1/30"]),
                 ("br", "br-srv", ["198.51.100.254/24"]),
                 ("srv", "srv-br", ["%s/24" % ip for ip in self.server_ips])]
        for ns in self.ns:
            self.ex(ns, ["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"])
            self.ex(ns, ["ip", "link", "set", "lo", "up"])
        for ns, dev, ips in addrs:
            for ip in ips:
                self.ex(ns, ["ip", "addr", "add", ip, "dev", dev])
            self.ex(ns, ["ip", "link", "set", dev, "up"])
        self.ex("lan", ["ip", "route", "add", "default", "via", "10.77.0.1"])
        self.ex("rtr", ["ip", "route", "add", "default", "via", "100.64.0.1"])
        self.ex("br", ["ip", "route", "add", self.shared + "/32", "via", "100.64.0.2"])
        self.ex("srv", ["ip", "route", "add", "default", "via", "198.51.100.254"])
        for ns in ("rtr", "br"):
            self.ex(ns, ["sysctl", "-qw", "net.ipv4.ip_forward=1"])
        # lots of sockets from one client
        self.ex("lan", ["sysctl", "-qw", "net.ipv4.ip_local_port_range=10000 60999"])
        self.strict_br()
        self.start_server()

    def strict_br(self):
        elems = ", ".join("%d-%d" % r if r[0] != r[1] else "%d" % r[0] for r in self.allowed)
        self.nft("br", """
table inet strict {
    set allowed { type inet_service; flags interval; elements = { %s } }
    set allowed_id { typeof icmp id; flags interval; elements = { %s } }
    chain pre {
        type filter hook prerouting priority -300; policy accept;
        iifname != "br-rtr" accept
        meta nfproto != ipv4 counter drop comment "leak_notipv4"
        ip saddr != %s counter drop comment "leak_addr"
        meta l4proto { tcp, udp } th sport != @allowed counter drop comment "leak_port"
        icmp type { echo-request, echo-reply } icmp id != @allowed_id counter drop comment "leak_icmpid"
        meta l4proto != { tcp, udp, icmp } counter drop comment "leak_proto"
        meta l4proto tcp counter comment "ok_tcp"
        meta l4proto udp counter comment "ok_udp"
        meta l4proto icmp counter comment "ok_icmp"
    }
}
""" % (elems, elems, self.shared))

    def counters(self, ns="br", table="inet strict"):
        listing = self.ex(ns, ["nft", "list", "table"] + table.split()).stdout
        out = {}
        for pkts, name in re.findall(r'counter packets (\d+) bytes \d+ .*?comment "(\w+)"', listing):
            out[name] = out.get(name, 0) + int(pkts)
        return out

    def leaks(self):
        return {k: v for k, v in self.counters().items() if k.startswith("leak_")}

    def leaked(self):
        return sum(self.leaks().values())

    def settle(self, timeout=3.0):
        """Wait until the router's TCP connections have finished closing (late FIN/ACKs
        after a conntrack flush would be picked up as new connections and take ports)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            listing = self.ex("rtr", ["conntrack", "-L", "-p", "tcp"], check=False).stdout
            busy = [l for l in listing.splitlines() if l.strip() and " TIME_WAIT " not in l and " CLOSE " not in l]
            if not busy:
                return
            time.sleep(0.1)

    def reset(self):
        """Between tests: forget connections and zero the BR counters."""
        self.settle()
        self.ex("rtr", ["conntrack", "-F"], check=False)
        self.ex("br", ["conntrack", "-F"], check=False)
        self.ex("br", ["nft", "delete", "table", "inet", "strict"], check=False)
        self.strict_br()
        open(self.record, "w").close()

    def ct_stats(self):
        """Sum of conntrack's per-CPU statistics in the router (insert_failed, drop, ...)."""
        out = {}
        for line in self.ex("rtr", ["conntrack", "-S"]).stdout.splitlines():
            for key, value in re.findall(r"(\w+)=(\d+)", line):
                out[key] = out.get(key, 0) + int(value)
        return out

    def start_server(self):
        ready = os.path.join(self.tmp, "ready")
        argv = ["ip", "netns", "exec", self.ns["srv"], sys.executable, TRAFFIC, "server", "--port", "80",
                "--record", self.record, "--ready", ready]
        for ip in self.server_ips:
            argv += ["--listen", ip]
        self.server = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        while not os.path.exists(ready):
            if self.server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("server did not start: %s" % self.server.stderr.read().decode()[:300])
            time.sleep(0.05)

    def server_ports(self, proto="tcp", expect=0, timeout=10.0):
        """Peer ports the server saw; waits (bounded) until it has logged ``expect`` of
        them: a client sees its connection up before the server has accepted it."""
        deadline = time.monotonic() + timeout
        while True:
            with open(self.record) as f:
                ports = [int(line.split()[2]) for line in f if line.startswith(proto + " ")]
            if len(ports) >= expect or time.monotonic() > deadline:
                return ports
            time.sleep(0.05)

    def down(self):
        if self.server is not None and self.server.poll() is None:
            self.server.terminate()
            try:
                self.server.wait(5)
            except subprocess.TimeoutExpired:
                self.server.kill()
        for name in self.ns.values():
            pids = sh(["ip", "netns", "pids", name], check=False).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), 9)
                except (OSError, ValueError):
                    pass
            sh(["ip", "netns", "del", name], check=False)
        sh(["rm", "-rf", self.tmp], check=False)

    # -- rules ---------------------------------------------------------------------------
    def ruleset(self, backend):
        """The router's whole ruleset as text, without counters (for comparisons)."""
        if backend == "iptables":
            text = self.ex("rtr", [self.iptables + "-save"]).stdout
            return "\n".join(re.sub(r" \[\d+:\d+\]$", "", l) for l in text.splitlines() if not l.startswith("#"))
        return self.ex("rtr", ["nft", "list", "ruleset"]).stdout

    def marks_setup(self):
        """Mark packets like GL.iNet does before any NAT rule: 0x8000/0xf000 on the packet
        and the conntrack, plus a low bit 0x1 outside every mask; observe after NAT."""
        self.nft("rtr", """
table inet gl {
    chain pre {
        type filter hook prerouting priority -150; policy accept;
        iifname "rtr-lan" meta mark set meta mark and 0xffff0ffe or 0x00008001
        iifname "rtr-lan" ct mark set ct mark and 0xffff0fff or 0x00008000
    }
}
table inet obs {
    chain post {
        type filter hook postrouting priority 300; policy accept;
        iifname "rtr-lan" oifname "%s" meta mark and 0x0000f00f != 0x00008001 counter comment "bad_mark"
        iifname "rtr-lan" oifname "%s" ct mark and 0x0000f000 != 0x00008000 counter comment "bad_ctmark"
        iifname "rtr-lan" oifname "%s" counter comment "seen"
    }
}
""" % (WAN, WAN, WAN))

    def marks_clear(self):
        self.ex("rtr", ["nft", "delete", "table", "inet", "gl"], check=False)
        self.ex("rtr", ["nft", "delete", "table", "inet", "obs"], check=False)


def chi_square(counts):
    n = sum(counts)
    expected = n / len(counts)
    return sum((c - expected) ** 2 / expected for c in counts)
