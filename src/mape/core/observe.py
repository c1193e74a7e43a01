"""What the line gave wan6, read from netifd's interface status (pure).

`observe(status)` picks the input for the MAP-E calculation from the dict that
`ubus call network.interface.wan6 status` prints (or the `interface.update` notification
payload, which has the same keys). Every global candidate is ranked, best first, by:

1. preferred lifetime > 0 (after a renumbering the old prefix lingers with preferred 0
   until its valid lifetime ends: it must not win over the new one);
2. covered by a MAP rule (when a `supported` predicate is given);
3. origin: a delegated prefix (`ipv6-prefix[]`: DHCPv6-PD /56, a /60 or /64 from a home
   gateway) before the router's own RA address (`ipv6-address[]`, as its /64; anyone on
   the WAN link can send an RA), before a /64 in `ipv6-prefix[]` without lifetimes (the
   static `ip6prefix` user prefix, not from the line);
4. shorter mask, then longer valid lifetime (the newest of two equal delegations),
   then netifd's order.

Link-local, ULA, multicast and zero-valid-lifetime entries are never candidates.
`candidates_status()` says which were seen and why the first won (status `wan6`).
Garbage (wrong types, missing keys) never raises: it is skipped and reported in `problems`.
"""
import ipaddress

SOURCE_PREFIX = "ipv6-prefix"
SOURCE_ADDRESS = "ipv6-address"


class Observation:
    """wan6 as the daemon needs it. `prefix` is the text handed to mapping.calc()."""

    __slots__ = ("interface", "exists", "up", "device", "prefix", "source", "address", "candidates",
                 "seen", "choice", "problems")

    def __init__(self, interface):
        self.interface = interface
        self.exists = False
        self.up = False
        self.device = None
        self.prefix = None
        self.source = None
        self.address = None
        self.candidates = []   # [(text, source)] in preference order
        self.seen = []         # [{"prefix", "source", "deprecated"?, "supported"?}] same order
        self.choice = None     # why candidates[0] won, English
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
        if self.seen:
            d["candidates"] = [dict(c) for c in self.seen]
        if self.choice:
            d["choice"] = self.choice
        if self.problems:
            d["problems"] = list(self.problems)
        return d

    def key(self):
        """What must change for the desired configuration to change."""
        return (self.up, self.device, self.prefix)


def _global(addr):
    return not (addr.is_link_local or addr.is_private or addr.is_multicast or addr.is_unspecified
                or addr.is_loopback or addr.is_reserved)


def _lifetime(entry, key):
    value = entry.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _entries(status, key, problems):
    """[(address, mask, preferred or None, valid or None)] of the global, unexpired entries."""
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
        valid = _lifetime(entry, "valid")
        if valid is not None and valid <= 0:
            continue
        if not _global(addr):
            continue
        out.append((addr, mask, _lifetime(entry, "preferred"), valid))
    return out


def _str(status, key):
    value = status.get(key)
    return value if isinstance(value, str) and value else None


# origin ranks (rule 3 of the module docstring)
_DELEGATED, _RA, _STATIC64 = 0, 1, 2
_FOREVER = 1 << 62   # no lifetime given (static): never expires


def _candidates(prefixes, addresses):
    """[(text, source, rank, mask, preferred, valid)] before ranking, netifd's order."""
    out = []
    for addr, mask, preferred, valid in prefixes:
        if mask > 64:
            continue
        text = str(ipaddress.IPv6Network((int(addr), mask), strict=False))
        static = mask == 64 and preferred is None and valid is None
        out.append((text, SOURCE_PREFIX, _STATIC64 if static else _DELEGATED, mask, preferred, valid))
    for addr, mask, preferred, valid in addresses:
        if mask <= 64 or mask == 128:
            out.append(("%s/64" % addr, SOURCE_ADDRESS, _RA, 64, preferred, valid))
    return out


def _why(best, others, supported_known):
    """One English sentence: why ``best`` beat the rest (rank tuples as built in observe())."""
    if not others:
        return "the only candidate"
    reasons = []
    if not best["deprecated"] and any(o["deprecated"] for o in others):
        reasons.append("preferred lifetime > 0 (deprecated prefixes lose)")
    if supported_known and best["supported"] and any(not o["supported"] for o in others):
        reasons.append("covered by a MAP rule")
    if best["rank"] == _DELEGATED and any(o["rank"] != _DELEGATED for o in others):
        reasons.append("a delegated prefix beats an RA address")
    elif best["rank"] == _RA and any(o["rank"] == _STATIC64 for o in others):
        reasons.append("the RA address beats a static /64 user prefix")
    if any(o["rank"] == best["rank"] and o["deprecated"] == best["deprecated"] for o in others):
        reasons.append("shortest mask, then longest valid lifetime among equals")
    return "; ".join(reasons) or "first in netifd's order"


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
    ranked = []
    seen = set()
    for n, (text, source, rank, mask, preferred, valid) in enumerate(_candidates(prefixes, addresses)):
        if text in seen:
            continue
        seen.add(text)
        c = {"text": text, "source": source, "rank": rank, "deprecated": preferred == 0,
             "supported": bool(supported(text)) if supported is not None else True}
        c["key"] = (c["deprecated"], not c["supported"], rank, mask,
                    -(valid if valid is not None else _FOREVER), n)
        ranked.append(c)
    ranked.sort(key=lambda c: c["key"])
    obs.candidates = [(c["text"], c["source"]) for c in ranked]
    for c in ranked:
        entry = {"prefix": c["text"], "source": c["source"]}
        if c["deprecated"]:
            entry["deprecated"] = True
        if supported is not None:
            entry["supported"] = c["supported"]
        obs.seen.append(entry)
    live = [a for a in addresses if a[2] != 0] or addresses
    if live:
        obs.address = "%s/%d" % (live[0][0], live[0][1])
    if ranked:
        obs.prefix, obs.source = ranked[0]["text"], ranked[0]["source"]
        obs.choice = _why(ranked[0], ranked[1:], supported is not None)
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
