"""core.addr agrees with the stdlib's ipaddress on every address, valid or not."""
import ipaddress

import pytest
from hypothesis import given, settings, strategies as st

from mape.core.addr import format_v4, format_v6, parse_v4, parse_v6


@settings(max_examples=2000, deadline=None)
@given(st.integers(0, (1 << 128) - 1), st.integers(0, 7))
def test_v6_format_and_parse_roundtrip_like_ipaddress(value, zero_runs):
    # bias toward zero runs, where compression rules matter
    groups = [(value >> (112 - 16 * i)) & 0xFFFF for i in range(8)]
    for i in range(zero_runs):
        groups[(value >> i) % 8] = 0
    v = 0
    for g in groups:
        v = v << 16 | g
    text = format_v6(v)
    assert text == str(ipaddress.IPv6Address(v))
    assert parse_v6(text) == v
    assert parse_v6(ipaddress.IPv6Address(v).exploded) == v
    assert parse_v6(text.upper()) == v


@settings(max_examples=3000, deadline=None)
@given(st.text(alphabet="0123456789abcdefABCDEF:.%g/ ", min_size=0, max_size=46))
def test_v6_accepts_exactly_what_ipaddress_accepts(text):
    """Except scope ids ('fe80::1%eth0'): a prefix from the line never has one; we refuse them."""
    if "%" in text:
        with pytest.raises(ValueError):
            parse_v6(text)
        return
    try:
        expected = int(ipaddress.IPv6Address(text))
    except ValueError:
        expected = None
    try:
        ours = parse_v6(text)
    except ValueError:
        ours = None
    assert ours == expected


@pytest.mark.parametrize("text", ["::", "::1", "1::", "::ffff:1.2.3.4", "1:2:3:4:5:6:1.2.3.4", "64:ff9b::192.0.2.33",
                                  "2404:7a82:4d02:4100:85:d10d:200:4100", "1:0:0:2::3", "1:0:1:1:1:1:1:1"])
def test_v6_examples(text):
    assert parse_v6(text) == int(ipaddress.IPv6Address(text))
    assert format_v6(parse_v6(text)) == str(ipaddress.IPv6Address(text))


@settings(max_examples=2000, deadline=None)
@given(st.one_of(st.integers(0, (1 << 32) - 1).map(lambda v: str(ipaddress.IPv4Address(v))),
                 st.text(alphabet="0123456789.x ", max_size=16)))
def test_v4_like_ipaddress(text):
    try:
        expected = int(ipaddress.IPv4Address(text))
    except ValueError:
        expected = None
    try:
        ours = parse_v4(text)
    except ValueError:
        ours = None
    assert ours == expected
    if ours is not None:
        assert format_v4(ours) == text
