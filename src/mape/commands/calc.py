"""Compute the MAP-E mapping for what the line gave the router on wan6.

PREFIX is the delegated prefix (e.g. 240b:10:1234:5600::/56), a /60 or /64 PD, or the
router's own RA address (e.g. 240b:10:1234:5600:a00:27ff:fe12:3456/64; no length = /64).
Several PREFIXes give one result each, in order; '-' reads one per line from stdin.

Prints the provider, shared IPv4, PSID, allowed ports, CE and BR, then the
/etc/config/network stanzas for wan (proto map) and wan6pd. With --json: one JSON object
per input and line; an input that fails gives {"input": ..., "error": ...}.

wan6 で得た IPv6 プレフィックスから MAP-E のパラメータ(IPv4・PSID・ポート・CE・BR)を計算します。

examples:
  mape-py calc 240b:10:1234:5600::/56
  mape-py calc --json 2404:7a82:4d02:4100::/56 2400:4050:400:5600::/56
  ubus call network.interface.wan6 status | jsonfilter -e '@["ipv6-prefix"][0].address' | mape-py calc -
"""
import sys

from mape.core.errors import MapeError


def add_arguments(parser):
    parser.add_argument("prefixes", nargs="+", metavar="PREFIX", help="IPv6 prefix or address, or '-' for stdin")
    parser.add_argument("--json", action="store_true", help="one JSON object per input and line")
    parser.add_argument("--config", default="/etc/config/mape", metavar="FILE",
                        help="read user `config rule` sections from FILE (default: %(default)s, if present)")
    parser.add_argument("--mtu", type=int, default=None, help="tunnel MTU for the wan stanza (default 1460)")
    parser.add_argument("--device", default="eth1", help="wan6's device, for the wan6pd stanza (default: %(default)s)")


def inputs(prefixes):
    for item in prefixes:
        if item == "-":
            for line in sys.stdin:
                if line.strip() and not line.lstrip().startswith("#"):
                    yield line.strip()
        else:
            yield item


def load_table(config_path):
    from mape.core.rules import load_table as load, user_rules_from_file

    return load(user_rules=user_rules_from_file(config_path))


def human(mapping, mtu, device):
    from mape.core.network import render_stanza, wan6pd_options, wan_options

    d = mapping.as_dict()
    ports = d["port_sets"]
    port_lines = []
    for i in range(0, len(ports), 6):
        port_lines.append(" ".join("%d-%d" % (a, b) for a, b in ports[i:i + 6]))
    out = [
        "input     %s (%s)" % (d["input"]["text"], d["input"]["kind"]),
        "provider  %s / %s%s" % (d["provider_name"], d["provider_name_ja"],
                                 "" if d["confidence"] != "low" else "  [low confidence]"),
        "ipv4      %s" % d["ipv4"] + ("" if d["ipv4_prefixlen"] == 32 else "/%d" % d["ipv4_prefixlen"]),
        "psid      %d  (offset %d, length %d)" % (d["psid"], d["psid_offset"], d["psid_len"]),
        "ports     %d in %d sets:" % (d["port_count"], len(ports)),
    ]
    out += ["          " + line for line in port_lines]
    out += [
        "ce        %s" % d["ce"],
        "br        %s" % d["br"],
        "prefix    %s (customer end-user prefix)" % d["end_user_prefix"],
    ]
    for w in d["warnings"]:
        out.append("warning   %s" % w["message"])
    out.append("")
    out.append("# /etc/config/network")
    out.append(render_stanza("interface", "wan", wan_options(mapping, **({"mtu": mtu} if mtu else {}))))
    out.append(render_stanza("interface", "wan6pd", wan6pd_options(mapping, device=device)))
    return "\n".join(out)


def run(args):
    from mape.core.jsonout import dumps
    from mape.core.mapping import calc

    table = load_table(args.config)
    worst = 0
    first = True
    for text in inputs(args.prefixes):
        try:
            mapping = calc(text, table)
        except MapeError as e:
            worst = max(worst, e.exit_code)
            if args.json:
                print(dumps({"input": text, "error": str(e), "exit_code": e.exit_code}))
            else:
                sys.stderr.write("mape-py calc: %s\n" % e)
            continue
        if args.json:
            print(dumps(mapping.as_dict()))
        else:
            if not first:
                print("-" * 72)
            print(human(mapping, args.mtu, args.device), end="")
        first = False
        sys.stdout.flush()
    return worst
