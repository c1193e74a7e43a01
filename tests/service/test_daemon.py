"""The daemon as a real process against the fake router (recorded ubus text, a fake uci
that keeps real files and deltas, fake netifd/iptables): exact uci batch text, reload
calls, status; rollback; garbage input."""
import json
import os
import signal
import subprocess

from fakerouter import SDATA, firewall_initial

with open(os.path.join(SDATA, "batch_pd56.txt")) as f:
    BATCH_PD56 = f.read()
# the stock wan zone is anonymous: it gets a section name first (a batch of its own, checked
# before it is committed), so that no batch addresses it by an index another tool can shift
NAME_ZONE = "rename firewall.@zone[1]='wan'\n"

APPLY_CALLS = ["uci commit network", "uci commit firewall", "network reload", "firewall reload"]


def lines(router):
    return router.calls().splitlines()


def test_pd56_first_run_writes_exact_batch_commits_reloads(router):
    p = router.once()
    assert p.returncode == 0, p.stderr
    assert router.batches() == [NAME_ZONE, BATCH_PD56]
    calls = lines(router)
    calls = calls[max(i for i, c in enumerate(calls) if c == "uci batch <<"):]
    idx = [calls.index(c) for c in APPLY_CALLS]
    assert idx == sorted(idx)
    assert "iptables-restore -w --noflush <<" in router.calls()
    assert "--to-source 106.73.34.51:5184-5199" in router.calls()
    st = router.status()
    assert st["state"] == "ok" and st["version"] == 1
    assert st["wan6"] == {"interface": "wan6", "up": True, "device": "eth1", "source": "ipv6-prefix",
                          "prefix": "240b:11:2233:4400::/56",
                          "address": "240b:11:2233:4400:a00:27ff:fe12:3456/64",
                          "candidates": [{"prefix": "240b:11:2233:4400::/56", "source": "ipv6-prefix",
                                          "supported": True},
                                         {"prefix": "240b:11:2233:4400:a00:27ff:fe12:3456/64",
                                          "source": "ipv6-address", "supported": True}],
                          "choice": "a delegated prefix beats an RA address"}
    assert st["mapping"]["ipv4"] == "106.73.34.51" and st["mapping"]["psid"] == 68
    assert st["tunnel"] == {"interface": "wan", "up": True, "device": "map-wan", "ipv4": "106.73.34.51",
                            "expected_ipv4": "106.73.34.51"}
    assert st["firewall"]["health"] == "present" and st["firewall"]["backend"] == "iptables"
    assert st["uci"]["network.wan"]["tunlink"] == "wan6"
    assert [h["event"] for h in st["history"]] == ["prefix-changed", "applied"]
    assert st["ports"]["capacity"] == 240
    # the originals are kept, the journal is gone, no delta left behind
    assert router.read("etc/mape-py/original/network") == open(os.path.join(SDATA, "network.initial")).read()
    assert router.read("etc/mape-py/journal") is None
    assert not os.path.exists(router.path("tmp/.uci/network"))
    net = router.read("etc/config/network")
    assert "\toption proto 'map'\n" in net and "\toption rule 'type=map-e," in net
    assert "wan6pd" not in net


def test_ra64_uses_the_address_and_gives_the_same_config(router):
    router.set_wan6("wan6_status_ra64_userprefix.json")
    p = router.once()
    assert p.returncode == 0, p.stderr
    st = router.status()
    assert st["wan6"]["source"] == "ipv6-address"
    assert st["wan6"]["prefix"] == "240b:11:2233:4400:a00:27ff:fe12:3456/64"
    assert st["mapping"]["ipv4"] == "106.73.34.51"
    assert router.batches() == [NAME_ZONE, BATCH_PD56]


