"""Never stay down, never hang (issue 11 points 7, 8, 9, 13): a failed change and a failed
reload are retried with back-off, a netifd restart does not blind the daemon, and a hung
firewall command neither keeps the daemon in "applying" nor makes it ignore SIGTERM."""
import json
import os
import signal
import subprocess
import sys
import time

from fakerouter import TOP, alive
from test_events import started, update_event, wait_prefix, wan6_with

# re-check 10 s (the minimum): the retry back-off is capped at the re-check period
FAST_RETRY = "config mape 'config'\n\toption verify_timeout '2'\n\toption debounce '0'\n\toption recheck '10'\n"


def state(router):
    return (router.status() or {}).get("state")


def test_failed_change_is_retried_when_the_line_is_back(router):
    router.write("etc/config/mape", FAST_RETRY)
    router.write("scenario/tunnel_fail", "")
    router.start()
    router.wait_for(lambda: "retry" in (router.status() or {}), what="a failed change")
    st = router.status()
    assert st["state"] == "error" and "retrying at" in st["state_reason"]
    assert st["retry"]["what"] == "change" and st["retry"]["attempts"] == 1
    assert st["retry"]["next_retry"] > st["updated"] - 1
    assert st["history"][-1]["event"] == "rolled-back"
    os.unlink(router.path("scenario/tunnel_fail"))   # the line works again
    router.wait_for(lambda: state(router) == "ok", timeout=90, what="the retry")
    st = router.status()
    assert "retry" not in st
    assert st["tunnel"]["ipv4"] == "106.73.34.51"
    assert [h["event"] for h in st["history"]][-2:] == ["rolled-back", "applied"]


def test_failed_reload_is_retried(router):
    router.write("etc/config/mape", FAST_RETRY)
    os.makedirs(router.path("fail"))
    router.write("fail/reload-network", "")
    router.start()
    router.wait_for(lambda: "retry" in (router.status() or {}), what="a failed reload")
    st = router.status()
    assert st["state"] == "error" and "reload failed" in st["last_error"]["message"]
    # UCI has the new configuration; netifd does not run it: never "ok"
    assert "option tunlink 'wan6'" in router.read("etc/config/network")
    os.unlink(router.path("fail/reload-network"))
    router.wait_for(lambda: state(router) == "ok", timeout=90, what="the reload retried")
    assert router.calls().count("network reload") >= 2
    st = router.status()
    assert "retry" not in st and st["tunnel"]["ipv4"] == "106.73.34.51"


def listen_event(router, obj):
    fd = os.open(router.path("ubus/listen.fifo"), os.O_WRONLY)
    os.write(fd, (json.dumps(obj) + "\n").encode())
    os.close(fd)


def test_prefix_change_seen_after_netifd_restarts(router):
    """netifd restarts (ubus.object.add of network.interface): the daemon subscribes again;
    the next prefix change must arrive through the new subscription, without a kick or
    the re-check (300 s here)."""
    started(router)
    for n, prefix in enumerate(("240b:11:5566:7700", "240b:11:8899:aa00")):
        before = router.calls().count("ubus subscribe network.interface")
        listen_event(router, {"ubus.object.add": {"id": 100 + n, "path": "network.interface"}})
        router.wait_for(lambda: router.calls().count("ubus subscribe network.interface") > before,
                        what="subscribed again")
        new = wan6_with(prefix)
        router.set_wan6(text=json.dumps(new))
        router.notify(update_event(new))
        wait_prefix(router, prefix + "::/56")
    assert "re-check" not in router.read("daemon.log")


def test_sigterm_while_iptables_restore_hangs(router):
    os.makedirs(router.path("hang"))
    router.write("hang/iptables-restore", "")
    p = router.start()
    router.wait_for(lambda: os.path.exists(router.path("reached/iptables-restore")), what="iptables-restore")
    child = int(router.read("reached/iptables-restore"))
    assert state(router) == "applying"
    t0 = time.monotonic()
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(timeout=30)
    finally:
        elapsed = time.monotonic() - t0
        print("\nSIGTERM answered in %.2f s with a hung iptables-restore" % elapsed)
    assert elapsed < 10, "procd would SIGKILL"
    assert p.returncode == 0
    assert not alive(child), "the hung iptables-restore outlived the daemon"
    st = router.status()
    assert st["running"] is False and st["state"] == "stopped"
    assert "Traceback" not in router.read("daemon.log")



LOCKED = r"""
import fcntl, os, sys, time
sys.path.insert(0, os.path.join(sys.argv[1], "src"))
from mape.shell import netfilter
run_dir = sys.argv[2]
fd = os.open(os.path.join(run_dir, "firewall.lock"), os.O_RDWR | os.O_CREAT)
r, w = os.pipe()
pid = os.fork()
if pid == 0:                      # another process holds the firewall lock and hangs
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.write(w, b"x")
    time.sleep(60)
    os._exit(0)
os.close(fd)
os.read(r, 1)
netfilter.LOCK_WAIT = 1
try:
    netfilter.apply("iptables", "", run_dir=run_dir)
    print("applied")
except netfilter.NetfilterError as e:
    print("error:", e)
finally:
    os.kill(pid, 9)
"""


def test_firewall_lock_wait_is_bounded(tmp_path):
    p = subprocess.run([sys.executable, "-c", LOCKED, TOP, str(tmp_path)], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, universal_newlines=True, timeout=30)
    assert "error: the firewall lock" in p.stdout and "held by another process" in p.stdout, p.stdout + p.stderr
