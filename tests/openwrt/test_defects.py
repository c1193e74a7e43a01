"""The other defects of issue 10 that this tier can see, on the real OpenWrt userland of both
profiles (PD /56 line; beds of their own because these tests change the router's state).
"""
import json
import os
import re
import signal
import time

import pytest

import owtier as C

pytestmark = pytest.mark.openwrt


wait = C.wait


@pytest.fixture(scope="module", params=C.PROFILES)
def plain(request, ipks):
    """A router for the tests below that poke the daemon (run in file order)."""
    r = C.make_router(request.param, "pd56", ipks, C.NO_ROLLBACK)
    yield r
    r.down()


def test_no_bytecode_written_at_run_time(plain):
    """Python must not write __pycache__ into /usr/lib/mape-py (flash) at run time: the
    daemon ran, and we use the CLI, the rpcd plugin and a recompute (SIGHUP)."""
    r = plain
    r.bed.sh("mape-py calc --json %s >/dev/null; mape-py status >/dev/null 2>&1; "
             "ubus call mape status >/dev/null; ubus call mape calc '{\"prefix\":\"%s\"}' >/dev/null; "
             "mape-py firewall check --prefix %s >/dev/null 2>&1; true"
             % (r.spec["calc"], r.spec["calc"], r.spec["calc"]))
    r.bed.run(["/etc/init.d/mape-py", "reload"])
    time.sleep(3)
    now = r.tree("/usr/lib/mape-py")
    new = sorted(set(now) - set(r.files_at_install))
    changed = sorted(p for p in set(now) & set(r.files_at_install) if now[p] != r.files_at_install[p])
    assert not new and not changed, "written at run time under /usr/lib/mape-py: %d new %s, %d changed %s" % (
        len(new), new[:8], len(changed), changed[:8])


def test_no_revert_log_for_empty_uci_deltas(plain):
    """libuci leaves empty delta files in /tmp/.uci after a commit: they are not
    "uncommitted changes", so the daemon must not log that it reverts them at start."""
    r = plain
    for pkg in ("network", "firewall", "mape"):
        r.bed.write("/tmp/.uci/%s" % pkg, "")
    mark = len(r.logs())
    r.bed.run(["/etc/init.d/mape-py", "restart"])
    r.bed.pump()
    r.wait_settled(30)
    time.sleep(1)
    new = r.logs()[mark:]
    hits = [l for l in new.splitlines() if re.search(r"revert", l, re.I)]
    assert not hits, "logged at start with only empty deltas in /tmp/.uci: %s" % hits


def test_sigkill_mid_apply_leaves_no_journal_tmp(plain):
    """A daemon SIGKILLed while applying leaves no /etc/mape-py/.journal.tmp* behind (once
    procd respawned it). We make it apply again (wan's proto changed behind its back),
    SIGKILL it as soon as it is applying, and also leave the temp file that a kill between
    write and rename leaves (write_atomic's `.journal.tmp<pid>`)."""
    r = plain
    for attempt, delay in enumerate((0.0, 0.05, 0.3)):
        pid = r.daemon_pid()
        assert pid, "the daemon is not running (attempt %d)\n%s" % (attempt, r.explain())
        r.bed.sh("uci set network.wan.proto='dhcp'; uci commit network")
        r.bed.run(["/etc/init.d/mape-py", "reload"])
        t_end = time.time() + 5
        while time.time() < t_end:
            st = r.status() or {}
            if st.get("state") == "applying" or any(n.startswith(".journal.tmp") or n == "journal"
                                                    for n in r.bed.listdir("/etc/mape-py")):
                break
            time.sleep(0.01)
        time.sleep(delay)
        if attempt == 2:
            r.bed.write("/etc/mape-py/.journal.tmp%d" % 99999, '{"phase": "prepa')
        os.kill(pid, signal.SIGKILL)
        new = wait(r, "procd's respawn of the daemon", lambda: r.daemon_pid() not in (None, pid), 20)
        assert new, "not respawned after SIGKILL\n" + r.explain()
        r.wait_settled(40)
    time.sleep(2)
    left = [n for n in r.bed.listdir("/etc/mape-py") if ".tmp" in n]
    assert not left, "temp files left in /etc/mape-py after SIGKILL + respawn: %s" % left
    left = [n for n in r.bed.listdir("/etc/config") if n.startswith(".")]
    assert not left, "temp files left in /etc/config: %s" % left


