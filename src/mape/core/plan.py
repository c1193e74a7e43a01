"""Desired UCI state for a mapping, its diff against the current config, and the exact
`uci batch` text that gets from one to the other (pure).

The values come from mape.core.network (the one place that knows them). mape-py owns:
- network.<wan_iface>: the options of wan_options() (proto map ...); `rule`/`psid`, which
  would override them in map.sh, are deleted;
- network.<wan6pd_iface> (when manage_wan6pd): the static interface of wan6pd_options()
  on wan6's device;
- in the firewall zone named <fw_zone>: `list network` holds wan6pd, masq '1', mtu_fix '1'.
Nothing else is touched; an empty plan means nothing is written (flash wear).
"""
from mape.core.network import wan6pd_options, wan_options
from mape.core.ucifile import parse

LIST_OPTIONS = ("ip6addr",)
# map.sh reads these before the per-field options: leftovers would silently win.
WAN_CONFLICTING = ("rule", "psid")


def quote(value):
    """UCI batch quoting (same rules as the shell: '...' with '\\'' for a quote)."""
    return "'" + str(value).replace("'", "'\\''") + "'"


class Desired:
    """Sections mape-py wants, as {(package, section): (type, [(option, value|[values])])}
    plus the firewall zone requirements."""

    __slots__ = ("sections", "zone", "zone_networks", "zone_options", "deletes")

    def __init__(self):
        self.sections = []          # [(package, section, type, [(option, value)])]
        self.zone = None            # firewall zone name
        self.zone_networks = []     # networks the zone must list
        self.zone_options = []      # [(option, value)] the zone must have
        self.deletes = []           # [(package, section, option)] that must not exist

    def as_status(self):
        """{"network.wan": {...}, ...} for the status document."""
        out = {}
        for package, section, _, options in self.sections:
            out["%s.%s" % (package, section)] = {k: v for k, v in options}
        if self.zone:
            d = {k: v for k, v in self.zone_options}
            d["network+"] = list(self.zone_networks)
            out["firewall.zone[%s]" % self.zone] = d
        return out


def desired_state(mapping, settings, device=None):
    d = Desired()
    d.sections.append(("network", settings.wan_iface, "interface",
                       wan_options(mapping, mtu=settings.mtu, tunlink=settings.tunlink)))
    for option in WAN_CONFLICTING:
        d.deletes.append(("network", settings.wan_iface, option))
    if settings.manage_wan6pd:
        options = []
        for key, value in wan6pd_options(mapping, device=device):
            options.append((key, [value] if key in LIST_OPTIONS else value))
        d.sections.append(("network", settings.wan6pd_iface, "interface", options))
    if getattr(settings, "manage_firewall", True):
        d.zone = settings.fw_zone
        if settings.manage_wan6pd:
            d.zone_networks = [settings.wan6pd_iface]
        d.zone_options = [("masq", "1"), ("mtu_fix", "1")]
    return d


class Plan:
    __slots__ = ("commands", "packages", "changes", "problems")

    def __init__(self):
        self.commands = []   # uci batch lines
        self.packages = []   # packages to commit, in order
        self.changes = []    # short English descriptions, for the log
        self.problems = []   # things the plan could not do (e.g. zone not found)

    @property
    def empty(self):
        return not self.commands

    def batch_text(self):
        return "".join(line + "\n" for line in self.commands)

    def _touch(self, package):
        if package not in self.packages:
            self.packages.append(package)


def parse_export(text, package):
    """Sections of `uci export PACKAGE` output (InputError on garbage)."""
    return parse(text or "", source="uci export %s" % package)


def _find(sections, name):
    for s in sections:
        if s.name == name:
            return s
    return None


def _find_zone(sections, zone):
    """(reference for uci batch, section) of the firewall zone called ``zone``."""
    index = -1
    for s in sections:
        if s.type != "zone":
            continue
        index += 1
        if s.get("name") == zone:
            return (s.name if s.name else "@zone[%d]" % index), s
    return None, None


def _as_list(value):
    if value is None:
        return []
    if isinstance(value, list):
        return list(value)
    return [value]


def make_plan(desired, current):
    """Plan from Desired and {package: [Section]} (what `uci export` shows now)."""
    plan = Plan()
    for package, name, type_, options in desired.sections:
        sections = current.get(package, [])
        section = _find(sections, name)
        path = "%s.%s" % (package, name)
        if section is None or section.type != type_:
            plan.commands.append("set %s=%s" % (path, type_))
            plan.changes.append("create %s" % path)
            have = {}
        else:
            have = section.options
        for key, value in options:
            if isinstance(value, list):
                if _as_list(have.get(key)) != value or (key in have and not isinstance(have[key], list)):
                    if key in have:
                        plan.commands.append("delete %s.%s" % (path, key))
                    for item in value:
                        plan.commands.append("add_list %s.%s=%s" % (path, key, quote(item)))
                    plan.changes.append("%s.%s = %s" % (path, key, " ".join(value)))
            elif have.get(key) != value:
                plan.commands.append("set %s.%s=%s" % (path, key, quote(value)))
                plan.changes.append("%s.%s: %s -> %s" % (path, key, have.get(key, "(unset)"), value))
        for dpackage, dname, key in desired.deletes:
            if dpackage == package and dname == name and key in have:
                plan.commands.append("delete %s.%s" % (path, key))
                plan.changes.append("delete %s.%s" % (path, key))
        if plan.commands:
            plan._touch(package)
    if desired.zone:
        before = len(plan.commands)
        ref, zone = _find_zone(current.get("firewall", []), desired.zone)
        if zone is None:
            plan.problems.append("firewall zone %r not found: add wan6pd to your WAN zone by hand" % desired.zone)
        else:
            path = "firewall.%s" % ref
            have = zone.get("network")
            words = []
            for item in _as_list(have):
                words.extend(item.split())
            missing = [n for n in desired.zone_networks if n not in words]
            if missing:
                if isinstance(have, str) and len(have.split()) > 1:
                    plan.commands.append("delete %s.network" % path)
                    for item in words:
                        plan.commands.append("add_list %s.network=%s" % (path, quote(item)))
                for item in missing:
                    plan.commands.append("add_list %s.network=%s" % (path, quote(item)))
                plan.changes.append("zone %s: add network %s" % (desired.zone, " ".join(missing)))
            for key, value in desired.zone_options:
                if zone.get(key) != value:
                    plan.commands.append("set %s.%s=%s" % (path, key, quote(value)))
                    plan.changes.append("zone %s: %s -> %s" % (desired.zone, key, value))
        if len(plan.commands) > before:
            plan._touch("firewall")
    return plan


