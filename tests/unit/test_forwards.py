"""core.forwards: firewall redirects against the port sets (issue 14 point 1)."""
from hypothesis import given, settings, strategies as st

from mape.core import forwards as fw
from mape.core.nat import NatSpec
from mape.core.portset import port_allowed, port_sets
from mape.core.ucifile import parse

# v6plus PSID 68 (240b:11:2233:4400::/56): 5184-5199, 9280-9295, ... 62528-62543
SETS = port_sets(68, 4, 8)

FIREWALL = """
config zone 'wan'
\toption name 'wan'
config redirect 'game'
\toption name 'Game'
\toption src 'wan'
\toption src_dport '5190'
\toption dest 'lan'
\toption dest_ip '192.168.1.20'
\toption dest_port '3074'
config redirect
\toption name 'nas'
\toption src 'wan'
\toption src_dport '8080'
\toption proto 'tcp'
\toption dest_ip '192.168.1.30'
config redirect
\toption name 'range'
\toption src 'wan'
\toption src_dport '9290-9300'
\toption proto 'udp'
config redirect
\toption name 'lan side'
\toption src 'lan'
\toption src_dport '5191'
config redirect
\toption name 'snat'
\toption target 'SNAT'
\toption src 'wan'
\toption src_dport '5192'
config redirect
\toption name 'off'
\toption src 'wan'
\toption src_dport '5193'
\toption enabled '0'
config redirect
\toption name 'icmp'
\toption src 'wan'
\toption proto 'icmp'
"""


def entries():
    found = fw.redirects(parse(FIREWALL), "wan")
    return found, {e["name"]: e for e in fw.assess(found, SETS)}


def test_reads_dnat_redirects_from_the_zone_only():
    found, _ = entries()
    assert [f["name"] for f in found] == ["Game", "nas", "range", "off", "icmp"]
    assert [f["section"] for f in found] == ["game", "@redirect[1]", "@redirect[2]", "@redirect[5]",
                                             "@redirect[6]"]
    assert found[0]["proto"] == ["tcp", "udp"] and found[0]["ports"] == (5190, 5190)
    assert found[2]["ports"] == (9290, 9300) and found[3]["enabled"] is False


def test_allowed_partly_no_and_the_nearest_free_port():
    _, by = entries()
    assert by["Game"]["allowed"] == "yes" and "suggestion" not in by["Game"]
    assert by["Game"]["kept_out"] == [[5190, 5190]]
    assert by["nas"]["allowed"] == "no" and "kept_out" not in by["nas"]
    assert by["nas"]["suggestion"] == [9280, 9280]   # 8080 is nearer 9280 than 5199
    assert by["range"]["allowed"] == "partly" and by["range"]["kept_out"] == [[9290, 9295]]
    # 11 ports in a row inside one 16-port set, starting as near 9290 as that allows
    assert by["range"]["suggestion"] == [9285, 9295]
    assert by["icmp"]["allowed"] == "unknown"
    assert by["off"]["allowed"] == "yes" and "kept_out" not in by["off"]


def test_suggestion_avoids_other_forwards_and_kept_out():
    found = [{"section": s, "name": s, "proto": ["tcp"], "src_dport": str(p), "ports": (p, p), "dest_ip": "",
              "dest_port": "", "enabled": True} for s, p in (("a", 9280), ("b", 8080))]
    out = fw.assess(found, SETS, user_kept_out=[(9281, 9282)])
    assert out[1]["suggestion"] == [9283, 9283]


def test_kept_out_merges_into_the_nat_pool_and_the_port_map():
    found, _ = entries()
    kept = fw.kept_out(found, SETS)
    assert kept == [(5190, 5190), (9290, 9295)]
    spec = NatSpec.from_mapping(type("M", (), {"ipv4_text": "106.73.34.51", "port_sets": SETS, "psid": 68,
                                               "psid_offset": 4, "psid_len": 8})(), device="map-wan",
                                options={"kept_out": kept})
    assert not spec.allowed(5190) and spec.allowed(5189) and not spec.allowed(9292)
    assert spec.port_count == 240 - 7
    use = fw.port_map(SETS, fw.assess(found, SETS), [(5184, 5185)])
    assert use[0] == {"ports": [5184, 5199], "used": [
        {"ports": [5184, 5185], "by": "kept-out", "name": "nat_keep_out"},
        {"ports": [5190, 5190], "by": "forward", "name": "Game"}]}
    assert use[1]["used"] == [{"ports": [9290, 9295], "by": "forward", "name": "range"}]


def test_ports_text():
    assert fw.parse_ports("80") == (80, 80)
    assert fw.parse_ports("8000:8010") == (8000, 8010)
    for bad in ("", "0", "70000", "http", "80 81", "90-80", None, ["80"]):
        assert fw.parse_ports(bad) is None, bad


@settings(max_examples=200, deadline=None)
@given(psid=st.integers(0, 255), port=st.integers(1, 65535), length=st.integers(1, 20),
       taken=st.lists(st.integers(1024, 65535), max_size=30))
def test_nearest_free_is_allowed_free_and_nearest(psid, port, length, taken):
    sets = port_sets(psid, 4, 8)
    last = min(65535, port + length - 1)
    used = [(t, t) for t in taken]
    got = fw.nearest_free((port, last), sets, used)
    n = last - port + 1
    free = [p for a, b in sets for p in range(a, b + 1) if p not in set(taken)]
    assert all(port_allowed(p, psid, 4, 8) for p in free)
    free_set = set(free)
    starts = [p for p in free if all(q in free_set for q in range(p, p + n))]
    if not starts:
        assert got is None
        return
    a, b = got
    assert b - a + 1 == n and all(q in free_set for q in range(a, b + 1))
    assert abs(a - port) == min(abs(s - port) for s in starts)


def test_a_forward_of_every_port_never_leaves_outgoing_nat_without_a_port():
    """A DMZ-style redirect of 1-65535 (or forwards plus nat_keep_out holding every allowed
    port): nothing is kept out, and the status can say why."""
    dmz = fw.redirects(parse("config redirect\n\toption src 'wan'\n\toption src_dport '1-65535'\n"), "wan")
    assert fw.kept_out(dmz, SETS) == [] and fw.every_port_forwarded(dmz, SETS)
    game = fw.redirects(parse(FIREWALL), "wan")
    assert fw.kept_out(game, SETS, [(5184, 65535)]) == []
    assert fw.kept_out(game, SETS, [(5184, 5189)]) == [(5190, 5190), (9290, 9295)]
    assert not fw.every_port_forwarded(game, SETS) and not fw.every_port_forwarded([], SETS)
