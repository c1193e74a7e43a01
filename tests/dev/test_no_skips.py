"""The suite cannot go green by skipping: tests/prereq.require() fails without
MAPE_ALLOW_SKIP=1, and tests/conftest.py fails a run that skipped anything."""
import os
import pathlib
import subprocess
import sys

TOP = pathlib.Path(__file__).resolve().parents[2]

SAMPLE = '''
import pytest
from tests.prereq import require

def test_fine():
    pass

def test_needs_a_tool():
    require(False, "frobnicator not installed")

def test_present_tool():
    require(True, "never shown")
'''

EXPLICIT = '''
import pytest

def test_fine():
    pass

def test_skips_itself():
    pytest.skip("not today")
'''


def run(tmp_path, source, allow):
    (tmp_path / "test_sample.py").write_text(source)
    env = dict(os.environ, PYTHONPATH=str(TOP))
    env.pop("MAPE_ALLOW_SKIP", None)
    if allow:
        env["MAPE_ALLOW_SKIP"] = "1"
    return subprocess.run([sys.executable, "-m", "pytest", "-c", os.devnull, "--rootdir", str(tmp_path),
                           "-p", "tests.conftest", "-p", "no:cacheprovider", "-ra", str(tmp_path)],
                          cwd=str(tmp_path), capture_output=True, text=True, env=env, timeout=120)


def test_missing_prerequisite_fails(tmp_path):
    r = run(tmp_path, SAMPLE, allow=False)
    assert r.returncode == 1, r.stdout
    assert "missing prerequisite: frobnicator not installed" in r.stdout
    assert "1 failed, 2 passed" in r.stdout and "skipped" not in r.stdout.splitlines()[-1]


def test_missing_prerequisite_skips_only_on_request(tmp_path):
    r = run(tmp_path, SAMPLE, allow=True)
    assert r.returncode == 0, r.stdout
    assert "2 passed, 1 skipped" in r.stdout and "frobnicator not installed" in r.stdout
    assert "skips: allowed" in r.stdout


def test_any_skip_fails_the_run(tmp_path):
    r = run(tmp_path, EXPLICIT, allow=False)
    assert r.returncode == 1, r.stdout
    assert "1 skipped: the run FAILS" in r.stdout and "test_skips_itself" in r.stdout
    r = run(tmp_path, EXPLICIT, allow=True)
    assert r.returncode == 0, r.stdout


def test_nothing_in_the_suite_skips_by_itself():
    """Every skip for a missing tool goes through require(); no bare skip is left behind."""
    bare = []
    for path in (TOP / "tests").rglob("*.py"):
        if path.name in ("prereq.py", "test_no_skips.py"):
            continue
        text = path.read_text(encoding="utf-8")
        for word in ("pytest.skip(", "mark.skipif", "importorskip", "mark.skip("):
            if word in text:
                bare.append("%s: %s" % (path.relative_to(TOP), word))
    # the VM tier's scenario selection is an explicit request (MAPE_VM_SCENARIOS); it needs
    # MAPE_ALLOW_SKIP=1 as well to pass
    assert bare in ([], ["tests/vm/test_vm.py: pytest.skip("]), bare
