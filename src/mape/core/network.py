"""The OpenWrt `network` values a mapping implies: `wan` as proto map whose `rule` hands
netifd's mapcalc the customer prefix (`pd=`/`pdlen=`), with `tunlink` = wan6.

Why this shape (docs/service.md, "Why tunlink wan6 and pd= in the rule"): map.sh adds a
host dependency on `::` over `tunlink`, which netifd resolves only through an enabled
default route on that interface; wan6 has the line's real one. Given `pd=`/`pdlen=`,
mapcalc skips its search of interface prefixes (which finds nothing on an RA-only line and
the wrong /60 behind a home gateway) and builds the CE address in subnet 0 of the /56, as
the BR expects. No helper interface, no invented gateway, no null route.
Values are strings, as UCI stores them."""
from mape.core.addr import format_v6

DEFAULT_MTU = 1460


def map_rule(mapping):
    """mapcalc's rule string (BMR) for ``mapping``, with the customer prefix as pd=/pdlen=.
    Integers in decimal without leading zeros: mapcalc reads them with strtoul(.., 0)."""
    rule = mapping.rule
    return ",".join((
        "type=map-e",
        "ipv6prefix=%s" % rule.ip6prefix_text,
        "prefix6len=%d" % rule.ip6len,
        "ipv4prefix=%s" % rule.ipv4_text,
        "prefix4len=%d" % rule.ip4len,
        "ealen=%d" % rule.ealen,
        "psidlen=%d" % rule.psidlen,
        "offset=%d" % rule.offset,
        "br=%s" % rule.br,
        "pd=%s" % format_v6(mapping.end_user_prefix),
        "pdlen=%d" % mapping.end_user_len,
    ))


def wan_options(mapping, mtu=DEFAULT_MTU, tunlink="wan6"):
    return [
        ("proto", "map"),
        ("maptype", "map-e"),
        ("rule", map_rule(mapping)),
        ("legacymap", "1" if mapping.rule.legacy else "0"),
        ("mtu", str(mtu)),
        ("tunlink", tunlink),
    ]


# map.sh ignores these once `rule` is set; left behind they would only mislead a reader of
# the config (earlier mape-py versions and the manual procedure wrote them).
WAN_IGNORED = ("peeraddr", "ipaddr", "ip4prefixlen", "ip6prefix", "ip6prefixlen", "ealen", "psidlen",
               "offset", "psid")