def _zone_networks(r, zone="wan"):
    out = r.bed.sh("uci -q show firewall", check=False)
    for sec in re.findall(r"^firewall\.(@zone\[\d+\]|\w+)=zone$", out, re.M):
        if r.bed.sh("uci -q get firewall.%s.name" % sec, check=False).strip() == zone:
            return r.bed.sh("uci -q get firewall.%s.network" % sec, check=False).split()
    return []


def _has_wan6pd(r):
    return r.bed.run(["uci", "-q", "get", "network.wan6pd"], check=False).returncode == 0


@pytest.mark.parametrize("profile", C.PROFILES)
def test_upgrade_removes_the_wan6pd_an_earlier_version_made(profile, old_ipk, ipks, fresh_router):
    """An install of an earlier version (owtier.OLD_RELEASE) made the `wan6pd` helper and
    listed it in the wan zone; `opkg install` of today's package over it (an upgrade, the
    postinst restarts the daemon) removes both, since the saved original config had neither."""
    r = fresh_router(profile, "pd56", C.NO_ROLLBACK, ipks=[old_ipk])
    made = wait(r, "the old version's wan6pd", lambda: _has_wan6pd(r) and "wan6pd" in _zone_networks(r), 30)
    assert made, "premise: %s did not create wan6pd + zone entry:\n%s\nzone wan: %s" % (
        C.OLD_RELEASE, r.bed.sh("uci -q show network", check=False), _zone_networks(r))
    with r.bed.lock:
        p = r.bed.install(ipks)
    r.bed.pump()
    assert p.returncode == 0 and "Upgrading mape-py" in p.stdout, p.stdout + p.stderr
    gone = wait(r, "wan6pd gone", lambda: not _has_wan6pd(r) and "wan6pd" not in _zone_networks(r), 40)
    assert gone, "after the upgrade: network.wan6pd=%r, zone wan networks %s\n%s" % (
        r.bed.sh("uci -q show network.wan6pd", check=False), _zone_networks(r), r.logs()[-3000:])
    gone = wait(r, "netifd to drop wan6pd", lambda: r.bed.run(["ubus", "list", "network.interface.wan6pd"],
                                                              check=False).returncode != 0, 15)
    assert gone, "netifd still has wan6pd 15 s after it left the config (no network reload?)"


def test_opkg_remove_leaves_nothing(plain):
    """opkg remove: no files under /usr/lib/mape-py (bytecode included), no NAT rules, no
    state in /var/run/mape-py, no `mape` ubus object."""
    r = plain
    p = r.bed.opkg("remove", "mape-py", check=False)
    assert p.returncode == 0, p.stdout + p.stderr
    time.sleep(1)
    assert not r.bed.exists("/usr/lib/mape-py") or not r.tree("/usr/lib/mape-py"), \
        "left under /usr/lib/mape-py: %s" % sorted(r.tree("/usr/lib/mape-py"))[:10]
    rules, _ = r.nat_rules()
    assert not rules, "NAT rules left after removal: %s" % rules[:5]
    assert not r.bed.listdir("/var/run/mape-py"), r.bed.listdir("/var/run/mape-py")
    assert "mape" not in r.bed.sh("ubus list").split(), "the mape ubus object is still there"


@pytest.mark.parametrize("profile", C.PROFILES)
def test_rollback_removes_nat_and_firewall_state(profile, fresh_router):
    """No ip6tnl here, so wan never comes up and the default rollback fires (verify_timeout 5
    instead of 30, only to keep the test short): the config goes back, and with it our NAT
    chains and /var/run/mape-py/firewall.*, also across a firewall restart."""
    r = fresh_router(profile, "pd56", {"verify_timeout": "5"})

    def rolled_back():
        st = r.status() or {}
        ev = [h for h in st.get("history", []) if h.get("event") == "rolled-back"]
        return st if ev and st.get("state") != "applying" else None
    st = wait(r, "the rollback", rolled_back, 60)
    assert st, "no rollback within 60 s: %s\n%s" % (json.dumps(r.status()), r.explain())
    rules, _ = r.nat_rules()
    # the saved rulesets the firewall include re-applies (a lock file re-applies nothing)
    state = [n for n in r.bed.listdir("/var/run/mape-py") if n.startswith("firewall.") and not n.endswith(".lock")]
    assert not rules and not state, "after the rollback: NAT rules %s, state files %s" % (rules[:5], state)
    r.bed.run(["/etc/init.d/firewall", "restart"], check=False)
    rules, _ = r.nat_rules()
    assert not rules, "a firewall restart after the rollback re-installed: %s" % rules[:5]
