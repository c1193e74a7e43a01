"""List the MAP rule table, or show the rule that covers a prefix.

  mape-py rules                      every rule, one per line
  mape-py rules --provider biglobe   only one provider's rules
  mape-py rules 2404:7a82:4d02:4100::/56   the rule covering a prefix
  echo 2404:7a82:4d02:4100::/56 | mape-py rules -   the same, prefixes from stdin (one per line)
  mape-py rules --summary            counts per provider and BR
"""
import sys

from mape.core.rules import PROVIDERS


def add_arguments(parser):
    parser.add_argument("prefix", nargs="?", help="show the rule covering this prefix ('-': one per line from stdin)")
    parser.add_argument("--provider", help="only this provider (v6plus, biglobe, ocn_vc, nuro, user)")
    parser.add_argument("--summary", action="store_true", help="counts per provider, confidence and BR")
    parser.add_argument("--json", action="store_true", help="JSON, one rule per line")
    parser.add_argument("--config", default="/etc/config/mape", metavar="FILE",
                        help="also user `config rule` sections from FILE (default: %(default)s)")


def run(args):
    import json

    from mape.commands.calc import inputs, load_table, shown
    from mape.core.errors import InputError, MapeError, UnsupportedPrefix
    from mape.core.mapping import parse_line_input, _prefix

    table = load_table(args.config)
    if args.provider is not None:
        known = sorted(set(table.providers()) | set(PROVIDERS))
        if args.provider not in known:
            raise InputError("unknown provider %r (known: %s)" % (shown(args.provider)[:40], ", ".join(known)))
    worst = 0
    if args.prefix is not None:
        rules = []
        for text, error in inputs([args.prefix]):
            try:
                if error is not None:
                    raise error
                line = parse_line_input(text)
                rule = table.lookup(_prefix(line.addr, line.length))
                if rule is None:
                    raise UnsupportedPrefix("no MAP-E rule covers %s" % shown(text))
            except MapeError as e:
                if args.prefix != "-":
                    raise
                sys.stderr.write("mape-py rules: %s\n" % e)
                worst = max(worst, e.exit_code)
                continue
            rules.append(rule)
    else:
        rules = [r for r in table.rules if not args.provider or r.provider == args.provider]
    if args.summary:
        counts = {}
        for r in rules:
            key = (r.provider, r.confidence, r.br)
            counts[key] = counts.get(key, 0) + 1
        for (provider, confidence, br), n in sorted(counts.items()):
            print("%-8s %-5s %4d rules  BR %s" % (provider, confidence, n, br))
        return worst
    for r in rules:
        if args.json:
            print(json.dumps(r.as_dict()))
        else:
            print("%-8s %-5s %s/%d -> %s/%d ealen %d psidlen %d offset %d br %s" % (
                r.provider, r.confidence, r.ip6prefix_text, r.ip6len, r.ipv4_text, r.ip4len,
                r.ealen, r.psidlen, r.offset, r.br))
    sys.stdout.flush()
    return worst