def wan_status_ipv4(status):
    """IPv4 addresses netifd reports on the map interface (for verification)."""
    if not isinstance(status, dict) or status.get("up") is not True:
        return []
    out = []
    for entry in status.get("ipv4-address") or []:
        if isinstance(entry, dict) and isinstance(entry.get("address"), str):
            out.append(entry["address"])
    return out


class Target:
    """Everything the platforms need to make the system match one mapping."""

    __slots__ = ("mapping", "observation", "uci", "device", "wan_iface")

    def __init__(self, mapping, observation, settings):
        self.mapping = mapping
        self.observation = observation
        self.device = observation.device if observation is not None else None
        self.wan_iface = settings.wan_iface
        self.uci = desired_state(mapping, settings, device=self.device)

    def summary(self):
        """Comparable description of the end state (for platforms without UCI)."""
        m = self.mapping
        return {"ipv4": m.ipv4_text, "ce": m.ce_text, "br": m.br, "device": self.device,
                "port_sets": [list(p) for p in m.port_sets]}

    def key(self):
        return (self.mapping.ipv4_text, self.mapping.psid, self.mapping.ce_text, self.device)


WAN_OWNED = ("proto", "maptype", "peeraddr", "ipaddr", "ip4prefixlen", "ip6prefix", "ip6prefixlen", "ealen",
             "psidlen", "offset", "legacymap", "mtu", "tunlink") + WAN_CONFLICTING
WAN6PD_OWNED = ("proto", "device", "ip6addr", "ip6gw", "ip6prefix", "defaultroute")
ZONE_OWNED = ("masq", "mtu_fix")


def _restore_options(plan, path, owned, original, current):
    for key in owned:
        want = original.options.get(key) if original is not None else None
        have = current.options.get(key)
        if want == have:
            continue
        if want is None:
            plan.commands.append("delete %s.%s" % (path, key))
            plan.changes.append("delete %s.%s" % (path, key))
        elif isinstance(want, list):
            if have is not None:
                plan.commands.append("delete %s.%s" % (path, key))
            for item in want:
                plan.commands.append("add_list %s.%s=%s" % (path, key, quote(item)))
            plan.changes.append("%s.%s = %s (original)" % (path, key, " ".join(want)))
        else:
            plan.commands.append("set %s.%s=%s" % (path, key, quote(want)))
            plan.changes.append("%s.%s -> %s (original)" % (path, key, want))


def undo_plan(settings, original, current):
    """The batch that puts back, from ``original`` ({package: [Section]} saved before
    mape-py's first change), only what mape-py owns in ``current``: the wan options, the
    wan6pd section, wan6pd in the zone and the zone's masq/mtu_fix. Everything else the
    user changed since stays."""
    plan = Plan()
    net_o, net_c = original.get("network", []), current.get("network", [])
    wan_c = _find(net_c, settings.wan_iface)
    if wan_c is not None:
        _restore_options(plan, "network.%s" % settings.wan_iface, WAN_OWNED, _find(net_o, settings.wan_iface), wan_c)
    if settings.manage_wan6pd:
        pd_o, pd_c = _find(net_o, settings.wan6pd_iface), _find(net_c, settings.wan6pd_iface)
        if pd_c is not None and pd_o is None:
            plan.commands.append("delete network.%s" % settings.wan6pd_iface)
            plan.changes.append("delete network.%s" % settings.wan6pd_iface)
        elif pd_c is not None:
            _restore_options(plan, "network.%s" % settings.wan6pd_iface, WAN6PD_OWNED, pd_o, pd_c)
    if plan.commands:
        plan._touch("network")
    before = len(plan.commands)
    ref, zone_c = _find_zone(current.get("firewall", []), settings.fw_zone)
    _, zone_o = _find_zone(original.get("firewall", []), settings.fw_zone)
    if zone_c is not None:
        path = "firewall.%s" % ref
        if settings.manage_wan6pd:
            had = []
            for item in _as_list(zone_o.get("network") if zone_o is not None else None):
                had.extend(item.split())
            have = zone_c.get("network")
            name = settings.wan6pd_iface
            if name not in had and isinstance(have, list) and name in have:
                plan.commands.append("del_list %s.network=%s" % (path, quote(name)))
                plan.changes.append("zone %s: remove network %s" % (settings.fw_zone, name))
            elif name not in had and isinstance(have, str) and name in have.split():
                rest = [w for w in have.split() if w != name]
                plan.commands.append(("set %s.network=%s" % (path, quote(" ".join(rest)))) if rest
                                     else "delete %s.network" % path)
                plan.changes.append("zone %s: remove network %s" % (settings.fw_zone, name))
        if zone_o is not None:
            _restore_options(plan, path, ZONE_OWNED, zone_o, zone_c)
    if len(plan.commands) > before:
        plan._touch("firewall")
    return plan
