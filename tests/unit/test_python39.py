"""What ships must run on the router's CPython 3.9 (OpenWrt 21.02, GL.iNet Flint 2)."""
import ast
import os
import pathlib
import subprocess
import sys

TOP = pathlib.Path(__file__).resolve().parents[2]


def shipped_python():
    files = sorted((TOP / "src").rglob("*.py"))
    for p in (TOP / "files").rglob("*"):
        if p.is_file() and p.read_bytes()[:40].startswith(b"#!") and b"python" in p.read_bytes()[:40]:
            files.append(p)
    return files


def test_parses_as_python_39():
    bad = []
    for p in shipped_python():
        try:
            ast.parse(p.read_text(encoding="utf-8"), str(p), feature_version=(3, 9))
        except SyntaxError as e:
            bad.append("%s:%s: %s" % (p.relative_to(TOP), e.lineno, e.msg))
    assert not bad


def vermin(paths):
    exe = os.path.join(os.path.dirname(sys.executable), "vermin")
    return subprocess.run([exe, "--no-tips", "--violations", "--target=3.9-", "--eval-annotations"]
                          + [str(p) for p in paths], capture_output=True, text=True)


def test_vermin_finds_nothing_newer_than_39():
    r = vermin(shipped_python())
    assert r.returncode == 0, r.stdout + r.stderr


def test_vermin_would_catch_310_code(tmp_path):
    newer = tmp_path / "newer.py"
    newer.write_text("import itertools\n\nprint(list(itertools.pairwise([1, 2])))\n")
    assert vermin([newer]).returncode != 0


def test_make_lint_runs_and_passes():
    """`make lint` (setup taken as done: -o setup) runs vermin and finds nothing."""
    r = subprocess.run(["make", "-o", "setup", "lint"], cwd=str(TOP), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Analyzing" in r.stdout and "No module named" not in r.stderr
