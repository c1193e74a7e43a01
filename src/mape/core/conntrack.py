"""Port usage from conntrack text (/proc/net/nf_conntrack or `conntrack -L`): which of our
port sets the SNATed connections use, and the busiest LAN hosts (pure)."""

_MAX_LINES = 200000


def _tuples(line):
    """[(src, dst, sport, dport)] for the original and reply directions, or None."""
    tuples = []
    cur = {}
    for token in line.split():
        if "=" not in token:
            continue
        key, _, value = token.partition("=")
        if key == "src" and "src" in cur:
            tuples.append(cur)
            cur = {}
        if key in ("src", "dst", "sport", "dport", "id") and key not in cur:
            cur[key] = value
    if cur:
        tuples.append(cur)
    return tuples if len(tuples) >= 2 else None


def port_usage(text, ipv4, port_sets, top=5):
    """{"capacity", "used", "connections", "sets":[{first,last,used}], "top_hosts":[{host,count}]}.

    A connection is ours when its reply direction is addressed to ``ipv4``; its port is
    the reply's dport (tcp/udp) or id (icmp). ``used`` counts distinct ports in use."""
    sets = [{"first": a, "last": b, "used": 0, "connections": 0} for a, b in port_sets]
    capacity = sum(b - a + 1 for a, b in port_sets)
    hosts = {}
    ports = set()
    outside = 0
    total = 0
    for n, line in enumerate((text or "").splitlines()):
        if n >= _MAX_LINES:
            break
        if ipv4 not in line:
            continue
        t = _tuples(line)
        if not t or t[1].get("dst") != ipv4:
            continue
        reply = t[1]
        raw = reply.get("dport") or reply.get("id")
        try:
            port = int(raw)
        except (TypeError, ValueError):
            continue
        total += 1
        host = t[0].get("src", "?")
        hosts[host] = hosts.get(host, 0) + 1
        for s in sets:
            if s["first"] <= port <= s["last"]:
                s["connections"] += 1
                if port not in ports:
                    s["used"] += 1
                break
        else:
            outside += 1
        ports.add(port)
    busiest = sorted(hosts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    out = {
        "capacity": capacity,
        "used": sum(s["used"] for s in sets),
        "connections": total,
        "sets": sets,
        "top_hosts": [{"host": h, "count": c} for h, c in busiest],
    }
    if outside:
        out["outside_sets"] = outside
    return out
