"""Fixtures of the OpenWrt tier (tests/openwrt): real OpenWrt 21.02 / 24.10 userland built from
../shared/openwrt by tools/openwrt/build.py (cached), a namespace root per profile and line.

Nothing here skips: a missing prerequisite (not root, no build, no radvd/dhcpd, ...) fails.
One bed per (profile, line) is shared by all the tests that take ``router``; tests that
change the router's state take their own bed (``fresh_router``).
"""
import glob
import os
import re
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
    """The mape-py ipk built from this tree by tools/build_ipk.py, or the ipks named (space
    separated) in $MAPE_OPENWRT_IPKS, e.g. to run the tier against an earlier release."""
    given = os.environ.get("MAPE_OPENWRT_IPKS", "").split()
    if given:
        missing = [p for p in given if not os.path.isfile(p)]
        if missing:
            pytest.fail("MAPE_OPENWRT_IPKS: no such file: %s" % missing)
        return given
    out = str(tmp_path_factory.mktemp("ipk"))
    p = subprocess.run([sys.executable, os.path.join(TOP, "tools", "build_ipk.py"), "--out", out,
                        "--only", "mape-py"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       universal_newlines=True, cwd=TOP)
    found = sorted(glob.glob(os.path.join(out, "mape-py_*.ipk")))
    if p.returncode != 0 or not found:
        pytest.fail("tools/build_ipk.py failed:\n" + p.stdout[-3000:])
    return found


@pytest.fixture(scope="session")
def old_ipk(tmp_path_factory):
    """The mape-py ipk of T.OLD_RELEASE (a version that made wan6pd), as version 0.0.9 so
    that installing today's package over it is an opkg upgrade."""
    tree = str(tmp_path_factory.mktemp("old-tree"))
    out = str(tmp_path_factory.mktemp("old-ipk"))
    git = subprocess.run("git -C %s archive %s | tar -x -C %s" % (TOP, T.OLD_RELEASE, tree), shell=True,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    if git.returncode != 0:
        pytest.fail("git archive %s failed: %s" % (T.OLD_RELEASE, git.stdout))
    init = os.path.join(tree, "src", "mape", "__init__.py")
    with open(init) as f:
        text = f.read()
    with open(init, "w") as f:
        f.write(re.sub(r'__version__ = "[^"]*"', '__version__ = "0.0.9"', text))
    p = subprocess.run([sys.executable, os.path.join(tree, "tools", "build_ipk.py"), "--out", out, "--only", "mape-py"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, cwd=tree,
                       env=dict(os.environ, SOURCE_DATE_EPOCH="1764000000"))
    found = sorted(glob.glob(os.path.join(out, "mape-py_0.0.9*.ipk")))
    if p.returncode != 0 or not found:
        pytest.fail("building the ipk of %s failed:\n%s" % (T.OLD_RELEASE, p.stdout[-3000:]))
    return found[0]


@pytest.fixture(scope="module", params=[(p, l) for p in T.PROFILES for l in T.LINES],
                ids=["%s-%s" % (p, l) for p in T.PROFILES for l in T.LINES])
def router(request, ipks):
    """One router per (profile, line): default settings except owtier.NO_ROLLBACK (see there).
    Module scope, not session: pytest keeps the last instance of a session fixture up to the
    end of the run, and in this tier netifd retries wan (no ip6tnl) several times a second,
    which took CPU from every later tier (the VM's) for the rest of the run."""
    profile, line = request.param
    r = T.make_router(profile, line, ipks, T.NO_ROLLBACK)
    yield r
    r.down()


@pytest.fixture
def fresh_router(ipks):
    """Routers of a test's own: fresh_router(profile, line, settings[, ipks]) -> Router
    (torn down after the test)."""
    made = []

    def make(profile, line, settings=None, ipks=ipks):
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
