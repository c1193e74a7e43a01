"""Port forwards that can work (issue 14 point 1) on the real OpenWrt userland: redirects
made with the real uci and loaded by a real firewall reload (fw3 / fw4), seen through the real
rpcd (`ubus call mape status`), by `mape-py doctor`, kept out of the SNAT ranges the kernel
holds, and moved to a free allowed port by `ubus call mape use_free_port` (LuCI's button)."""
import json
import re

import pytest

import owtier as C

pytestmark = pytest.mark.openwrt


def snat_ranges(r, ipv4):
    """[(first, last)] of every SNAT target to ``ipv4`` in the kernel's ruleset."""
    _, text = r.nat_rules()
    return [(int(a), int(b or a)) for a, b in
            re.findall(r"(?:--to-source|snat ip to) %s:(\d+)(?:-(\d+))?" % re.escape(ipv4), text)]


def covered(ranges, port):
    return any(a <= port <= b for a, b in ranges)


def wait_state(r, what, fn, timeout=45):
    return C.wait(r, what, lambda: (lambda st: st if st and fn(st) else None)(r.status()), timeout)


@pytest.mark.parametrize("profile", C.PROFILES)
def test_forwards_status_doctor_nat_and_use_free_port(profile, fresh_router):
    r = fresh_router(profile, "pd56", C.NO_ROLLBACK)
    first = r.wait_settled(60)
    assert first and first.get("mapping"), r.explain()
    ipv4, sets = first["mapping"]["ipv4"], [tuple(s) for s in first["mapping"]["port_sets"]]
    inside = sets[1][0] + 3                # an allowed port
    outside = sets[0][1] + 100             # between two sets: the BR drops it
    assert covered(snat_ranges(r, ipv4), inside), "the NAT rules are not in place: %s" % r.explain()

    # a LuCI-style named redirect and an anonymous one (as `uci add` makes), then the reload
    # LuCI's Save & Apply does: the firewall runs mape-py's include, which kicks the daemon
    r.bed.sh("uci set firewall.game=redirect; uci set firewall.game.name=Game; uci set firewall.game.src=wan; "
             "uci set firewall.game.src_dport=%d; uci set firewall.game.dest=lan; "
             "uci set firewall.game.dest_ip=192.168.1.20; uci set firewall.game.target=DNAT; "
             "s=$(uci add firewall redirect); uci set firewall.$s.name=NAS; uci set firewall.$s.src=wan; "
             "uci set firewall.$s.proto=tcp; uci set firewall.$s.src_dport=%d; uci set firewall.$s.dest=lan; "
             "uci set firewall.$s.dest_ip=192.168.1.30; uci commit firewall; /etc/init.d/firewall reload"
             % (inside, outside))
    st = wait_state(r, "two forwards in the status", lambda s: len(s.get("forwards") or []) == 2)
    assert st, "the daemon never reported the forwards: %s" % r.explain()
    game, nas = st["forwards"]
    assert (game["section"], game["allowed"], game["kept_out"]) == ("game", "yes", [[inside, inside]])
    assert nas["section"].startswith("@redirect[") and nas["allowed"] == "no" and "kept_out" not in nas
    assert nas["suggestion"] == [sets[0][1], sets[0][1]]   # the last port of the set below is nearest
    assert any(w["code"] == "forward-port-not-allowed" for w in st.get("warnings", []))
    got = C.wait(r, "the forwarded port out of the SNAT ranges",
                 lambda: not covered(snat_ranges(r, ipv4), inside) or None)
    ranges = snat_ranges(r, ipv4)
    assert got, "port %d still in the SNAT ranges %s" % (inside, ranges)
    assert covered(ranges, inside - 1) and covered(ranges, inside + 1)

    doctor = r.bed.run(["mape-py", "doctor", "--json"], check=False)
    assert "Traceback" not in doctor.stderr
    checks = [c for c in json.loads(doctor.stdout)["checks"] if c["code"] == "forward-port"]
    assert [(c["section"], c["ok"]) for c in checks] == [("game", True), (nas["section"], False)]
    assert "src_dport='%d'" % sets[0][1] in checks[1]["fix"]

    # LuCI's "use a free allowed port": through rpcd, the real uci and a real firewall reload
    res = r.bed.ubus("mape", "use_free_port", {"section": nas["section"]})
    assert res.get("ok") is True, res
    assert r.bed.sh("uci -q get firewall.%s.src_dport" % nas["section"]).strip() == str(sets[0][1])
    assert r.bed.sh("uci -q get firewall.%s.dest_port" % nas["section"]).strip() == str(outside)
    st = wait_state(r, "the moved forward allowed", lambda s: len(s.get("forwards") or []) == 2
                    and s["forwards"][1]["allowed"] == "yes")
    assert st and st["forwards"][1]["kept_out"] == [[sets[0][1], sets[0][1]]], r.explain()
    assert C.wait(r, "the new port out of the SNAT ranges",
                  lambda: not covered(snat_ranges(r, ipv4), sets[0][1]) or None), snat_ranges(r, ipv4)
    assert not covered(snat_ranges(r, ipv4), inside)
