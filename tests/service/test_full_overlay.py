"""A full overlay (issue 11 point 3): /etc on a small tmpfs, filled up. The daemon fails
closed before writing anything (status says how little room is left), leaves no temp files,
stays up, and once there is room again the change goes through. A transaction left by a
killed run that cannot be undone for lack of room does not make every start exit 1."""
import json
import os
import shutil
import signal
import subprocess

import pytest

from fakerouter import SDATA, firewall_initial


@pytest.fixture
def full(router, tmp_path):
    """/etc of the fake router on a 1 MiB tmpfs; fill() leaves it with no room at all."""
    etc = router.path("etc")
    keep = str(tmp_path / "etc-copy")
    shutil.copytree(etc, keep, symlinks=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0755", "tmpfs", etc], check=True)
    shutil.copytree(keep, etc, symlinks=True, dirs_exist_ok=True)

    def fill():
        fd = os.open(os.path.join(etc, "filler"), os.O_WRONLY | os.O_CREAT)
        try:
            while os.write(fd, b"\0" * 4096):
                pass
        except OSError:
            pass
        finally:
            os.close(fd)
    router.fill = fill
    yield router
    router.kill_all()
    subprocess.run(["umount", "-l", etc], check=False)


def temp_files(router):
    out = []
    for top, _, names in os.walk(router.path("etc")):
        out.extend(os.path.join(top, n) for n in names if n.startswith(".") and (".tmp" in n or ".uci-" in n))
    return out


def test_no_room_fails_closed_stays_up_and_applies_once_freed(full):
    router = full
    router.fill()
    before = (router.read("etc/config/network"), router.read("etc/config/firewall"))
    p = router.start()
    router.wait_for(lambda: "no space left" in ((router.status() or {}).get("state_reason") or ""),
                    what="the no-space error")
    st = router.status()
    assert st["state"] == "error"
    assert "no space left on the overlay: 0 KiB free" in st["state_reason"], st["state_reason"]
    assert "nothing changed" in st["state_reason"]
    assert (router.read("etc/config/network"), router.read("etc/config/firewall")) == before
    assert router.read("etc/mape-py/journal") is None
    assert temp_files(router) == []
    assert p.poll() is None, "the daemon exited"
    assert "Traceback" not in router.read("daemon.log")
    os.unlink(router.path("etc/filler"))
    p.send_signal(signal.SIGHUP)   # the retry of a failed change (h2's back-off retries by itself)
    router.wait_for(lambda: (router.status() or {}).get("state") == "ok", what="the change once freed")
    assert "option proto 'map'" in router.read("etc/config/network")
    assert temp_files(router) == [] and router.read("etc/mape-py/journal") is None


def test_unfinished_transaction_without_room_does_not_crash_loop(full):
    """A killed run's "prepared" journal whose undo needs room: the start logs it and stays
    up (procd would otherwise restart it until it gives up); with room again, the undo and
    the change go through."""
    router = full
    router.write("etc/config/firewall", firewall_initial(named=True))
    network = open(os.path.join(SDATA, "network.initial")).read()
    router.write("etc/mape-py/backup/network", network)
    router.write("etc/mape-py/journal", json.dumps({"phase": "prepared", "packages": ["network"]}))
    router.write("etc/config/network", network.replace("option proto 'dhcp'", "option proto 'map'", 1))
    assert "option proto 'map'" in router.read("etc/config/network"), "premise: wan is dhcp in network.initial"
    router.fill()
    p = router.start()
    router.wait_for(lambda: (router.status() or {}).get("state") == "error", what="error state")
    assert p.poll() is None, "the daemon exited:\n" + router.read("daemon.log")
    assert "could not finish the previous run's change" in router.read("daemon.log")
    assert "Traceback" not in router.read("daemon.log") and temp_files(router) == []
    os.unlink(router.path("etc/filler"))
    p.send_signal(signal.SIGHUP)
    router.wait_for(lambda: (router.status() or {}).get("state") == "ok", what="ok once freed")
    assert router.read("etc/mape-py/journal") is None
