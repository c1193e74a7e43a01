"""Kill the daemon (SIGKILL, with everything it started) at each step of the transaction;
the next start must find either the old or the new configuration, never a mix, and must
then converge to the new one."""
import os
import signal

import pytest

from fakerouter import SDATA, Router, alive, firewall_initial

# the wan zone already has its section name (else the first batch and commit would be
# naming it, and the kills would not reach the change itself)
OLD = (open(os.path.join(SDATA, "network.initial")).read(), firewall_initial(named=True))


@pytest.fixture
def router(router):
    router.write("etc/config/firewall", OLD[1])
    return router

STEPS = ["batch", "commit-network", "commit-firewall", "reload-network", "reload-firewall",
         "ubus-call-network.interface.wan"]


@pytest.fixture(scope="module")
def new_config(tmp_path_factory):
    r = Router(tmp_path_factory.mktemp("clean") / "root")
    r.write("etc/config/firewall", OLD[1])
    p = r.once()
    assert p.returncode == 0, p.stderr
    return (r.read("etc/config/network"), r.read("etc/config/firewall"))


def pair(router):
    return (router.read("etc/config/network"), router.read("etc/config/firewall"))


@pytest.mark.parametrize("step", STEPS)
def test_kill_at_step(router, new_config, step):
    os.makedirs(router.path("hang"))
    router.write("hang/" + step, "")
    p = router.start()
    router.wait_for(lambda: os.path.exists(router.path("reached/" + step)), what="step " + step)
    router.kill_hard(p)
    os.unlink(router.path("hang/" + step))
    # next start, wan6 gone: only the recovery runs
    router.set_wan6(None)
    r = router.once()
    assert "Traceback" not in r.stderr
    state = pair(router)
    assert state in (OLD, new_config), "mixed configuration after kill at %s" % step
    assert router.read("etc/mape-py/journal") is None
    assert not os.path.exists(router.path("tmp/.uci/network"))
    assert not os.path.exists(router.path("tmp/.uci/firewall"))
    expected = {"batch": OLD, "commit-network": OLD, "commit-firewall": OLD}.get(step, new_config)
    assert state == expected
    # and it converges once wan6 is back
    router.set_wan6("wan6_status_dhcpv6_pd56.json")
    r = router.once()
    assert r.returncode == 0, r.stderr
    assert pair(router) == new_config
    assert router.status()["state"] == "ok"


def test_killed_again_during_the_recovery(router, new_config):
    os.makedirs(router.path("hang"))
    router.write("hang/commit-firewall", "")
    p = router.start()
    router.wait_for(lambda: os.path.exists(router.path("reached/commit-firewall")), what="commit-firewall")
    router.kill_hard(p)
    os.unlink(router.path("hang/commit-firewall"))
    # the next start is killed in the middle of putting the backups back
    router.write("hang/commit-network", "")  # the undo batch commits network
    router.set_wan6(None)
    p = router.start()
    # the start first waits up to 20 s for the hung commit the killed run left (its own process
    # group outlived killpg), then kills it: on a loaded machine that alone nears the default 60 s
    router.wait_for(lambda: os.path.exists(router.path("reached/commit-network")), timeout=180,
                    what="undo during recovery")
    assert "rolling-back" in router.read("etc/mape-py/journal")
    router.kill_hard(p)
    os.unlink(router.path("hang/commit-network"))
    r = router.once()
    assert "Traceback" not in r.stderr
    assert pair(router) == OLD
    assert router.read("etc/mape-py/journal") is None


KILLS = 5


def test_kill_of_the_main_pid_only(tmp_path, new_config):
    """procd kills the daemon's PID, not its group: the `uci commit` child it had running
    lives on. The next start must wait for (or kill) it before recovering, or its commit
    lands after the recovery and network is new while firewall is old."""
    mixed = 0
    for i in range(KILLS):
        router = Router(tmp_path / str(i))
        try:
            os.makedirs(router.path("slow"))
            router.write("slow/commit-network", "3")
            p = router.start()
            router.wait_for(lambda: os.path.exists(router.path("reached/slow-commit-network")),
                            what="slow commit")
            os.kill(p.pid, signal.SIGKILL)     # the main PID only
            p.wait()
            orphan = int(router.read("reached/slow-commit-network"))
            router.set_wan6(None)
            r = router.once()
            assert "Traceback" not in r.stderr
            router.wait_for(lambda: not alive(orphan), what="the orphaned uci to exit")
            if pair(router) not in (OLD, new_config):
                mixed += 1
        finally:
            router.kill_all()
    print("\nkill of the main PID only: %d kills, %d mixed configurations" % (KILLS, mixed))
    assert mixed == 0

