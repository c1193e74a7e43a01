"""Fixtures of the OpenWrt tier (tests/openwrt): real OpenWrt 21.02 / 24.10 userland built from
../shared/openwrt by tools/openwrt/build.py (cached), a namespace root per profile and line.

Nothing here skips: a missing prerequisite (not root, no build, no radvd/dhcpd, ...) fails.
One bed per (profile, line) is shared by all the tests that take ``router``; tests that
change the router's state take their own bed (``fresh_router``).
"""
import glob
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

import owtier as T  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line("markers", "openwrt: real OpenWrt userland in namespaces (tests/openwrt)")


@pytest.fixture(scope="session")
def ipks(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("ipk"))
    p = subprocess.run([sys.executable, os.path.join(TOP, "tools", "build_ipk.py"), "--out", out,
                        "--only", "mape-py"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       universal_newlines=True, cwd=TOP)
    found = sorted(glob.glob(os.path.join(out, "mape-py_*.ipk")))
    if p.returncode != 0 or not found:
        pytest.fail("tools/build_ipk.py failed:\n" + p.stdout[-3000:])
    return found


@pytest.fixture(scope="session", params=[(p, l) for p in T.PROFILES for l in T.LINES],
                ids=["%s-%s" % (p, l) for p in T.PROFILES for l in T.LINES])
def router(request, ipks):
    """One router per (profile, line): default settings except owtier.NO_ROLLBACK (see there)."""
    profile, line = request.param
    r = T.make_router(profile, line, ipks, T.NO_ROLLBACK)
    yield r
    r.down()


@pytest.fixture
def fresh_router(ipks):
    """Routers of a test's own: fresh_router(profile, line, settings) -> Router (torn down after)."""
    made = []

    def make(profile, line, settings=None):
        r = T.make_router(profile, line, ipks, settings)
        made.append(r)
        return r

    yield make
    for r in made:
        r.down()


def pytest_terminal_summary(terminalreporter):
    if T.walls:
        terminalreporter.write_line("OpenWrt tier set-up times: " + ", ".join(
            "%s %.1fs" % kv for kv in sorted(T.walls.items())))
