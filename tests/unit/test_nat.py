"""Pure tests of the NAT renderers (mape.core.nat). The allowed ports are computed here
from the RFC 7597 formula, independently of mape.core.portset."""
import re
import subprocess
import sys

import pytest
from hypothesis import given, settings, strategies as st

from mape.core.errors import InputError
from mape.core.nat import (NatSpec, hash_buckets, parse_nat_options, render_iptables, render_nft,
                           rr_slots, HASH_BITS)


def allowed_ports(psid, offset, psid_len):
    m = 16 - offset - psid_len
    return {p for p in range(1, 65536)
            if (offset == 0 or p >> (16 - offset) != 0) and (p >> m) & ((1 << psid_len) - 1) == psid}


def targets(text):
    out = []
    for a, b in re.findall(r"(?:--to-source|snat ip to) 192\.0\.2\.1:(\d+)(?:-(\d+))?", text):
        out.append((int(a), int(b or a)))
    return out


def ports_of(ranges):
    return {p for a, b in ranges for p in range(a, b + 1)}


spec_params = st.tuples(st.integers(0, 8), st.integers(0, 10)).filter(lambda t: t[0] + t[1] <= 12 and t[0] >= 1)


@settings(max_examples=60, deadline=None)
@given(spec_params, st.data(), st.sampled_from(["rr", "hash"]))
def test_every_allowed_port_used_and_no_other(params, data, strategy):
    offset, psid_len = params
    psid = data.draw(st.integers(0, (1 << psid_len) - 1))
    spec = NatSpec.from_params("192.0.2.1", psid, offset, psid_len, wan_if="map-wan", strategy=strategy)
    want = allowed_ports(psid, offset, psid_len)
    for text in (render_iptables(spec), render_nft(spec)):
        got = targets(text)
        # each range rendered once per protocol (tcp, udp, icmp)
        assert ports_of(got) == want
        assert set(got) == set(spec.ranges)
        if strategy == "rr":
            assert len(got) == 3 * len(spec.ranges)


def test_kept_out_ports_never_used():
    spec = NatSpec.from_params("192.0.2.1", 0x34, 4, 8, wan_if="map-wan", kept_out=["4930", "9024-9030"])
    want = allowed_ports(0x34, 4, 8) - {4930} - set(range(9024, 9031))
    for text in (render_iptables(spec), render_nft(spec)):
        assert ports_of(targets(text)) == want


def simulate_nth(text, proto, n_conns):
    """Run the rendered iptables nth tree for n_conns new connections: leaf range per conn."""
    chains = {}
    for line in text.splitlines():
        if line.startswith("-A "):
            chains.setdefault(line.split()[1], []).append(line)
    counters = {}
    checks = []

    def walk(chain):
        for rule in chains[chain]:
            checks[-1] += 1
            m = re.search(r"--every (\d+) --packet 0", rule)
            if m:
                every = int(m.group(1))
                count = counters.get(rule, 0)
                counters[rule] = count + 1
                if count % every != 0:
                    continue
            target = rule.split(" -j ", 1)[1]
            if target.startswith("SNAT"):
                return target.split(":")[-1]
            res = walk(target)
            if res is not None:
                return res
        return None

    out = []
    for _ in range(n_conns):
        checks.append(0)
        out.append(walk("mape_py_%s" % proto))
    return out, checks


@pytest.mark.parametrize("offset,psid_len", [(4, 8), (6, 6), (3, 8), (5, 6), (2, 8)])
def test_iptables_rr_tree_is_exact_round_robin(offset, psid_len):
    spec = NatSpec.from_params("192.0.2.1", 1, offset, psid_len, wan_if="map-wan")
    n = len(spec.ranges)
    picks, checks = simulate_nth(render_iptables(spec), "tcp", 5 * n)
    for block in range(5):
        assert sorted(picks[block * n:(block + 1) * n]) == sorted("%d-%d" % r for r in spec.ranges)
    # a tree, not a flat cascade: far fewer checks than n/2 on average for composite n
    if n == 15:
        assert sum(checks) / len(checks) <= 7


def test_hash_buckets_partition():
    for n in (1, 3, 7, 15, 63, 127):
        b = hash_buckets(n)
        assert b[0][0] == 0 and b[-1][1] == (1 << HASH_BITS) - 1
        assert all(b[i][1] + 1 == b[i + 1][0] for i in range(n - 1))
        sizes = [y - x + 1 for x, y in b]
        assert max(sizes) - min(sizes) <= 1


def test_rr_slots_weighted_when_uneven():
    slots = rr_slots([(1, 16), (17, 20)])
    assert len(slots) == 20 and slots.count(0) == 16 and slots.count(1) == 4
    assert rr_slots([(1, 16), (17, 32)]) == [0, 1]


