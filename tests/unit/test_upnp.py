"""core.upnp: the reserve, the rules miniupnpd is given (uci upnpd and miniupnpd.conf from
the same data), the uci batch against a config, the undo, the lease file. The batches are
also run through the real libuci in tests/openwrt/test_upnp_bed.py."""
from types import SimpleNamespace

from hypothesis import given, strategies as st

from mape.core import upnp
from mape.core.nat import subtract_ranges
from mape.core.portset import port_sets
from mape.core.ucifile import parse

SETS = port_sets(0x34, 4, 8)                 # 15 sets of 16 ports
MAPPING = SimpleNamespace(ipv4_text="153.240.0.10")
DEFAULT = """config upnpd 'config'
\toption enabled '1'
\toption internal_iface 'lan'
\toption external_ip '1.2.3.4'

config perm_rule
\toption action 'allow'
\toption ext_ports '1024-65535'
\toption int_addr '0.0.0.0/0'
\toption int_ports '1024-65535'
"""


def test_the_reserve_is_the_top_ports_of_every_set_without_forwarded_ports():
    tops = [(b, b) for _, b in SETS]
    assert upnp.reserve(SETS, 1) == tops
    assert upnp.reserve(SETS, 2) == [(b - 1, b) for _, b in SETS]
    assert upnp.reserve(SETS, 0) == []
    a, b = SETS[-1]
    # a forwarded top port is skipped: the next one down is reserved instead
    assert upnp.reserve(SETS, 1, [(b, b)]) == tops[:-1] + [(b - 1, b - 1)]
    assert upnp.reserve(SETS, 99) == [(b - 3, b) for _, b in SETS]   # capped: 12 of 16 stay with NAT
    # one big set (no PSID bits): a block of 1024 ports at a time
    big = upnp.reserve([(1024, 65535)], 1)
    assert big[0] == (2047, 2047) and big[-1] == (65535, 65535) and len(big) == 63


def _walk(reserved, port):
    """How many ports miniupnpd's NAT-PMP / PCP walk steps over from ``port`` (eport++,
    a 16-bit counter that skips 0) before it reaches a reserved one."""
    steps = 0
    while not any(a <= port <= b for a, b in reserved):
        port = port + 1 if port < 65535 else 1
        steps += 1
    return steps


def test_every_port_is_at_most_a_set_stride_below_the_reserve():
    # v6plus (offset 4, PSID 8 bits): stride 4096; OCN (offset 6, PSID 6 bits): stride 1024
    for offset, length, stride in ((4, 8, 4096), (6, 6, 1024)):
        sets = port_sets(0x34 % (1 << length), offset, length)
        reserved = upnp.reserve(sets, 1)
        for a, b in sets:
            assert _walk(reserved, a) < stride
        for port in (3074, 3478, 9308, 25565):   # a game console's usual asks
            assert _walk(reserved, port) < stride
        # above the last reserved port the walk wraps (past 65535 to 1) to the first set
        assert _walk(reserved, reserved[-1][1] + 1) <= 2 * stride


@given(st.integers(0, 255), st.integers(0, 20))
def test_the_reserve_lies_in_the_sets_and_keeps_sets_equal(psid, count):
    sets = port_sets(psid, 4, 8)
    got = upnp.reserve(sets, count)
    assert subtract_ranges(got, sets) == []
    left = [len(subtract_ranges([s], got)) and sum(b - a + 1 for a, b in subtract_ranges([s], got)) for s in sets]
    assert len(set(left)) == 1 and left[0] >= 12   # equally sized (round-robin SNAT), most kept


def test_upnp_ports_above_a_quarter_of_a_set_is_cut_down_and_said():
    v6plus, wide = port_sets(0x34, 4, 8), port_sets(1, 4, 2)   # 16-port sets; 1024-port sets
    assert upnp.per_set(v6plus, 10) == 4 and upnp.capped_warnings(v6plus, 4) == []
    assert sum(b - a + 1 for a, b in upnp.reserve(v6plus, 10)) == 4 * len(v6plus)
    (w,) = upnp.capped_warnings(v6plus, 10)
    assert w["code"] == "upnp-ports-capped" and "4 port(s) per set" in w["message"]
    assert upnp.per_set(wide, 64) == 64 and upnp.capped_warnings(wide, 64) == []


def test_conf_lines_and_uci_sections_say_the_same():
    want = upnp.desired(MAPPING, [SETS[-1]], "wan")
    a, b = SETS[-1]
    assert upnp.conf_lines(want) == ["ext_ifname=map-wan", "ext_ip=153.240.0.10",
                                     "allow %d-%d 0.0.0.0/0 1-65535" % (a, b), "deny 0-65535 0.0.0.0/0 0-65535"]
    sections = upnp.uci_sections(want)
    assert [n for n, _ in sections] == ["mape_py_allow_0", "mape_py_deny"]
    assert ["%(action)s %(ext_ports)s %(int_addr)s %(int_ports)s" % o for _, o in sections] == upnp.conf_lines(want)[2:]
    assert upnp.uci_options(want) == {"external_iface": "wan", "external_ip": "153.240.0.10"}


