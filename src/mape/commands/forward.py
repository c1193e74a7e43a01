"""Port forwards (firewall redirects from the MAP-E zone) against the port sets.

  mape-py forward                    list each forward: allowed, or the nearest free allowed port
  mape-py forward use-free SECTION   move the forward's external port to the nearest free allowed
                                     port(s) (the LAN server keeps its port), commit, reload the
                                     firewall; SECTION as in the status (`game`, `@redirect[2]`)

The port sets come from the running daemon's status. With --json: one JSON object
{"ok", "message"|"error"} (use-free) or {"ok", "forwards"} (list).

ポートフォワードが MAP-E の利用可能ポートに入っているかを表示し、入っていないものを
最寄りの空きポートへ移します。
"""
import json
import re
import sys

from mape.core.errors import InputError, MapeError

SECTION = re.compile(r"^(?:[A-Za-z0-9_]+|@redirect\[[0-9]{1,4}\])$")


def add_arguments(parser):
    parser.add_argument("action", nargs="?", choices=("list", "use-free"), default="list")
    parser.add_argument("section", nargs="?", help="use-free: the redirect section (as in the status)")
    parser.add_argument("--json", action="store_true", help="print one JSON object (for rpcd/LuCI)")
    parser.add_argument("--config", default="/etc/config/mape", metavar="FILE")
    parser.add_argument("--status-file", default="/var/run/mape-py/status.json", metavar="FILE")
    parser.add_argument("--root", default="/", help=__import__("argparse").SUPPRESS)


def _assess(system, args):
    """(entries, uci): the forwards of the live firewall config against the daemon's port sets."""
    from mape.core import forwards as fw
    from mape.core.nat import parse_nat_options
    from mape.core.ucifile import parse
    from mape.settings import load_settings
    from mape.shell import statusfile
    from mape.shell.uci import Uci

    doc, _ = statusfile.read(system, args.status_file)
    mapping = (doc or {}).get("mapping") if isinstance(doc, dict) else None
    sets = mapping.get("port_sets") if isinstance(mapping, dict) else None
    if not isinstance(sets, list) or not sets:
        raise MapeError("no port sets yet: the mape-py daemon has no mapping (mape-py status says why)")
    sets = [(int(a), int(b)) for a, b in sets]
    settings = load_settings(system.path(args.config))
    kept = parse_nat_options(settings.nat_options)["kept_out"]
    uci = Uci(system)
    firewall = parse(uci.export("firewall"), source="uci export firewall")
    return fw.assess(fw.redirects(firewall, settings.fw_zone), sets, kept), uci


def use_free(system, args):
    from mape.core.forwards import text_ports
    from mape.core.plan import quote

    if not args.section or not SECTION.match(args.section):
        raise InputError("give the redirect section, e.g. 'game' or '@redirect[2]' (as in the status)")
    entries, uci = _assess(system, args)
    f = next((e for e in entries if e["section"] == args.section), None)
    if f is None:
        raise MapeError("no port forward %s from the MAP-E zone in /etc/config/firewall" % args.section)
    label = f["name"] or f["section"]
    if f["allowed"] == "yes":
        raise MapeError("port forward %s already uses allowed port(s) %s" % (label, f["src_dport"]))
    if not f.get("suggestion"):
        raise MapeError("port forward %s: no free allowed port%s left" % (
            label, "" if f.get("ports") is None or f["ports"][0] == f["ports"][1] else " range that long"))
    new = text_ports(f["suggestion"])
    lines = ["set firewall.%s.src_dport=%s" % (f["section"], quote(new))]
    if not f["dest_port"]:   # DNAT without dest_port keeps the external port: the server's stays
        lines.append("set firewall.%s.dest_port=%s" % (f["section"], quote(f["src_dport"])))
    uci.batch("".join(line + "\n" for line in lines))
    uci.commit("firewall")
    # the reload runs mape-py's include: the daemon reads the forwards again and keeps the port out of SNAT
    system.run([system.path("/etc/init.d/firewall"), "reload"], timeout=120)
    return "port forward %s: external port %s -> %s (the LAN side stays %s:%s)" % (
        label, f["src_dport"], new, f["dest_ip"] or "?", f["dest_port"] or f["src_dport"])


def run(args):
    from mape.shell.system import System

    system = System(args.root)
    try:
        if args.action == "use-free":
            out = {"ok": True, "message": use_free(system, args)}
        else:
            entries, _ = _assess(system, args)
            out = {"ok": True, "forwards": entries}
    except MapeError as e:
        if not args.json:
            raise
        sys.stdout.write(json.dumps({"ok": False, "error": str(e)}) + "\n")
        return 1
    if args.json:
        sys.stdout.write(json.dumps(out, ensure_ascii=False) + "\n")
    elif "message" in out:
        sys.stdout.write(out["message"] + "\n")
    else:
        from mape.core.forwards import text_ports

        for f in out["forwards"]:
            state = {"yes": "ok", "partly": "PARTLY", "no": "DROPPED", "unknown": "-"}[f["allowed"]]
            hint = " -> use %s (mape-py forward use-free %s)" % (text_ports(f["suggestion"]), f["section"]) \
                if f.get("suggestion") else ""
            sys.stdout.write("%-8s %-16s %-8s %s%s%s\n" % (state, f["name"] or f["section"], "/".join(f["proto"]),
                                                          f["src_dport"] or "(any)", "" if f["enabled"] else
                                                          " (disabled)", hint))
        if not out["forwards"]:
            sys.stdout.write("no port forwards from the MAP-E zone\n")
    return 0
