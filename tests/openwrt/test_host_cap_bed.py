"""The per-host cap (issue 14 point 3) on the real OpenWrt firewall: `option nat_host_cap` in
/etc/config/mape, applied by the daemon, survives the real fw3 / fw4 (`/etc/init.d/firewall
reload` runs mape-py's include) exactly once, follows a changed cap through the daemon's
reload path (uci commit + `/etc/init.d/mape-py reload`, as LuCI's Save & Apply), goes away
when set off and with `opkg remove`. Also where the cap sits among fw3's / fw4's own rules.

LAN traffic: the bed has no ip6tnl, so wan (proto map) never comes up and netifd makes no
tunnel (README.md). test_lan_hosts_through_the_cap puts a veth of that name in its place, to
a server namespace, and sends real LAN traffic through the real firewall's forward path and
our rules as the daemon installed them."""
import json
import os
import re
import subprocess
import sys

import pytest

import owtier as C

pytestmark = pytest.mark.openwrt


def cap_rules(r):
    """The rules of ours that hold a per-host cap, as the kernel lists them: fw3 the FORWARD
    jump (`--connlimit-above N`), fw4 the `ct count over N` rule of table inet mape_py."""
    if r.profile == "21.02":
        text = r.bed.sh("iptables-save -t filter", check=False)
        return [l for l in text.splitlines() if l.startswith("-A ") and "--connlimit-above" in l
                and "mape_py_cap" in l]
    text = r.bed.sh("nft list ruleset", check=False)
    return [l.strip() for l in text.splitlines() if "ct count over" in l and "add @" in l]


def caps(r):
    return [int(n) for l in cap_rules(r) for n in re.findall(r"(?:--connlimit-above|ct count over) (\d+)", l)]


def firewall_reload(r):
    p = r.bed.run(["/etc/init.d/firewall", "reload"], check=False)
    assert p.returncode == 0, p.stdout + p.stderr


def set_cap(r, value):
    """uci + the daemon's reload path (procd's reload trigger sends SIGHUP)."""
    if value is None:
        r.bed.sh("uci -q delete mape.config.nat_host_cap; uci commit mape")
    else:
        r.bed.sh("uci set mape.config.nat_host_cap='%s'; uci commit mape" % value)
    r.bed.run(["/etc/init.d/mape-py", "reload"], check=False)
    r.bed.pump()


def wait_caps(r, want, what):
    got = C.wait(r, what, lambda: caps(r) == want or None, 45)
    assert got, "%s: the kernel holds caps %s, want %s\n%s\n%s" % (what, caps(r), want, cap_rules(r),
                                                                   r.logs()[-3000:])