def test_plan_puts_ours_before_the_users_rules_and_records_the_previous_options():
    want = upnp.desired(MAPPING, [SETS[-1]], "wan")
    lines, previous = upnp.plan(parse(DEFAULT), want)
    assert previous == {"external_iface": None, "external_ip": "1.2.3.4"}
    assert "set upnpd.mape_py_allow_0=perm_rule" in lines and "set upnpd.mape_py_deny=perm_rule" in lines
    assert lines[-2:] == ["set upnpd.config.external_iface='wan'", "set upnpd.config.external_ip='153.240.0.10'"]
    assert [l for l in lines if l.startswith("reorder")][-2:] == ["reorder upnpd.mape_py_allow_0=1",
                                                                   "reorder upnpd.mape_py_deny=2"]
    assert not [l for l in lines if "@perm_rule" in l or "internal_iface" in l]   # never the user's


def test_plan_is_empty_once_applied_and_follows_a_new_mapping():
    want = upnp.desired(MAPPING, [SETS[-1]], "wan")
    a, b = SETS[-1]
    applied = DEFAULT.replace("'1.2.3.4'", "'153.240.0.10'\n\toption external_iface 'wan'").replace(
        "config perm_rule\n", """config perm_rule 'mape_py_allow_0'
\toption action 'allow'
\toption ext_ports '%d-%d'
\toption int_addr '0.0.0.0/0'
\toption int_ports '1-65535'
\toption comment 'mape-py: reserved MAP-E ports'

config perm_rule 'mape_py_deny'
\toption action 'deny'
\toption ext_ports '0-65535'
\toption int_addr '0.0.0.0/0'
\toption int_ports '0-65535'
\toption comment 'mape-py: no other port reaches this router over MAP-E'

config perm_rule
""" % (a, b), 1)
    assert upnp.plan(parse(applied), want)[0] == []
    # a new IPv4 and PSID: the external IP and the allowed run follow, the order stays
    other = upnp.desired(SimpleNamespace(ipv4_text="153.240.0.99"), [port_sets(0x12, 4, 8)[-1]], "wan")
    lines, _ = upnp.plan(parse(applied), other)
    c, d = port_sets(0x12, 4, 8)[-1]
    assert lines == ["set upnpd.mape_py_allow_0.ext_ports='%d-%d'" % (c, d),
                     "set upnpd.config.external_ip='153.240.0.99'"]
    # fewer runs than before: our stale section goes
    lines, _ = upnp.plan(parse(applied.replace("config perm_rule\n", "config perm_rule 'mape_py_allow_1'\n"
                                               "\toption action 'allow'\n\nconfig perm_rule\n", 1)), want)
    assert "delete upnpd.mape_py_allow_1" in lines


def test_undo_removes_ours_and_puts_back_the_options():
    applied = parse(DEFAULT + "\nconfig perm_rule 'mape_py_deny'\n\toption action 'deny'\n")
    assert upnp.undo(applied, {"external_iface": None, "external_ip": "1.2.3.4"}) == [
        "delete upnpd.mape_py_deny", "delete upnpd.config.external_iface", "set upnpd.config.external_ip='1.2.3.4'"]
    assert upnp.undo(parse(DEFAULT), None) == []


def test_leases_say_whether_their_port_is_reserved():
    a, b = SETS[-1]
    text = "TCP:%d:192.168.1.20:8080:1796672565:game\nUDP:4929:192.168.1.21:9:0:NAT-PMP 4929 udp\ngarbage\n" % a
    got = upnp.parse_leases(text, [(a, b)])
    assert got == [{"proto": "tcp", "port": a, "addr": "192.168.1.20", "int_port": 8080, "expires": 1796672565,
                    "desc": "game", "reserved": True},
                   {"proto": "udp", "port": 4929, "addr": "192.168.1.21", "int_port": 9, "expires": 0,
                    "desc": "NAT-PMP 4929 udp", "reserved": False}]


def test_a_v2_preset_checked_before_our_rules_is_reported_not_edited():
    v2 = parse("config upnpd 'config'\n\toption enabled '1'\n\nconfig internal_network\n\toption interface 'lan'\n\toption acl_preset 'accept-high-ports'\n\n"
               "config internal_network 'guest'\n\toption interface 'guest'\n\toption acl_custom_first '1'\n")
    warnings = upnp.preset_warnings(v2)
    assert [w["code"] for w in warnings] == ["upnp-preset-first"]
    assert "upnpd.@internal_network[0].acl_custom_first=1" in warnings[0]["message"]
