"""Manual edits of what mape-py owns (pure): detect them, so they are not overwritten.

mape-py records the values it wrote (`owned_values` of the desired state, in
/etc/mape-py/written on OpenWrt). On each cycle the values now in the config are compared
with that record: an option that differs from what mape-py wrote AND from what it would
write now was changed by someone else (the user, LuCI, another tool). Then mape-py holds
off (state "held", nothing written) until the user chooses a way out:

- adopt: the value becomes the mape setting where one exists (network.<wan>.mtu -> mtu);
- give up: mape-py stops managing (option enabled '0');
- re-apply: the record is dropped and mape-py writes its values again.
"""
from mape.core.errors import MapeError
from mape.core.plan import _find, _find_zone, _zone_words

# owned option of network.<wan_iface> -> the mape setting that controls it (adopt)
ADOPTABLE = {"mtu": "mtu"}


def owned_values(desired, current=None):
    """{"network.wan.proto": "map", ..., "firewall.zone[wan].masq": "1",
    "firewall.zone[wan].network+wan": "1"}: the values of the options ``desired`` (a
    plan.Desired) owns, as wanted (``current`` None) or as they are in ``current``
    ({package: [Section]}; an absent option is None)."""
    out = {}
    for package, name, _, options in desired.sections:
        section = _find(current.get(package, []), name) if current is not None else None
        for key, value in options:
            path = "%s.%s.%s" % (package, name, key)
            out[path] = value if current is None else (section.get(key) if section is not None else None)
    if desired.zone:
        zone = _find_zone(current.get("firewall", []), desired.zone)[1] if current is not None else None
        prefix = "firewall.zone[%s]." % desired.zone
        for key, value in desired.zone_options:
            out[prefix + key] = value if current is None else (zone.get(key) if zone is not None else None)
        for net in desired.zone_networks:
            listed = current is None or (zone is not None and net in _zone_words(zone.get("network")))
            out[prefix + "network+" + net] = "1" if listed else None
    return out


def changed_by_others(recorded, now, wanted):
    """[{"option", "written", "now", "setting"?}] of the options whose value ``now`` is
    neither what mape-py wrote (``recorded``) nor what it wants (``wanted``)."""
    if not isinstance(recorded, dict):
        return []
    out = []
    for option in sorted(recorded):
        if option not in wanted:
            continue   # no longer ours (another wan_iface/fw_zone): nothing to protect
        have = now.get(option)
        if have == recorded[option] or have == wanted[option]:
            continue
        entry = {"option": option, "written": recorded[option], "now": have}
        if option.startswith("network.") and option.rsplit(".", 1)[1] in ADOPTABLE:
            entry["setting"] = ADOPTABLE[option.rsplit(".", 1)[1]]
        out.append(entry)
    return out


def _show(value):
    return "(unset)" if value is None else "'%s'" % value


def reason(held):
    """One line for state_reason."""
    parts = ["%s is %s, mape-py wrote %s" % (h["option"], _show(h["now"]), _show(h["written"])) for h in held[:4]]
    more = " and %d more" % (len(held) - 4) if len(held) > 4 else ""
    return ("changed by someone else: %s%s; mape-py holds off. Adopt the value (mape-py held adopt), stop "
            "managing (mape-py held give-up) or overwrite it (mape-py held reapply)" % ("; ".join(parts), more))


class Held(MapeError):
    """Owned values changed by someone else: nothing is written. ``held`` as
    changed_by_others() returns it."""

    def __init__(self, held):
        self.held = held
        MapeError.__init__(self, reason(held))
