"""What a provider's BR expects from a CE, computed INDEPENDENTLY of mape-py's code.

The numbers come from the rule table (data/jp-map-rules.json, the fc2 set); the arithmetic
is written out here from the published formulas, on bit strings rather than integers, so
that a mistake in mape.core.mapping cannot be repeated here by sharing code:

- RFC 7597 5.2: the EA bits are the ``ea_len`` bits of the end-user prefix right after the
  rule IPv6 prefix; the first ``ea_len - k`` of them are the IPv4 suffix appended to the
  rule IPv4 prefix, the last ``k`` are the PSID.
- RFC 7597 5.1 (GMA, a = psid_offset, k = psid_len, m = 16 - a - k): port =
  A * 2^(16-a) + PSID * 2^m + j, for A in 1 .. 2^a - 1 and j in 0 .. 2^m - 1.
- The JP "draft-03" CE interface identifier (draft-ietf-softwire-map-03 6, as the fc2
  calculator and OpenWrt's legacymap print it): 8 zero bits, the 32-bit IPv4 address,
  the 16-bit right-aligned PSID, 8 zero bits; the subnet id between the end-user prefix
  and bit 64 is zero.

Stdlib only: this runs inside the VM with the system python3.
"""
import ipaddress
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
RULES_JSON = os.path.join(TOP, "data", "jp-map-rules.json")


def bits6(text):
    return format(int(ipaddress.IPv6Address(text)), "0128b")


def bits4(text):
    return format(int(ipaddress.IPv4Address(text)), "032b")


def load_rules(path=RULES_JSON):
    with open(path, encoding="utf-8") as f:
        return [r for r in json.load(f)["rules"] if r.get("set") == "fc2"]


def find_rule(prefix_bits, rules):
    """Longest rule IPv6 prefix that is a leading substring of ``prefix_bits``."""
    best = None
    for r in rules:
        rb = bits6(r["rule_ipv6_prefix"])[: r["rule_ipv6_len"]]
        if prefix_bits.startswith(rb) and (best is None or r["rule_ipv6_len"] > best["rule_ipv6_len"]):
            best = r
    return best


def expect(prefix, rules=None):
    """{"ce", "ipv4", "psid", "ports": [(first, last)], "br", "rule"} for ``prefix``
    ("ADDR/LEN"), or None when no rule of the table covers it."""
    rules = load_rules() if rules is None else rules
    addr, _, length = prefix.partition("/")
    length = int(length or 64)
    pbits = bits6(addr)[:length]
    r = find_rule(pbits, rules)
    if r is None or length < r["rule_ipv6_len"] + r["ea_len"]:
        return None
    p, ea_len, k, a = r["rule_ipv6_len"], r["ea_len"], r["psid_len"], r["psid_offset"]
    ea = pbits[p:p + ea_len]
    v4 = bits4(r["ipv4_prefix"])[: r["ipv4_len"]] + ea[: ea_len - k]
    assert len(v4) == 32, "rule %s does not give a full IPv4 address" % r["rule_ipv6_prefix"]
    psid = ea[ea_len - k:]
    eu = pbits[: p + ea_len]
    iid = "0" * 8 + v4 + psid.rjust(16, "0") + "0" * 8
    ce = eu + "0" * (64 - len(eu)) + iid
    m = 16 - a - k
    ports = []
    for big_a in range(1, 2 ** a):
        first = int(format(big_a, "0%db" % a) + psid + "0" * m, 2)
        ports.append((first, first + 2 ** m - 1))
    return {
        "ce": str(ipaddress.IPv6Address(int(ce, 2))),
        "ipv4": str(ipaddress.IPv4Address(int(v4, 2))),
        "psid": int(psid, 2) if psid else 0,
        "ports": ports,
        "br": r["br"],
        "rule": "%s/%d" % (r["rule_ipv6_prefix"], p),
    }


def port_ok(port, ports):
    return any(first <= port <= last for first, last in ports)


if __name__ == "__main__":
    import sys
    print(json.dumps(expect(sys.argv[1]), indent=1))
