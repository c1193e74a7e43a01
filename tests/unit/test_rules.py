import ipaddress
import json
import pathlib
import subprocess
import sys

import pytest

from mape.core.errors import InputError, RuleError
from mape.core.mapping import calc
from mape.core.rules import load_table, parse_user_rule
from mape.core.ucifile import parse
from mape.settings import user_rules

TOP = pathlib.Path(__file__).resolve().parents[2]
FACTS = json.loads((TOP / "data" / "jp-map-rules.json").read_text())


def test_shipped_table_is_generated_from_the_facts():
    r = subprocess.run([sys.executable, str(TOP / "tools" / "gen_rules.py"), "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_table_counts_per_provider():
    table = load_table()
    counts = {}
    for r in table.rules:
        counts[(r.provider, r.confidence)] = counts.get((r.provider, r.confidence), 0) + 1
    assert counts == {("v6plus", "high"): 4, ("biglobe", "high"): 258, ("ocn_vc", "high"): 428,
                      ("nuro", "high"): 18, ("ocn_vc", "low"): 44}
    brs = {r.br for r in table.rules if r.provider == "biglobe"}
    assert brs == {"2001:260:700:1::1:275", "2001:260:700:1::1:276"}  # east/west split


def test_aggregated_ocn_rules_agree_with_fc2_where_both_cover():
    """The unshipped, fc2-covered aggregates give the same IPv4/PSID/BR as fc2's /38 rules:
    evidence that the shipped, uncovered ones (flagged low) follow the same plan."""
    table = load_table()
    checked = 0
    for a in FACTS["rules"]:
        if a["set"] != "ocn_aggregate" or not a.get("covered_by_fc2_table"):
            continue
        net = ipaddress.IPv6Network("%s/%d" % (a["rule_ipv6_prefix"], a["rule_ipv6_len"]))
        ea, k = a["ea_len"], a["psid_len"]
        count = 1 << (56 - net.prefixlen)
        for i in range(0, count, max(1, count // 64)):
            pd = int(net.network_address) | (i << 72)
            m = calc("%s/56" % ipaddress.IPv6Address(pd), table)
            if m.rule.confidence != "high":
                continue
            bits = (pd >> (128 - net.prefixlen - ea)) & ((1 << ea) - 1)
            v4 = int(ipaddress.IPv4Address(a["ipv4_prefix"])) | ((bits >> k) << (32 - a["ipv4_len"] - (ea - k)))
            assert (m.ipv4, m.psid, m.br) == (v4, bits & ((1 << k) - 1), a["br"])
            checked += 1
    assert checked > 1000


CONFIG = """
config mape 'config'
	option enabled '1'

config rule 'lab'
	option ip6prefix '2001:db8::'
	option ip6prefixlen '32'
	option ipaddr '192.0.2.0'
	option ip4prefixlen '24'
	option ealen '16'
	option psidlen '8'
	option offset '4'
	option peeraddr '2001:db8:ffff::1'

config rule 'override_v6plus'
	option ip6prefix '240b:10::/31'
	option ipaddr '106.72.0.0/15'
	option ealen '25'
	option psidlen '8'
	option offset '4'
	option peeraddr '2001:db8::64'
"""


def test_user_rules_extend_and_override_the_table():
    table = load_table(user_rules=user_rules(parse(CONFIG)))
    lab = calc("2001:db8:1234::/48", table)
    assert (lab.ipv4_text, lab.psid, lab.rule.provider) == ("192.0.2.18", 0x34, "user")
    over = calc("240b:10:3f6c:d400::/56", table)
    assert over.br == "2001:db8::64" and over.ipv4_text == "106.72.63.108"


@pytest.mark.parametrize("options, words", [
    ({"ip6prefix": "2001:db8::/32", "ipaddr": "192.0.2.0/24", "ealen": "16", "psidlen": "8", "offset": "4"}, "peeraddr"),
    ({"ip6prefix": "2001:db8::/32", "ipaddr": "192.0.2.0/24", "ealen": "x", "psidlen": "8", "offset": "4",
      "peeraddr": "2001:db8::1"}, "number"),
    ({"ip6prefix": "2001:db8::1/32", "ipaddr": "192.0.2.0/24", "ealen": "16", "psidlen": "8", "offset": "4",
      "peeraddr": "2001:db8::1"}, "bits set beyond its length"),
    ({"ip6prefix": "2001:db8::/32", "ipaddr": "192.0.2.0/24", "ealen": "12", "psidlen": "8", "offset": "4",
      "peeraddr": "2001:db8::1"}, "must be 32"),
    ({"ip6prefix": "2001:db8::/60", "ipaddr": "192.0.2.0/24", "ealen": "16", "psidlen": "8", "offset": "4",
      "peeraddr": "2001:db8::1"}, "exceeds 64"),
    ({"ip6prefix": "2001:db8::/32", "ipaddr": "192.0.2.0/24", "ealen": "16", "psidlen": "8", "offset": "10",
      "peeraddr": "2001:db8::1"}, "at most 16"),
])
def test_bad_user_rules_say_what_is_wrong(options, words):
    with pytest.raises(RuleError) as e:
        parse_user_rule(options)
    assert words in str(e.value)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("text, sections", [
    # a legal multi-line quoted value (a rule's description), as libuci reads it
    ("config rule 'r'\n\toption description 'line one\nline two'\n\toption x 'y'\n",
     [("rule", "r", {"description": "line one\nline two", "x": "y"})]),
    ('config rule\n\toption d "a\\"b\\\\c\\nd"\n', [("rule", None, {"d": 'a"b\\cnd'})]),
    ("config a\n\toption x ab\\\ncd\n", [("a", None, {"x": "abcd"})]),  # backslash-newline joins
    ("config a\n\toption x a#b\n\tlist l ''\n\toption e ''\n", [("a", None, {"x": "a", "l": [""]})]),
    ("c a 'n'\no x 1\nl x 2\nconfig a 'n'\n\toption z 3\n", [("a", "n", {"x": ["1", "2"], "z": "3"})]),
    ("package network\nconfig a\n\toption x 'it'\\''s'\n", [("a", None, {"x": "it's"})]),
])
def test_uci_syntax_as_libuci_reads_it(text, sections):
    assert [(s.type, s.name, s.options) for s in parse(text)] == sections


@pytest.mark.parametrize("text", ["config a\n\toption x 'open\n", "config a 'b-c'\n", "option x y\n",
                                  "config a\n\toption x y z\n", "config a\n\toption x ab\\\n\toption y\n", "config a 'n'\nconfig b 'n'\n", "bogus\n"])
def test_what_libuci_refuses_is_one_line_input_error(text):
    with pytest.raises(InputError) as e:
        parse(text)
    assert "\n" not in str(e.value)
