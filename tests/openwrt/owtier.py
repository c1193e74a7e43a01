"""Shared by the OpenWrt tier's conftest and test modules (not a conftest: a module named
conftest clashes with the other tiers' when the whole suite runs)."""
import os
import shutil
import time

import pytest

import bed as B
import router as R

PROFILES = B.PROFILES
LINES = ("ra64", "pd56", "hgw60")
# The host kernel here has no ip6tnl, so wan (proto map) can never come up in this tier: with
# the default rollback the daemon would undo, after verify_timeout, the very configuration
# these tests look at; and it would wait the whole verify_timeout (30 s) before saying so
# (5 s keeps the tier short). The VM tier (real ip6tnl) runs the defaults end to end.
NO_ROLLBACK = {"rollback": "0", "verify_timeout": "5"}
# main before issue 10's fixes: its daemon made the static `wan6pd` helper interface and put
# it into the wan zone (manage_wan6pd '1' by default); the upgrade test starts from it.
OLD_RELEASE = "128405c"
_builds = {}
walls = {}


def prerequisites():
    if os.geteuid() != 0:
        pytest.fail("the OpenWrt tier needs root (namespaces, overlayfs)")
    missing = [t for t in ("unshare", "nsenter", "ip", "radvd", "dhcpd", "iptables-legacy", "nft")
               if shutil.which(t) is None]
    if missing:
        pytest.fail("the OpenWrt tier needs %s (make setup installs them)" % ", ".join(missing))


def build_dir(profile):
    """tools/openwrt/build.py PROFILE (cache): the build dir; any failure fails the test."""
    if profile not in _builds:
        prerequisites()
        t0 = time.time()
        try:
            _builds[profile] = B.build_profile(profile)
        except B.BedError as e:
            pytest.fail(str(e))
        walls["build %s" % profile] = time.time() - t0
    return _builds[profile]


def make_router(profile, line, ipks, settings=None):
    r = R.Router(profile, line, build_dir(profile), ipks, settings)
    t0 = time.time()
    try:
        r.up()
    except Exception as e:
        explain = r.explain()
        r.down()
        pytest.fail("bringing up %s/%s failed: %s\n%s" % (profile, line, e, explain))
    walls["bed %s/%s%s" % (profile, line, "" if settings == NO_ROLLBACK else " %s" % settings)] = time.time() - t0
    return r


def wait(r, what, fn, timeout=30):
    """r.bed.wait(), None instead of TimeoutError (the test then says what it found)."""
    try:
        return r.bed.wait(what, fn, timeout)
    except TimeoutError:
        return None