def test_no_rule_writes_a_mark():
    for strategy in ("rr", "hash"):
        spec = NatSpec.from_params("192.0.2.1", 5, 4, 8, wan_if="map-wan", strategy=strategy)
        assert not re.search(r"MARK|HMARK|mark set|ct mark", render_iptables(spec) + render_nft(spec))


def test_iptables_structure():
    spec = NatSpec.from_params("192.0.2.1", 5, 4, 8, wan_if="map-wan")
    text = render_iptables(spec)
    jumps = [l for l in text.splitlines() if l.startswith("-I ")]
    assert jumps == [
        "-I POSTROUTING 1 -o map-wan -m comment --comment mape-py -j mape_py",
        "-I FORWARD 1 -o map-wan -m conntrack --ctstate NEW,INVALID,UNTRACKED -m comment --comment mape-py -j mape_py_guard",
        "-I OUTPUT 1 -o map-wan -m conntrack --ctstate NEW,INVALID,UNTRACKED -m comment --comment mape-py -j mape_py_guard",
    ]
    # never RETURN from the nat chains: the last rule of every nat chain is unconditional
    nat = text.split("*filter")[0]
    chains = {}
    for line in nat.splitlines():
        if line.startswith("-A "):
            chains.setdefault(line.split()[1], []).append(line)
    for name, rules in chains.items():
        last = rules[-1]
        assert "statistic" not in last and "u32" not in last, name
    assert "RETURN" not in nat
    no_guard = render_iptables(NatSpec.from_params("192.0.2.1", 5, 4, 8, wan_if="map-wan", guard=False))
    assert "*filter" not in no_guard


def test_nft_structure():
    spec = NatSpec.from_params("192.0.2.1", 5, 4, 8, wan_if="map-wan")
    text = render_nft(spec)
    assert text.startswith("# mape-py")
    assert "table inet mape_py\ndelete table inet mape_py\n" in text
    assert "type nat hook postrouting priority 95;" in text
    assert ('meta nfproto ipv4 oifname "map-wan" meta l4proto vmap '
            '{ tcp : goto pick_tcp, udp : goto pick_udp, icmp : goto pick_icmp }') in text
    assert "numgen inc mod 15 vmap" in text
    hashed = render_nft(NatSpec.from_params("192.0.2.1", 5, 4, 8, wan_if="map-wan", strategy="hash"))
    assert "jhash ip saddr . tcp sport mod 4096" in hashed


@pytest.mark.parametrize("kw,message", [
    ({"strategy": "nth"}, "unknown NAT strategy"),
    ({"mark_mask": "0xf000"}, "overlaps 0x0000f000"),
    ({"mark_mask": "banana"}, "mark mask must be a number"),
    ({"kept_out": ["70000"]}, "bad port range"),
    ({"wan_if": "x" * 20}, "bad tunnel interface"),
])
def test_bad_spec_values(kw, message):
    args = dict({"wan_if": "map-wan"}, **kw)
    with pytest.raises(InputError, match=message):
        NatSpec.from_params("192.0.2.1", 5, 4, 8, **args)


def test_bad_params():
    with pytest.raises(InputError, match="psid must be 0..255"):
        NatSpec.from_params("192.0.2.1", 256, 4, 8, wan_if="map-wan")
    with pytest.raises(InputError, match="<= 16"):
        NatSpec.from_params("192.0.2.1", 0, 10, 8, wan_if="map-wan")
    with pytest.raises(InputError, match="not an IPv4"):
        NatSpec.from_params("192.0.2.300", 0, 4, 8, wan_if="map-wan")
    with pytest.raises(InputError, match="no port left"):
        NatSpec.from_params("192.0.2.1", 0, 0, 16, wan_if="map-wan", kept_out=["1-65535"])


def test_parse_nat_options():
    assert parse_nat_options({}) == {"strategy": "rr", "backend": "auto", "mark_mask": 0x00FF0000,
                                     "kept_out": [], "guard": True, "tcp_time_wait": None, "host_cap": None}
    got = parse_nat_options({"nat_strategy": "hash", "nat_backend": "fw4", "nat_mark_mask": "0x0f000000",
                             "nat_keep_out": ["5190", "5192-5193", "5191"], "nat_guard": "0",
                             "nat_tcp_time_wait": "30", "wan_iface": "wan", "nat_host_cap": "25%"})
    assert got == {"strategy": "hash", "backend": "nftables", "mark_mask": 0x0F000000,
                   "kept_out": [(5190, 5193)], "guard": False, "tcp_time_wait": 30, "host_cap": "25%"}
    assert parse_nat_options({"nat_keep_out": "80 443,8080"})["kept_out"] == [(80, 80), (443, 443), (8080, 8080)]


