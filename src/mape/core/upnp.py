"""UPnP IGD, NAT-PMP and PCP through miniupnpd, against the port sets. Pure.

miniupnpd grants external ports by itself; behind MAP-E only the PSID's ports reach the
router, and an outgoing SNAT may take any of them. So mape-py RESERVES ports for miniupnpd
(option `upnp_ports`: how many ports per port set, from the top of each; default 1, 0 = none):
they are kept out of the SNAT pool statically (the same path as port forwards), so a granted
mapping never collides with an outgoing connection and the NAT rules never change per lease.
Forwarded ports are not reserved (a forward has them already).

miniupnpd is told (docs/upnp.md): the external interface (the tunnel) and the external IPv4
(the shared address: the tunnel device has none it could read), and permission rules, which
it checks in order, first match wins: `allow <run> 0.0.0.0/0 1-65535` per reserved run, then
`deny 0-65535 0.0.0.0/0 0-65535`. A request for another port is refused (AddPortMapping) or
answered with a permitted one (AddAnyPortMapping, NAT-PMP, PCP pick a free allowed port).
"""
from mape.core.nat import normalize_ranges as _merge

PREFIX = "mape_py_"           # uci sections mape-py owns in /etc/config/upnpd
DENY = PREFIX + "deny"
DEFAULT_LEASE_FILE = "/var/run/miniupnpd.leases"
ANY = "0.0.0.0/0"


BLOCK = 1024    # a set larger than this (few PSID bits) is reserved in blocks of this size
SHARE = 4       # at most 1/SHARE of each block is reserved: the rest stays with outgoing NAT


def reserve(port_sets, count, forwarded=()):
    """The ports reserved for miniupnpd: the top ``count`` ports of each port set (of each
    BLOCK of a larger one), skipping ``forwarded`` ports, at most 1/SHARE of the block; merged
    runs [(a, b)]. Spread, not one place: miniupnpd answers a NAT-PMP / PCP /
    AddAnyPortMapping request for a denied port by walking up from it one port at a time,
    so every allowed port must lie close below a reserved one (docs/upnp.md)."""
    forwarded = _merge(forwarded)
    out = []
    for first, last in port_sets:
        for top in range(last, first - 1, -BLOCK):
            low = max(first, top - BLOCK + 1)
            want = _per_block(top - low + 1, count)
            port = top
            while want > 0 and port >= low:
                if not any(a <= port <= b for a, b in forwarded):
                    out.append((port, port))
                    want -= 1
                port -= 1
    return _merge(out)


def kept_out(forwards, port_sets, count, user_kept_out=()):
    """The allowed ports outgoing SNAT must leave alone beyond ``user_kept_out`` (nat_keep_out):
    those of the active port forwards, then ``count`` per set reserved for miniupnpd (the
    forwarded ports skipped). One place, so the daemon and `mape-py firewall` agree."""
    from mape.core.forwards import kept_out as forwarded_ports

    forwarded = forwarded_ports(forwards, port_sets, user_kept_out)
    return _merge(forwarded + (reserve(port_sets, count, forwarded) if count else []))


