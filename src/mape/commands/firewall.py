"""Port-set NAT rules for the MAP-E tunnel: render, apply, remove, check.

  render   print the whole ruleset, hooks included, ready for
           `iptables-restore --noflush` (fw3) or `nft -f` (fw4). Applying the iptables
           text a second time by hand would add a second jump: use `apply` for that.
  apply    install it on this system (atomic; repeating it leaves exactly one copy)
  reapply  re-install the last applied ruleset (what the firewall include runs)
  remove   remove every mape-py chain, jump and table (no trace)
  check    compare what is installed with what the mapping needs
           (prints JSON with health: present | missing | duplicated | stale)

The mapping comes from --prefix (as `mape-py calc`) or from --ipv4/--psid/--psid-offset/
--psid-len. Strategies: rr (round robin, default), hash (stable per source address/port).

examples:
  mape-py firewall render --backend nftables --wan-if map-wan --prefix 240b:10:1234:5600::/56
  mape-py firewall render --backend iptables --ipv4 192.0.2.10 --psid 52 --psid-offset 4 --psid-len 8 \\
      | iptables-restore --noflush
  mape-py firewall check --wan-if map-wan --prefix 240b:10:1234:5600::/56

The ports of the port forwards in /etc/config/firewall (DNAT redirects from the wan zone)
inside the port sets are kept out of NAT, as the daemon keeps them (--forwards none: not), and
so are the ports reserved for miniupnpd when it is installed (--upnp-ports; docs/upnp.md).

MAP-E のポートセット NAT ルールを生成・適用・削除・確認します。
"""
import json
import sys

from mape.core.errors import InputError

FIREWALL_CONFIG = "/etc/config/firewall"


def add_arguments(parser):
    parser.add_argument("action", choices=("render", "apply", "reapply", "remove", "check"))
    parser.add_argument("--backend", choices=("auto", "iptables", "nftables"), default=None,
                        help="iptables (fw3) or nftables (fw4); default: nftables if /sbin/fw4 exists")
    parser.add_argument("--wan-if", default="map-wan", help="the MAP-E tunnel device (default: %(default)s)")
    parser.add_argument("--lan-if", default=None, help="LAN device (accepted; the NAT rules do not need it)")
    parser.add_argument("--prefix", help="IPv6 prefix the line gave (as for `mape-py calc`)")
    parser.add_argument("--ipv4", help="shared IPv4 address")
    parser.add_argument("--psid", type=int)
    parser.add_argument("--psid-offset", type=int)
    parser.add_argument("--psid-len", type=int)
    parser.add_argument("--strategy", choices=("rr", "hash"), default=None,
                        help="rr: round robin (default); hash: stable per source address and port")
    parser.add_argument("--mark-mask", default=None, help="fwmark bits mape-py may own (default 0x00ff0000)")
    parser.add_argument("--keep-out", action="append", default=[], metavar="PORT[-PORT]",
                        help="allowed ports to keep out of NAT (port forwards); repeatable")
    parser.add_argument("--no-guard", action="store_true",
                        help="do not drop untracked/invalid packets and port-less protocols on the tunnel")
    parser.add_argument("--host-cap", default=None, metavar="N|P%",
                        help="cap the tunnel connections of each LAN host at N, or at P%% of the ports "
                             "(over it a new connection is refused at once); default off")
    parser.add_argument("--tcp-time-wait", type=int, default=None, metavar="SECONDS",
                        help="apply: shorten conntrack's TCP TIME_WAIT timeout (opt-in)")
    parser.add_argument("--config", default="/etc/config/mape", metavar="FILE",
                        help="user `config rule` sections for --prefix (default: %(default)s, if present)")
    parser.add_argument("--forwards", default=FIREWALL_CONFIG, metavar="FILE",
                        help="firewall config whose port forwards (DNAT redirects from --zone) are kept out "
                             "of NAT, as the daemon does (default: %(default)s, if present; 'none': ignore)")
    parser.add_argument("--zone", default="wan", help="the MAP-E firewall zone (default: %(default)s)")
    parser.add_argument("--upnp-ports", type=int, default=None, metavar="N",
                        help="ports per set reserved for miniupnpd, kept out of NAT (default: upnp_ports of "
                             "--config when miniupnpd is installed, as the daemon does; 0: none)")


