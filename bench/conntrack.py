"""Port usage at 65k conntrack entries (issue 11 point 20), old vs new side by side: each
round runs both in fresh processes (interleaved) on the same generated 65,536-entry
/proc/net/nf_conntrack text (~16 MB; nearly all of it SNATed to the shared IPv4, as on a
busy MAP-E router), after importing the daemon as the service does.

- old: the 324c0e3 code, kept below as the baseline: the whole file read into one string
  (16 MB), split into lines, every line split into tokens;
- new: mape.platform.base.Platform.conntrack_lines() + mape.core.conntrack.port_usage(),
  exactly as the daemon calls them: the file streamed line by line, cut with str.find.

CPU = user + system time of the call; peak RSS = the process's VmHWM (interpreter and the
daemon's modules included: the figure to hold against the daemon's 15 MB target).
"""
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile

from bench import verdict

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src"))
from mape.daemon import PORTS_MAX_AGE  # noqa: E402

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENTRIES = int(os.environ.get("BENCH_CT_ENTRIES", "65536"))
ROUNDS = int(os.environ.get("BENCH_CT_ROUNDS", "5"))
IPV4 = "106.73.34.51"
SETS = [(a, a + 15) for a in range(5184, 65536, 4096)]   # PSID 68 of a v6plus mapping: 15 sets


# -- the baseline (src/mape/core/conntrack.py and Platform.conntrack_text at 324c0e3) -------

def _old_tuples(line):
    tuples = []
    cur = {}
    for token in line.split():
        if "=" not in token:
            continue
        key, _, value = token.partition("=")
        if key == "src" and "src" in cur:
            tuples.append(cur)
            cur = {}
        if key in ("src", "dst", "sport", "dport", "id") and key not in cur:
            cur[key] = value
    if cur:
        tuples.append(cur)
    return tuples if len(tuples) >= 2 else None


def old_port_usage(text, ipv4, port_sets, top=5):
    sets = [{"first": a, "last": b, "used": 0, "connections": 0} for a, b in port_sets]
    hosts, ports, total = {}, set(), 0
    for n, line in enumerate((text or "").splitlines()):
        if n >= 200000:
            break
        if ipv4 not in line:
            continue
        t = _old_tuples(line)
        if not t or t[1].get("dst") != ipv4:
            continue
        try:
            port = int(t[1].get("dport") or t[1].get("id"))
        except (TypeError, ValueError):
            continue
        total += 1
        host = t[0].get("src", "?")
        hosts[host] = hosts.get(host, 0) + 1
        for s in sets:
            if s["first"] <= port <= s["last"]:
                s["connections"] += 1
                if port not in ports:
                    s["used"] += 1
                break
        ports.add(port)
    return {"used": sum(s["used"] for s in sets), "connections": total,
            "top_hosts": sorted(hosts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]}


# -- the table --------------------------------------------------------------------------

def table(n, seed=7):
    rnd = random.Random(seed)
    ports = [p for a, b in SETS for p in range(a, b + 1)]
    out = []
    for i in range(n):
        host = "192.168.1.%d" % rnd.randint(2, 250)
        far = "%d.%d.%d.%d" % (rnd.randint(1, 223), rnd.randint(0, 255), rnd.randint(0, 255), rnd.randint(1, 254))
        r = rnd.random()
        if r < 0.03:     # LAN <-> router, not NATed
            out.append("ipv4     2 tcp      6 7439 ESTABLISHED src=%s dst=192.168.1.1 sport=%d dport=22 "
                       "src=192.168.1.1 dst=%s sport=22 dport=%d [ASSURED] mark=0 zone=0 use=2"
                       % (host, rnd.randint(1024, 65535), host, rnd.randint(1024, 65535)))
        elif r < 0.30:
            out.append("ipv4     2 udp      17 %d src=%s dst=%s sport=%d dport=443 src=%s dst=%s sport=443 "
                       "dport=%d mark=0 zone=0 use=2" % (rnd.randint(1, 180), host, far, rnd.randint(1024, 65535),
                                                        far, IPV4, rnd.choice(ports)))
        else:
            out.append("ipv4     2 tcp      6 %d ESTABLISHED src=%s dst=%s sport=%d dport=443 src=%s dst=%s "
                       "sport=443 dport=%d [ASSURED] mark=0 zone=0 use=2"
                       % (rnd.randint(1, 431999), host, far, rnd.randint(1024, 65535), far, IPV4, rnd.choice(ports)))
    return "\n".join(out) + "\n"


