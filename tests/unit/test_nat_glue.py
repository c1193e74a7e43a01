"""The firewall glue in files/ run by dash against a fake `uci` that records its calls."""
import os
import shutil
import subprocess

import pytest

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULTS = os.path.join(TOP, "files/etc/uci-defaults/90-mape-py-firewall")
INCLUDE = os.path.join(TOP, "files/usr/share/mape-py/firewall.include")
SH = shutil.which("dash") or shutil.which("sh")

# A uci that keeps `set`/`delete` of the batch in a key=value file (tests/openwrt runs the
# script against the real libuci and fw3/fw4).
FAKE_UCI = """#!/bin/sh
echo "uci $*" >> "$LOG"
touch "$STATE"
if [ "$1 $2" = "-q get" ]; then
  v=$(grep "^$3=" "$STATE" | tail -n 1 | cut -d= -f2-)
  [ -n "$v" ] && { echo "$v"; exit 0; }
  exit 1
fi
if [ "$*" = "-q batch" ]; then
  while read -r cmd arg; do
    echo "$cmd $arg" >> "$LOG"
    case "$cmd" in
      set) k=${arg%%=*}; v=$(echo "${arg#*=}" | tr -d "'")
           grep -v "^$k=" "$STATE" > "$STATE.new"; echo "$k=$v" >> "$STATE.new"; mv "$STATE.new" "$STATE" ;;
      delete) grep -v "^$arg=" "$STATE" > "$STATE.new"; mv "$STATE.new" "$STATE" ;;
    esac
  done
fi
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


@pytest.mark.parametrize("firewall, want, unknown", [("fw3", "reload", "fw4_compatible"),
                                                     ("fw4", "fw4_compatible", "reload")])
def test_uci_defaults_writes_only_what_the_firewall_knows(fake, firewall, want, unknown):
    """fw3 warns about fw4_compatible, fw4 about reload: the include gets one of them, and a
    section written for the other firewall is put right; a second run writes nothing."""
    tmp, env = fake
    script = open(DEFAULTS).read()
    if firewall == "fw3":
        script = script.replace("[ -x /sbin/fw4 ]", "false")
    else:
        script = script.replace("[ -x /sbin/fw4 ]", "true")
    (tmp / "state").write_text("firewall.mape_py=include\nfirewall.mape_py.%s=1\n" % unknown)
    assert subprocess.run([SH, "-c", script], env=env).returncode == 0
    state = dict(line.split("=", 1) for line in (tmp / "state").read_text().splitlines())
    assert state == {"firewall.mape_py": "include", "firewall.mape_py.type": "script",
                     "firewall.mape_py.path": "/usr/share/mape-py/firewall.include",
                     "firewall.mape_py.%s" % want: "1"}
    assert "commit firewall" in (tmp / "log").read_text()
    (tmp / "log").write_text("")
    assert subprocess.run([SH, "-c", script], env=env).returncode == 0
    assert "batch" not in (tmp / "log").read_text()


def test_include_does_nothing_without_a_saved_ruleset(fake, tmp_path):
    tmp, env = fake
    mape = tmp / "bin" / "mape-py"
    mape.write_text("#!/bin/sh\necho \"mape-py $*\" >> \"$LOG\"\n")
    mape.chmod(0o755)
    run_dir = tmp / "run"
    run_dir.mkdir()
    text = open(INCLUDE).read()
    env = dict(env, MAPE_PY_RUN_DIR=str(run_dir))
    assert subprocess.run([SH, "-c", text], env=env).returncode == 0
    assert not (tmp / "log").exists()
    (run_dir / "firewall.nft").write_text("table inet mape_py {}\n")
    assert subprocess.run([SH, "-c", text], env=env).returncode == 0
    assert (tmp / "log").read_text() == "mape-py firewall reapply\n"
