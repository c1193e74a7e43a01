"""The installed layout works: the data tarball of the built mape-py ipk is unpacked at / of
an overlay of this machine's root (private mount namespace + chroot), and the installed
launcher /usr/bin/mape-py runs with the system python3, importing the package from
/usr/lib/mape-py exactly as on the router."""

import os
import subprocess
import sys

import pytest

from pkg_helpers import TOP, LiveRoot, build_ipk, overlay_ok
from tests.prereq import require

PREFIX = "240b:10:3f6c:d400::/56"


@pytest.fixture
def installed(tmp_path, real_build):
    require(overlay_ok(), "the overlay chroot needs root, unshare and dash")
    lr = LiveRoot(tmp_path)
    ipk = real_build["mape-py"]
    for m in ipk.data.getmembers():
        if m.isfile():
            lr.put("/" + m.name[2:], ipk.data.extractfile(m).read(), m.mode)
    probe = lr.run("true", {})
    require(probe.returncode == 0, "overlay mount not possible here: %s" % probe.stderr.strip())
    return lr


ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}


def _expected(*args):
    env = dict(os.environ, PYTHONPATH=os.path.join(TOP, "src"))
    return subprocess.run([sys.executable, "-m", "mape"] + list(args), capture_output=True,
                          text=True, env=env, cwd=TOP)


def test_launcher_calc_from_installed_layout(installed):
    r = installed.run("cd / && /usr/bin/mape-py calc %s" % PREFIX, ENV)
    want = _expected("calc", PREFIX)
    assert want.returncode == 0, want.stderr
    assert (r.returncode, r.stdout) == (0, want.stdout), r.stderr


def test_launcher_imports_the_installed_package(installed):
    probe = ("import atexit, runpy, sys\n"
             "atexit.register(lambda: sys.stderr.write('MAPE_FILE=%s\\n' % sys.modules['mape'].__file__))\n"
             "sys.argv = ['/usr/bin/mape-py', '--version']\n"
             "runpy.run_path('/usr/bin/mape-py', run_name='__main__')\n")
    installed.put("/tmp/probe.py", probe, 0o644)
    r = installed.run("cd / && python3 /tmp/probe.py", ENV)
    assert r.returncode == 0, r.stderr
    assert "MAPE_FILE=/usr/lib/mape-py/mape/__init__.py" in r.stderr
    assert build_ipk.python_version() in r.stdout + r.stderr


def test_rule_table_is_read_from_installed_layout(installed):
    r = installed.run("cd / && /usr/bin/mape-py rules --help >/dev/null && "
                      "python3 -c \"import sys; sys.path.insert(0, '/usr/lib/mape-py'); "
                      "from mape.core.rules import TABLE_PATH, load_table; load_table(); print(TABLE_PATH)\"",
                      ENV)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "/usr/lib/mape-py/mape/data/rules.tsv"
