"""Issue 11 point 9 on the real programs (a bed of its own: it changes state).

netifd restarts: the daemon's `ubus subscribe` must be renewed AND listened to, so that
the interface.update notifications of the new netifd reach it (not only the 300 s
re-check or a hotplug kick)."""
import os
import re
import signal

import pytest

import owtier as C

pytestmark = pytest.mark.openwrt


@pytest.mark.parametrize("profile", C.PROFILES)
def test_netifd_restart_then_updates_still_arrive(profile, fresh_router):
    r = fresh_router(profile, "pd56", C.NO_ROLLBACK)
    for n in range(2):   # twice: the second restart needs the first renewal to have worked
        mark = len(r.logs())
        old = r.bed.pid("network")
        assert old, "netifd is not running\n" + r.explain()
        os.kill(old, signal.SIGKILL)    # procd (the bed) respawns it
        r.bed.wait("the daemon to see netifd restart (%d)" % (n + 1),
                   lambda: "event: netifd restarted" in r.logs()[mark:], timeout=60)
        r.bed.wait("wan6 up again", lambda: (r.bed.ubus("network.interface.wan6", "status", check=False)
                                             or {}).get("up"), timeout=60)
        # interface.update reaches us only through the (renewed) subscription
        mark = len(r.logs())
        r.bed.run(["ifup", "wan6"])
        r.bed.wait("wan6's interface.update from the restarted netifd (restart %d)" % (n + 1),
                   lambda: re.search(r"event: [^\n]*wan6 interface\.update", r.logs()[mark:]), timeout=90)
    assert r.daemon_pid(), "the daemon died\n" + r.explain()
