"""Manual edits are not overwritten (issue 11 point 19), on the real OpenWrt userland: a real
`uci set network.wan.proto=pppoe; uci commit network`, then an event (recompute through
the real rpcd) -> not reverted, status "held"; then each way out through rpcd
(`ubus call mape adopt|give_up|reapply`, the calls LuCI makes)."""
import pytest

import owtier as C

pytestmark = pytest.mark.openwrt


def net(r, option):
    return r.bed.sh("uci -q get network.wan.%s" % option, check=False).strip()


def edit_and_kick(r, *sets):
    r.bed.sh("; ".join("uci set network.wan.%s" % s for s in sets) + "; uci commit network")
    r.bed.ubus("mape", "recompute")


def wait_state(r, what, fn, timeout=30):
    return r.bed.wait(what, lambda: (lambda st: st if st and fn(st) else None)(r.status()), timeout)


@pytest.mark.parametrize("profile", C.PROFILES)
def test_manual_edit_is_held_then_each_way_out(profile, fresh_router):
    r = fresh_router(profile, "pd56", C.NO_ROLLBACK)
    first = r.wait_settled(60)
    assert first and first.get("mapping") and net(r, "proto") == "map", r.explain()

    # 1. proto pppoe + mtu by hand: held, nothing put back
    edit_and_kick(r, "proto=pppoe", "mtu=1454")
    st = wait_state(r, "held or reverted", lambda s: s.get("state") == "held" or net(r, "proto") != "pppoe")
    assert (net(r, "proto"), net(r, "mtu")) == ("pppoe", "1454"), "the manual edit was reverted: %s" % (
        st.get("state_reason"))
    assert st["state"] == "held" and "network.wan.proto is 'pppoe', mape-py wrote 'map'" in st["state_reason"]
    assert {h["option"] for h in st["held"]} == {"network.wan.proto", "network.wan.mtu"}
    assert (net(r, "proto"), net(r, "mtu")) == ("pppoe", "1454")
    # adopt cannot take proto: refused, nothing changed
    res = r.bed.ubus("mape", "adopt")
    assert res["ok"] is False and "network.wan.proto cannot become a mape setting" in res["error"], res
    assert net(r, "proto") == "pppoe"

    # 2. reapply: mape-py's values again
    res = r.bed.ubus("mape", "reapply")
    assert res["ok"] is True, res
    wait_state(r, "the re-apply", lambda s: s.get("state") != "held" and net(r, "proto") == "map")
    assert net(r, "mtu") == "1460"

    # 3. only the MTU by hand: adopt makes it the mape setting
    edit_and_kick(r, "mtu=1454")
    wait_state(r, "held (mtu)", lambda s: s.get("state") == "held")
    res = r.bed.ubus("mape", "adopt")
    assert res["ok"] is True and "mtu '1454'" in res["message"], res
    st = wait_state(r, "the adopt", lambda s: s.get("state") != "held" and s["settings"]["mtu"] == 1454)
    assert r.bed.sh("uci -q get mape.@mape[0].mtu").strip() == "1454" and net(r, "mtu") == "1454"

    # 4. proto by hand again: give up -> disabled, the edit stays
    edit_and_kick(r, "proto=pppoe")
    wait_state(r, "held (proto)", lambda s: s.get("state") == "held")
    res = r.bed.ubus("mape", "give_up")
    assert res["ok"] is True, res
    wait_state(r, "disabled", lambda s: s.get("state") == "disabled")
    assert net(r, "proto") == "pppoe"