def test_renumbered_line_uses_the_new_prefix_not_the_deprecated_one(router):
    """After renumbering netifd lists the old /56 with preferred lifetime 0 next to the new
    one (issue 11 point 11): the new one is mapped and status says why."""
    with open(os.path.join(SDATA, "..", "..", "data", "wan6_status_dhcpv6_pd56.json")) as f:
        st_ = json.load(f)
    old = st_["ipv6-prefix"][0]
    old.update(preferred=0, valid=7000)
    new = dict(old, address="240b:10:3f6c:d400::", preferred=14400, valid=14400)
    st_["ipv6-prefix"] = [old, new]
    st_["ipv6-address"][0].update(preferred=0)
    router.set_wan6(text=json.dumps(st_))
    p = router.once()
    assert p.returncode == 0, p.stderr
    st = router.status()
    assert st["mapping"]["ipv4"] == "106.72.63.108" and st["wan6"]["prefix"] == "240b:10:3f6c:d400::/56"
    assert "pd=240b:10:3f6c:d400::,pdlen=56" in router.read("etc/config/network")
    assert st["wan6"]["candidates"][0] == {"prefix": "240b:10:3f6c:d400::/56", "source": "ipv6-prefix",
                                           "supported": True}
    assert {"prefix": "240b:11:2233:4400::/56", "source": "ipv6-prefix", "deprecated": True,
            "supported": True} in st["wan6"]["candidates"]
    assert st["wan6"]["choice"].startswith("preferred lifetime > 0")


def test_nothing_written_when_already_applied(router):
    assert router.once().returncode == 0
    before = {n: os.stat(router.path("etc/config/" + n)).st_mtime_ns for n in ("network", "firewall")}
    backup = os.stat(router.path("etc/mape-py/backup/network")).st_mtime_ns
    router.clear_calls()
    p = router.once()
    assert p.returncode == 0, p.stderr
    calls = router.calls()
    assert "uci batch" not in calls and "commit" not in calls and "reload" not in calls
    assert "iptables-restore" not in calls
    after = {n: os.stat(router.path("etc/config/" + n)).st_mtime_ns for n in ("network", "firewall")}
    assert before == after
    assert os.stat(router.path("etc/mape-py/backup/network")).st_mtime_ns == backup
    assert router.status()["state"] == "ok"


def test_unsupported_prefix_changes_nothing(router):
    status = json.load(open(os.path.join(os.path.dirname(SDATA), "..", "data", "wan6_status_dhcpv6_pd56.json")))
    status["ipv6-prefix"][0]["address"] = "2a01:4f8:c0c:1200::"
    status["ipv6-address"][0]["address"] = "2a01:4f8:c0c:1200::2"
    router.set_wan6(text=json.dumps(status))
    p = router.once()
    assert p.returncode == 3
    assert "state unsupported-prefix: no MAP-E rule covers 2a01:4f8:c0c:1200::/56" in p.stderr
    assert router.batches() == []
    st = router.status()
    assert st["state"] == "unsupported-prefix"
    assert st["wan6"]["prefix"] == "2a01:4f8:c0c:1200::/56"
    assert "mapping" not in st and "no MAP-E rule covers" in st["mapping_error"]
    assert st["history"][-1]["supported"] is False
    assert router.read("etc/config/network") == open(os.path.join(SDATA, "network.initial")).read()


def test_wan6_missing_waits(router):
    router.set_wan6(None)
    p = router.once()
    assert p.returncode == 0
    st = router.status()
    assert st["state"] == "waiting-for-wan6"
    assert st["state_reason"] == "interface wan6 does not exist"
    assert router.batches() == []


def test_rollback_when_the_tunnel_does_not_come_up(router):
    router.write("scenario/tunnel_fail", "")
    p = router.once()
    assert p.returncode == 1
    assert "did not come up with 106.73.34.51" in p.stderr
    assert router.read("etc/config/network") == open(os.path.join(SDATA, "network.initial")).read()
    assert router.read("etc/config/firewall") == firewall_initial(named=True)  # the name stays
    calls = lines(router)
    assert calls.count("network reload") == 2 and calls.count("firewall reload") == 2
    st = router.status()
    assert st["state"] == "error"
    assert "previous configuration restored" in st["last_error"]["message"]
    assert st["history"][-1]["event"] == "rolled-back"
    assert st["tunnel"]["up"] is False


def test_uci_commit_failure_leaves_the_old_config(router):
    router.write("etc/config/firewall", firewall_initial(named=True))  # commit-firewall of the change itself
    os.makedirs(router.path("fail"))
    router.write("fail/commit-firewall", "")
    p = router.once()
    assert p.returncode == 1
    assert router.read("etc/config/network") == open(os.path.join(SDATA, "network.initial")).read()
    assert router.read("etc/config/firewall") == firewall_initial(named=True)
    assert "reload" not in router.calls()
    st = router.status()
    assert st["state"] == "error" and "apply failed: uci commit firewall failed" in st["last_error"]["message"]
    assert router.read("etc/mape-py/journal") is None


