"""Never "ok" without the port-set NAT rules (issue 11 point 18): with iptables-restore
really absent from the router, and with the NAT engine unusable (rules "unknown")."""
import json
import os

from fakerouter import FAKEBIN
from test_fuzz_cycle import make

PD = {"up": True, "device": "eth1", "ipv6-prefix": [{"address": "240b:11:2233:4400::", "mask": 56}]}


def without_iptables_restore(router):
    """PATH = the fakes minus iptables-restore, plus /usr/bin (this machine's iptables tools
    live in /usr/sbin, which is left out: nothing can find a real one either)."""
    bindir = router.path("bin-no-iptables-restore")
    os.makedirs(bindir)
    for name in os.listdir(FAKEBIN):
        if name != "iptables-restore":
            os.symlink(os.path.join(FAKEBIN, name), os.path.join(bindir, name))
    env = router.env

    def patched():
        e = env()
        e["PATH"] = bindir + os.pathsep + "/usr/bin"
        return e
    router.env = patched
    return bindir


def test_missing_iptables_restore_is_an_error_that_names_it_then_recovers(router):
    bindir = without_iptables_restore(router)
    p = router.once()
    assert p.returncode != 0
    st = router.status()
    assert st["state"] == "error", st["state_reason"]
    assert "port-set NAT rules missing" in st["state_reason"]
    assert "iptables-restore" in st["state_reason"], st["state_reason"]
    assert st["firewall"]["health"] == "missing"
    assert "iptables-restore" in st["last_error"]["message"]
    # the tool comes back (opkg install iptables): the next run installs the rules, ok
    os.symlink(os.path.join(FAKEBIN, "iptables-restore"), os.path.join(bindir, "iptables-restore"))
    p = router.once()
    assert p.returncode == 0, p.stderr
    st = router.status()
    assert st["state"] == "ok" and st["firewall"]["health"] == "present"
    assert "--to-source 106.73.34.51:5184-5199" in router.calls()


def test_nat_engine_unusable_is_never_ok(tmp_path):
    d, platform = make(tmp_path)
    platform.status = PD
    platform.nat.core = platform.nat.netfilter = None          # as when its import failed
    platform.nat.problem = "NAT engine unavailable (ImportError)"
    platform.health = lambda target, settings: {
        "tunnel": {"interface": "wan", "up": True, "ipv4": target.mapping.ipv4_text},
        "firewall": {"health": "unknown", "detail": platform.nat.problem}}   # as OpenWrt.health says
    d.cycle("event")
    with open(d.system.path("/status.json")) as f:
        st = json.load(f)
    assert st["state"] == "error", st["state_reason"]
    assert "port-set NAT rules unknown: NAT engine unavailable (ImportError)" in st["state_reason"]
