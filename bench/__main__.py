"""`make bench`: every benchmark, one after the other, printing markdown tables."""
import importlib
import sys

MODULES = ["bench.calc", "bench.nat", "bench.service", "bench.conntrack"]


def main():
    only = sys.argv[1:]
    for name in MODULES:
        if only and name.split(".")[-1] not in only:
            continue
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            print("## %s: not available (%s)\n" % (name, e))
            continue
        module.main()


main()
