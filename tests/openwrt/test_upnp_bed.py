"""miniupnpd's configuration kept in step with the mapping (issue 14 point 2) on the real
OpenWrt userland: /etc/config/upnpd as the miniupnpd package installs it, the daemon's
changes made with the real uci (its private view), seen through the real rpcd; the user's
sections and options untouched; the reserve out of the kernel's SNAT ranges; a changed
reserve moves the rules and drops the stale leases; `daemon --remove` restores."""
import pytest

import owtier as C
from test_forwards_bed import covered, snat_ranges, wait_state

pytestmark = pytest.mark.openwrt

# The package's /etc/config/upnpd of the 21.02 - 24.10 era (net/miniupnpd/files/upnpd.config),
# with a user's external_ip and a named rule of the user's own.
UPNPD = """config upnpd 'config'
	option enabled '1'
	option enable_natpmp '1'
	option enable_upnp '1'
	option secure_mode '1'
	option log_output '0'
	option download '1024'
	option upload '512'
	option internal_iface 'lan'
	option port '5000'
	option upnp_lease_file '/var/run/miniupnpd.leases'
	option igdv1 '1'
	option external_ip '1.2.3.4'

config perm_rule
	option action 'allow'
	option ext_ports '1024-65535'
	option int_addr '0.0.0.0/0'
	option int_ports '1024-65535'
	option comment 'Allow high ports'

config perm_rule 'mine'
	option action 'deny'
	option ext_ports '0-65535'
	option int_addr '0.0.0.0/0'
	option int_ports '0-65535'
	option comment 'Default deny'
"""


def sections(r):
    """[(name, type)] of /etc/config/upnpd in file order, as the real uci shows them."""
    out = []
    for line in r.bed.sh("uci -X show upnpd").splitlines():
        key, _, value = line.partition("=")
        if "." not in key.split("upnpd.", 1)[1]:
            out.append((key.split(".", 1)[1], value))
    return out


def get(r, key):
    return r.bed.run(["uci", "-q", "get", key], check=False).stdout.strip()


@pytest.mark.parametrize("profile", C.PROFILES)
def test_upnpd_rules_follow_the_mapping_and_are_undone(profile, fresh_router):
    r = fresh_router(profile, "pd56", C.NO_ROLLBACK)
    first = r.wait_settled(60)
    assert first and first.get("mapping"), r.explain()
    ipv4, sets = first["mapping"]["ipv4"], [tuple(s) for s in first["mapping"]["port_sets"]]
    assert "upnp" not in first or first["upnp"] == {"installed": False}
    tops = [b for _, b in sets]    # the reserve: the top port of every set
    n = len(sets)
    assert covered(snat_ranges(r, ipv4), tops[-1]), "without miniupnpd nothing is reserved"

    r.bed.sh("cat > /etc/config/upnpd <<'EOF'\n%sEOF\n"
             "echo 'UDP:%d:192.168.1.20:9999:0:stale' > /var/run/miniupnpd.leases; /etc/init.d/mape-py reload"
             % (UPNPD, sets[0][0] + 1))
    st = wait_state(r, "upnp rules in the status", lambda s: (s.get("upnp") or {}).get("rules"))
    assert st, r.explain()
    assert st["upnp"]["reserved"] == [[b, b] for b in tops]
    assert st["upnp"]["rules"] == ["allow %d 0.0.0.0/0 1-65535" % b for b in tops] + ["deny 0-65535 0.0.0.0/0 0-65535"]
    assert st["upnp"]["set"] == {"external_iface": "wan", "external_ip": ipv4}
    # ours first (miniupnpd: first match wins), then the user's, unchanged
    names = [n for n, _ in sections(r)]
    ours = ["mape_py_allow_%d" % i for i in range(n)] + ["mape_py_deny"]
    assert names[:n + 2] == ["config"] + ours and names[n + 3:] == ["mine"], names
    assert get(r, "upnpd.config.external_ip") == ipv4 and get(r, "upnpd.config.external_iface") == "wan"
    for key, value in (("config.enable_natpmp", "1"), ("config.secure_mode", "1"), ("config.download", "1024"),
                       ("config.port", "5000"), ("@perm_rule[%d].comment" % (n + 1), "Allow high ports"),
                       ("mine.action", "deny")):
        assert get(r, "upnpd." + key) == value, key
    # the stale lease (a port outside the reserve) was dropped with the change
    assert r.bed.read("/var/run/miniupnpd.leases") == ""
    # the reserve is out of the kernel's SNAT ranges; the port_use of the MAP-E page says why
    assert C.wait(r, "the reserve out of the SNAT ranges",
                  lambda: not any(covered(snat_ranges(r, ipv4), b) for b in tops) or None), snat_ranges(r, ipv4)
    assert covered(snat_ranges(r, ipv4), sets[0][0])
    used = [u for s in st["port_use"] for u in s["used"] if u["by"] == "upnp"]
    assert used == [{"ports": [b, b], "by": "upnp", "name": "miniupnpd"} for b in tops]

    # a lease inside the reserve shows in the status; then the reserve changes (two per set):
    # the rules move, the lease is dropped
    r.bed.sh("echo 'TCP:%d:192.168.1.20:8080:0:game' > /var/run/miniupnpd.leases; /etc/init.d/mape-py reload"
             % tops[-1])
    st = wait_state(r, "the lease in the status", lambda s: (s.get("upnp") or {}).get("leases"))
    assert st and st["upnp"]["leases"][0]["port"] == tops[-1] and st["upnp"]["leases"][0]["reserved"], r.explain()
    r.bed.sh("uci set mape.config.upnp_ports=2; uci commit mape; /etc/init.d/mape-py reload")
    two = [[b - 1, b] for b in tops]
    st = wait_state(r, "two reserved ports per set", lambda s: (s.get("upnp") or {}).get("reserved") == two)
    assert st, r.explain()
    assert st["upnp"]["leases"] == []
    assert [x for x, _ in sections(r)][1:n + 2] == ours
    assert r.bed.read("/var/run/miniupnpd.leases") == ""
    # checked by hand, the daemon's ruleset is the one the mapping needs: the command keeps
    # the same reserve out of NAT (upnp_ports of /etc/config/mape, miniupnpd installed)
    check = r.bed.run(["mape-py", "firewall", "check", "--prefix", r.spec["calc"]], check=False)
    assert check.returncode == 0 and '"present"' in check.stdout, (check.stdout, check.stderr)
    check = r.bed.run(["mape-py", "firewall", "check", "--prefix", r.spec["calc"], "--upnp-ports", "0"],
                      check=False)
    assert check.returncode == 1 and '"stale"' in check.stdout, (check.stdout, check.stderr)

    # removal: our sections gone, the options back to the user's values, the rest untouched
    r.bed.sh("/etc/init.d/mape-py stop")
    out = r.bed.run(["mape-py", "daemon", "--remove"], check=False)
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
    names = [n for n, _ in sections(r)]
    assert len(names) == 3 and names[0] == "config" and names[2] == "mine", names
    assert get(r, "upnpd.config.external_ip") == "1.2.3.4" and get(r, "upnpd.config.external_iface") == ""
    assert get(r, "upnpd.config.upnp_lease_file") == "/var/run/miniupnpd.leases"
