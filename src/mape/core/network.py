"""The OpenWrt `network` values a mapping implies: `wan` as proto map, and the static
`wan6pd` interface that gives netifd's mapcalc a prefix to find (the manual procedure's
64-bit mapcalc workaround). Values are strings, as UCI stores them."""
from mape.core.addr import format_v6

DEFAULT_MTU = 1460


def wan_options(mapping, mtu=DEFAULT_MTU, tunlink=None):
    rule = mapping.rule
    options = [
        ("proto", "map"),
        ("maptype", "map-e"),
        ("peeraddr", rule.br),
        ("ipaddr", rule.ipv4_text),
        ("ip4prefixlen", str(rule.ip4len)),
        ("ip6prefix", rule.ip6prefix_text),
        ("ip6prefixlen", str(rule.ip6len)),
        ("ealen", str(rule.ealen)),
        ("psidlen", str(rule.psidlen)),
        ("offset", str(rule.offset)),
        ("legacymap", "1" if rule.legacy else "0"),
        ("mtu", str(mtu)),
    ]
    if tunlink:
        options.append(("tunlink", tunlink))
    return options


def wan6pd_options(mapping, device=None):
    """Static interface on wan6's device: <64>::1001, gateway <64>::1, the customer /56."""
    net64 = mapping.wan6_64
    options = [("proto", "static")]
    if device:
        options.append(("device", device))
    options += [
        ("ip6addr", format_v6(net64 | 0x1001)),
        ("ip6gw", format_v6(net64 | 1)),
        ("ip6prefix", mapping.end_user_prefix_text),
        ("defaultroute", "0"),
    ]
    return options


def render_stanza(section_type, name, options):
    lines = ["config %s '%s'" % (section_type, name)]
    for key, value in options:
        if key == "ip6addr":
            lines.append("\tlist %s '%s'" % (key, value))
        else:
            lines.append("\toption %s '%s'" % (key, value))
    return "\n".join(lines) + "\n"
