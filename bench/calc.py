"""Engine benchmarks: cold start of `mape-py calc --json` vs a bare interpreter, measured
side by side (interleaved) in one run, and lookups+computations per second over random
prefixes of every rule in the table."""
import os
import pathlib
import random
import statistics
import subprocess
import sys
import time

from bench import verdict

TOP = pathlib.Path(__file__).resolve().parent.parent
TARGET_RATIO = 1.3   # cold start of `calc --json` against a bare interpreter
PY = os.environ.get("BENCH_PYTHON", "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable)
LAUNCH = ("import sys; sys.path.insert(0, %r); from mape.cli import main; sys.exit(main())" % str(TOP / "src"))


def cold_start(rounds=40):
    bare = [PY, "-c", "pass"]
    ours = [PY, "-c", LAUNCH, "calc", "--json", "--config", "/nonexistent", "240b:10:3f6c:d400::/56"]
    subprocess.run(ours, check=True, capture_output=True)  # warm the page cache and __pycache__
    times = {"bare": [], "ours": []}
    for _ in range(rounds):
        for name, cmd in (("bare", bare), ("ours", ours)):
            t = time.perf_counter()
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            times[name].append(time.perf_counter() - t)
    bare_med = statistics.median(times["bare"])
    ours_med = statistics.median(times["ours"])
    return bare_med, ours_med


def throughput(n=20000, seed=7):
    sys.path.insert(0, str(TOP / "src"))
    from mape.core.mapping import calc
    from mape.core.rules import load_table

    t = time.perf_counter()
    table = load_table()
    load_ms = (time.perf_counter() - t) * 1000
    rng = random.Random(seed)
    import ipaddress

    prefixes = []
    for _ in range(n):
        rule = rng.choice(table.rules)
        host = rng.getrandbits(128 - rule.ip6len) & ~((1 << 72) - 1)
        prefixes.append("%s/56" % ipaddress.IPv6Address(rule.ip6prefix | host))
    t = time.perf_counter()
    for p in prefixes:
        calc(p, table).port_sets
    elapsed = time.perf_counter() - t
    return load_ms, n / elapsed


def main():
    bare, ours = cold_start()
    print("## engine (bench/calc.py; %s)" % PY)
    print("| measure | value |")
    print("|---|---|")
    print("| bare `python3 -c pass`, median of 40 | %.1f ms |" % (bare * 1000))
    print("| `mape-py calc --json PREFIX`, median of 40 (interleaved) | %.1f ms |" % (ours * 1000))
    ratio = ours / bare
    print("| cold start ratio | %.2fx, %s |" % (ratio, verdict(ratio <= TARGET_RATIO, "<= %.1fx" % TARGET_RATIO)))
    load_ms, rate = throughput()
    print("| rule table load (752 rules) | %.2f ms |" % load_ms)
    print("| lookup + compute + port sets, random /56 of every rule | %.0f per s |" % rate)
    print()


if __name__ == "__main__":
    main()
