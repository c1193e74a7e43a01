"""Benchmarks (`make bench`). Rows with a target say whether it was met; `make bench` exits
non-zero when one was missed and names it."""
import importlib
import sys

MISSED = []      # (module, target) of every missed target, in order


def verdict(met, target):
    """The target cell of a bench row: a miss is flagged so that nobody reads past it, and
    recorded so that `make bench` fails."""
    if not met:
        MISSED.append((_caller_module(), target))
    return ("met (target %s)" if met else "**MISSED** (target %s)") % target


def _caller_module():
    frame = sys._getframe(2)
    return frame.f_globals.get("__name__", "?")


def run(modules, only=()):
    """Run the benchmarks ``modules`` (dotted names; ``only``: their last parts); 1 when a
    target was missed (each named on stderr), else 0."""
    del MISSED[:]
    for name in modules:
        if only and name.split(".")[-1] not in only:
            continue
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            print("## %s: not available (%s)\n" % (name, e))
            continue
        module.main()
    sys.stdout.flush()
    for module, target in MISSED:
        sys.stderr.write("bench: %s missed a target: %s (its row says **MISSED**)\n" % (module, target))
    return 1 if MISSED else 0
