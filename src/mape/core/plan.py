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
