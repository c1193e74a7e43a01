"""`make bench` hygiene: targets are judged in the output, temp dirs are removed."""
import os
import pathlib
import subprocess
import sys

TOP = pathlib.Path(__file__).resolve().parents[2]


def test_verdict_flags_a_miss():
    sys.path.insert(0, str(TOP))
    from bench import verdict
    assert verdict(True, "<= 1.3x") == "met (target <= 1.3x)"
    assert verdict(False, "<= 1.3x") == "**MISSED** (target <= 1.3x)"


def test_service_bench_judges_its_targets_and_leaves_no_temp_dirs(tmp_path):
    env = dict(os.environ, TMPDIR=str(tmp_path), BENCH_IDLE_SECONDS="1", BENCH_ROUNDS="2")
    r = subprocess.run([sys.executable, "-m", "bench", "service"], cwd=str(TOP), env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    rows = [line for line in r.stdout.splitlines() if line.startswith("| ") and "target" not in line.split("|")[1]]
    judged = [row for row in rows if "met (target" in row or "**MISSED** (target" in row]
    assert len(judged) == 3, r.stdout          # reaction, RSS, idle wake-ups
    assert os.listdir(str(tmp_path)) == [], os.listdir(str(tmp_path))


def test_conntrack_bench_judges_its_targets_and_leaves_no_temp_dirs(tmp_path):
    env = dict(os.environ, TMPDIR=str(tmp_path), BENCH_CT_ENTRIES="3000", BENCH_CT_ROUNDS="1")
    r = subprocess.run([sys.executable, "-m", "bench", "conntrack"], cwd=str(TOP), env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    judged = [row for row in r.stdout.splitlines() if "met (target" in row or "**MISSED** (target" in row]
    assert len(judged) == 4, r.stdout          # CPU, CPU per minute, RSS growth, same figures
    assert "| same figures (ports used, connections) |" in r.stdout and "met (target equal)" in r.stdout
    assert os.listdir(str(tmp_path)) == [], os.listdir(str(tmp_path))
