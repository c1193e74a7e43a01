"""Which interface and zone names mape-py may write to (pure).

Write access to /etc/config/mape must not become write access to the LAN: with
`wan_iface 'lan'` the plan would turn the LAN into a map interface, with `fw_zone 'lan'`
switch masquerading on in the LAN zone. So before anything is planned, the names of the
settings are checked against the network and firewall configuration as it is now:

- `lan` and `loopback` are never ours, nor any interface of a LAN-side zone: a zone that
  is the `src` of a firewall `forwarding` (lan -> wan), or that lists lan/loopback;
- fw_zone must not be such a zone (mape-py sets masq/mtu_fix on it and adds wan);
- wan_iface may be an interface mape-py creates (absent), one already of proto map, or the
  WAN interface it is meant to take over (in fw_zone, the WAN zone, or in no zone); never
  one of another zone, one on a LAN-side device (br-lan), nor an IPv6 uplink (proto
  dhcpv6: turning it into map would cut IPv6; this includes wan6_iface itself);
- wan6_iface (only read, and named as the tunnel's tunlink) and wan6pd_iface (deleted only
  when an earlier mape-py created it) must not be LAN-side interfaces.
"""
from mape.core.errors import MapeError

NEVER_OURS = ("lan", "loopback")


class NotOurs(MapeError):
    """A setting names an interface or zone mape-py does not own; nothing is written."""


def _words(value):
    items = value if isinstance(value, list) else [value] if value is not None else []
    return [w for item in items for w in str(item).split()]


def _zones(firewall):
    return {s.get("name"): s for s in firewall if s.type == "zone" and isinstance(s.get("name"), str)}


def _devices(section):
    return _words(section.get("device")) + _words(section.get("ifname"))


def lan_side(firewall):
    """({zone names}, {interface names}) on the LAN side of ``firewall`` (sections)."""
    zones = _zones(firewall)
    inside = {s.get("src") for s in firewall if s.type == "forwarding" and isinstance(s.get("src"), str)}
    inside |= {name for name, z in zones.items() if set(_words(z.get("network"))) & set(NEVER_OURS)}
    inside |= {name for name in zones if name in NEVER_OURS}
    networks = set(NEVER_OURS)
    for name in inside:
        if name in zones:
            networks |= set(_words(zones[name].get("network")))
    return inside, networks


def refusals(names, current):
    """English reasons why ``names`` ({"wan_iface", "wan6_iface", "wan6pd_iface", "fw_zone"
    (None: firewall not managed)}) must not be written into ``current`` ({package:
    [Section]}, as `uci export` shows it). [] when all is well."""
    network = current.get("network", [])
    firewall = current.get("firewall", [])
    inside_zones, inside_nets = lan_side(firewall)
    interfaces = {s.name: s for s in network if s.type == "interface"}
    out = []

    def where(name):
        zones = sorted(z for z, s in _zones(firewall).items() if name in _words(s.get("network")))
        return " (zone %s)" % ", ".join(zones) if zones else ""

    for key in ("wan_iface", "wan6_iface", "wan6pd_iface"):
        name = names.get(key)
        if name in inside_nets:
            out.append("%s '%s' is a LAN-side interface%s, not mape-py's" % (key, name, where(name)))
    zone = names.get("fw_zone")
    if zone is not None and zone in inside_zones:
        out.append("fw_zone '%s' is a LAN-side zone (it forwards to other zones or holds the LAN), "
                   "not the WAN zone: mape-py would switch masquerading on in it" % zone)
    wan = names.get("wan_iface")
    section = interfaces.get(wan)
    if wan not in inside_nets and section is not None:
        proto = section.get("proto")
        zones = _zones(firewall)
        others = sorted(n for n, z in zones.items() if n != zone and wan in _words(z.get("network")))
        lan_devices = {d for n in inside_nets if n in interfaces for d in _devices(interfaces[n])}
        shared = sorted(set(_devices(section)) & lan_devices)
        if proto == "dhcpv6":
            out.append("wan_iface '%s' is an IPv6 uplink (proto dhcpv6): making it proto map would cut "
                       "IPv6" % wan)
        elif proto != "map" and others and zone is not None and zone not in inside_zones:
            out.append("wan_iface '%s' is an existing %s interface of zone %s, not of the WAN zone '%s'"
                       % (wan, proto or "unconfigured", ", ".join(others), zone))
        elif proto != "map" and shared:
            out.append("wan_iface '%s' is on the LAN's device %s" % (wan, ", ".join(shared)))
    return out


def check(names, current=None):
    """Raise NotOurs (one line) when refusals() has anything to say. Without ``current``
    only the names that are never ours (lan, loopback) are checked: the daemon does that
    before it even observes wan6 (`wan6_iface 'lan'` would otherwise only wait)."""
    if current is None:
        reasons = ["%s '%s' is a LAN-side interface, not mape-py's" % (k, names.get(k))
                   for k in ("wan_iface", "wan6_iface", "wan6pd_iface") if names.get(k) in NEVER_OURS]
        if names.get("fw_zone") in NEVER_OURS:
            reasons.append("fw_zone '%s' is a LAN-side zone, not the WAN zone" % names["fw_zone"])
    else:
        reasons = refusals(names, current)
    if reasons:
        raise NotOurs("refusing to write network/firewall: %s; fix /etc/config/mape" % "; ".join(reasons))


def names_of(settings):
    """The names check() looks at, from Settings."""
    return {"wan_iface": settings.wan_iface, "wan6_iface": settings.wan6_iface,
            "wan6pd_iface": settings.wan6pd_iface,
            "fw_zone": settings.fw_zone if getattr(settings, "manage_firewall", True) else None}
