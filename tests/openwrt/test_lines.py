"""mape-py on the real OpenWrt userland, per profile (21.02/fw3, 24.10/fw4) and line (RA-only
/64, PD /56, PD /60 behind a home gateway): what issue 10 requires once our package is
installed with its default settings (except rollback and verify_timeout, see owtier.NO_ROLLBACK).

The truth comes from the real programs: netifd's `ubus call network.interface.*`, map.sh's
/tmp/map-wan.rules (written by the real mapcalc), rpcd serving our exec plugin, fw3/fw4,
iptables-save / nft.
"""
import ipaddress
import json
import re

import pytest

import owtier as C
import router as R

pytestmark = pytest.mark.openwrt

STATES = {"waiting-for-wan6", "applying", "ok", "unsupported-prefix", "error", "disabled", "stopped"}
HEALTH = {"present", "missing", "duplicated", "stale", "unknown"}


wait = C.wait


def test_opkg_install_ran_as_on_a_router(router):
    """opkg installed the package; the postinst asked procd to reload rpcd and start us."""
    r = router
    assert r.opkg.returncode == 0, r.opkg.stdout + r.opkg.stderr
    asked = [(m, msg.get("name")) for _, m, msg in r.bed.request_log]
    assert ("signal", "rpcd") in asked, "postinst did not reload rpcd: %s" % asked
    assert ("set", "mape-py") in asked, "postinst did not start mape-py: %s" % asked
    inst = r.bed.instance("mape-py")
    assert inst and inst.running(), "the daemon is not running\n" + r.explain()
    assert inst.spec["command"][:3] == ["/usr/bin/python3", "/usr/bin/mape-py", "daemon"], inst.spec
    assert "mape" in r.bed.sh("ubus list"), "rpcd does not serve our plugin after the reload"


def test_wan_available(router):
    """(i) netifd brings wan (proto map) up to "available": the host dependency of map.sh
    on "::" via the tunlink resolves; no NO_DEVICE."""
    r = router
    st = wait(r, "wan available", lambda: (lambda s: s if s.get("available") else None)(r.iface("wan")), 30) \
        or r.iface("wan")
    uci = r.bed.sh("uci show network", check=False)
    assert st.get("proto") == "map", "wan is not proto map:\n%s\n%s" % (json.dumps(st), uci)
    codes = [e.get("code") for e in st.get("errors", [])]
    assert st.get("available") is True and "NO_DEVICE" not in codes, \
        "wan: available=%s errors=%s\n%s\n%s" % (st.get("available"), codes, uci, r.explain())


def test_mapcalc_agrees_with_calc(router):
    """(ii) map.sh ran the real mapcalc on our config, and its BMR equals `mape-py calc`;
    the CE is in subnet 0 of the customer /56."""
    r = router
    wait(r, "/tmp/map-wan.rules", lambda: r.map_rules()[0], 30)
    rules, text = r.map_rules()
    assert rules, "map.sh never wrote /tmp/map-wan.rules (mapcalc did not run):\nwan: %s\n%s\n%s" % (
        json.dumps(r.iface("wan")), r.bed.sh("uci show network.wan", check=False), r.explain())
    bmr = rules.get("RULE_BMR")
    assert bmr, "mapcalc found no BMR (no matching PD):\n" + text
    calc = r.calc()
    got = {
        "ipv4": rules.get("RULE_%s_IPV4ADDR" % bmr),
        "ce": rules.get("RULE_%s_IPV6ADDR" % bmr),
        "br": rules.get("RULE_%s_BR" % bmr),
        "ports": [[int(a), int(b)] for a, b in re.findall(r"(\d+)-(\d+)", rules.get("RULE_%s_PORTSETS" % bmr, ""))],
    }
    want = {"ipv4": calc["ipv4"], "ce": calc["ce"], "br": calc["br"], "ports": calc["port_sets"]}
    for key in ("ce", "br"):
        if got[key]:
            got[key] = str(ipaddress.IPv6Address(got[key]))
        want[key] = str(ipaddress.IPv6Address(want[key]))
    assert got == want, "mapcalc (map.sh) and mape-py calc disagree:\nmapcalc %s\ncalc    %s\n%s" % (got, want, text)
    assert R.in_subnet0(got["ce"], r.spec["customer56"]), \
        "CE %s is not in subnet 0 of %s" % (got["ce"], r.spec["customer56"])


