"""Check this router for the pitfalls of the manual MAP-E procedure and say how to fix each:
the `map` package missing, wan6 on another device than the physical WAN, IPv6 not in
native/passthrough mode or without its default route, flow offloading / network acceleration
on, wan missing from the wan firewall zone, a stale patched map.sh or old HMARK rules in /etc/firewall.user.

手動手順でよくある問題を確認し、直し方を表示します。

Exit code: 0 all good, 1 something to fix.
"""
import json
import sys

from mape.shell.router_checks import iptables_extensions, offload_warnings

FIX_ACCEL = ("GL.iNet: NETWORK -> Network Acceleration -> off; OpenWrt: uci set "
             "firewall.@defaults[0].flow_offloading='0'; uci set firewall.@defaults[0].flow_offloading_hw='0'; "
             "uci commit firewall; /etc/init.d/firewall restart")


def add_arguments(parser):
    parser.add_argument("--json", action="store_true", help="one JSON object: {\"checks\": [...]}")
    parser.add_argument("--config", default="/etc/config/mape", metavar="FILE")
    parser.add_argument("--root", default="/", help=__import__("argparse").SUPPRESS)


def _check(code, ok, message, fix=None):
    d = {"code": code, "ok": bool(ok), "message": message}
    if fix and not ok:
        d["fix"] = fix
    return d


def _find(sections, name):
    for s in sections:
        if s.name == name:
            return s
    return None


def physical_wan(system, network):
    """The WAN port: /etc/board.json, else the saved original wan, else wan's device."""
    text = system.read("/etc/board.json")
    if text:
        try:
            dev = json.loads(text).get("network", {}).get("wan", {}).get("device")
            if isinstance(dev, str) and dev:
                return dev, "/etc/board.json"
        except (ValueError, AttributeError):
            pass
    from mape.core.ucifile import parse
    from mape.core.errors import MapeError

    original = system.read("/etc/mape-py/original/network")
    if original:
        try:
            wan = _find(parse(original), "wan")
            if wan is not None and (wan.get("device") or wan.get("ifname")):
                return wan.get("device") or wan.get("ifname"), "the original wan"
        except MapeError:
            pass
    wan = _find(network, "wan")
    if wan is not None and wan.get("proto") != "map" and (wan.get("device") or wan.get("ifname")):
        return wan.get("device") or wan.get("ifname"), "wan"
    return None, None


def checks(system, network, firewall, settings, map_sh=None, firewall_user=None, wan6_status=None):
    """Pure-ish: the list of check dicts from the gathered facts."""
    out = []
    have_map = system.exists("/lib/netifd/proto/map.sh") and system.exists("/usr/sbin/mapcalc")
    out.append(_check("map-package", have_map,
                      "OpenWrt's map package (proto map, mapcalc) is %s" % ("installed" if have_map else "missing"),
                      "opkg update && opkg install map && /etc/init.d/network restart"))
    wan6 = _find(network, settings.wan6_iface)
    if wan6 is None:
        out.append(_check("wan6-missing", False, "interface %s is not in /etc/config/network" % settings.wan6_iface,
                          "create it: uci set network.%s=interface; uci set network.%s.proto='dhcpv6'; "
                          "uci set network.%s.device='<WAN port>'; uci commit network"
                          % ((settings.wan6_iface,) * 3)))
    else:
        dev = wan6.get("device") or wan6.get("ifname")
        phys, source = physical_wan(system, network)
        if phys:
            same = dev == phys
            out.append(_check("wan6-device", same,
                              "%s is on %s, the WAN port is %s (from %s)" % (settings.wan6_iface, dev or "(none)", phys, source),
                              "uci set network.%s.device='%s'; uci commit network; /etc/init.d/network reload "
                              "(GL.iNet's IPv6 passthrough can leave it elsewhere)" % (settings.wan6_iface, phys)))
        proto = wan6.get("proto")
        native = proto == "dhcpv6" and str(wan6.get("disabled", "0")) != "1"
        out.append(_check("ipv6-mode", native,
                          "%s proto is %s%s" % (settings.wan6_iface, proto, " (disabled)" if str(wan6.get("disabled", "0")) == "1" else ""),
                          "set IPv6 to Native or Passthrough (GL.iNet: NETWORK -> IPv6 -> Passthrough), i.e. "
                          "%s proto dhcpv6, enabled" % settings.wan6_iface))
    if isinstance(wan6_status, dict):
        from mape.core.observe import observe

        obs = observe(wan6_status, settings.wan6_iface)
        out.append(_check("wan6-prefix", bool(obs.prefix),
                          "%s %s" % (settings.wan6_iface, "has %s (%s)" % (obs.prefix, obs.source) if obs.prefix
                                     else "has no global IPv6 prefix/address"),
                          "check the ONU/home gateway cable and that IPv6 (IPoE) is provisioned on the line"))
        if obs.prefix:
            out.extend(forward_checks(firewall, settings, obs.prefix))
    missing = iptables_extensions(system, settings)
    if missing is not None:
        out.append(_check("iptables-extensions", not missing,
                          "iptables match %s" % (", ".join("'%s' is missing" % m for m, _ in missing) if missing
                                                 else "extensions for the NAT rules are installed"),
                          "opkg update && opkg install %s" % " ".join(p for _, p in missing)))
    accel = offload_warnings(firewall, system)
    out.append(_check("acceleration", not accel,
                      "; ".join(w["message"] for w in accel) if accel else "flow offloading / acceleration is off",
                      FIX_ACCEL))
    if wan6 is not None and str(wan6.get("defaultroute", "1")) == "0":
        out.append(_check("wan6-defaultroute", False,
                          "%s has defaultroute '0': netifd then cannot resolve map.sh's dependency on a route "
                          "to '::' over %s and wan fails with NO_DEVICE" % (settings.wan6_iface, settings.wan6_iface),
                          "uci delete network.%s.defaultroute; uci commit network; /etc/init.d/network reload"
                          % settings.wan6_iface))
    zone = None
    for s in firewall:
        if s.type == "zone" and s.get("name") == settings.fw_zone:
            zone = s
    nets = []
    if zone is not None:
        raw = zone.get("network")
        for item in raw if isinstance(raw, list) else ([raw] if raw else []):
            nets.extend(item.split())
    ok = settings.wan_iface in nets
    out.append(_check("wan-zone", ok,
                      "%s is %sin firewall zone %s" % (settings.wan_iface, "" if ok else "not ", settings.fw_zone),
                      "uci add_list firewall.@zone[N].network='%s' for the %s zone; uci commit firewall "
                      "(mape-py daemon does this itself)" % (settings.wan_iface, settings.fw_zone)))
    if map_sh:
        stale = [m for m in ("MARK_BASE", "json_add_string mark", "connlimit_ports \"1\"", "numgen", "snat_fix")
                 if m in map_sh]
        out.append(_check("map-sh-patched", not stale,
                          "/lib/netifd/proto/map.sh %s" % ("is patched (%s)" % ", ".join(stale) if stale else "is stock"),
                          "opkg install --force-reinstall map (mape-py installs its own NAT rules)"))
    if firewall_user:
        stale = [m for m in ("HMARK", "mape_nth", "MAPE_PRE", "statistic --mode nth") if m in firewall_user]
        out.append(_check("firewall-user-hmark", not stale,
                          "/etc/firewall.user %s" % ("has rules from the manual procedure (%s)" % ", ".join(stale)
                                                    if stale else "has no MAP-E rules"),
                          "delete the MAP-E HMARK/mark lines from /etc/firewall.user, then /etc/init.d/firewall restart"))
    return out


