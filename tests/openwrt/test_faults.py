"""Issue 11's faults that need the real uci/libuci and netifd (beds of their own, both
profiles): a user's edits and staged changes survive mape-py's rollback and commits, file
modes are kept; our zone is addressed by name when another zone is inserted under us."""
import json
import os
import stat
import subprocess
import sys

import pytest

import owtier as C

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), "src"))

pytestmark = pytest.mark.openwrt


wait = C.wait


def rollbacks(r):
    return len([h for h in (r.status() or {}).get("history", []) if h.get("event") == "rolled-back"])


def uci_get(r, key):
    return r.bed.run(["uci", "-q", "get", key], check=False).stdout.strip()


def wan_zone(r):
    """The uci path of the wan zone (named or @zone[N])."""
    out = r.bed.sh("uci -q show firewall", check=False)
    for line in out.splitlines():
        if line.endswith(".name='wan'") and ("@zone[" in line or "=zone" not in line):
            return line.split(".name=")[0]
    raise AssertionError("no wan zone in:\n" + out)


def mode(r, path):
    return stat.S_IMODE(os.stat(r.bed.path(path)).st_mode)


@pytest.mark.parametrize("profile", C.PROFILES)
def test_rollback_keeps_edits_committed_meanwhile_and_staged_ones(profile, fresh_router):
    """Rollback on (wan never comes up here). While the daemon waits for wan after its commit,
    the user commits network.lan.ipaddr and the wan zone's input with the real uci and stages
    a new network.guest. The rollback puts back only wan's previous values: both commits stay,
    the staged change stays staged (and the user's later commit brings it in), and a 0600
    /etc/config/network stays 0600; /etc/mape-py is 0700, its copies 0600."""
    r = fresh_router(profile, "pd56", {"verify_timeout": "15"})
    assert wait(r, "the first rollback", lambda: rollbacks(r) >= 1, 40), r.explain()
    r.bed.sh("chmod 600 /etc/config/network")
    before = {k: uci_get(r, "network.wan.%s" % k) for k in ("proto", "rule", "tunlink", "mtu")}
    assert before["proto"] != "map", before
    r.bed.run(["/etc/init.d/mape-py", "reload"])   # SIGHUP: try the change again
    committed = wait(r, "the daemon's commit", lambda: (r.status() or {}).get("state") == "applying"
                     and "option proto 'map'" in r.bed.read("/etc/config/network", ""), 30)
    assert committed, "the daemon did not commit again:\n%s" % json.dumps(r.status())
    zone = wan_zone(r)
    r.bed.sh("uci set network.lan.ipaddr='192.168.77.1'; uci commit network; "
             "uci set %s.input='ACCEPT'; uci commit firewall; "
             "uci set network.guest=interface; uci set network.guest.proto='none'" % zone)
    assert (r.status() or {}).get("state") == "applying", "premise: the edits landed after the verify window"
    assert wait(r, "the rollback", lambda: rollbacks(r) >= 2 and (r.status() or {}).get("state") != "applying", 40), \
        json.dumps(r.status())
    after = {k: uci_get(r, "network.wan.%s" % k) for k in ("proto", "rule", "tunlink", "mtu")}
    assert after == before, "wan not back to its previous values"
    assert uci_get(r, "network.lan.ipaddr") == "192.168.77.1", "the user's network commit was reverted"
    assert uci_get(r, "%s.input" % zone) == "ACCEPT", "the user's firewall commit was reverted"
    assert "guest" not in r.bed.read("/etc/config/network"), "the user's staged change was committed"
    assert "network.guest" in r.bed.sh("uci changes network"), "the user's staged change is gone"
    assert mode(r, "/etc/config/network") == 0o600
    r.bed.sh("uci commit network")
    net = r.bed.read("/etc/config/network")
    assert "config interface 'guest'" in net and "192.168.77.1" in net
    assert uci_get(r, "network.wan.proto") == before["proto"]
    assert mode(r, "/etc/config/network") == 0o600
    assert mode(r, "/etc/mape-py") == 0o700
    for d in ("original", "backup"):
        for name in r.bed.listdir("/etc/mape-py/" + d):
            assert mode(r, "/etc/mape-py/%s/%s" % (d, name)) == 0o600, (d, name)


