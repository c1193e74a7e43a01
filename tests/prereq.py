"""Prerequisites of the test tiers (root, nft, iptables-legacy, an overlay mount, Chromium).

In `make test` and CI a missing prerequisite FAILS the tests that need it, loudly: a green
run must mean every tier ran. For a quick local loop a developer may ask for skips
explicitly with MAPE_ALLOW_SKIP=1 (tests/conftest.py then also accepts skips in the
summary; without it, any skip fails the session)."""
import os

import pytest

ALLOW_SKIP = "MAPE_ALLOW_SKIP"


def skips_allowed():
    return os.environ.get(ALLOW_SKIP) == "1"


def require(condition, why):
    """Fail the current test (or fixture) unless ``condition``; skip instead only when
    MAPE_ALLOW_SKIP=1."""
    if condition:
        return
    if skips_allowed():
        pytest.skip("%s (skipped: %s=1)" % (why, ALLOW_SKIP))
    pytest.fail("missing prerequisite: %s. `make setup` (tools/setup-dev) installs what the tests need; "
                "%s=1 turns this into a skip for a quick local run" % (why, ALLOW_SKIP), pytrace=False)