def test_other_tools_staged_changes_stay_staged(router):
    """Deltas another tool staged in /tmp/.uci are not the daemon's: it neither commits nor
    reverts them (tests/openwrt/test_faults.py shows it with the real uci)."""
    staged = "network.lan.ipaddr='10.9.9.9'\nnetwork.guest='interface'\n"
    router.write("tmp/.uci/network", staged)
    p = router.once()
    assert p.returncode == 0, p.stderr
    assert "10.9.9.9" not in router.read("etc/config/network")
    assert "option proto 'map'" in router.read("etc/config/network")
    assert router.read("tmp/.uci/network") == staged
    assert "revert" not in p.stderr
    subprocess.run(["uci", "commit", "network"], env=router.env(), check=True)
    net = router.read("etc/config/network")
    assert "option ipaddr '10.9.9.9'" in net and "config interface 'guest'" in net and "option proto 'map'" in net


def test_garbage_in_etc_config_mape_keeps_defaults_and_says_so(router):
    router.write("etc/config/mape", "config mape 'config'\n\toption mtu 'lots'\n")
    p = router.once()
    assert p.returncode == 0, p.stderr
    assert "invalid settings, using the defaults: /etc/config/mape: option 'mtu' must be a number, not 'lots'" \
        in p.stderr.replace(router.root, "")
    st = router.status()
    codes = [w["code"] for w in st["warnings"]]
    assert "config-invalid" in codes
    assert st["state"] == "ok"


def test_disabled(router):
    router.write("etc/config/mape", "config mape 'config'\n\toption enabled '0'\n")
    p = router.once()
    assert p.returncode == 0
    assert router.status()["state"] == "disabled"
    assert "ubus call" not in router.calls() and router.batches() == []


def test_settings_drive_names_and_mtu(router):
    router.write("etc/config/mape", "config mape 'config'\n\toption manage_wan6pd '0'\n\toption mtu '1454'\n"
                                    "\toption verify_timeout '3'\n")
    p = router.once()
    assert p.returncode == 0, p.stderr
    batch = router.batches()[-1]
    assert "set network.wan.tunlink='wan6'\n" in batch and "set network.wan.mtu='1454'\n" in batch
    assert "wan6pd" not in batch.replace("tunlink='wan6'", "")


GARBAGE = [
    ("not json", "Command failed: Invalid argument\n"),
    ("array", "[1, 2, 3]\n"),
    ("truncated", '{"up": true, "ipv6-prefix": [{"address": "240b:11:2233:4400::", "ma'),
    ("wrong types", '{"up": "yes", "ipv6-prefix": "240b::/56"}'),
    ("bad entries", '{"up": true, "ipv6-prefix": [{"address": "zzz", "mask": 56}, 7, {"mask": true}],'
                    ' "ipv6-address": [{"address": "240b:11:2233:4400::5", "mask": "64"}]}'),
]


def test_garbage_ubus_output_never_crashes_nor_writes(router):
    for name, text in GARBAGE:
        router.set_wan6(text=text)
        router.clear_calls()
        p = router.once()
        assert "Traceback" not in p.stderr, name
        assert p.returncode in (0, 1), (name, p.stderr)
        st = router.status()
        assert st["state"] in ("error", "waiting-for-wan6"), name
        assert router.batches() == [], name
        assert p.stderr.strip(), name  # a log line says what happened


def test_sigterm_clean_exit_and_status(router):
    p = router.start()
    router.wait_for(lambda: (router.status() or {}).get("state") == "ok", what="state ok")
    assert router.read("var/run/mape-py/mape-py.pid").strip() == str(p.pid)
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=30) == 0
    st = router.status()
    assert st["running"] is False and st["state"] == "stopped"
    assert router.read("var/run/mape-py/mape-py.pid") is None
    assert "ubus subscribe network.interface" in router.calls()
    assert "ubus listen network.interface ubus.object.add" in router.calls()


def test_offload_warning_in_status(router):
    router.write("etc/config/firewall", router.read("etc/config/firewall").replace(
        "option flow_offloading '0'", "option flow_offloading '1'\n\toption flow_offloading_hw '1'"))
    assert router.once().returncode == 0
    warnings = {w["code"]: w["message"] for w in router.status()["warnings"]}
    assert warnings["offload-enabled"].startswith("flow offloading is on (flow_offloading, flow_offloading_hw)")


