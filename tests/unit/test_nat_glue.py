"""The firewall glue in files/ run by dash against a fake `uci` that records its calls."""
import os
import shutil
import subprocess

import pytest

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULTS = os.path.join(TOP, "files/etc/uci-defaults/90-mape-py-firewall")
INCLUDE = os.path.join(TOP, "files/usr/share/mape-py/firewall.include")
SH = shutil.which("dash") or shutil.which("sh")

FAKE_UCI = """#!/bin/sh
echo "uci $*" >> "$LOG"
case "$*" in
  "-q get firewall.mape_py") [ -f "$STATE" ] && { echo include; exit 0; }; exit 1 ;;
  "-q batch") cat >> "$LOG"; touch "$STATE" ;;
esac
exit 0
"""


@pytest.fixture
def fake(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    uci = bindir / "uci"
    uci.write_text(FAKE_UCI)
    uci.chmod(0o755)
    env = {"PATH": "%s:/usr/bin:/bin" % bindir, "LOG": str(tmp_path / "log"), "STATE": str(tmp_path / "state")}
    return tmp_path, env


def test_uci_defaults_adds_the_include_once(fake):
    tmp, env = fake
    assert subprocess.run([SH, DEFAULTS], env=env).returncode == 0
    assert subprocess.run([SH, DEFAULTS], env=env).returncode == 0
    assert (tmp / "log").read_text() == (
        "uci -q get firewall.mape_py\n"
        "uci -q batch\n"
        "set firewall.mape_py=include\n"
        "set firewall.mape_py.type='script'\n"
        "set firewall.mape_py.path='/usr/share/mape-py/firewall.include'\n"
        "set firewall.mape_py.reload='1'\n"
        "set firewall.mape_py.fw4_compatible='1'\n"
        "commit firewall\n"
        "uci -q get firewall.mape_py\n")


def test_include_does_nothing_without_a_saved_ruleset(fake, tmp_path):
    tmp, env = fake
    mape = tmp / "bin" / "mape-py"
    mape.write_text("#!/bin/sh\necho \"mape-py $*\" >> \"$LOG\"\n")
    mape.chmod(0o755)
    run_dir = tmp / "run"
    run_dir.mkdir()
    text = open(INCLUDE).read().replace("RUN_DIR=/var/run/mape-py", "RUN_DIR=%s" % run_dir)
    assert subprocess.run([SH, "-c", text], env=env).returncode == 0
    assert not (tmp / "log").exists()
    (run_dir / "firewall.nft").write_text("table inet mape_py {}\n")
    assert subprocess.run([SH, "-c", text], env=env).returncode == 0
    assert (tmp / "log").read_text() == "mape-py firewall reapply\n"
