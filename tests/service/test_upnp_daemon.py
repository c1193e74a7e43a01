"""miniupnpd across a prefix change (issue 14 point 2), on the fake router: the daemon's
OpenWrt sync_upnp rewrites mape-py's permission rules and external_ip in /etc/config/upnpd
for the new IPv4/PSID, empties miniupnpd's lease file (the leases are on the old address
and ports) and restarts miniupnpd through its init script."""
import json
import os

from fakerouter import DATA

from mape.core import upnp
from mape.core.ucifile import parse

UPNPD = """config upnpd 'config'
\toption enabled '1'
\toption internal_iface 'lan'

config perm_rule
\toption action 'allow'
\toption ext_ports '1024-65535'
\toption int_addr '0.0.0.0/0'
\toption int_ports '1024-65535'
"""
# the package's init script, as far as mape-py uses it: "running" says it runs; calls logged
INIT = """#!/bin/sh
echo "miniupnpd $*" >> "$FAKE_ROOT/calls.log"
exit 0
"""
LEASES = "var/run/miniupnpd.leases"


def ours(router):
    """mape-py's perm_rule sections in /etc/config/upnpd, in order: ["action ext_ports", ...]."""
    sections = parse(router.read("etc/config/upnpd"))
    return ["%s %s" % (s.get("action"), s.get("ext_ports")) for s in sections
            if (s.name or "").startswith(upnp.PREFIX)]


def expected(st):
    reserved = upnp.reserve([tuple(r) for r in st["mapping"]["port_sets"]], 1)
    return ["%s %s" % r[:2] for r in upnp.rules(reserved)], reserved


def test_a_prefix_change_moves_the_rules_and_drops_the_stale_leases(router):
    router.write("etc/config/upnpd", UPNPD)
    router.write("etc/init.d/miniupnpd", INIT)
    os.chmod(router.path("etc/init.d/miniupnpd"), 0o755)
    p = router.once()
    assert p.returncode == 0, p.stderr
    st = router.status()
    old_ipv4 = st["mapping"]["ipv4"]
    rules, reserved = expected(st)
    assert ours(router) == rules and len(rules) == 16       # a reserved port in each of 15 sets
    assert "\toption external_ip '%s'\n" % old_ipv4 in router.read("etc/config/upnpd")
    # a console got a mapping on the old address
    router.write(LEASES, "UDP:%d:192.168.1.50:3074:0:Xbox\n" % reserved[0][0])
    router.clear_calls()

    with open(os.path.join(DATA, "wan6_status_dhcpv6_pd56.json")) as f:
        wan6 = json.load(f)
    wan6["ipv6-prefix"][0]["address"] = "240b:10:3f6c:d400::"
    router.set_wan6(text=json.dumps(wan6))
    p = router.once()
    assert p.returncode == 0, p.stderr
    st = router.status()
    assert st["mapping"]["ipv4"] == "106.72.63.108" != old_ipv4
    new_rules, new_reserved = expected(st)
    assert new_reserved != reserved
    text = router.read("etc/config/upnpd")
    assert ours(router) == new_rules
    assert "\toption external_ip '106.72.63.108'\n" in text and old_ipv4 not in text
    assert "\toption ext_ports '1024-65535'\n" in text                # the user's rule stays
    assert router.read(LEASES) == ""
    calls = [line for line in router.calls().splitlines() if line.startswith("miniupnpd ")]
    assert calls == ["miniupnpd running", "miniupnpd stop", "miniupnpd start"], router.calls()
    assert st["upnp"]["set"]["external_ip"] == "106.72.63.108"
    assert st["upnp"]["reserved"] == [list(r) for r in new_reserved] and st["upnp"]["leases"] == []


def test_upnp_ports_above_a_quarter_of_a_set_is_cut_down_and_said(router):
    router.write("etc/config/upnpd", UPNPD)
    router.write("etc/init.d/miniupnpd", INIT)
    os.chmod(router.path("etc/init.d/miniupnpd"), 0o755)
    router.write("etc/config/mape", router.read("etc/config/mape") + "\toption upnp_ports '10'\n")
    p = router.once()
    assert p.returncode == 0, p.stderr
    st = router.status()
    sets = [tuple(r) for r in st["mapping"]["port_sets"]]
    assert st["upnp"]["reserved"] == [list(r) for r in upnp.reserve(sets, 4)]      # 4 of each 16
    assert sum(b - a + 1 for a, b in st["upnp"]["reserved"]) == 4 * len(sets)
    (w,) = [w for w in st["warnings"] if w["code"] == "upnp-ports-capped"]
    assert "upnp_ports 10" in w["message"] and "4 port(s) per set" in w["message"]
    assert len(ours(router)) == len(sets) + 1           # one allow run per set, then the deny