@pytest.mark.parametrize("profile", C.PROFILES)
def test_host_cap_through_the_real_firewall(profile, fresh_router):
    r = fresh_router(profile, "pd56", dict(C.NO_ROLLBACK, nat_host_cap="60"))
    st = r.wait_settled(60)
    assert st and st.get("mapping"), r.explain()
    wait_caps(r, [60], "the cap after the daemon applied")
    assert (st.get("firewall") or {}).get("health") == "present", st.get("firewall")

    # the firewall's own reload flushes its chains (fw3) / ruleset (fw4 keeps foreign tables);
    # the include puts the cap back, once, however often it runs
    for _ in range(2):
        firewall_reload(r)
        assert caps(r) == [60], cap_rules(r)
    assert_place(r)

    pool = sum(b - a + 1 for a, b in st["mapping"]["port_sets"])
    set_cap(r, "50%")                   # a share of the pool (v6plus: 120 of 240 ports)
    wait_caps(r, [pool // 2], "the changed cap")
    firewall_reload(r)
    assert caps(r) == [pool // 2], cap_rules(r)
    set_cap(r, "90")
    wait_caps(r, [90], "the cap raised to 90")
    firewall_reload(r)
    assert caps(r) == [90], cap_rules(r)

    set_cap(r, "0")                     # off
    wait_caps(r, [], "the cap off")
    rules, _ = r.nat_rules()
    assert any("mape" in l for l in rules), "the NAT rules went with the cap: %s" % rules
    firewall_reload(r)
    assert caps(r) == [], cap_rules(r)

    set_cap(r, "60")
    wait_caps(r, [60], "the cap back on")
    p = r.bed.opkg("remove", "mape-py", check=False)
    assert p.returncode == 0, p.stdout + p.stderr
    assert caps(r) == [], "a cap rule outlived the package: %s" % cap_rules(r)
    firewall_reload(r)
    assert caps(r) == [], "a firewall reload after the removal brought back: %s" % cap_rules(r)
    rules, _ = r.nat_rules()
    assert not rules, rules


def assert_place(r):
    """fw3: our FORWARD jump comes after fw3's RELATED,ESTABLISHED accept (established packets
    never reach it) and before the zone dispatch (every new forwarded connection does).
    fw4: our forward hook (priority -5) runs before fw4's own forward chain (filter, 0),
    which holds the flow offload rule and the zone dispatch."""
    if r.profile == "21.02":
        forward = [l for l in r.bed.sh("iptables-save -t filter").splitlines() if l.startswith("-A FORWARD ")]
        est = [i for i, l in enumerate(forward) if "RELATED,ESTABLISHED" in l and "-j ACCEPT" in l]
        cap = [i for i, l in enumerate(forward) if "mape_py_cap" in l]
        zones = [i for i, l in enumerate(forward) if re.search(r"-j zone_\w+_forward", l)]
        assert est and cap and zones, forward
        assert est[0] < cap[0] < zones[0], "\n".join(forward)
        return
    text = r.bed.sh("nft list ruleset")
    ours = re.search(r"table inet mape_py \{.*?hook forward priority ([^;]+);", text, re.S)
    fw4 = re.search(r"table inet fw4 \{.*?chain forward \{\s*type filter hook forward priority ([^;]+);", text, re.S)
    assert ours and fw4, text
    assert priority(ours.group(1)) < priority(fw4.group(1)), (ours.group(1), fw4.group(1))


def priority(text):
    """nft's listing of a filter hook priority ("filter", "filter - 5", "-5") as a number."""
    m = re.match(r"\s*(filter|-?\d+)\s*(?:([+-])\s*(\d+))?\s*$", text)
    assert m, text
    base = 0 if m.group(1) == "filter" else int(m.group(1))
    return base + (int(m.group(3)) * (1 if m.group(2) == "+" else -1) if m.group(2) else 0)


TRAFFIC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "netns", "traffic.py")
SERVER = "198.51.100.1"                      # TEST-NET-2, only inside the namespaces made here
LAN_A, LAN_B = "192.168.1.100", "192.168.1.101"


def sh(*argv, check=True):
    p = subprocess.run(list(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                       timeout=60)
    if check and p.returncode:
        raise AssertionError("%s -> %d: %s" % (" ".join(argv), p.returncode, p.stderr.strip()))
    return p.stdout


def mac(ns, dev):
    return json.loads(sh("ip", "-n", ns, "-json", "link", "show", "dev", dev))[0]["address"]


class Tunnel:
    """A veth named as the daemon's tunnel device in the bed, to a server namespace that
    answers the shared IPv4 (the BR and the Internet in one)."""

    def __init__(self, r, wan_if, shared):
        self.r, self.wan_if, self.shared = r, wan_if, shared
        self.ns = r.line.ns + "-srv"
        self.server = None
        self.ready = os.path.join(r.line.work, "srv.ready")
        self.record = os.path.join(r.line.work, "srv.ports")

    def up(self):
        bed = self.r.bed.name
        sh("ip", "netns", "add", self.ns)
        sh("ip", "-n", self.ns, "link", "set", "lo", "up")
        sh("ip", "link", "add", self.wan_if, "netns", bed, "type", "veth", "peer", "name", "srv0", "netns", self.ns)
        sh("ip", "-n", self.ns, "addr", "add", SERVER + "/32", "dev", "srv0")
        sh("ip", "-n", self.ns, "link", "set", "srv0", "up")
        sh("ip", "-n", bed, "link", "set", self.wan_if, "up")
        sh("ip", "-n", self.ns, "route", "add", self.shared + "/32", "dev", "srv0")
        sh("ip", "-n", bed, "route", "add", SERVER + "/32", "dev", self.wan_if)
        # no IPv4 on the bed's side to ARP from: fixed neighbours both ways
        sh("ip", "-n", self.ns, "neigh", "replace", self.shared, "lladdr", mac(bed, self.wan_if), "dev", "srv0")
        sh("ip", "-n", bed, "neigh", "replace", SERVER, "lladdr", mac(self.ns, "srv0"), "dev", self.wan_if)
        lan = self.r.line.lan_ns
        for addr in (LAN_A, LAN_B):
            sh("ip", "-n", lan, "addr", "add", addr + "/24", "dev", "lan0")
        sh("ip", "-n", lan, "route", "add", "default", "via", "192.168.1.1")
        if os.path.exists(self.ready):
            os.unlink(self.ready)
        log = os.path.join(self.r.line.work, "srv.log")
        with open(log, "w") as out:
            self.server = subprocess.Popen(["ip", "netns", "exec", self.ns, sys.executable, TRAFFIC, "server",
                                            "--listen", SERVER, "--ready", self.ready, "--record", self.record],
                                           stdout=out, stderr=out)
        if not C.wait(self.r, "the server", lambda: os.path.exists(self.ready) or None, 20):
            with open(log) as f:
                raise AssertionError("the server did not start: %s" % f.read()[-2000:])
        return self

    def ports(self, expect):
        """Source ports the server saw (the shared IPv4's: the only address it routes back to)."""
        def seen():
            with open(self.record) as f:
                ports = [int(line.split()[2]) for line in f if line.startswith("tcp ")]
            return ports if len(ports) >= expect else None
        return C.wait(self.r, "%d connections at the server" % expect, seen, 10) or seen() or []

    def down(self):
        if self.server is not None and self.server.poll() is None:
            self.server.kill()
            self.server.wait(10)
        sh("ip", "netns", "del", self.ns, check=False)

    def client(self, *args):
        return ["ip", "netns", "exec", self.r.line.lan_ns, sys.executable, TRAFFIC] + [str(a) for a in args]


@pytest.mark.parametrize("profile", C.PROFILES)
def test_lan_hosts_through_the_cap(profile, fresh_router):
    """One LAN host asking for 100 connections holds its cap (60) and gets the other 40
    refused at once (TCP reset: ECONNREFUSED, no timeout) while a second host still connects;
    through the real fw3/fw4 forward path with the rules the daemon installed, every
    connection leaving from an allowed port of the shared IPv4."""
    r = fresh_router(profile, "pd56", dict(C.NO_ROLLBACK, nat_host_cap="60"))
    st = r.wait_settled(60)
    assert st and st.get("mapping"), r.explain()
    wait_caps(r, [60], "the cap after the daemon applied")
    ours, _ = r.nat_rules()
    wan_if = re.search(r'(?:-o (\S+) .*-j mape_py\b|oifname "([^"]+)")', "\n".join(ours))
    wan_if = wan_if.group(1) or wan_if.group(2)
    # the LAN may forward to the tunnel (on a router fw3/fw4 learn it from netifd's wan)
    r.bed.sh("uci set firewall.captest=zone; uci set firewall.captest.name=captest; "
             "uci add_list firewall.captest.device=%s; uci set firewall.captest.input=REJECT; "
             "uci set firewall.captest.output=ACCEPT; uci set firewall.captest.forward=REJECT; "
             "uci set firewall.captestfwd=forwarding; uci set firewall.captestfwd.src=lan; "
             "uci set firewall.captestfwd.dest=captest; uci commit firewall" % wan_if)
    # netifd would keep retrying the tunnel it cannot make and delete a device of that name
    r.bed.ubus("network.interface.wan", "down", check=False)
    t = Tunnel(r, wan_if, st["mapping"]["ipv4"])
    try:
        t.up()
        firewall_reload(r)
        assert caps(r) == [60], cap_rules(r)
        hold = subprocess.Popen(t.client("tcp-hold", "--dst", SERVER, "-n", 100, "--src", LAN_A, "--why",
                                         "--hold", -1, "--timeout", 10),
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, universal_newlines=True)
        try:
            got_a = json.loads(hold.stdout.readline())
            got_b = json.loads(sh(*t.client("tcp-hold", "--dst", SERVER, "-n", 20, "--src", LAN_B, "--why")))
        finally:
            hold.stdin.write("\n")
            hold.stdin.close()
            hold.wait(30)
        diag = "%s\n%s" % (r.bed.sh("iptables-save -c -t filter; iptables-save -c -t nat" if profile == "21.02"
                                    else "nft list ruleset", check=False), r.logs()[-2000:])
        assert got_a == {"ok": 60, "failed": 40, "errors": {"ECONNREFUSED": 40}}, (got_a, diag)
        assert got_b == {"ok": 20, "failed": 0, "errors": {}}, (got_b, diag)
        ports = t.ports(80)
        sets = st["mapping"]["port_sets"]
        assert len(ports) == 80 and all(any(a <= p <= b for a, b in sets) for p in ports), (ports, sets)
    finally:
        t.down()
