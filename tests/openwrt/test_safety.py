"""Safety on the real OpenWrt userland (issue 11 point 17): a name in /etc/config/mape that
belongs to something mape-py does not own (the LAN interface or zone in any of the four
name settings) is refused: /etc/config/network and firewall stay byte for byte, and `ubus call
mape status` (real rpcd) says why in one line."""
import json

import pytest

import owtier as C

pytestmark = pytest.mark.openwrt

BAD = [("wan_iface", "lan"), ("fw_zone", "lan"), ("wan6pd_iface", "lan"), ("wan6_iface", "lan")]


def configs(r):
    return {p: r.bed.read("/etc/config/%s" % p) for p in ("network", "firewall")}


@pytest.mark.parametrize("profile", C.PROFILES)
def test_names_that_are_not_ours_are_refused_and_nothing_is_written(profile, fresh_router):
    r = fresh_router(profile, "pd56", C.NO_ROLLBACK)
    first = r.wait_settled(60)
    assert first and first.get("mapping"), "premise: no first apply\n%s" % r.explain()
    before = configs(r)
    for key, value in BAD:
        r.bed.sh("uci set mape.config.%s='%s' && uci commit mape && /etc/init.d/mape-py reload" % (key, value))
        r.bed.pump()

        def refused_or_written():
            st = r.status() or {}
            if configs(r) != before:
                return st or True
            return st if st.get("state") == "error" and "refusing" in st.get("state_reason", "") \
                and ("%s '%s'" % (key, value)) in st["state_reason"] else None
        st = r.bed.wait("the refusal of %s=%s" % (key, value), refused_or_written, 30)
        assert configs(r) == before, "%s=%s changed the config (state %s):\n%s" % (
            key, value, st.get("state_reason") if isinstance(st, dict) else st, json.dumps(configs(r))[:1500])
        assert "\n" not in st["state_reason"]
        r.bed.sh("uci revert mape; uci set mape.config.%s='%s' && uci commit mape"
                 % (key, {"wan_iface": "wan", "fw_zone": "wan", "wan6pd_iface": "wan6pd",
                          "wan6_iface": "wan6"}[key]))
    # the defaults back: no refusal any more, and still nothing to write
    r.bed.run(["/etc/init.d/mape-py", "reload"])
    r.bed.pump()
    st = r.bed.wait("the refusal to go", lambda: (lambda s: s if s and "refusing" not in
                                                  s.get("state_reason", "") else None)(r.status()), 30)
    assert st.get("mapping", {}).get("ipv4") == first["mapping"]["ipv4"]
    assert configs(r) == before