def _per_block(size, count):
    return min(count, size // SHARE)


def per_set(port_sets, count):
    """How many ports ``reserve`` takes from the smallest set (block) for a wish of ``count``."""
    return _per_block(min((min(b - a + 1, BLOCK) for a, b in port_sets), default=0), count)


def capped_warnings(port_sets, count):
    """``upnp_ports`` above what reserve() takes is not an error (the default config may ask
    more than a small set gives) but the user should hear it was cut down."""
    got = per_set(port_sets, count)
    if got >= count:
        return []
    return [{"code": "upnp-ports-capped",
             "message": "upnp_ports %d is more than a quarter of a port set: %d port(s) per set are reserved "
                        "for UPnP / NAT-PMP / PCP, the rest stays with outgoing NAT" % (count, got)}]


def _run(a, b):
    return str(a) if a == b else "%d-%d" % (a, b)


def rules(reserved):
    """[(action, ext_ports, int_addr, int_ports, comment)] in miniupnpd's order."""
    out = [("allow", _run(a, b), ANY, "1-65535", "mape-py: reserved MAP-E ports") for a, b in reserved]
    out.append(("deny", "0-65535", ANY, "0-65535", "mape-py: no other port reaches this router over MAP-E"))
    return out


def desired(mapping, reserved, wan_iface):
    """What miniupnpd must be told: {"ext_ifname", "ext_ip", "external_iface", "rules"}."""
    return {"ext_ifname": "map-%s" % wan_iface, "external_iface": wan_iface,
            "ext_ip": mapping.ipv4_text, "rules": rules(reserved)}


def conf_lines(want):
    """miniupnpd.conf lines (Debian's miniupnpd reads these; ours go before any other rule)."""
    lines = ["ext_ifname=%s" % want["ext_ifname"], "ext_ip=%s" % want["ext_ip"]]
    lines += ["%s %s %s %s" % r[:4] for r in want["rules"]]
    return lines


def uci_sections(want):
    """The named `perm_rule` sections mape-py owns, in order: [(name, {option: value})]."""
    out = []
    for i, (action, ext, addr, ports, comment) in enumerate(want["rules"]):
        name = DENY if action == "deny" else "%sallow_%d" % (PREFIX, i)
        out.append((name, {"action": action, "ext_ports": ext, "int_addr": addr, "int_ports": ports,
                           "comment": comment}))
    return out


def uci_options(want):
    """Options of `config upnpd 'config'` mape-py sets (the package's init script turns
    external_iface into ext_ifname through netifd, external_ip into ext_ip)."""
    return {"external_iface": want["external_iface"], "external_ip": want["ext_ip"]}


def parse_leases(text, reserved=()):
    """miniupnpd's lease file ("PROTO:eport:iaddr:iport:timestamp:desc" per line) ->
    [{"proto", "port", "addr", "int_port", "expires", "desc", "reserved"}]; "reserved": the
    external port lies in ``reserved`` (else it cannot reach the router over MAP-E)."""
    out = []
    for line in (text or "").splitlines():
        parts = line.strip().split(":", 5)
        if len(parts) < 4:
            continue
        try:
            port, int_port = int(parts[1]), int(parts[3])
            expires = int(parts[4]) if len(parts) > 4 and parts[4] else 0
        except ValueError:
            continue
        out.append({"proto": parts[0].lower(), "port": port, "addr": parts[2], "int_port": int_port,
                    "expires": expires, "desc": parts[5] if len(parts) > 5 else "",
                    "reserved": any(a <= port <= b for a, b in reserved)})
    return out


def plan(sections, want, wan_iface_options=None):
    """uci batch lines bringing /etc/config/upnpd (parsed sections) to ``want``: our named
    sections first (stale ones of ours deleted), our options set. Returns (lines, previous)
    where previous = {option: value or None} of what the options were before (for the undo).
    Nothing else is touched."""
    lines = []
    ours = [(n, o) for n, o in uci_sections(want)]
    names = {n for n, _ in ours}
    existing = {s.name: s for s in sections if s.name}
    for s in sections:
        if s.name and s.name.startswith(PREFIX) and s.name not in names:
            lines.append("delete upnpd.%s" % s.name)
    # ours go right before the first perm_rule of anyone else (miniupnpd: first match wins)
    others = [x for x in sections if not (x.name or "").startswith(PREFIX)]
    base = next((i for i, x in enumerate(others) if x.type == "perm_rule"), len(others))
    layout = [x.name for x in others[:base]] + [n for n, _ in ours] + [x.name for x in others[base:]]
    in_order = [x.name for x in sections if not (x.name or "").startswith(PREFIX) or x.name in names] == layout
    for name, options in ours:
        s = existing.get(name)
        if s is None or s.type != "perm_rule":
            if s is not None:
                lines.append("delete upnpd.%s" % name)
            lines.append("set upnpd.%s=perm_rule" % name)
            s = None
        for key, value in options.items():
            if s is None or s.get(key) != value:
                lines.append("set upnpd.%s.%s=%s" % (name, key, _quote(value)))
    if not in_order:
        # first all to the end, in order (a position past the end appends), then each to its
        # place: one by one from anywhere, an earlier one of ours would shift the count
        lines += ["reorder upnpd.%s=%d" % (n, len(sections) + len(ours)) for n, _ in ours]
        lines += ["reorder upnpd.%s=%d" % (n, base + i) for i, (n, _) in enumerate(ours)]
    config = existing.get("config")
    previous = {}
    if config is not None:
        for key, value in uci_options(want).items():
            now = config.get(key)
            previous[key] = now if isinstance(now, str) else None
            if now != value:
                lines.append("set upnpd.config.%s=%s" % (key, _quote(value)))
    return lines, previous


def undo(sections, previous):
    """uci batch lines removing mape-py's sections and putting back the options it set."""
    lines = ["delete upnpd.%s" % s.name for s in sections if s.name and s.name.startswith(PREFIX)]
    if any(s.name == "config" for s in sections):
        for key, value in sorted((previous or {}).items()):
            lines.append("set upnpd.config.%s=%s" % (key, _quote(value)) if value is not None
                         else "delete upnpd.config.%s" % key)
    return lines


def _quote(value):
    return "'%s'" % str(value).replace("'", "'\\''")


def preset_warnings(sections):
    """The 2025 package (upnpd v2.0) writes the rules of each `internal_network` preset
    BEFORE the perm_rule sections unless acl_custom_first is 1 or acl_preset none: then ours
    are never reached for that network. mape-py does not edit those sections: it says so."""
    out = []
    for i, s in enumerate(x for x in sections if x.type == "internal_network"):
        if str(s.get("acl_custom_first", "0")) == "1" or s.get("acl_preset") == "none":
            continue
        name = s.name or "@internal_network[%d]" % i
        out.append({"code": "upnp-preset-first",
                    "message": "miniupnpd checks the preset of upnpd.%s (network %s) before mape-py's port rules: "
                               "set upnpd.%s.acl_custom_first=1, or it grants ports that never reach this "
                               "router over MAP-E" % (name, s.get("interface") or "?", name)})
    return out
