"""`mape-py doctor` on the fake router: each pitfall of the manual procedure is found and
comes with its fix; a clean router passes."""
import json
import subprocess
import sys


def doctor(router):
    p = subprocess.run([sys.executable, "-m", "mape", "doctor", "--json", "--root", router.root],
                       env=router.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                       timeout=60)
    assert "Traceback" not in p.stderr
    doc = json.loads(p.stdout)
    return p.returncode, {c["code"]: c for c in doc["checks"]}


def make_clean(router):
    router.write("lib/netifd/proto/map.sh", "#!/bin/sh\nproto_map_setup() { :; }\n")
    router.write("usr/sbin/mapcalc", "")
    router.write("etc/board.json", '{"network": {"wan": {"device": "eth1", "protocol": "dhcp"}}}')
    router.write("usr/lib/iptables/libxt_statistic.so", "")
    assert router.once().returncode == 0  # the daemon sets the zone's mtu_fix


def test_clean_router_passes(router):
    make_clean(router)
    rc, checks = doctor(router)
    assert rc == 0, checks
    assert set(checks) == {"map-package", "wan6-device", "ipv6-mode", "wan6-prefix", "acceleration",
                           "wan-zone", "map-sh-patched", "iptables-extensions"}


def test_every_pitfall_is_reported_with_a_fix(router):
    make_clean(router)
    net = router.read("etc/config/network").replace("option proto 'dhcpv6'\n\toption disabled '0'",
                                                    "option proto 'static'\n\toption disabled '0'")
    net = net.replace("option reqprefix 'auto'\n\toption device 'eth1'",
                      "option reqprefix 'auto'\n\toption device 'br-lan'\n\toption defaultroute '0'")
    router.write("etc/config/network", net)
    fw = router.read("etc/config/firewall").replace("option flow_offloading '0'", "option flow_offloading '1'")
    fw = fw.replace("\tlist network 'wan'\n", "")
    router.write("etc/config/firewall", fw)
    router.write("lib/netifd/proto/map.sh", "local MARK_BASE=0x00100000\njson_add_string mark x\n")
    router.write("etc/firewall.user", "iptables -t mangle -A PREROUTING -j HMARK --hmark-tuple src\n")
    router.write("sys/kernel/debug/hnat/hook_toggle", "1\n")
    import os
    os.unlink(router.path("usr/sbin/mapcalc"))
    os.unlink(router.path("usr/lib/iptables/libxt_statistic.so"))
    rc, checks = doctor(router)
    assert rc == 1
    bad = {code for code, c in checks.items() if not c["ok"]}
    assert bad == {"map-package", "wan6-device", "ipv6-mode", "acceleration", "wan-zone", "map-sh-patched",
                   "firewall-user-hmark", "iptables-extensions", "wan6-defaultroute"}
    assert "NO_DEVICE" in checks["wan6-defaultroute"]["message"]
    assert checks["iptables-extensions"]["fix"] == "opkg update && opkg install iptables-mod-ipopt"
    for code in bad:
        assert checks[code]["fix"]
    assert "opkg install map" in checks["map-package"]["fix"]
    assert "uci set network.wan6.device='eth1'" in checks["wan6-device"]["fix"]
    assert "wan6 is on br-lan, the WAN port is eth1" in checks["wan6-device"]["message"]
    assert "flow_offloading" in checks["acceleration"]["message"] and "mtkhnat" in checks["acceleration"]["message"]
    assert "HMARK" in checks["firewall-user-hmark"]["message"]


def test_host_cap_needs_the_connlimit_match_on_fw3(router):
    """option nat_host_cap renders `-m connlimit`: a fw3 router without libxt_connlimit would
    refuse the whole ruleset, so doctor names the package; without the cap it is not needed."""
    make_clean(router)
    rc, checks = doctor(router)
    assert checks["iptables-extensions"]["ok"], checks["iptables-extensions"]
    router.write("etc/config/mape", router.read("etc/config/mape") + "\toption nat_host_cap '25%'\n")
    rc, checks = doctor(router)
    assert rc == 1 and not checks["iptables-extensions"]["ok"]
    assert "'connlimit' is missing" in checks["iptables-extensions"]["message"]
    assert checks["iptables-extensions"]["fix"] == "opkg update && opkg install iptables-mod-conntrack-extra"
    router.write("usr/lib/iptables/libxt_connlimit.so", "")
    rc, checks = doctor(router)
    assert rc == 0 and checks["iptables-extensions"]["ok"], checks


def test_garbage_config_is_a_check_not_a_crash(router):
    router.write("etc/config/mape", "config mape\n\toption mtu 'x\n")
    rc, checks = doctor(router)
    assert rc == 1 and not checks["config"]["ok"]


def test_iptables_extensions_follow_strategy_and_backend(router):
    make_clean(router)
    mape = router.read("etc/config/mape")
    router.write("etc/config/mape", mape.replace("config mape 'config'", "config mape 'config'\n\toption nat_strategy 'hash'", 1))
    rc, checks = doctor(router)
    assert not checks["iptables-extensions"]["ok"] and "'u32' is missing" in checks["iptables-extensions"]["message"]
    router.write("usr/lib/iptables/libxt_u32.so", "")
    rc, checks = doctor(router)
    assert checks["iptables-extensions"]["ok"]
    router.write("sbin/fw4", "")  # fw4 router: nftables, no iptables extensions needed
    import os
    os.unlink(router.path("usr/lib/iptables/libxt_u32.so"))
    rc, checks = doctor(router)
    assert "iptables-extensions" not in checks


def test_port_forwards_outside_the_sets_get_the_nearest_free_port(router):
    """Issue 14 point 1: each forward from the wan zone is checked against the port sets;
    one the BR would drop comes with the uci command that moves it to a free allowed port."""
    make_clean(router)
    router.write("etc/config/firewall", router.read("etc/config/firewall") +
                 "\nconfig redirect 'game'\n\toption name 'Game'\n\toption src 'wan'\n\toption src_dport '5190'\n"
                 "\toption dest_ip '192.168.1.20'\n"
                 "\nconfig redirect\n\toption name 'NAS'\n\toption src 'wan'\n\toption proto 'tcp'\n"
                 "\toption src_dport '8080'\n\toption dest_ip '192.168.1.30'\n\toption dest_port '80'\n")
    p = subprocess.run([sys.executable, "-m", "mape", "doctor", "--json", "--root", router.root],
                       env=router.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                       timeout=60)
    assert p.returncode == 1 and "Traceback" not in p.stderr
    found = [c for c in json.loads(p.stdout)["checks"] if c["code"] == "forward-port"]
    assert [(c["section"], c["ok"]) for c in found] == [("game", True), ("@redirect[1]", False)]
    assert "in the allowed port sets of 106.73.34.51" in found[0]["message"]
    assert found[1]["message"] == ("port forward NAS (tcp 8080 -> 192.168.1.30:80) is outside the allowed port "
                                   "sets of 106.73.34.51: the BR drops it, it never arrives")
    assert "uci set firewall.@redirect[1].src_dport='9280'; uci commit firewall" in found[1]["fix"]