@pytest.mark.parametrize("profile", C.PROFILES)
def test_staged_changes_of_others_stay_staged_across_the_daemons_commit(profile, fresh_router):
    """The user stages network.lan.ipaddr and a new network.guest with the CLI (/tmp/.uci);
    the daemon then commits a change of its own to network (the MTU, from /etc/config/mape);
    the staged changes are neither committed nor reverted by it, and the user's own commit
    afterwards has both theirs and the daemon's."""
    r = fresh_router(profile, "pd56", C.NO_ROLLBACK)
    assert uci_get(r, "network.wan.proto") == "map", r.explain()
    r.bed.sh("uci set network.lan.ipaddr='192.168.66.1'; uci set network.guest=interface; "
             "uci set network.guest.proto='none'")
    staged = r.bed.sh("uci changes network")
    r.bed.sh("uci set mape.config.mtu='1454'; uci commit mape; /etc/init.d/mape-py reload")
    assert wait(r, "the daemon's commit", lambda: "option mtu '1454'" in r.bed.read("/etc/config/network", "")), \
        json.dumps(r.status())
    net = r.bed.read("/etc/config/network")
    assert "192.168.66.1" not in net and "guest" not in net, "the daemon committed the user's staged changes"
    assert r.bed.sh("uci changes network") == staged, "the user's staged changes were touched"
    r.bed.sh("uci commit network")
    assert uci_get(r, "network.lan.ipaddr") == "192.168.66.1" and uci_get(r, "network.guest.proto") == "none"
    assert uci_get(r, "network.wan.mtu") == "1454"


# -- the zone, with the real uci outside a bed ---------------------------------------------
def real_uci(profile, tmp_path):
    """A `uci` wrapper running the profile's built uci on this host (LD_LIBRARY_PATH)."""
    layer = os.path.join(C.build_dir(profile), "layer")
    path = str(tmp_path / "uci")
    with open(path, "w") as f:
        f.write("#!/bin/sh\nLD_LIBRARY_PATH=%s/usr/lib exec %s/usr/sbin/uci \"$@\"\n" % (layer, layer))
    os.chmod(path, 0o755)
    return path


NETWORK = ("config interface 'wan'\n\toption device 'eth1'\n\toption proto 'dhcp'\n\n"
           "config interface 'wan6'\n\toption device 'eth1'\n\toption proto 'dhcpv6'\n")
FIREWALL = ("config defaults\n\toption input 'ACCEPT'\n\n"
            "config zone%s\n\toption name 'lan'\n\tlist network 'lan'\n\toption input 'ACCEPT'\n\n"
            "config zone%s\n\toption name 'wan'\n\tlist network 'wan'\n\tlist network 'wan6'\n\toption input 'REJECT'\n")


@pytest.mark.parametrize("named", [False, True], ids=["anonymous", "named"])
@pytest.mark.parametrize("profile", C.PROFILES)
def test_zone_inserted_between_export_and_batch_gets_nothing(profile, named, tmp_path):
    from mape.core.mapping import calc
    from mape.core.plan import Target, parse_export
    from mape.core.rules import load_table
    from mape.platform.openwrt import OpenWrt
    from mape.settings import Settings
    from mape.shell.system import System

    if os.path.exists("/tmp/.uci/firewall"):
        pytest.fail("this host has /tmp/.uci/firewall: libuci would read it")
    uci = real_uci(profile, tmp_path)
    root = tmp_path / "root"
    os.makedirs(str(root / "etc/config"))
    (root / "etc/config/network").write_text(NETWORK)
    (root / "etc/config/firewall").write_text(FIREWALL % ((" 'lan'", " 'wanzone'") if named else ("", "")))
    conf = str(root / "etc/config")
    platform = OpenWrt(System(str(root)), uci_program=uci)
    settings = Settings()
    target = Target(calc("240b:11:2233:4400::/56", load_table()), None, settings)

    export = platform.uci.export
    inserted = []

    def export_then_insert(package):
        text = export(package)
        if package == "firewall" and not inserted:   # another tool adds a zone at the top
            inserted.append(1)
            subprocess.run([uci, "-c", conf, "-t", str(tmp_path / "other"), "batch"], check=True,
                           universal_newlines=True,
                           input="add firewall zone\nset firewall.@zone[-1].name='guest'\n"
                                 "reorder firewall.@zone[-1]=1\ncommit firewall\n")
        return text
    platform.uci.export = export_then_insert
    try:
        platform.apply(target, settings)
    except Exception as e:   # the naming may notice the race: then nothing may have changed
        assert "zones changed" in str(e), e
    platform.uci.export = export
    platform.apply(target, settings)   # and the next try gets there
    zones = [s for s in parse_export(export("firewall"), "firewall") if s.type == "zone"]
    by_name = {z.get("name"): z for z in zones}
    assert sorted(by_name) == ["guest", "lan", "wan"], [z.options for z in zones]
    for other in ("guest", "lan"):
        assert "mtu_fix" not in by_name[other].options and "masq" not in by_name[other].options, \
            (other, by_name[other].options)
        assert "wan" not in (by_name[other].get("network") or []), (other, by_name[other].options)
    assert by_name["wan"].get("mtu_fix") == "1" and by_name["wan"].get("masq") == "1"
    assert by_name["wan"].name, "the wan zone is still anonymous"
    assert by_name["lan"].name in (None, "lan") and by_name["guest"].name is None
