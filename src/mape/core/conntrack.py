"""Port usage from conntrack text (/proc/net/nf_conntrack or `conntrack -L`): which of our
port sets the SNATed connections use, and the busiest LAN hosts (pure).

A 65k-entry table is ~16 MB of text and nearly every line of a MAP-E router's table is
ours, so the lines are streamed (never held together) and each is cut with str.find
instead of being split into tokens, and ports are matched to the sets once per distinct
port, not per line (`make bench conntrack` measures old vs new)."""

import bisect

_MAX_LINES = 200000


def _lines(text_or_lines):
    if text_or_lines is None:
        return ()
    if isinstance(text_or_lines, str):
        return text_or_lines.splitlines()
    return text_or_lines


def _count(lines, ipv4):
    """({host: connections}, {port: connections}) of the lines whose reply direction (after
    the second `src=`) is addressed to ``ipv4``; the port is the reply's first dport, else
    its first id (icmp). Inlined str.find: this runs for every line of a 65k table."""
    hosts = {}
    ports = {}
    want = ipv4 + " "
    skip = len(want) + 5
    for n, line in enumerate(_lines(lines)):
        if n >= _MAX_LINES:
            break
        if ipv4 not in line:       # cheap prefilter: foreign lines are never cut
            continue
        line = " " + line.rstrip("\r\n").replace("\t", " ") + " "   # every token between spaces
        first = line.find(" src=")
        second = line.find(" src=", first + 5)
        if first < 0 or second < 0:
            continue
        end = line.find(" src=", second + 5)
        if end < 0:
            end = len(line)
        dst = line.find(" dst=", second, end)
        if dst < 0 or not line.startswith(want, dst + 5):
            continue
        at = line.find(" dport=", second, end)
        if at >= 0:
            at += 7
        if at < 0 or line[at] == " ":
            at = line.find(" id=", second, end)
            if at < 0:
                continue
            at += 4
        try:
            port = int(line[at:line.find(" ", at)])
        except ValueError:
            continue
        host = line[first + 5:line.find(" ", first + 5)] or "?"
        hosts[host] = hosts.get(host, 0) + 1
        ports[port] = ports.get(port, 0) + 1
    return hosts, ports


POOL_WARN_PERCENT = 80     # warn when more of the NAT pool is in use


def port_usage(lines, ipv4, port_sets, top=5, pool=None, host_cap=None):
    """{"capacity", "used", "connections", "sets":[{first,last,used}], "top_hosts":[{host,count}],
    "pool", "pool_percent", ["nearly_exhausted"], ["host_cap"]}.

    ``lines``: the conntrack text, or any iterable of its lines (an open file: streamed).
    A connection is ours when its reply direction is addressed to ``ipv4``; its port is
    the reply's dport (tcp/udp) or id (icmp). ``used`` counts distinct ports in use.
    ``pool``: the ports NAT may use (the sets minus the ports kept out; default all);
    ``nearly_exhausted`` when more than POOL_WARN_PERCENT of it is in use. ``host_cap``:
    the per-host connection cap; each top host then has ``at_cap`` (its count reached it)."""
    sets = [{"first": a, "last": b, "used": 0, "connections": 0} for a, b in port_sets]
    capacity = sum(b - a + 1 for a, b in port_sets)
    hosts, ports = _count(lines, ipv4)
    order = sorted(range(len(sets)), key=lambda i: sets[i]["first"])
    firsts = [sets[i]["first"] for i in order]
    outside = 0
    for port, connections in ports.items():
        i = bisect.bisect_right(firsts, port) - 1
        s = sets[order[i]] if i >= 0 else None
        if s is not None and port <= s["last"]:
            s["connections"] += connections
            s["used"] += 1
        else:
            outside += connections
    busiest = sorted(hosts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    out = {
        "capacity": capacity,
        "used": sum(s["used"] for s in sets),
        "connections": sum(ports.values()),
        "sets": sets,
        "top_hosts": [{"host": h, "count": c} for h, c in busiest],
    }
    if outside:
        out["outside_sets"] = outside
    pool = capacity if pool is None else pool
    out["pool"] = pool
    out["pool_percent"] = out["used"] * 100 // pool if pool else 0
    if out["used"] * 100 > POOL_WARN_PERCENT * pool:
        out["nearly_exhausted"] = True
    if host_cap:
        out["host_cap"] = host_cap
        for h in out["top_hosts"]:
            h["at_cap"] = h["count"] >= host_cap
    return out
