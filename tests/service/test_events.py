"""Prefix-change event streams into the running daemon: ubus notifications (the exact
`interface.update` shape), irrelevant and malformed lines, flaps, SIGHUP, the hotplug kick."""
import json
import os
import signal
import subprocess

from fakerouter import DATA, TOP

PD56 = json.load(open(os.path.join(DATA, "wan6_status_dhcpv6_pd56.json")))


def wan6_with(prefix_hex):
    """The recorded PD /56 status with another /56 (e.g. '240b:11:5566:7700')."""
    st = json.loads(json.dumps(PD56))
    st["ipv6-prefix"][0]["address"] = prefix_hex + "::"
    st["ipv6-prefix"][0]["assigned"]["lan"]["address"] = prefix_hex + "::"
    st["ipv6-address"][0]["address"] = prefix_hex + ":a00:27ff:fe12:3456"
    return st


def update_event(status, name="wan6"):
    payload = {"interface": name}
    payload.update(status)
    payload["updated"] = ["prefixes"]
    return {"interface.update": payload}


def started(router):
    p = router.start()
    router.wait_for(lambda: (router.status() or {}).get("state") == "ok", what="first apply")
    router.wait_for(lambda: "ubus subscribe network.interface" in router.calls(), what="subscription")
    return p


def wait_prefix(router, prefix):
    router.wait_for(lambda: ((router.status() or {}).get("wan6") or {}).get("prefix") == prefix
                    and router.status()["state"] == "ok", what="prefix " + prefix)


def test_prefix_change_notification_rewrites_only_the_rule(router):
    started(router)
    router.clear_calls()
    new = wan6_with("240b:11:5566:7700")
    router.set_wan6(text=json.dumps(new, indent="\t"))
    router.notify(update_event(new))
    wait_prefix(router, "240b:11:5566:7700::/56")
    assert router.batches() == [
        "set network.wan.rule='type=map-e,ipv6prefix=240b:10::,prefix6len=31,ipv4prefix=106.72.0.0,prefix4len=15,"
        "ealen=25,psidlen=8,offset=4,br=2404:9200:225:100::64,pd=240b:11:5566:7700::,pdlen=56'\n"]
    calls = router.calls().splitlines()
    assert "uci commit network" in calls and "uci commit firewall" not in calls
    assert calls.index("uci commit network") < calls.index("network reload")
    st = router.status()
    assert st["mapping"]["ipv4"] == "106.73.85.102"
    assert st["tunnel"]["ipv4"] == "106.73.85.102"
    events = [(h["event"], h.get("prefix")) for h in st["history"]]
    assert events[-2:] == [("prefix-changed", "240b:11:5566:7700::/56"), ("applied", "240b:11:5566:7700::/56")]
    assert "--to-source 106.73.85.102:" in router.calls()


def test_irrelevant_and_malformed_events(router):
    started(router)
    router.clear_calls()
    lan = dict(update_event(PD56, "lan"))
    for obj in (lan, {"interface.down": {"interface": "wanmap", "up": False}}, {"weird": 1}):
        router.notify(obj)
    new = wan6_with("240b:11:8899:aa00")
    router.set_wan6(text=json.dumps(new))
    router.notify(update_event(new))
    wait_prefix(router, "240b:11:8899:aa00::/56")
    # the notification carries the status (no ubus call); the other events caused nothing
    assert router.calls().count("ubus call network.interface.wan6 status") == 0
    assert len(router.batches()) == 1
    # an unreadable line might have been about wan6: look again (ubus call), change nothing
    fd = os.open(router.path("ubus/subscribe.fifo"), os.O_WRONLY)
    os.write(fd, b"this is not json\n{\"interface.update\": {\"interface\"\n\x00\xff garbage\n")
    os.close(fd)
    router.wait_for(lambda: "ubus call network.interface.wan6 status" in router.calls(), what="re-look")
    router.wait_for(lambda: "ignored" in router.read("daemon.log") and router.status()["state"] == "ok",
                    what="log line")
    assert len(router.batches()) == 1
    assert "Traceback" not in router.read("daemon.log")


def test_flapping_prefix_gives_one_transaction(router):
    started(router)
    router.clear_calls()
    final = wan6_with("240b:11:1234:5600")
    router.set_wan6(text=json.dumps(final))
    flap = [update_event(wan6_with("240b:11:%04x:7700" % i)) for i in range(5)] + [update_event(final)]
    fd = os.open(router.path("ubus/subscribe.fifo"), os.O_WRONLY)
    os.write(fd, "".join(json.dumps(e) + "\n" for e in flap).encode())
    os.close(fd)
    wait_prefix(router, "240b:11:1234:5600::/56")
    assert len(router.batches()) == 1


def test_sighup_recomputes_now(router):
    p = started(router)
    new = wan6_with("240b:11:4444:5500")
    router.set_wan6(text=json.dumps(new))
    p.send_signal(signal.SIGHUP)
    wait_prefix(router, "240b:11:4444:5500::/56")


def test_hotplug_ifupdate_prefixes_kicks_the_daemon(router):
    started(router)
    new = wan6_with("240b:11:6666:7700")
    router.set_wan6(text=json.dumps(new))
    env = router.env()
    env["MAPE_PY_RUN_DIR"] = router.path("var/run/mape-py")
    script = os.path.join(TOP, "files/etc/hotplug.d/iface/95-mape-py")
    # not ours: other interface, or an update without prefixes/addresses
    for extra in ({"INTERFACE": "lan", "IFUPDATE_PREFIXES": "1"}, {"INTERFACE": "wan6", "IFUPDATE_ROUTES": "1"}):
        e = dict(env, ACTION="ifupdate", **extra)
        assert subprocess.run(["dash", script], env=e).returncode == 0
    e = dict(env, ACTION="ifupdate", INTERFACE="wan6", IFUPDATE_PREFIXES="1", DEVICE="eth1")
    assert subprocess.run(["dash", script], env=e).returncode == 0
    wait_prefix(router, "240b:11:6666:7700::/56")


def test_garbage_config_on_reload_keeps_the_last_good_settings(router):
    router.write("etc/config/mape", "config mape 'config'\n\toption mtu '1454'\n\toption debounce '0'\n"
                                    "\toption verify_timeout '3'\n")
    p = started(router)
    assert router.status()["settings"]["mtu"] == 1454
    n = len(router.batches())
    router.write("etc/config/mape", "config mape 'config'\n\toption mtu '1454\n")  # unbalanced quote
    p.send_signal(signal.SIGHUP)
    router.wait_for(lambda: any(w["code"] == "config-invalid" for w in router.status().get("warnings", [])),
                    what="config-invalid warning")
    st = router.status()
    assert st["state"] == "ok" and st["settings"]["mtu"] == 1454
    assert "invalid settings, keeping the last good ones: " in router.read("daemon.log")
    assert len(router.batches()) == n