def test_status_shape_and_truth(router):
    """(iii) `ubus call mape status` through the real rpcd has docs/status.md's shape and
    tells the truth: ip6tnl does not exist on this kernel, wan cannot be up, so not "ok"."""
    r = router
    st = r.status()
    assert isinstance(st, dict), "ubus call mape status failed:\n" + r.explain()
    assert st.get("version") == 1 and st.get("running") is True and isinstance(st.get("pid"), int), st
    assert st.get("state") in STATES and isinstance(st.get("state_reason"), str), st
    assert isinstance(st.get("updated"), int), st
    assert list(st)[:3] == ["version", "running", "pid"], "top-level key order: %s" % list(st)
    wan6 = st.get("wan6") or {}
    assert wan6.get("interface") == "wan6" and wan6.get("up") is True, st
    assert wan6.get("source") == ("ipv6-prefix" if r.spec["pd"] else "ipv6-address"), wan6
    calc = r.calc()
    m = st.get("mapping") or {}
    assert (m.get("ipv4"), m.get("ce"), m.get("psid")) == (calc["ipv4"], calc["ce"], calc["psid"]), m
    fw = st.get("firewall") or {}
    assert fw.get("backend") == ("iptables" if r.profile == "21.02" else "nftables"), fw
    assert fw.get("health") in HEALTH, fw
    wan = r.iface("wan")
    tunnel = st.get("tunnel") or {}
    assert wan.get("up") is not True, "wan up without ip6tnl? %s" % json.dumps(wan)
    assert tunnel.get("up") is not True, "status says the tunnel is up, netifd says %s" % json.dumps(wan)
    assert st.get("state") != "ok", "status says ok while netifd's wan is down (up=%s, errors=%s): %s" % (
        wan.get("up"), wan.get("errors"), json.dumps({k: st.get(k) for k in ("state", "state_reason", "tunnel",
                                                                              "firewall")}))


def _fw_cycle(r):
    """fw3/fw4 restart and reload three times: [(action, output)]."""
    out = []
    for _ in range(3):
        for action in ("restart", "reload"):
            p = r.bed.run(["/etc/init.d/firewall", action], check=False, timeout=120)
            out.append((action, p.returncode, p.stdout + p.stderr))
    return out


def test_firewall_reload_keeps_rules_once(router):
    """(iv) fw restart + reload, three times: our NAT rules exactly once, `mape-py firewall
    check` says present; and neither fw3 nor fw4 warns about our include."""
    r = router
    before, _ = r.nat_rules()
    assert before, "no mape-py NAT rules installed:\n%s" % r.explain()
    cycle = _fw_cycle(r)
    failed = [(a, rc, o) for a, rc, o in cycle if rc != 0]
    assert not failed, "firewall init script failed: %s" % failed
    after, text = r.nat_rules()
    dups = sorted({l for l in after if after.count(l) > 1})
    assert not dups, "rules twice after 3x restart/reload: %s" % dups
    assert sorted(after) == sorted(before), "rules changed by restart/reload:\nbefore %s\nafter  %s" % (before, after)
    p = r.bed.run(["mape-py", "firewall", "check", "--prefix", r.spec["calc"]], check=False)
    assert p.returncode == 0 and json.loads(p.stdout.splitlines()[0]).get("health") == "present", \
        "firewall check: %s %s" % (p.stdout, p.stderr)
    warnings = [l for _, _, o in cycle for l in o.splitlines()
                if re.search(r"warn|unknown|not supported|error|fail", l, re.I) and "mape" in l.lower()]
    assert not warnings, "the firewall warns about our include: %s" % sorted(set(warnings))


def test_lan_ipv6_intact(router):
    """(v) no IPv6 default route via an invented gateway, no unreachable route for space the
    router does not own, LAN /64s only from a prefix really delegated (RA-only line: none)."""
    r = router
    ula = ipaddress.IPv6Network(r.bed.sh("uci -q get network.globals.ula_prefix").strip())
    owned = r.line.delegated() + [ula]
    gw = r.line.upstream_ll()
    routes = r.bed.sh("ip -6 route show table all", check=False)
    bad_gw = [l for l in routes.splitlines() if l.startswith("default") and " via " in l
              and l.split(" via ")[1].split()[0] != gw]
    assert not bad_gw, "IPv6 default route via an invented gateway (the line's router is %s):\n%s" % (gw, routes)
    bad_unreach = []
    for l in routes.splitlines():
        m = re.match(r"unreachable (\S+)", l)
        if m and m.group(1) != "default":
            net = ipaddress.IPv6Network(m.group(1) if "/" in m.group(1) else m.group(1) + "/128")
            if not any(net.subnet_of(o) for o in owned):
                bad_unreach.append(l)
    assert not bad_unreach, "unreachable routes for space the router does not own (owns %s):\n%s" % (
        [str(o) for o in owned], "\n".join(bad_unreach))
    lan = r.iface("lan")
    assigned = ["%s/%s" % (a["address"], a["mask"]) for a in lan.get("ipv6-prefix-assignment", [])]
    foreign = [a for a in assigned if not any(ipaddress.IPv6Network(a, strict=False).subnet_of(o) for o in owned)]
    assert not foreign, "LAN got %s, not from a prefix delegated to the router (%s)" % (
        foreign, [str(o) for o in owned])
    if r.spec["pd"]:
        delegated = [a for a in assigned if any(ipaddress.IPv6Network(a, strict=False).subnet_of(o)
                                                for o in r.line.delegated())]
        assert delegated, "LAN got nothing from the delegated %s: %s" % (r.spec["pd"], assigned)
