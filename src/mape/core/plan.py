"""Desired UCI state for a mapping, its diff against the current config, and the exact
`uci batch` text that gets from one to the other (pure).

The values come from mape.core.network (the one place that knows them). mape-py owns:
- network.<wan_iface>: the options of wan_options() (proto map, rule, tunlink ...); the
  per-field map options map.sh ignores next to `rule` are deleted;
- in the firewall zone named <fw_zone>: `list network` holds <wan_iface>, masq '1', mtu_fix '1';
- what earlier versions created and this one no longer wants: the static `wan6pd` helper
  interface and its zone entry, removed when the saved original config did not have them.
Nothing else is touched; an empty plan means nothing is written (flash wear).
"""
from mape.core import ownership
from mape.core.network import WAN_IGNORED, wan_options
from mape.core.ucifile import Section, parse


def quote(value):
    """UCI batch quoting (same rules as the shell: '...' with '\\'' for a quote)."""
    return "'" + str(value).replace("'", "'\\''") + "'"


class Desired:
    """Sections mape-py wants, as [(package, section, type, [(option, value|[values])])]
    plus the firewall zone requirements and what it must remove."""

    __slots__ = ("sections", "zone", "zone_networks", "zone_options", "deletes", "drop_sections",
                 "zone_drop_networks", "names")

    def __init__(self):
        self.sections = []            # [(package, section, type, [(option, value)])]
        self.zone = None              # firewall zone name
        self.zone_networks = []       # networks the zone must list
        self.zone_options = []        # [(option, value)] the zone must have
        self.deletes = []             # [(package, section, option)] that must not exist
        self.drop_sections = []       # [(package, section)] to delete if mape-py created them
        self.zone_drop_networks = []  # networks to take out of the zone if mape-py added them
        self.names = None             # the settings' interface/zone names (core.ownership)

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


def desired_state(mapping, settings):
    d = Desired()
    d.names = ownership.names_of(settings)
    d.sections.append(("network", settings.wan_iface, "interface",
                       wan_options(mapping, mtu=settings.mtu, tunlink=settings.wan6_iface)))
    for option in WAN_IGNORED:
        d.deletes.append(("network", settings.wan_iface, option))
    d.drop_sections.append(("network", settings.wan6pd_iface))
    if getattr(settings, "manage_firewall", True):
        d.zone = settings.fw_zone
        d.zone_networks = [settings.wan_iface]
        d.zone_options = [("masq", "1"), ("mtu_fix", "1")]
        d.zone_drop_networks = [settings.wan6pd_iface]
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
    """(reference for uci batch, section) of the firewall zone called ``zone``: its section
    name, or ``@zone[N]`` when it is anonymous (the platform names it before a batch uses it:
    an index computed now may point at another zone by the time the batch runs)."""
    index = -1
    for s in sections:
        if s.type != "zone":
            continue
        index += 1
        if s.get("name") == zone:
            return (s.name if s.name else "@zone[%d]" % index), s
    return None, None


def name_zone(sections, zone):
    """The `uci batch` line that gives the anonymous firewall zone called ``zone`` a section
    name, and that name; (None, None) when the zone is missing or already named. The name is
    the zone's own when no section uses it, else with a suffix."""
    ref, section = _find_zone(sections, zone)
    if section is None or section.name:
        return None, None
    base = "".join(c if c.isalnum() or c == "_" else "_" for c in zone) or "zone"
    taken = set(s.name for s in sections if s.name)
    name, n = base, 1
    while name in taken:
        n += 1
        name = "%s_zone%s" % (base, "" if n == 2 else n - 1)
    return "rename firewall.%s=%s" % (ref, quote(name)), name


def _as_list(value):
    if value is None:
        return []
    if isinstance(value, list):
        return list(value)
    return [value]


def _zone_words(value):
    words = []
    for item in _as_list(value):
        words.extend(item.split())
    return words


def _drop_created(plan, package, name, current, original):
    """Delete section ``name`` when it exists now and the original (saved before mape-py's
    first change) did not have it: an earlier mape-py created it."""
    if original is None or package not in original:
        return
    if _find(current.get(package, []), name) is not None and _find(original[package], name) is None:
        plan.commands.append("delete %s.%s" % (package, name))
        plan.changes.append("delete %s.%s (created by an earlier mape-py)" % (package, name))
        plan._touch(package)


def _edit_zone_networks(plan, path, zone_name, have, add, drop):
    """Add ``add`` to and take ``drop`` out of the zone's `network` (a list or a string of
    words), with del_list/add_list when it is a plain list, else rewritten as a list."""
    words = _zone_words(have)
    add = [n for n in add if n not in words]
    drop = [n for n in drop if n in words]
    if not add and not drop:
        return
    if have is None or (isinstance(have, list) and all(len(item.split()) == 1 for item in have)):
        for name in drop:
            plan.commands.append("del_list %s.network=%s" % (path, quote(name)))
        for name in add:
            plan.commands.append("add_list %s.network=%s" % (path, quote(name)))
    else:
        plan.commands.append("delete %s.network" % path)
        for name in [w for w in words if w not in drop] + add:
            plan.commands.append("add_list %s.network=%s" % (path, quote(name)))
    if add:
        plan.changes.append("zone %s: add network %s" % (zone_name, " ".join(add)))
    if drop:
        plan.changes.append("zone %s: remove network %s" % (zone_name, " ".join(drop)))


