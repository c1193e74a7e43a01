"""Compute the MAP-E mapping for what the line gave the router on wan6.

PREFIX is the delegated prefix (e.g. 240b:10:1234:5600::/56), a /60 or /64 PD, or the
router's own RA address (e.g. 240b:10:1234:5600:a00:27ff:fe12:3456/64; no length = /64).
Several PREFIXes give one result each, in order; '-' reads one per line from stdin.

Prints the provider, shared IPv4, PSID, allowed ports, CE and BR, then the
/etc/config/network stanza for wan (proto map over wan6, the rule with the customer prefix
as pd=). With --json: one JSON object per input and line; an input that fails gives
{"input": ..., "error": ...}.

wan6 で得た IPv6 プレフィックスから MAP-E のパラメータ(IPv4・PSID・ポート・CE・BR)を計算します。

examples:
  mape-py calc 240b:10:1234:5600::/56
  mape-py calc --json 2404:7a82:4d02:4100::/56 2400:4050:400:5600::/56
  ubus call network.interface.wan6 status | jsonfilter -e '@["ipv6-prefix"][0].address' | mape-py calc -
"""
import sys

from mape.core.errors import InputError, MapeError

# An input echoed back (--json "input", error messages) is cut to this many characters.
ECHO_MAX = 200


def add_arguments(parser):
    parser.add_argument("prefixes", nargs="+", metavar="PREFIX", help="IPv6 prefix or address, or '-' for stdin")
    parser.add_argument("--json", action="store_true", help="one JSON object per input and line")
    parser.add_argument("--config", default="/etc/config/mape", metavar="FILE",
                        help="read user `config rule` sections from FILE (default: %(default)s, if present)")
    parser.add_argument("--mtu", type=int, default=None, help="tunnel MTU for the wan stanza (default 1460)")


def _valid(text):
    """``text`` encodable as UTF-8: bytes of argv that were not UTF-8 become U+FFFD."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return text


def shown(text):
    """``text`` as it may be echoed back: valid UTF-8 and at most ECHO_MAX characters."""
    text = _valid(text)
    if len(text) > ECHO_MAX:
        text = "%s... (%d characters)" % (text[:ECHO_MAX], len(text))
    return text


def inputs(prefixes, stdin=None):
    """(text, error) per input: the text, or (what to echo, InputError) for an input that is
    not text (bytes that are not UTF-8, from stdin or argv). '-' reads one input per line
    from stdin (blank lines and '#' comments skipped); nothing at all there is an input
    error, as `calc ""` is, not a silent success."""
    empty = True
    for item in _inputs(prefixes, stdin):
        empty = False
        yield item
    if empty:
        yield "-", InputError("empty input: nothing on stdin; give an IPv6 prefix such as "
                              "240b:10:1234:5600::/56, one per line")


def _inputs(prefixes, stdin):
    for item in prefixes:
        if item != "-":
            text = _valid(item)
            yield text, (None if text is item else InputError("not UTF-8 text: %r" % text[:80]))
            continue
        stream = stdin if stdin is not None else getattr(sys.stdin, "buffer", None)
        if stream is None:
            yield "-", InputError("'-' given but there is no stdin to read")
            continue
        for number, raw in enumerate(stream, 1):
            if isinstance(raw, str):
                raw = raw.encode("utf-8", "surrogateescape")
            try:
                line = raw.decode("utf-8").strip()
            except UnicodeDecodeError as e:
                text = raw.decode("utf-8", "replace").strip()
                yield text, InputError("stdin line %d: not UTF-8 text (byte 0x%02x at %d)"
                                              % (number, raw[e.start], e.start))
                continue
            if line and not line.startswith("#"):
                yield line, None


def load_table(config_path):
    from mape.core.rules import load_table as load, user_rules_from_file

    return load(user_rules=user_rules_from_file(config_path))


def check_options(args):
    """The --mtu range of /etc/config/mape's `mtu` option. Raises InputError."""
    if args.mtu is not None:
        from mape.settings import check_flag

        check_flag("mtu", args.mtu, "--mtu")


def render_stanza(section_type, name, options):
    """/etc/config text of one section, every value quoted as the uci batch quotes it."""
    from mape.core.plan import quote

    lines = ["config %s %s" % (section_type, quote(name))]
    for key, value in options:
        lines.append("\toption %s %s" % (key, quote(value)))
    return "\n".join(lines) + "\n"


def human(mapping, mtu):
    from mape.core.network import wan_options

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
    out.append(render_stanza("interface", "wan", wan_options(mapping, **({"mtu": mtu} if mtu is not None else {}))))
    return "\n".join(out)


def run(args):
    from mape.core.jsonout import dumps
    from mape.core.mapping import calc

    check_options(args)
    table = load_table(args.config)
    worst = 0
    first = True
    for text, error in inputs(args.prefixes):
        try:
            if error is not None:
                raise error
            mapping = calc(text, table)
        except MapeError as e:
            worst = max(worst, e.exit_code)
            if args.json:
                print(dumps({"input": shown(text), "error": str(e), "exit_code": e.exit_code}))
            else:
                sys.stderr.write("mape-py calc: %s\n" % e)
            sys.stdout.flush()
            continue
        if args.json:
            print(dumps(mapping.as_dict()))
        else:
            if not first:
                print("-" * 72)
            print(human(mapping, args.mtu), end="")
        first = False
        sys.stdout.flush()
    return worst