def test_remove_undoes_only_what_mape_py_owns(router):
    assert router.once().returncode == 0
    assert "option tunlink 'wan6'" in router.read("etc/config/network")
    # the user edits other things afterwards: they must survive the removal
    router.write("etc/config/network", router.read("etc/config/network").replace(
        "option ipaddr '192.168.8.1'", "option ipaddr '192.168.50.1'"))
    router.write("etc/config/firewall", router.read("etc/config/firewall") +
                 "\nconfig redirect\n\toption name 'nas'\n\toption src_dport '8443'\n")
    router.clear_calls()
    p = __import__("subprocess").run(router.argv("--remove"), env=router.env(), stdout=-1, stderr=-1,
                                     universal_newlines=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout == "restored: network, firewall\n"
    assert router.batches() == [
        "set network.wan.proto='dhcp'\n"
        "delete network.wan.maptype\ndelete network.wan.rule\n"
        "delete network.wan.legacymap\ndelete network.wan.mtu\ndelete network.wan.tunlink\n"
        "delete firewall.wan.mtu_fix\n"]
    expected_net = open(os.path.join(SDATA, "network.initial")).read().replace(
        "option ipaddr '192.168.8.1'", "option ipaddr '192.168.50.1'")
    assert router.read("etc/config/network") == expected_net
    fw = router.read("etc/config/firewall")
    assert "mtu_fix" not in fw and "option src_dport '8443'" in fw
    assert "mape_py" not in router.read("iptables/nat.json")
    # nothing left to undo: a second removal writes nothing
    router.clear_calls()
    p = __import__("subprocess").run(router.argv("--remove"), env=router.env(), stdout=-1, stderr=-1,
                                     universal_newlines=True, timeout=120)
    assert p.stdout == "restored: nothing (no saved originals or nothing to undo)\n"
    assert router.batches() == []


def test_status_command_human_and_json(router):
    import subprocess
    import sys
    assert router.once().returncode == 0
    base = [sys.executable, "-m", "mape", "status", "--status-file", router.path("var/run/mape-py/status.json"),
            "--pid-file", router.path("var/run/mape-py/mape-py.pid")]
    p = subprocess.run(base + ["--json"], env=router.env(), stdout=-1, universal_newlines=True)
    doc = json.loads(p.stdout)
    assert doc["state"] == "stopped" and doc["running"] is False and doc["mapping"]["ipv4"] == "106.73.34.51"
    p = subprocess.run(base, env=router.env(), stdout=-1, universal_newlines=True)
    assert p.stdout.startswith("state     stopped")
    assert "ipv4      106.73.34.51  psid 68  240 ports\n" in p.stdout


def test_unreadable_network_config_is_an_error_not_an_empty_config(router):
    os.makedirs(router.path("fail"))
    router.write("fail/export-network", "")
    p = router.once()
    assert p.returncode == 1
    assert router.batches() == []
    st = router.status()
    assert st["state"] == "error" and "uci export network failed" in st["last_error"]["message"]


def test_no_rollback_when_disabled_and_netifd_errors_shown(router):
    router.write("etc/config/mape", "config mape 'config'\n\toption verify_timeout '2'\n\toption rollback '0'\n")
    router.write("scenario/tunnel_fail", "")
    p = router.once()
    assert p.returncode == 1
    assert "option tunlink 'wan6'" in router.read("etc/config/network")
    st = router.status()
    assert st["state"] == "error" and st["last_error"]["message"] == "wan did not come up with 106.73.34.51 within 2s"
    assert st["tunnel"] == {"interface": "wan", "up": False, "errors": ["INVALID_MAP_RULE"],
                            "expected_ipv4": "106.73.34.51"}


def test_kept_out_ports_in_status_and_rules(router):
    router.write("etc/config/mape", "config mape 'config'\n\toption verify_timeout '3'\n"
                                    "\toption nat_keep_out '5190 9280-9281'\n")
    p = router.once()
    assert p.returncode == 0, p.stderr
    st = router.status()
    assert st["ports"]["kept_out"] == [[5190, 5190], [9280, 9281]]
    assert "106.73.34.51:5184-5189" in router.calls() and "106.73.34.51:5184-5199" not in router.calls()


def test_host_cap_in_status_rules_and_pool_warning(router):
    """nat_host_cap '25%': the rules cap each LAN host at 60 of the 240 ports; the status
    shows per-host usage against it and warns when more than 80 % of the pool is taken."""
    router.write("etc/config/mape", "config mape 'config'\n\toption verify_timeout '3'\n"
                                    "\toption nat_host_cap '25%'\n")
    sets = [(5184 + 4096 * i, 5199 + 4096 * i) for i in range(15)]      # psid 68 of 106.73.34.51
    ports = [p for a, b in sets for p in range(a, b + 1)]
    lines = ["ipv4     2 tcp      6 431999 ESTABLISHED src=%s dst=1.2.3.4 sport=40000 dport=443 "
             "src=1.2.3.4 dst=106.73.34.51 sport=443 dport=%d [ASSURED] mark=0 zone=0 use=2" % (host, port)
             for host, port in [("192.168.1.2", p) for p in ports[:60]] + [("192.168.1.3", p) for p in ports[60:200]]]
    router.write("proc/net/nf_conntrack", "\n".join(lines) + "\n")
    p = router.once()
    assert p.returncode == 0, p.stderr
    st = router.status()
    assert st["ports"]["host_cap"] == 60 and st["ports"]["pool"] == 240 and st["ports"]["pool_percent"] == 83
    assert st["ports"]["top_hosts"] == [{"host": "192.168.1.3", "count": 140, "at_cap": True},
                                        {"host": "192.168.1.2", "count": 60, "at_cap": True}]
    assert [w for w in st["warnings"] if w["code"] == "ports-nearly-exhausted"] == [
        {"code": "ports-nearly-exhausted",
         "message": "200 of the 240 ports NAT may use are taken (83 %): new connections will soon fail"}]
    assert "connlimit-above 60 " in router.calls() or "ct count over 60 " in router.calls()


def test_one_daemon_at_a_time(router):
    """`daemon --once` (or a second daemon) beside the running service is refused: it must
    not "recover" the live daemon's transaction or take over its pid file (fault: it undid
    the live daemon's network commit; the first to stop removed the shared pid file)."""
    p = router.start()
    router.wait_for(lambda: (router.status() or {}).get("state") == "ok", what="state ok")
    net = router.read("etc/config/network")
    router.clear_calls()
    for extra in ((), ("--once",)):
        q = subprocess.run(router.argv(*extra), env=router.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           universal_newlines=True, timeout=60)
        assert q.returncode == 1
        assert q.stderr.strip().splitlines() == [
            "mape-py daemon: another mape-py daemon is running (pid %d); stop it first (/etc/init.d/mape-py stop)" % p.pid]
    assert router.calls() == "" and router.read("etc/config/network") == net
    assert router.read("var/run/mape-py/mape-py.pid").strip() == str(p.pid)
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=30) == 0
    assert router.once().returncode == 0   # the lock went with the daemon


