"""Fixture: a fresh fake router per test (see fakerouter.py)."""
import pytest

from fakerouter import Router


@pytest.fixture
def router(tmp_path):
    r = Router(tmp_path / "root")
    yield r
    r.kill_all()
