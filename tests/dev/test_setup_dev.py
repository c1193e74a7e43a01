"""tools/setup-dev (make setup) installs the simulated line's radvd and ISC dhcpd for the VM
tier, but leaves neither enabled at this machine's boot, even when an earlier run (or the
packages' own postinst) enabled them."""
import glob
import os
import pathlib
import shutil
import subprocess

from tests.prereq import require

TOP = pathlib.Path(__file__).resolve().parents[2]
SERVICES = ("radvd", "isc-dhcp-server")


def configured_here(svc):
    """The machine's own configuration of the daemon (setup-dev leaves those alone)."""
    if svc == "radvd":
        return os.path.exists("/etc/radvd.conf") and os.path.getsize("/etc/radvd.conf") > 0
    try:
        text = open("/etc/default/isc-dhcp-server").read()
    except OSError:
        return False
    return any(line.strip().startswith(("INTERFACESv4=\"", "INTERFACESv6=\"")) and line.strip()[13:] != '""'
               for line in text.splitlines())


def enabled_at_boot(svc):
    """Why ``svc`` would start at boot ([] when it would not)."""
    why = glob.glob("/etc/rc[2-5].d/S*%s" % svc)
    why += glob.glob("/etc/systemd/system/*.wants/%s.service" % svc)
    if shutil.which("systemctl"):
        out = subprocess.run(["systemctl", "is-enabled", svc], capture_output=True, text=True).stdout.split()
        if out[-1:] == ["enabled"]:
            why.append("systemctl is-enabled %s: enabled" % svc)
    return why


def test_vm_daemons_are_installed_but_not_enabled_at_boot():
    require(os.geteuid() == 0, "root (tools/setup-dev installs packages and changes boot services)")
    for svc in SERVICES:
        assert os.path.exists("/etc/init.d/%s" % svc), "%s is not installed: run make setup" % svc
        require(not configured_here(svc), "%s is configured on this machine (setup-dev leaves it alone)" % svc)
    try:
        for svc in SERVICES:  # what an earlier setup-dev, or the package's postinst, left
            subprocess.run(["update-rc.d", svc, "defaults"], capture_output=True)
            subprocess.run(["update-rc.d", svc, "enable"], capture_output=True)
            if shutil.which("systemctl"):
                subprocess.run(["systemctl", "enable", "--quiet", svc], capture_output=True)
        assert all(enabled_at_boot(svc) for svc in SERVICES)  # the test can fail
        r = subprocess.run([str(TOP / "tools" / "setup-dev")], cwd=str(TOP), capture_output=True, text=True,
                           timeout=1800)
        assert r.returncode == 0, r.stdout + r.stderr
        for svc in SERVICES:
            assert enabled_at_boot(svc) == [], (svc, enabled_at_boot(svc), r.stdout)
            assert "%s: disabled at boot" % svc in r.stdout
        assert not os.path.exists("/usr/sbin/policy-rc.d") or "setup-dev" not in open("/usr/sbin/policy-rc.d").read()
    finally:
        for svc in SERVICES:
            if enabled_at_boot(svc):
                subprocess.run(["update-rc.d", svc, "disable"], capture_output=True)
                subprocess.run(["systemctl", "disable", "--quiet", svc], capture_output=True)
