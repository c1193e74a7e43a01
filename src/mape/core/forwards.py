"""Port forwards against the port sets. Pure.

A forward is a firewall `redirect` section (target DNAT, the default) from the MAP-E zone,
however it was made (LuCI, GL.iNet's UI, uci). Its external port reaches the router only
when it lies in the PSID's port sets: the BR drops every other port. For each forward:
whether its external port(s) are allowed, the nearest free allowed port(s) when not, and the
allowed ones are kept out of the outgoing SNAT pool (an outgoing connection must never take
the port a forward needs).
"""

from mape.core.errors import InputError
from mape.core.nat import normalize_ranges as _merge, subtract_ranges as _subtract

DEFAULT_PROTOS = ("tcp", "udp")   # fw3/fw4: a redirect without `proto` is "tcp udp"


def parse_ports(text):
    """"80", "8000-8010" or "8000:8010" -> (first, last); None when it is not one port (range)."""
    if not isinstance(text, str):
        return None
    try:
        ranges = _merge([text])
    except InputError:
        return None
    return ranges[0] if ranges else None


def _protos(raw):
    words = []
    for item in raw if isinstance(raw, list) else [raw or ""]:
        words.extend(str(item).lower().split())
    out = []
    for w in words or list(DEFAULT_PROTOS):
        for p in (("tcp", "udp") if w in ("tcpudp", "all", "any") else (w,)):
            if p not in out:
                out.append(p)
    return out


def _off(section):
    return str(section.get("enabled", "1")).strip().lower() in ("0", "no", "off", "false", "disabled")


def redirects(sections, zone):
    """The DNAT redirects from ``zone`` in a parsed firewall config, in file order:
    [{"section", "name", "proto": [...], "ports": (first, last) or None, "src_dport",
    "dest_ip", "dest_port", "enabled"}]. "section" is what `uci set firewall.X.src_dport`
    takes (the section name, or @redirect[N] for an anonymous one)."""
    out = []
    index = -1
    for s in sections:
        if s.type != "redirect":
            continue
        index += 1
        if str(s.get("target", "DNAT")).upper() != "DNAT" or s.get("src") != zone:
            continue
        raw = s.get("src_dport")
        out.append({"section": s.name or "@redirect[%d]" % index,
                    "name": s.get("name") if isinstance(s.get("name"), str) else "",
                    "proto": _protos(s.get("proto")),
                    "src_dport": raw if isinstance(raw, str) else "",
                    "ports": parse_ports(raw),
                    "dest_ip": s.get("dest_ip") if isinstance(s.get("dest_ip"), str) else "",
                    "dest_port": s.get("dest_port") if isinstance(s.get("dest_port"), str) else "",
                    "enabled": not _off(s)})
    return out


def _port_protos(protos):
    return [p for p in protos if p in ("tcp", "udp", "sctp", "udplite", "dccp")]


def _intersect(rng, sets):
    a, b = rng
    return [(max(a, x), min(b, y)) for x, y in sets if max(a, x) <= min(b, y)]


def kept_out(forwards, port_sets, user_kept_out=()):
    """The allowed ports the active forwards use: to keep out of the SNAT pool. None at all
    when that would leave outgoing NAT no port (a forward of every port, DMZ-style): the
    status then warns (every_port_forwarded)."""
    ranges = []
    for f in forwards:
        if f["enabled"] and f["ports"] and _port_protos(f["proto"]):
            ranges.extend(_intersect(f["ports"], port_sets))
    ranges = _merge(ranges)
    if ranges and not _subtract(_subtract(port_sets, ranges), _merge(user_kept_out)):
        return []
    return ranges


def every_port_forwarded(forwards, port_sets, user_kept_out=()):
    """True when the forwards (with nat_keep_out) hold every allowed port."""
    return bool(forwards) and not kept_out(forwards, port_sets, user_kept_out) and any(
        f["enabled"] and f["ports"] and _intersect(f["ports"], port_sets) for f in forwards)


def nearest_free(ports, port_sets, used):
    """The (first, last) run of allowed ports, as long as ``ports``, none of them in ``used``,
    whose first port is nearest ``ports[0]`` (the lower one on a tie); None when none fits."""
    length = ports[1] - ports[0] + 1
    best = None
    for a, b in _subtract(port_sets, _merge(used)):
        if b - a + 1 < length:
            continue
        start = min(max(ports[0], a), b - length + 1)
        key = (abs(start - ports[0]), start)
        if best is None or key < best:
            best = key
    return None if best is None else (best[1], best[1] + length - 1)


def assess(forwards, port_sets, user_kept_out=()):
    """Status entries for ``forwards`` (redirects() output) against the port sets:
    "allowed": "yes" | "partly" | "no" | "unknown" (no usable external port), the allowed
    ports kept out of SNAT, and for a forward not wholly allowed the nearest free allowed
    port(s) ("suggestion"), free meaning used by no other forward and not kept out by the
    user's nat_keep_out."""
    out = []
    for i, f in enumerate(forwards):
        entry = {"section": f["section"], "name": f["name"], "proto": f["proto"], "src_dport": f["src_dport"],
                 "dest_ip": f["dest_ip"], "dest_port": f["dest_port"], "enabled": f["enabled"]}
        if not f["ports"] or not _port_protos(f["proto"]):
            entry["allowed"] = "unknown"
            out.append(entry)
            continue
        first, last = f["ports"]
        inside = _intersect(f["ports"], port_sets)
        count = sum(b - a + 1 for a, b in inside)
        entry["ports"] = [first, last]
        entry["allowed"] = "yes" if count == last - first + 1 else ("partly" if count else "no")
        if f["enabled"] and inside:
            entry["kept_out"] = [list(r) for r in inside]
        if entry["allowed"] != "yes":
            others = [g["ports"] for j, g in enumerate(forwards) if j != i and g["ports"] and g["enabled"]]
            found = nearest_free(f["ports"], port_sets, list(others) + [tuple(r) for r in user_kept_out])
            if found is not None:
                entry["suggestion"] = list(found)
        out.append(entry)
    return out


def port_map(port_sets, entries, user_kept_out=(), upnp_reserved=()):
    """The allowed ports per set with what uses them, for the MAP-E page:
    [{"ports": [first, last], "used": [{"ports": [a, b], "by": "forward"|"kept-out"|"upnp", "name"}]}]."""
    out = []
    for a, b in port_sets:
        used = []
        for e in entries:
            for x, y in e.get("kept_out") or []:
                for p, q in _intersect((x, y), [(a, b)]):
                    used.append({"ports": [p, q], "by": "forward", "name": e["name"] or e["section"]})
        for x, y in user_kept_out:
            for p, q in _intersect((int(x), int(y)), [(a, b)]):
                used.append({"ports": [p, q], "by": "kept-out", "name": "nat_keep_out"})
        for x, y in upnp_reserved:
            for p, q in _intersect((int(x), int(y)), [(a, b)]):
                used.append({"ports": [p, q], "by": "upnp", "name": "miniupnpd"})
        used.sort(key=lambda u: u["ports"])
        out.append({"ports": [a, b], "used": used})
    return out


def text_ports(ports):
    a, b = ports
    return str(a) if a == b else "%d-%d" % (a, b)
