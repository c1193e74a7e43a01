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
# As files/usr/bin/mape-py does: never write bytecode at run time.
LAUNCH = ("import sys; sys.dont_write_bytecode = True; sys.path.insert(0, %r); "
          "from mape.cli import main; sys.exit(main())")


def _tree(with_bytecode):
    """A copy of the package as installed: sources, plus the install-time bytecode
    (/etc/uci-defaults/91-mape-py-bytecode runs compileall) or none."""
    import shutil
    import tempfile

    top = tempfile.mkdtemp(prefix="mape-bench-calc-")
    shutil.copytree(TOP / "src" / "mape", os.path.join(top, "mape"),
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    if with_bytecode:
        subprocess.run([PY, "-c", "import compileall, sys; sys.exit(not compileall.compile_dir(%r, quiet=1))" % top],
                       check=True)
    return top


def cold_start(rounds=40):
    """Medians of bare / with bytecode / without bytecode, interleaved in one run."""
    import shutil

    trees = {"bytecode": _tree(True), "sources": _tree(False)}
    try:
        cmds = {"bare": [PY, "-c", "pass"]}
        for name, top in trees.items():
            cmds[name] = [PY, "-c", LAUNCH % top, "calc", "--json", "--config", "/nonexistent",
                          "240b:10:3f6c:d400::/56"]
            subprocess.run(cmds[name], check=True, capture_output=True)  # warm the page cache
        assert not os.path.exists(os.path.join(trees["sources"], "mape", "__pycache__")), "bytecode was written"
        times = {name: [] for name in cmds}
        for _ in range(rounds):
            for name, cmd in cmds.items():
                t = time.perf_counter()
                subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
                times[name].append(time.perf_counter() - t)
        return {name: statistics.median(values) for name, values in times.items()}
    finally:
        for top in trees.values():
            shutil.rmtree(top, ignore_errors=True)


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
    med = cold_start()
    bare, ours, sources = med["bare"], med["bytecode"], med["sources"]
    print("## engine (bench/calc.py; %s)" % PY)
    print("| measure | value |")
    print("|---|---|")
    print("| bare `python3 -c pass`, median of 40 | %.1f ms |" % (bare * 1000))
    print("| `mape-py calc --json PREFIX` with install-time bytecode, median of 40 (interleaved) | %.1f ms |"
          % (ours * 1000))
    print("| the same without bytecode (every start compiles; nothing written) | %.1f ms |" % (sources * 1000))
    ratio = ours / bare
    print("| cold start ratio, with bytecode | %.2fx, %s |" % (ratio, verdict(ratio <= TARGET_RATIO,
                                                                             "<= %.1fx" % TARGET_RATIO)))
    print("| cold start ratio, without bytecode | %.2fx |" % (sources / bare))
    load_ms, rate = throughput()
    print("| rule table load (752 rules) | %.2f ms |" % load_ms)
    print("| lookup + compute + port sets, random /56 of every rule | %.0f per s |" % rate)
    print()


if __name__ == "__main__":
    main()