def _added_by_us(names, zone_original):
    """Those of ``names`` the original zone did not list (so mape-py added them)."""
    had = _zone_words(zone_original.get("network")) if zone_original is not None else []
    return [n for n in names if n not in had]


def make_plan(desired, current, original=None):
    """Plan from Desired, {package: [Section]} (what `uci export` shows now) and the
    original configs saved before mape-py's first change (None: none saved yet).
    Raises ownership.NotOurs when a name in the settings belongs to something else."""
    if desired.names is not None:
        ownership.check(desired.names, current)
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
    for package, name in desired.drop_sections:
        _drop_created(plan, package, name, current, original)
    if desired.zone:
        before = len(plan.commands)
        ref, zone = _find_zone(current.get("firewall", []), desired.zone)
        if zone is None:
            plan.problems.append("firewall zone %r not found: add %s to your WAN zone by hand"
                                 % (desired.zone, " ".join(desired.zone_networks) or "the map interface"))
        else:
            path = "firewall.%s" % ref
            drop = []
            if original is not None and "firewall" in original:
                _, zone_o = _find_zone(original["firewall"], desired.zone)
                drop = [n for n in _added_by_us(desired.zone_drop_networks, zone_o) if n not in desired.zone_networks]
            _edit_zone_networks(plan, path, desired.zone, zone.get("network"), desired.zone_networks, drop)
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
    entries = status.get("ipv4-address")
    for entry in entries if isinstance(entries, list) else []:
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
        self.uci = desired_state(mapping, settings)

    def summary(self):
        """Comparable description of the end state (for platforms without UCI)."""
        m = self.mapping
        return {"ipv4": m.ipv4_text, "ce": m.ce_text, "br": m.br, "device": self.device,
                "port_sets": [list(p) for p in m.port_sets]}

    def key(self):
        return (self.mapping.ipv4_text, self.mapping.psid, self.mapping.ce_text, self.device)


WAN_OWNED = ("proto", "maptype", "rule", "legacymap", "mtu", "tunlink") + WAN_IGNORED
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


def undo_plan(settings, saved, current, exact=False):
    """The batch that puts back, from ``saved`` ({package: [Section]}: the originals kept
    before mape-py's first change, or the backup of one transaction), only what mape-py owns
    in ``current`` (the live config): the wan options, the wan6pd section an earlier version
    made, the zone networks it added and the zone's masq/mtu_fix. Everything else anybody
    changed since stays. ``exact`` (rolling back one transaction): also bring back a wan6pd
    section and zone networks that the transaction deleted."""
    plan = Plan()
    net_o, net_c = saved.get("network", []), current.get("network", [])
    wan_c = _find(net_c, settings.wan_iface)
    if wan_c is not None and "network" in saved:   # a firewall-only backup says nothing about wan
        _restore_options(plan, "network.%s" % settings.wan_iface, WAN_OWNED, _find(net_o, settings.wan_iface), wan_c)
    pd_o, pd_c = _find(net_o, settings.wan6pd_iface), _find(net_c, settings.wan6pd_iface)
    if pd_c is not None and pd_o is None:
        if "network" in saved:
            plan.commands.append("delete network.%s" % settings.wan6pd_iface)
            plan.changes.append("delete network.%s" % settings.wan6pd_iface)
    elif pd_c is not None:
        _restore_options(plan, "network.%s" % settings.wan6pd_iface, WAN6PD_OWNED, pd_o, pd_c)
    elif pd_o is not None and exact:
        path = "network.%s" % settings.wan6pd_iface
        plan.commands.append("set %s=%s" % (path, pd_o.type))
        plan.changes.append("create %s (as it was)" % path)
        _restore_options(plan, path, WAN6PD_OWNED, pd_o, Section(pd_o.type, pd_o.name))
    if plan.commands:
        plan._touch("network")
    before = len(plan.commands)
    ref, zone_c = _find_zone(current.get("firewall", []), settings.fw_zone)
    _, zone_o = _find_zone(saved.get("firewall", []), settings.fw_zone)
    if zone_c is not None and "firewall" in saved:
        path = "firewall.%s" % ref
        ours = [settings.wan_iface, settings.wan6pd_iface]
        drop = _added_by_us(ours, zone_o)
        add = [n for n in ours if n not in drop] if exact and zone_o is not None else []
        _edit_zone_networks(plan, path, settings.fw_zone, zone_c.get("network"), add, drop)
        if zone_o is not None:
            _restore_options(plan, path, ZONE_OWNED, zone_o, zone_c)
    if len(plan.commands) > before:
        plan._touch("firewall")
    return plan
