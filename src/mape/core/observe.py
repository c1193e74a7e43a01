"""What the line gave wan6, read from netifd's interface status (pure).

`choose_prefix(status)` picks the input for the MAP-E calculation from the dict that
`ubus call network.interface.wan6 status` prints (or the `interface.update` notification
payload, which has the same keys):

1. a delegated prefix (`ipv6-prefix[]`, mask < 64: DHCPv6-PD /56, a /60 from a home
   gateway, ...), shortest mask first;
2. otherwise the router's own global address from the RA (`ipv6-address[]`), as its /64;
3. otherwise a /64 in `ipv6-prefix[]` (e.g. the dhcpv6 `ip6prefix` user prefix alone).

Link-local, ULA, multicast and zero-lifetime entries are never chosen. When a
`supported` predicate is given, the first candidate it accepts wins (so a prefix no MAP
rule covers does not hide one that a rule does cover); otherwise the first candidate.
Garbage (wrong types, missing keys) never raises: it is skipped and reported in `problems`.
"""
import ipaddress

SOURCE_PREFIX = "ipv6-prefix"
SOURCE_ADDRESS = "ipv6-address"


class Observation:
    """wan6 as the daemon needs it. `prefix` is the text handed to mapping.calc()."""

    __slots__ = ("interface", "exists", "up", "device", "prefix", "source", "address", "candidates",
                 "problems")

    def __init__(self, interface):
        self.interface = interface
        self.exists = False
        self.up = False
        self.device = None
        self.prefix = None
        self.source = None
        self.address = None
        self.candidates = []   # [(text, source)] in preference order
        self.problems = []     # short English strings about malformed input

    def as_dict(self):
        d = {"interface": self.interface, "up": self.up}
        if self.device:
            d["device"] = self.device
        if self.source:
            d["source"] = self.source
        if self.prefix:
            d["prefix"] = self.prefix
        if self.address:
            d["address"] = self.address
        if self.problems:
            d["problems"] = list(self.problems)
        return d

    def key(self):
        """What must change for the desired configuration to change."""
        return (self.up, self.device, self.prefix)


def _global(addr):
    return not (addr.is_link_local or addr.is_private or addr.is_multicast or addr.is_unspecified
                or addr.is_loopback or addr.is_reserved)


def _entries(status, key, problems):
    value = status.get(key, [])
    if value is None:
        return []
    if not isinstance(value, list):
        problems.append("%s is not a list" % key)
        return []
    out = []
    for i, entry in enumerate(value):
        if not isinstance(entry, dict):
            problems.append("%s[%d] is not an object" % (key, i))
            continue
        text = entry.get("address")
        mask = entry.get("mask")
        if not isinstance(text, str) or isinstance(mask, bool) or not isinstance(mask, int):
            problems.append("%s[%d] lacks address/mask" % (key, i))
            continue
        try:
            addr = ipaddress.IPv6Address(text.split("%")[0])
        except ValueError:
            problems.append("%s[%d]: %r is not an IPv6 address" % (key, i, text[:60]))
            continue
        if not 0 < mask <= 128:
            problems.append("%s[%d]: mask %r out of range" % (key, i, mask))
            continue
        valid = entry.get("valid")
        if isinstance(valid, int) and not isinstance(valid, bool) and valid <= 0:
            continue
        if not _global(addr):
            continue
        out.append((addr, mask))
    return out


def _str(status, key):
    value = status.get(key)
    return value if isinstance(value, str) and value else None


def observe(status, interface="wan6", supported=None):
    """Observation from a netifd status dict (None: the interface does not exist)."""
    obs = Observation(interface)
    if status is None:
        return obs
    if not isinstance(status, dict):
        obs.problems.append("interface status is not a JSON object")
        return obs
    obs.exists = True
    obs.up = status.get("up") is True
    obs.device = _str(status, "device") or _str(status, "l3_device")
    if not obs.up:
        return obs
    problems = obs.problems
    prefixes = _entries(status, "ipv6-prefix", problems)
    addresses = _entries(status, "ipv6-address", problems)
    candidates = []
    for addr, mask in sorted((p for p in prefixes if p[1] < 64), key=lambda p: p[1]):
        net = ipaddress.IPv6Network((int(addr), mask), strict=False)
        candidates.append((str(net), SOURCE_PREFIX))
    for addr, mask in addresses:
        if mask <= 64 or mask == 128:
            candidates.append(("%s/64" % addr, SOURCE_ADDRESS))
    for addr, mask in prefixes:
        if mask == 64:
            candidates.append((str(ipaddress.IPv6Network((int(addr), 64), strict=False)), SOURCE_PREFIX))
    seen = set()
    unique = []
    for text, source in candidates:
        if text not in seen:
            seen.add(text)
            unique.append((text, source))
    obs.candidates = unique
    if addresses:
        obs.address = "%s/%d" % (addresses[0][0], addresses[0][1])
    chosen = None
    if supported is not None:
        for text, source in unique:
            if supported(text):
                chosen = (text, source)
                break
    if chosen is None and unique:
        chosen = unique[0]
    if chosen:
        obs.prefix, obs.source = chosen
    return obs


def parse_json_status(text, interface="wan6"):
    """(status dict or None, problem or None) from the text `ubus call ... status` printed."""
    import json

    if text is None or not text.strip():
        return None, None
    try:
        value = json.loads(text)
    except ValueError as e:
        return None, "ubus output for %s is not JSON (%s)" % (interface, str(e).split(":")[0])
    except RecursionError:
        return None, "ubus output for %s is nested too deeply" % interface
    if not isinstance(value, dict):
        return None, "ubus output for %s is not a JSON object" % interface
    return value, None
