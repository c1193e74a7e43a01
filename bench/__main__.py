"""`make bench`: every benchmark, one after the other, printing markdown tables; exits 1
when a target was missed."""
import sys

from bench import run

MODULES = ["bench.calc", "bench.nat", "bench.service", "bench.conntrack"]

if __name__ == "__main__":
    sys.exit(run(MODULES, sys.argv[1:]))
