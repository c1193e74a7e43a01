"""Invariants of the arithmetic, over random rules and prefixes (hypothesis)."""
import ipaddress

from hypothesis import assume, given, settings, strategies as st

from mape.core.mapping import LineInput, compute
from mape.core.portset import port_allowed, port_count, port_sets, psid_of_port
from mape.core.rules import Rule, load_table

TABLE = load_table()


@st.composite
def rules(draw):
    offset = draw(st.integers(0, 8))
    psidlen = draw(st.integers(0, 16 - offset))
    ip4len = draw(st.integers(0, 32))
    if psidlen:
        suffix = 32 - ip4len
    else:
        suffix = draw(st.integers(0, 32 - ip4len))
    ealen = suffix + psidlen
    assume(ealen <= 48)
    ip6len = draw(st.integers(0, 64 - ealen))
    ip6 = draw(st.integers(0, (1 << ip6len) - 1)) << (128 - ip6len) if ip6len else 0
    ip4 = (draw(st.integers(0, (1 << ip4len) - 1)) << (32 - ip4len)) if ip4len else 0
    legacy = draw(st.booleans())
    return Rule("test", "user", ip6, ip6len, ip4, ip4len, ealen, offset, psidlen, "2001:db8::1", legacy)


@st.composite
def rule_and_prefix(draw):
    rule = draw(rules())
    eu = rule.ip6len + rule.ealen
    length = draw(st.integers(eu, 64))
    host = draw(st.integers(0, (1 << (128 - rule.ip6len)) - 1))
    addr = rule.ip6prefix | host
    addr &= ~((1 << (128 - length)) - 1) & ((1 << 128) - 1)
    return rule, LineInput("t", addr, length, "prefix")


@settings(max_examples=300, deadline=None)
@given(rule_and_prefix())
def test_port_sets_disjoint_inside_psid_and_counted(rp):
    rule, line = rp
    m = compute(rule, line)
    sets = m.port_sets
    flat = [p for a, b in sets for p in range(a, b + 1)] if rule.psidlen >= 4 or rule.offset >= 4 else None
    # disjoint and ascending
    for (a1, b1), (a2, b2) in zip(sets, sets[1:]):
        assert a1 <= b1 < a2 <= b2
    # count formula: (2^a - 1) * 2^(16-a-k) for a > 0
    if rule.offset > 0:
        assert sum(b - a + 1 for a, b in sets) == ((1 << rule.offset) - 1) * (1 << (16 - rule.offset - rule.psidlen))
    # every port of every set maps back to the PSID (sampled ends of each set)
    for a, b in sets:
        for p in (a, b):
            assert psid_of_port(p, rule.offset, rule.psidlen) == m.psid
            assert port_allowed(p, m.psid, rule.offset, rule.psidlen)
    if flat is not None:
        assert len(set(flat)) == len(flat)


@settings(max_examples=300, deadline=None)
@given(rule_and_prefix())
def test_ipv4_and_psid_map_back_to_the_same_ce(rp):
    """Reverse direction, as a BR does it: from IPv4 + PSID rebuild the EA bits and the CE."""
    rule, line = rp
    m = compute(rule, line)
    suffix_len = rule.ealen - rule.psidlen
    ipv4_suffix = (m.ipv4 >> (32 - rule.ip4len - suffix_len)) & ((1 << suffix_len) - 1) if suffix_len else 0
    ea = (ipv4_suffix << rule.psidlen) | m.psid
    eu = rule.ip6prefix | (ea << (128 - rule.ip6len - rule.ealen)) if rule.ealen else rule.ip6prefix
    assert eu == m.end_user_prefix
    if rule.legacy:
        assert m.ce == eu | (m.ipv4 << 24) | (m.psid << 8)
    else:
        assert m.ce_rfc == eu | (m.ipv4 << 16) | m.psid
    # the CE lies inside the customer's end-user prefix
    eu_len = rule.ip6len + rule.ealen
    assert m.ce >> (128 - eu_len) == line.addr >> (128 - eu_len) if eu_len else True
    # the IPv4 address lies inside the rule's IPv4 prefix
    assert m.ipv4 >> (32 - rule.ip4len) == rule.ipv4 >> (32 - rule.ip4len) if rule.ip4len else True


def test_shipped_table_is_never_ambiguous():
    """No two shipped rules overlap, so longest-prefix lookup has one answer everywhere."""
    nets = sorted((r.ip6prefix, r.ip6len) for r in TABLE.rules)
    for (p1, l1), (p2, l2) in zip(nets, nets[1:]):
        n1 = ipaddress.IPv6Network((p1, l1))
        n2 = ipaddress.IPv6Network((p2, l2))
        assert not n1.overlaps(n2), (n1, n2)


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(TABLE.rules), st.integers(0, (1 << 97) - 1))
def test_lookup_equals_brute_force_and_ce_inside_customer_56(rule, host):
    addr = rule.ip6prefix | (host & ((1 << (128 - rule.ip6len)) - 1))
    addr &= ~((1 << 64) - 1)
    matches = [r for r in TABLE.rules if r.covers(addr)]
    assert matches == [rule]
    assert TABLE.lookup(addr) is rule
    m = compute(rule, LineInput("t", addr, 64, "prefix"))
    assert m.ce >> 72 == addr >> 72  # inside the customer /56
    assert len(m.port_sets) == (1 << rule.offset) - 1
    assert sum(b - a + 1 for a, b in m.port_sets) == (240 if rule.offset == 4 else 1008)


def test_port_count_examples():
    assert port_count(4, 8) == 240
    assert port_count(6, 6) == 1008
    assert port_sets(0, 0, 0) == [(1, 65535)]