def build_spec(args):
    from mape.core.nat import NatSpec

    kw = {"wan_if": args.wan_if, "lan_if": args.lan_if, "kept_out": args.keep_out,
          "guard": not args.no_guard}
    if args.strategy:
        kw["strategy"] = args.strategy
    if args.mark_mask is not None:
        kw["mark_mask"] = args.mark_mask
    if args.host_cap is not None:
        kw["host_cap"] = args.host_cap
    if args.tcp_time_wait is not None:
        if not 1 <= args.tcp_time_wait <= 120:
            raise InputError("--tcp-time-wait must be 1..120 seconds")
        kw["tcp_time_wait"] = args.tcp_time_wait
    numeric = (args.ipv4, args.psid, args.psid_offset, args.psid_len)
    if args.prefix:
        if any(v is not None for v in numeric):
            raise InputError("give either --prefix or --ipv4/--psid/--psid-offset/--psid-len, not both")
        from mape.commands.calc import load_table
        from mape.core.mapping import calc

        mapping = calc(args.prefix, load_table(args.config))
        return NatSpec.from_mapping(mapping, **_with_kept_out(args, kw, mapping.port_sets))
    if any(v is None for v in numeric):
        raise InputError("give --prefix, or all of --ipv4 --psid --psid-offset --psid-len")
    sets = NatSpec.from_params(args.ipv4, args.psid, args.psid_offset, args.psid_len, **kw).port_sets
    return NatSpec.from_params(args.ipv4, args.psid, args.psid_offset, args.psid_len,
                               **_with_kept_out(args, kw, sets))


def _with_kept_out(args, kw, port_sets):
    """``kw`` with the allowed ports of the port forwards in --forwards and the ports reserved
    for miniupnpd added to kept_out, as the daemon adds them (core.upnp.kept_out)."""
    from mape.core import upnp
    from mape.core.nat import normalize_ranges

    user = normalize_ranges(kw["kept_out"])
    kept = upnp.kept_out(_forwards(args), port_sets, _upnp_ports(args), user)
    return dict(kw, kept_out=normalize_ranges(list(kw["kept_out"]) + kept)) if kept else kw


def _forwards(args):
    from mape.core import forwards
    from mape.core.ucifile import parse

    if args.forwards == "none":
        return []
    try:
        with open(args.forwards, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        if args.forwards == FIREWALL_CONFIG:
            return []   # not an OpenWrt firewall: nothing forwarded
        raise InputError("--forwards: %s does not exist" % args.forwards)
    except OSError as e:
        raise InputError("--forwards: %s" % e)
    return forwards.redirects(parse(text, source=args.forwards), args.zone)


def _upnp_ports(args):
    import os

    from mape.platform.openwrt import UPNP_CONFIG
    from mape.settings import check_flag, load_settings

    if args.upnp_ports is not None:
        return check_flag("upnp_ports", args.upnp_ports, "--upnp-ports")
    return load_settings(args.config).upnp_ports if os.path.exists(UPNP_CONFIG) else 0


def run(args):
    from mape.core import nat

    if args.action == "render":
        spec = build_spec(args)
        backend = args.backend if args.backend not in (None, "auto") else None
        if backend is None:
            from mape.shell.netfilter import detect_backend
            backend = detect_backend()
        sys.stdout.write(nat.render(spec, backend))
        return 0
    from mape.shell import netfilter

    backend = args.backend if args.backend not in (None, "auto") else None
    if args.action == "reapply":
        used = netfilter.reapply(backend=backend)
        if used is None:
            sys.stderr.write("mape-py firewall: no saved ruleset in %s\n" % netfilter.RUN_DIR)
        return 0
    if args.action == "remove":
        netfilter.remove(backend)
        return 0
    spec = build_spec(args)
    if args.action == "apply":
        used = netfilter.apply(spec, backend=backend)
        print("applied %s ruleset: %d ports of %s on %s (strategy %s)"
              % (used, spec.port_count, spec.ipv4, spec.wan_if, spec.strategy))
        return 0
    if backend:
        spec.backend = backend
    result = netfilter.check(spec)
    print(json.dumps(result, ensure_ascii=False))
    return 0 if result.get("health") == "present" else 1