def forward_checks(firewall, settings, prefix):
    """One check per enabled port forward with an external port: in the allowed port sets
    (kept out of the outgoing SNAT pool), else the nearest free allowed port as the fix."""
    from mape.core import forwards as fw
    from mape.core.errors import MapeError
    from mape.core.mapping import calc
    from mape.core.nat import parse_nat_options
    from mape.core.rules import load_table

    try:
        mapping = calc(prefix, load_table(user_rules=settings.rules))
        kept = parse_nat_options(settings.nat_options)["kept_out"]
    except MapeError:
        return []   # no mapping: the daemon's status says why
    out = []
    for f in fw.assess(fw.redirects(firewall, settings.fw_zone), mapping.port_sets, kept):
        if not f["enabled"] or f["allowed"] == "unknown":
            continue
        what = "port forward %s (%s %s -> %s%s)" % (f["name"] or f["section"], "/".join(f["proto"]), f["src_dport"],
                                                   f["dest_ip"] or "?", ":" + f["dest_port"] if f["dest_port"] else "")
        if f["allowed"] == "yes":
            message = "%s is in the allowed port sets of %s (kept out of outgoing NAT)" % (what, mapping.ipv4_text)
        elif f["allowed"] == "partly":
            message = "%s is partly outside the allowed port sets of %s: the BR drops those ports" % (
                what, mapping.ipv4_text)
        else:
            message = "%s is outside the allowed port sets of %s: the BR drops it, it never arrives" % (
                what, mapping.ipv4_text)
        fix = None
        if f.get("suggestion"):
            port = fw.text_ports(f["suggestion"])
            fix = ("use the nearest free allowed port %s: uci set firewall.%s.src_dport='%s'; uci commit firewall; "
                   "/etc/init.d/firewall reload (or LuCI: Services -> MAP-E -> use a free allowed port)"
                   % (port, f["section"], port))
        elif f["allowed"] != "yes":
            fix = "no free allowed port left: free one (another forward or nat_keep_out)"
        check = _check("forward-port", f["allowed"] == "yes", message, fix)
        check["section"] = f["section"]
        out.append(check)
    return out


def run(args):
    from mape.core.errors import MapeError
    from mape.core.ucifile import parse
    from mape.settings import Settings, load_settings
    from mape.shell.system import System
    from mape.shell.ubus import Ubus
    from mape.shell.uci import Uci

    system = System(args.root)
    try:
        settings = load_settings(system.path(args.config))
        config_check = None
    except MapeError as e:
        settings = Settings()
        config_check = _check("config", False, str(e), "fix %s (mape-py daemon keeps the last good settings)" % args.config)
    uci = Uci(system)
    parsed = {}
    for pkg in ("network", "firewall"):
        try:
            parsed[pkg] = parse(uci.export(pkg), source="uci export %s" % pkg)
        except MapeError:
            parsed[pkg] = []
    status, _ = Ubus(system).call("network.interface.%s" % settings.wan6_iface, "status")
    result = checks(system, parsed["network"], parsed["firewall"], settings,
                    map_sh=system.read("/lib/netifd/proto/map.sh"),
                    firewall_user=system.read("/etc/firewall.user"), wan6_status=status)
    if config_check:
        result.insert(0, config_check)
    bad = [c for c in result if not c["ok"]]
    if args.json:
        print(json.dumps({"ok": not bad, "checks": result}, ensure_ascii=False))
    else:
        for c in result:
            sys.stdout.write("%-4s %-20s %s\n" % ("ok" if c["ok"] else "FIX", c["code"], c["message"]))
            if not c["ok"] and c.get("fix"):
                sys.stdout.write("     %-20s -> %s\n" % ("", c["fix"]))
        sys.stdout.write("%s\n" % ("all good" if not bad else "%d thing(s) to fix" % len(bad)))
    return 1 if bad else 0
