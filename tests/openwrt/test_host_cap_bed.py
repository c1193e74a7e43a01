"""The per-host cap (issue 14 point 3) on the real OpenWrt firewall: `option nat_host_cap` in
/etc/config/mape, applied by the daemon, survives the real fw3 / fw4 (`/etc/init.d/firewall
reload` runs mape-py's include) exactly once, follows a changed cap through the daemon's
reload path (uci commit + `/etc/init.d/mape-py reload`, as LuCI's Save & Apply), goes away
when set off and with `opkg remove`. Also where the cap sits among fw3's / fw4's own rules.

LAN traffic through the cap is not carried here: the bed has no ip6tnl, so wan (proto map)
never comes up and there is no tunnel device to forward to (README.md). tests/netns carries
it (test_host_cap_*) with the same rules, and checks their place after fw3's
RELATED,ESTABLISHED accept (test_iptables_guard_sits_after_fw3_established_accept)."""
import re

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
