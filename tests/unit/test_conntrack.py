"""Port usage from conntrack text (issue 11 point 20): the streaming, find-based counter
agrees with a straightforward token-by-token count on generated tables, in both the
/proc/net/nf_conntrack and the `conntrack -L` formats, given as text or as lines."""
import io

from hypothesis import given, settings, strategies as st

from mape.core.conntrack import port_usage

IPV4 = "106.73.34.51"
SETS = [(5184, 5199), (9280, 9295), (13376, 13391)]


def straightforward(text, ipv4, port_sets, top=5):
    """The obvious count: split each line into key=value tokens, a second `src=` starts
    the reply direction, first occurrence of a key in a direction wins."""
    sets = [{"first": a, "last": b, "used": 0, "connections": 0} for a, b in port_sets]
    seen, hosts, total, outside = set(), {}, 0, 0
    for line in text.splitlines():
        dirs, cur = [], {}
        for token in line.split():
            key, eq, value = token.partition("=")
            if not eq:
                continue
            if key == "src" and "src" in cur:
                dirs.append(cur)
                cur = {}
            cur.setdefault(key, value)
        dirs.append(cur)
        if len(dirs) < 2 or dirs[1].get("dst") != ipv4:
            continue
        try:
            port = int(dirs[1].get("dport") or dirs[1].get("id"))
        except (TypeError, ValueError):
            continue
        total += 1
        host = dirs[0].get("src") or "?"
        hosts[host] = hosts.get(host, 0) + 1
        for s in sets:
            if s["first"] <= port <= s["last"]:
                s["connections"] += 1
                s["used"] += port not in seen
                break
        else:
            outside += 1
        seen.add(port)
    out = {"capacity": sum(b - a + 1 for a, b in port_sets), "used": sum(s["used"] for s in sets),
           "connections": total, "sets": sets,
           "top_hosts": [{"host": h, "count": c} for h, c in sorted(hosts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]]}
    if outside:
        out["outside_sets"] = outside
    out["pool"] = out["capacity"]
    out["pool_percent"] = out["used"] * 100 // out["capacity"]
    if out["used"] / out["capacity"] > 0.8:
        out["nearly_exhausted"] = True
    return out


hosts = st.sampled_from(["192.168.1.%d" % i for i in (2, 23, 100)] + ["10.0.0.7"])
remote = st.sampled_from(["1.2.3.4", "8.8.8.8", "198.51.100.1"])
ours = st.sampled_from([IPV4, IPV4, IPV4, "192.168.1.1", "106.73.34.5", "106.73.34.511"])
port = st.one_of(st.integers(5180, 5200), st.integers(9270, 9300), st.integers(1, 65535))


@st.composite
def ct_line(draw):
    proto = draw(st.sampled_from(["tcp", "udp", "icmp"]))
    host, far, dst = draw(hosts), draw(remote), draw(ours)
    p, q = draw(port), draw(port)
    if proto == "icmp":
        orig = "src=%s dst=%s type=8 code=0 id=%d" % (host, far, p)
        reply = "src=%s dst=%s type=0 code=0 id=%d" % (far, dst, q)
        head = "icmp     1 29"
    else:
        orig = "src=%s dst=%s sport=%d dport=443" % (host, far, p)
        reply = "src=%s dst=%s sport=443 dport=%d" % (far, dst, q)
        head = "%s      %d 431999 %s" % (proto, 6 if proto == "tcp" else 17,
                                         draw(st.sampled_from(["ESTABLISHED", "TIME_WAIT", "SYN_SENT"])))
    tail = draw(st.sampled_from(["[ASSURED] mark=0 zone=0 use=2", "mark=0 use=1", "[UNREPLIED] mark=0 use=1", ""]))
    proc = draw(st.booleans())   # /proc/net/nf_conntrack prefixes the family
    sep = draw(st.sampled_from([" ", "  ", "\t"]))
    line = sep.join(x for x in (head, orig, reply, tail) if x)
    return ("ipv4     2 " + line) if proc else line


@settings(max_examples=300, deadline=None)
@given(st.lists(ct_line(), max_size=60), st.lists(st.text(max_size=60), max_size=3))
def test_counts_agree_with_a_straightforward_count(lines, junk):
    text = "\n".join(lines + [j.replace("\n", " ") for j in junk]) + "\n"
    want = straightforward(text, IPV4, SETS)
    assert port_usage(text, IPV4, SETS) == want
    assert port_usage(io.StringIO(text), IPV4, SETS) == want     # an open file: streamed


def test_known_table():
    text = ("ipv4     2 tcp      6 431999 ESTABLISHED src=192.168.8.23 dst=1.2.3.4 sport=51234 dport=443 "
            "src=1.2.3.4 dst=106.73.34.51 sport=443 dport=5190 [ASSURED] mark=0 zone=0 use=2\n"
            "icmp     1 29 src=192.168.8.5 dst=8.8.8.8 type=8 code=0 id=77 src=8.8.8.8 dst=106.73.34.51 "
            "type=0 code=0 id=5185 mark=0 use=1\n"
            "udp      17 29 src=192.168.8.5 dst=8.8.8.8 sport=1 dport=53 src=8.8.8.8 dst=106.73.34.51 "
            "sport=53 dport=40000\n")
    u = port_usage(text.splitlines(True), IPV4, SETS)
    assert (u["used"], u["connections"], u["outside_sets"]) == (2, 3, 1)
    assert [s["used"] for s in u["sets"]] == [2, 0, 0]
    assert u["top_hosts"] == [{"host": "192.168.8.5", "count": 2}, {"host": "192.168.8.23", "count": 1}]


def _table(host_ports):
    """Conntrack lines: one connection per (host, translated port)."""
    return ["tcp      6 431999 ESTABLISHED src=%s dst=1.2.3.4 sport=40000 dport=443 src=1.2.3.4 dst=%s "
            "sport=443 dport=%d [ASSURED] mark=0 use=1" % (h, IPV4, p) for h, p in host_ports]


def test_pool_warning_above_80_percent_of_what_nat_may_use():
    ports = [p for a, b in SETS for p in range(a, b + 1)]           # 48 ports
    u = port_usage(_table(("192.168.1.2", p) for p in ports[:38]), IPV4, SETS)
    assert (u["pool"], u["used"], u["pool_percent"]) == (48, 38, 79) and "nearly_exhausted" not in u
    u = port_usage(_table(("192.168.1.2", p) for p in ports[:39]), IPV4, SETS)
    assert (u["pool_percent"], u["nearly_exhausted"]) == (81, True)
    # 8 ports kept out: a pool of 40, of which 33 in use is above 80 %
    u = port_usage(_table(("192.168.1.2", p) for p in ports[:33]), IPV4, SETS, pool=40)
    assert (u["pool"], u["pool_percent"], u["nearly_exhausted"]) == (40, 82, True)


def test_top_hosts_against_the_cap():
    lines = _table([("192.168.1.2", 5184 + i) for i in range(12)] + [("192.168.1.3", 9280 + i) for i in range(3)])
    u = port_usage(lines, IPV4, SETS, host_cap=12)
    assert u["host_cap"] == 12
    assert u["top_hosts"] == [{"host": "192.168.1.2", "count": 12, "at_cap": True},
                              {"host": "192.168.1.3", "count": 3, "at_cap": False}]
    assert "host_cap" not in port_usage(lines, IPV4, SETS)
