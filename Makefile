# mape-py developer entry points. Everything installs what it needs via tools/setup-dev.
PY := .venv/bin/python
VERSION := $(shell sed -n 's/^__version__ = "\(.*\)"/\1/p' src/mape/__init__.py)

.PHONY: all setup test unit demo ipk bench lint clean openwrt

all: test

setup:
	@tools/setup-dev

# The README's test command: every tier (unit, netns, service, package, luci, vm).
test: setup
	$(PY) -m pytest

# Fast inner loop: pure core only.
unit: setup
	$(PY) -m pytest tests/unit

demo: setup
	$(PY) -m tools.demo

ipk: setup
	$(PY) tools/build_ipk.py --out dist

bench: setup
	$(PY) -m bench

# Real OpenWrt userland layers for the test bed, built from the pinned tarballs into the cache
# ($MAPE_OPENWRT_CACHE or /var/cache/mape-py/openwrt; warm: instant). See tools/openwrt/build.py.
openwrt: setup
	$(PY) tools/openwrt/build.py 21.02
	$(PY) tools/openwrt/build.py 24.10

# What ships must run on CPython 3.9 (vermin has no __main__: its console script).
lint: setup
	.venv/bin/vermin --no-tips --violations --target=3.9- --eval-annotations src/mape $$(grep -rlI '^#!.*python' files)

clean:
	rm -rf dist build .pytest_cache
