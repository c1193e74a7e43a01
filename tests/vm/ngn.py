"""The upstream side of a simulated FLET'S line: radvd and ISC dhcpd -6 configurations.

Shared by tests/vm/line.py (inside the VM, the router runs mape-py's linux platform) and
tests/openwrt/lines.py (the router is an OpenWrt root running the real odhcp6c). Only the
configuration text lives here; each harness starts the programs in its own namespaces:

    radvd -n -C <radvd_conf(...)> -p PIDFILE -u root -m stderr
    dhcpd -6 -f -cf <dhcpd6_conf(...)> -lf LEASES -pf PIDFILE DEV

Stdlib only (runs inside the VM with the system python3).
"""


def radvd_prefix(prefix64, lifetime=14400):
    """One ``prefix`` block: on-link + SLAAC with ``lifetime`` (0 = take it back)."""
    return ("  prefix %s {\n    AdvOnLink on; AdvAutonomous on;\n"
            "    AdvValidLifetime %d; AdvPreferredLifetime %d;\n  };\n" % (prefix64, lifetime, lifetime))


def radvd_conf(dev, prefixes=(), deprecated=(), managed=False, other=None, interval=(3, 4)):
    """radvd.conf for ``dev``: ``prefixes`` announced (SLAAC), ``deprecated`` ones with zero
    lifetimes (what a line does when it takes a prefix back); M flag ``managed`` (ask DHCPv6
    for addresses/prefixes), O flag ``other`` (default: same as ``managed``)."""
    other = managed if other is None else other
    blocks = "".join([radvd_prefix(p) for p in prefixes] + [radvd_prefix(p, 0) for p in deprecated])
    return ("interface %s {\n  AdvSendAdvert on;\n  MinRtrAdvInterval %d;\n  MaxRtrAdvInterval %d;\n"
            "  AdvManagedFlag %s;\n  AdvOtherConfigFlag %s;\n%s};\n"
            % (dev, interval[0], interval[1], "on" if managed else "off", "on" if other else "off", blocks))


def dhcpd6_conf(link_subnet, delegated):
    """dhcpd.conf (-6) delegating exactly ``delegated`` ("prefix/len") to whoever asks, on
    the link ``link_subnet`` (dhcpd needs an address of its own inside it)."""
    net, _, plen = delegated.partition("/")
    return ("default-lease-time 3600;\nmax-lease-time 7200;\n"
            "subnet6 %s {\n  prefix6 %s %s /%s;\n}\n" % (link_subnet, net, net, plen))