# -- one measurement in a fresh process -------------------------------------------------

CHILD = r"""
import json, resource, sys
sys.path[:0] = [%(top)r, %(src)r]
import mape.daemon, mape.platform.openwrt                # the service's own footprint
from mape.core.conntrack import port_usage
from mape.platform.base import Platform
from mape.shell.system import System
from bench.conntrack import old_port_usage, IPV4, SETS

def hwm():
    with open("/proc/self/status") as f:
        return [int(l.split()[1]) for l in f if l.startswith("VmHWM:")][0]

before = hwm()
system = System(%(root)r)
r0 = resource.getrusage(resource.RUSAGE_SELF)
if %(variant)r == "old":
    u = old_port_usage(system.read("/proc/net/nf_conntrack", limit=16 << 20), IPV4, SETS)
else:
    u = port_usage(Platform(system).conntrack_lines(), IPV4, SETS)
r1 = resource.getrusage(resource.RUSAGE_SELF)
cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
print(json.dumps({"cpu": cpu, "hwm": hwm(), "before": before, "used": u["used"], "connections": u["connections"]}))
"""


def measure(variant, root):
    code = CHILD % {"top": TOP, "src": os.path.join(TOP, "src"), "root": root, "variant": variant}
    out = subprocess.run([sys.executable, "-c", code], check=True, stdout=subprocess.PIPE,
                         universal_newlines=True).stdout
    return json.loads(out)


def main():
    root = tempfile.mkdtemp(prefix="mape-bench-ct-")
    try:
        os.makedirs(os.path.join(root, "proc", "net"))
        text = table(ENTRIES)
        with open(os.path.join(root, "proc", "net", "nf_conntrack"), "w") as f:
            f.write(text)
        size = len(text)
        del text
        runs = {"old": [], "new": []}
        for _ in range(ROUNDS):
            for variant in ("old", "new"):
                runs[variant].append(measure(variant, root))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    old, new = runs["old"], runs["new"]
    agree = all((o["used"], o["connections"]) == (n["used"], n["connections"]) for o, n in zip(old, new))

    def med(rows, key):
        return statistics.median(r[key] for r in rows)

    print("## conntrack: port usage at %d entries (%.1f MB), old vs new (median of %d, %s)\n"
          % (ENTRIES, size / 1e6, ROUNDS, sys.executable))
    print("| measure | old (324c0e3) | new | target |")
    print("|---|---|---|---|")
    print("| CPU time of one refresh | %.0f ms | %.0f ms | %s |"
          % (med(old, "cpu") * 1000, med(new, "cpu") * 1000, verdict(med(new, "cpu") < med(old, "cpu"), "new < old")))
    # old: the rpcd status call (every LuCI poll, 5 s) re-read the table; new: at most every PORTS_MAX_AGE
    polls = 60 // 5
    refreshes = min(polls, 60 // PORTS_MAX_AGE)
    print("| CPU per minute of an open LuCI page (5 s polls: %d vs %d refreshes) | %.2f s | %.2f s | %s |"
          % (polls, refreshes, polls * med(old, "cpu"), refreshes * med(new, "cpu"),
             verdict(refreshes * med(new, "cpu") * 2 <= polls * med(old, "cpu"), "new <= old / 2")))
    grow_old = med(old, "hwm") - med(old, "before")
    grow_new = med(new, "hwm") - med(new, "before")
    print("| peak RSS of the process (VmHWM) | %.1f MB | %.1f MB |  |" % (med(old, "hwm") / 1024.0, med(new, "hwm") / 1024.0))
    print("| of which the refresh added (over interpreter + daemon modules: %.1f MB) | %.1f MB | %.1f MB | %s |"
          % (med(new, "before") / 1024.0, grow_old / 1024.0, grow_new / 1024.0, verdict(grow_new < 2048, "< 2 MB")))
    print("| same figures (ports used, connections) | %d, %d | %d, %d | %s |"
          % (old[0]["used"], old[0]["connections"], new[0]["used"], new[0]["connections"],
             verdict(agree, "equal")))
    print()