def test_remove_waits_for_the_stopping_daemon(router):
    """prerm runs `daemon --remove` right after `/etc/init.d/mape-py stop`, which procd
    carries out after returning: --remove waits for the daemon to exit, then undoes."""
    p = router.start()
    router.wait_for(lambda: (router.status() or {}).get("state") == "ok", what="state ok")
    q = subprocess.Popen(router.argv("--remove"), env=router.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         universal_newlines=True)
    import time
    time.sleep(1.5)
    assert q.poll() is None   # still waiting for the lock
    p.send_signal(signal.SIGTERM)
    out, err = q.communicate(timeout=60)
    assert q.returncode == 0, err
    assert out == "restored: network, firewall\n"


def test_file_modes_are_kept_and_copies_are_private(router):
    """A 0600 /etc/config/network stays 0600 through apply and rollback; /etc/mape-py (the
    copies may hold PPPoE passwords, WireGuard keys) is 0700 and its copies 0600, also for
    an install whose earlier version left them world-readable (the bed test checks the same
    with the real uci)."""
    os.makedirs(router.path("etc/mape-py/original"), mode=0o755)
    router.write("etc/mape-py/original/firewall", open(os.path.join(SDATA, "firewall.initial")).read())
    os.chmod(router.path("etc/mape-py/original/firewall"), 0o644)
    os.chmod(router.path("etc/config/network"), 0o600)
    router.write("scenario/tunnel_fail", "")
    p = router.once()
    assert "previous configuration restored" in p.stderr, p.stderr
    mode = lambda rel: oct(os.stat(router.path(rel)).st_mode & 0o777)  # noqa: E731
    assert mode("etc/config/network") == "0o600"
    assert mode("etc/mape-py") == "0o700"
    for d in ("original", "backup"):
        for name in os.listdir(router.path("etc/mape-py/" + d)):
            assert mode("etc/mape-py/%s/%s" % (d, name)) == "0o600", (d, name)
