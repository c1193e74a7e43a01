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
import statistics
import subprocess
import sys
import tempfile
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, "tests", "service"))

from conftest import Router  # noqa: E402

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


def main():
    root = tempfile.mkdtemp(prefix="mape-bench-")
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
    # cost of one fake tool start (the daemon runs ~9 of them before the commit)
    env = r.env()
    fake = []
    for _ in range(10):
        t = time.perf_counter()
        subprocess.run([os.path.join(TOP, "tests/service/fakebin/uci"), "-q", "changes", "network"], env=env,
                       stdout=subprocess.DEVNULL)
        fake.append(time.perf_counter() - t)
    med = statistics.median(times)
    print("## service (daemon on the fake router, %s)\n" % sys.executable)
    print("| measure | value | target |")
    print("|---|---|---|")
    print("| reaction: interface.update -> uci commit network (median of %d) | %.0f ms (min %.0f, max %.0f) | < 1000 ms |"
          % (ROUNDS, med * 1000, min(times) * 1000, max(times) * 1000))
    print("| of which: one fake uci/ubus start (Python; real ones are C) x ~9 calls | %.0f ms each |  |"
          % (statistics.median(fake) * 1000))
    print("| idle RSS of the daemon (VmRSS) | %.1f MB (after %d changes: %.1f MB) | < 15 MB |"
          % (rss_kb / 1024.0, ROUNDS, rss_after_kb / 1024.0))
    print("| wake-ups while idle for %.0f s (context switches) | %d | 0 |" % (IDLE_SECONDS, idle_wakeups))
    print()


if __name__ == "__main__":
    main()
