"""/etc/config/mape: defaults, parsing and validation of the user's settings (pure except
for the one function that reads the file)."""
from mape.core.errors import InputError, RuleError  # noqa: F401
from mape.core.rules import parse_user_rule  # noqa: F401
from mape.core.rules import user_rules_from_file  # noqa: F401  (re-exported)
from mape.core.rules import user_rules_from_sections as user_rules  # noqa: F401
from mape.core.ucifile import parse


# -- the service's settings (`config mape 'config'`) -------------------------------------

import re as _re

_IFNAME = _re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}\Z")
_SECONDS = _re.compile(r"^[0-9]{1,5}(\.[0-9]{1,3})?$")
_TRUE = ("1", "true", "yes", "on", "enabled")
_FALSE = ("0", "false", "no", "off", "disabled")


class Settings:
    """Validated service settings. Defaults are those of files/etc/config/mape."""

    FIELDS = {
        # name: (default, kind, lower, upper)
        "enabled": (True, "bool", None, None),
        "wan_iface": ("wan", "ifname", None, None),
        "wan6_iface": ("wan6", "ifname", None, None),
        "wan6pd_iface": ("wan6pd", "ifname", None, None),
        "manage_firewall": (True, "bool", None, None),
        "fw_zone": ("wan", "ifname", None, None),
        "mtu": (1460, "int", 1280, 1500),
        "recheck": (300, "int", 10, 86400),
        "debounce": (0.5, "seconds", 0, 60),
        "verify_timeout": (30, "int", 0, 600),
        "history": (10, "int", 1, 100),
        "rollback": (True, "bool", None, None),
        # ports reserved for miniupnpd in each port set (its top ones; capped at a quarter of
        # the set by core.upnp.reserve) when it is installed; 0/off: none
        "upnp_ports": (1, "count", 0, 64),
    }

    def __init__(self, **values):
        for name, (default, _, _, _) in self.FIELDS.items():
            setattr(self, name, values.get(name, default))
        self.rules = values.get("rules", [])          # user `config rule` sections (Rule objects)
        self.nat = values.get("nat")                   # NAT engineer's parsed options (opaque here)
        self.nat_options = values.get("nat_options", {})  # raw firewall options, for parse_nat_options

    def as_dict(self):
        d = {name: getattr(self, name) for name in self.FIELDS}
        d["rules"] = len(self.rules)
        return d

    def __eq__(self, other):
        return isinstance(other, Settings) and self.as_dict() == other.as_dict() and \
            self.nat_options == other.nat_options


def check_flag(name, value, flag):
    """A command-line ``flag`` that stands for option ``name``: the option's range applies.
    Raises InputError (one line)."""
    lower, upper = Settings.FIELDS[name][2:]
    if not lower <= value <= upper:
        raise InputError("%s must be between %d and %d, not %d" % (flag, lower, upper, value))
    return value


def _convert(name, raw, kind, lower, upper):
    if isinstance(raw, list):
        raise InputError("option '%s' must be a single value, not a list" % name)
    value = str(raw).strip()
    if kind == "bool":
        if value.lower() in _TRUE:
            return True
        if value.lower() in _FALSE:
            return False
        raise InputError("option '%s' must be 0 or 1, not %r" % (name, value))
    if kind == "count" and value.lower() in _FALSE:
        return 0
    if kind in ("int", "count"):
        try:
            number = int(value, 10)
        except ValueError:
            raise InputError("option '%s' must be a number, not %r" % (name, value))
        if not lower <= number <= upper:
            raise InputError("option '%s' must be between %d and %d, not %d" % (name, lower, upper, number))
        return number
    if kind == "seconds":
        try:
            number = float(value) if _SECONDS.match(value) else None
        except ValueError:
            number = None
        if number is None:
            raise InputError("option '%s' must be a number of seconds such as 0.5, not %r" % (name, value[:40]))
        if not lower <= number <= upper:
            raise InputError("option '%s' must be between %d and %d seconds, not %s" % (name, lower, upper, value))
        return number
    if not _IFNAME.match(value):
        raise InputError("option '%s' must be an interface/zone name (letters, digits, _ . -; "
                         "at most 15), not %r" % (name, value[:40]))
    return value


# Options of `config mape` that belong to the firewall/NAT part (parsed by the NAT code).
NAT_PREFIXES = ("nat_", "fw_", "snat", "lan_", "kept_", "keep_", "dont_", "strategy", "backend")


def settings_from_sections(sections, source="/etc/config/mape", nat_parser=None):
    """Settings from parsed UCI sections. Raises InputError (one line) on bad values."""
    main = None
    for section in sections:
        if section.type == "mape":
            main = section
            break
    values = {}
    nat_options = {}
    if main is not None:
        for key, raw in main.options.items():
            if key in Settings.FIELDS:
                _, kind, lower, upper = Settings.FIELDS[key]
                try:
                    values[key] = _convert(key, raw, kind, lower, upper)
                except InputError as e:
                    raise InputError("%s: %s" % (source, e))
            elif key.startswith(NAT_PREFIXES):
                nat_options[key] = raw
    try:
        values["rules"] = user_rules(sections)
    except RuleError as e:
        raise RuleError("%s: %s" % (source, e))
    values["nat_options"] = nat_options
    if nat_parser is not None:
        try:
            values["nat"] = nat_parser(nat_options)
        except InputError as e:
            raise InputError("%s: %s" % (source, e))
    settings = Settings(**values)
    names = [settings.wan_iface, settings.wan6_iface, settings.wan6pd_iface]
    if len(set(names)) != len(names):
        raise InputError("%s: wan_iface, wan6_iface and wan6pd_iface must be different interfaces" % source)
    if len(settings.wan_iface) > 11:
        raise InputError("%s: wan_iface %r is too long: the tunnel device map-%s must fit in 15 "
                         "characters" % (source, settings.wan_iface, settings.wan_iface))
    return settings


def settings_from_text(text, source="/etc/config/mape", nat_parser=None):
    return settings_from_sections(parse(text, source=source), source=source, nat_parser=nat_parser)


def load_settings(path="/etc/config/mape", nat_parser=None):
    """Settings from the file (defaults when it does not exist). Raises InputError."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except FileNotFoundError:
        return Settings()
    except OSError as e:
        raise InputError("cannot read %s: %s" % (path, e.strerror))
    return settings_from_text(text, source=path, nat_parser=nat_parser)