@pytest.mark.parametrize("options,message", [
    ({"nat_strategy": "connlimit"}, "option 'nat_strategy': must be one of rr, hash"),
    ({"nat_backend": "pf"}, "option 'nat_backend': must be one of"),
    ({"nat_mark_mask": "0x8000"}, "option 'nat_mark_mask': mark mask 0x00008000 overlaps"),
    ({"nat_keep_out": ["80-70"]}, "option 'nat_keep_out': bad port range 80-70"),
    ({"nat_guard": "maybe"}, "option 'nat_guard': must be 0 or 1"),
    ({"nat_tcp_time_wait": "600"}, "option 'nat_tcp_time_wait': must be seconds 1..120"),
    ({"nat_strategy": ["rr", "hash"]}, "must be a single value"),
    ({"nat_typo": "1"}, "unknown option 'nat_typo'"),
    ({"nat_host_cap": "lots"}, "option 'nat_host_cap': the per-host cap must be a number of connections"),
    ({"nat_host_cap": "150%"}, "option 'nat_host_cap': a share of the ports must be 1%..100%, not 150%"),
    ({"nat_host_cap": "70000"}, "option 'nat_host_cap': the per-host cap must be 1..65535"),
])
def test_parse_nat_options_errors(options, message):
    with pytest.raises(InputError) as e:
        parse_nat_options(options)
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_from_mapping_matches_calc():
    from mape.core.mapping import calc
    from mape.core.rules import load_table

    m = calc("240b:10:1234:5600::/56", load_table())
    spec = NatSpec.from_mapping(m, device="map-wan", options=parse_nat_options({"nat_strategy": "hash"}))
    assert spec.strategy == "hash" and spec.wan_if == "map-wan" and spec.ipv4 == m.ipv4_text
    assert ports_of(spec.ranges) == allowed_ports(m.psid, m.psid_offset, m.psid_len)


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "mape", "firewall"] + list(args), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, env={"PYTHONPATH": "src"})


def test_cli_render_and_errors():
    p = run_cli("render", "--backend", "nftables", "--wan-if", "map-wan", "--ipv4", "192.0.2.1",
                "--psid", "5", "--psid-offset", "4", "--psid-len", "8")
    assert p.returncode == 0 and p.stdout == render_nft(NatSpec.from_params("192.0.2.1", 5, 4, 8, wan_if="map-wan"))
    p = run_cli("render", "--backend", "iptables", "--prefix", "240b:10:1234:5600::/56")
    assert p.returncode == 0 and "*nat" in p.stdout
    p = run_cli("render", "--backend", "iptables", "--ipv4", "192.0.2.1")
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "give --prefix, or all of" in p.stderr
    p = run_cli("render", "--backend", "iptables", "--prefix", "2001:db8::/56")
    assert p.returncode == 3 and "Traceback" not in p.stderr


def simulate_u32(text, proto, sport):
    chains = {}
    for line in text.splitlines():
        if line.startswith("-A "):
            chains.setdefault(line.split()[1], []).append(line)
    chain, checks = "mape_py_%s" % proto, 0
    while True:
        for rule in chains[chain]:
            checks += 1
            m = re.search(r"@\d+>>(\d+)&0x([0-9A-F]+)=(\d+):(\d+)", rule)
            if m:
                value = ((sport << 16) >> int(m.group(1))) & int(m.group(2), 16)
                if not int(m.group(3)) <= value <= int(m.group(4)):
                    continue
            target = rule.split(" -j ", 1)[1]
            if target.startswith("SNAT"):
                return target.split(":")[-1], checks
            chain = target
            break
        else:
            raise AssertionError("fell through %s" % chain)


@pytest.mark.parametrize("offset,psid_len", [(4, 8), (6, 6), (2, 8), (3, 8)])
def test_iptables_hash_spreads_consecutive_ports(offset, psid_len):
    """Linux hands one host consecutive (even) ports: the iptables hash must still spread them."""
    spec = NatSpec.from_params("192.0.2.1", 1, offset, psid_len, wan_if="map-wan", strategy="hash")
    text = render_iptables(spec)
    n = len(spec.ranges)
    counts = {}
    worst = 0
    for sport in range(30000, 30000 + 2 * 40 * n, 2):
        picked, checks = simulate_u32(text, "tcp", sport)
        assert simulate_u32(text, "tcp", sport)[0] == picked     # stable
        counts[picked] = counts.get(picked, 0) + 1
        worst = max(worst, checks)
    assert len(counts) == n
    assert max(counts.values()) <= 2 * min(counts.values())
    assert worst <= 4 * (n.bit_length() + 2)


# -- the per-host cap ----------------------------------------------------------------------
@pytest.mark.parametrize("raw,setting", [(None, None), ("", None), ("0", None), ("00", None), ("0%", None),
                                         ("60", 60), ("0060", 60), (" 25 % ", "25%"), ("100%", "100%"), (7, 7)])
