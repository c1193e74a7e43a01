"""Service footprint on the fake router of tests/service (recorded ubus text, fake uci/ubus):

- reaction: a prefix update (`interface.update` notification) arriving -> the new UCI
  committed (`uci commit network` reached), debounce 0, excluding the network reload.
  The fakes are Python scripts (~tens of ms to start each); the real uci/ubus are C, so
  the fake start-up cost is measured too and shown next to it;
- idle RSS of the daemon process (VmRSS), after the first apply;
- wake-ups while idle: voluntary context switches of the daemon over an idle window
  (every return from select() is one); must be 0 with the re-check far away.
"""
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, "tests", "service"))
sys.path.insert(0, os.path.join(TOP, "src"))

from bench import verdict  # noqa: E402
from fakerouter import Router  # noqa: E402

IDLE_SECONDS = float(os.environ.get("BENCH_IDLE_SECONDS", "10"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "10"))


def proc_status(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return None


def wan6(prefix_hex, base):
    st = json.loads(json.dumps(base))
    st["ipv6-prefix"][0]["address"] = prefix_hex + "::"
    st["ipv6-address"][0]["address"] = prefix_hex + ":a00:27ff:fe12:3456"
    return st


def count(router, needle):
    return router.calls().count(needle)


def in_process(rounds):
    """The daemon's own work from a notification to `uci commit network`, with the time
    spent waiting for the (fake) tools subtracted: what a router with C uci/ubus pays on
    top of ~4 uci invocations (export x2, batch, commit)."""
    root = tempfile.mkdtemp(prefix="mape-bench-ip-")
    try:
        return _in_process(rounds, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _in_process(rounds, root):
    from mape.daemon import Daemon
    from mape.platform.openwrt import OpenWrt
    from mape.shell import log as logmod
    from mape.shell.system import System

    r = Router(os.path.join(root, "root"))
    r.write("etc/config/mape", "config mape 'config'\n\toption verify_timeout '5'\n")
    os.environ.update(r.env())
    system = System(r.root)
    spent = {"sub": 0.0, "commit_at": None, "calls": 0}
    real_run = system.run

    def run(argv, **kw):
        t = time.perf_counter()
        try:
            return real_run(argv, **kw)
        finally:
            now = time.perf_counter()
            if spent["commit_at"] is None:
                spent["sub"] += now - t
                spent["calls"] += 1
                if argv[-2:-1] == ["commit"] and argv[-1].endswith("network"):   # uci [-c .. -t ..] commit
                    spent["commit_at"] = now
    system.run = run
    platform = OpenWrt(system)
    daemon = Daemon(platform, system, logmod.Log(use_syslog=False, stream=open(os.devnull, "w")))
    daemon.load_settings()
    daemon.cycle("first", force=True)
    with open(os.path.join(TOP, "tests", "data", "wan6_status_dhcpv6_pd56.json")) as f:
        base = json.load(f)
    own, calls = [], []
    for i in range(rounds):
        new = wan6("240b:11:%04x:%02x00" % (0x2000 + i, i), base)
        platform.payload = dict(new, interface="wan6")
        spent.update(sub=0.0, commit_at=None, calls=0)
        t0 = time.perf_counter()
        daemon.cycle("bench")
        own.append(spent["commit_at"] - t0 - spent["sub"])
        calls.append(spent["calls"])
    return statistics.median(own), max(calls)


def main():
    root = tempfile.mkdtemp(prefix="mape-bench-")
    try:
        _main(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _main(root):
    r = Router(os.path.join(root, "root"))
    r.write("etc/config/mape", "config mape 'config'\n\toption debounce '0'\n\toption verify_timeout '5'\n"
                               "\toption recheck '3600'\n")
    with open(os.path.join(TOP, "tests", "data", "wan6_status_dhcpv6_pd56.json")) as f:
        base = json.load(f)
    p = r.start()
    try:
        r.wait_for(lambda: (r.status() or {}).get("state") == "ok", what="first apply")
        r.wait_for(lambda: "ubus subscribe network.interface" in r.calls(), what="subscription")
        time.sleep(1.0)
        rss_kb = proc_status(p.pid, "VmRSS")
        # idle wake-ups
        before = proc_status(p.pid, "voluntary_ctxt_switches") + proc_status(p.pid, "nonvoluntary_ctxt_switches")
        time.sleep(IDLE_SECONDS)
        after = proc_status(p.pid, "voluntary_ctxt_switches") + proc_status(p.pid, "nonvoluntary_ctxt_switches")
        idle_wakeups = after - before
        # reaction time
        times = []
        for i in range(ROUNDS):
            new = wan6("240b:11:%04x:%02x00" % (0x1000 + i, i), base)
            r.set_wan6(text=json.dumps(new))
            n = count(r, "uci commit network")
            t0 = time.perf_counter()
            event = {"interface.update": dict(new, interface="wan6", updated=["prefixes"])}
            r.notify(event)
            while count(r, "uci commit network") == n:
                time.sleep(0.002)
            times.append(time.perf_counter() - t0)
            r.wait_for(lambda: (r.status() or {}).get("state") == "ok", what="round %d" % i)
        rss_after_kb = proc_status(p.pid, "VmRSS")
    finally:
        r.kill_all()
    # cost of one fake tool start (the daemon runs 4 of them before the commit)
    env = r.env()
    fake = []
    for _ in range(10):
        t = time.perf_counter()
        subprocess.run([os.path.join(TOP, "tests/service/fakebin/uci"), "-q", "changes", "network"], env=env,
                       stdout=subprocess.DEVNULL)
        fake.append(time.perf_counter() - t)
    med = statistics.median(times)
    own, ncalls = in_process(ROUNDS)
    print("## service (daemon on the fake router, %s)\n" % sys.executable)
    print("| measure | value | target |")
    print("|---|---|---|")
    print("| reaction: interface.update -> uci commit network (median of %d) | %.0f ms (min %.0f, max %.0f) | %s |"
          % (ROUNDS, med * 1000, min(times) * 1000, max(times) * 1000, verdict(med < 1.0, "< 1000 ms")))
    print("| of which: one fake uci/ubus start (Python; real ones are C) (4 calls before the commit) | %.0f ms each |  |"
          % (statistics.median(fake) * 1000))
    print("| daemon's own work, notification -> commit, tool time excluded (in-process, median) | %.1f ms + %d uci calls |  |"
          % (own * 1000, ncalls))
    print("| idle RSS of the daemon (VmRSS) | %.1f MB (after %d changes: %.1f MB) | %s |"
          % (rss_kb / 1024.0, ROUNDS, rss_after_kb / 1024.0, verdict(max(rss_kb, rss_after_kb) < 15 * 1024, "< 15 MB")))
    print("| wake-ups while idle for %.0f s (context switches) | %d | %s |"
          % (IDLE_SECONDS, idle_wakeups, verdict(idle_wakeups == 0, "0")))
    print()


if __name__ == "__main__":
    main()