def test_host_cap_setting(raw, setting):
    assert parse_nat_options({} if raw is None else {"nat_host_cap": raw})["host_cap"] == setting


def test_host_cap_share_of_the_nat_pool():
    """A share counts the ports NAT may use (kept-out ports are not in the pool); at least 1."""
    cap = lambda value, **kw: NatSpec.from_params("192.0.2.1", 0x34, 4, 8, wan_if="map-wan",
                                                  host_cap=value, **kw).host_cap
    assert cap(None) is None and cap("0") is None
    assert cap("25%") == 60 and cap("100%") == 240 and cap("1%") == 2 and cap(60) == 60
    assert cap("25%", kept_out=["4928-4943", "9024-9039", "13120-13127"]) == 50        # 200 ports left
    assert NatSpec.from_params("192.0.2.1", 5, 0, 16, wan_if="map-wan", host_cap="1%").host_cap == 1


def _tables(text):
    """iptables-restore text -> {table: [lines]}."""
    out, table = {}, None
    for line in text.splitlines():
        if line.startswith("*"):
            table = line[1:]
        elif table:
            out.setdefault(table, []).append(line)
    return out


@pytest.mark.parametrize("guard", [True, False])
def test_host_cap_leaves_nat_alone_and_counts_new_connections_only(guard):
    """The cap adds filter rules only: the NAT chains (their spread, their ports) are the
    same as without it, and every cap rule is behind `ct state new` (not yet confirmed)."""
    plain = NatSpec.from_params("192.0.2.1", 0x34, 4, 8, wan_if="map-wan", guard=guard)
    capped = NatSpec.from_params("192.0.2.1", 0x34, 4, 8, wan_if="map-wan", guard=guard, host_cap="25%")
    assert _tables(render_iptables(capped))["nat"] == _tables(render_iptables(plain))["nat"]
    ipt = render_iptables(capped)
    jump = [l for l in ipt.splitlines() if "connlimit" in l]
    assert jump == ["-I FORWARD 1 -o map-wan -m conntrack --ctstate NEW ! --ctstatus CONFIRMED -m connlimit "
                    "--connlimit-above 60 --connlimit-mask 32 --connlimit-saddr -m comment --comment mape-py "
                    "-j mape_py_cap"]
    assert "-A mape_py_cap -p tcp -j REJECT --reject-with tcp-reset" in ipt
    assert "-A mape_py_cap -j REJECT --reject-with icmp-admin-prohibited" in ipt
    # the guard's FORWARD jump is inserted last, so it ends up first (port-less protocols
    # are dropped before they are counted)
    forward = [l for l in ipt.splitlines() if l.startswith("-I FORWARD")]
    assert forward[-1].endswith("mape_py_guard" if guard else "mape_py_cap")
    nft = render_nft(capped)
    nat_part = lambda text: text[text.index("chain srcnat"):text.index("chain set_icmp_14")]
    assert nat_part(nft) == nat_part(render_nft(plain))
    assert "add @cap_hosts { ip saddr ct count over 60 } goto refuse" in nft
    assert "ct status & confirmed == 0" in nft
    assert "meta l4proto tcp counter reject with tcp reset" in nft
    assert "counter reject with icmpx type admin-prohibited" in nft
    forward = re.search(r"hook forward priority -5; policy accept;\n\t\t(.*)\n", nft).group(1)
    if guard:   # still one rule per forwarded packet: the guard's, now a vmap with the cap's branch
        assert forward == ('oifname "map-wan" ct state vmap { invalid : goto guard_drop, untracked : goto '
                           'guard_drop, new : goto host_cap }')
    else:
        assert forward == 'oifname "map-wan" ct state new goto host_cap'
    assert nft.count("hook forward") == 1


def test_no_host_cap_renders_as_before():
    spec = NatSpec.from_params("192.0.2.1", 0x34, 4, 8, wan_if="map-wan")
    assert "connlimit" not in render_iptables(spec) and "mape_py_cap" not in render_iptables(spec)
    assert "ct count" not in render_nft(spec) and "cap_hosts" not in render_nft(spec)


def test_cli_host_cap():
    p = run_cli("render", "--backend", "iptables", "--ipv4", "192.0.2.1", "--psid", "5", "--psid-offset", "4",
                "--psid-len", "8", "--host-cap", "50%")
    assert p.returncode == 0 and "--connlimit-above 120 " in p.stdout
    p = run_cli("render", "--backend", "nftables", "--ipv4", "192.0.2.1", "--psid", "5", "--psid-offset", "4",
                "--psid-len", "8", "--host-cap", "many")
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "per-host cap" in p.stderr
