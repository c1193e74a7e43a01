"""The MAP-E arithmetic (RFC 7597 section 5, with the JP "draft-03" CE layout).

One place computes a mapping; the CLI, the UCI plan, the firewall rules and the status
document all render the Mapping this module returns.
"""
from mape.core.addr import format_v4, format_v6, parse_v6
from mape.core.errors import InputError, PrefixTooShort, UnsupportedPrefix
from mape.core.portset import port_sets
from mape.core.rules import PROVIDERS

MASK128 = (1 << 128) - 1


def _bits(value, start, length, width=128):
    """``length`` bits of ``value`` starting at bit ``start`` (0 = most significant)."""
    if length == 0:
        return 0
    return (value >> (width - start - length)) & ((1 << length) - 1)


def _prefix(addr, length):
    return addr & (MASK128 ^ ((1 << (128 - length)) - 1)) if length else 0


class LineInput:
    """What the line gave: an address or prefix and its length, as text and ints."""

    __slots__ = ("text", "addr", "length", "kind")

    def __init__(self, text, addr, length, kind):
        self.text = text
        self.addr = addr
        self.length = length
        self.kind = kind

    def as_dict(self):
        return {"text": self.text, "prefix": "%s/%d" % (format_v6(_prefix(self.addr, self.length)),
                                                         self.length), "kind": self.kind}


def parse_line_input(text):
    """Parse 'ADDR[/LEN]'. Kinds: 'address' (an RA /64 address, host bits set), 'prefix'.

    No length means /64 (what an RA gives and what the web calculator assumes).
    """
    raw = text.strip() if isinstance(text, str) else ""
    if not raw:
        raise InputError("empty input: give an IPv6 prefix such as 240b:10:1234:5600::/56")
    addr_text, _, len_text = raw.partition("/")
    try:
        addr = parse_v6(addr_text)
    except ValueError:
        raise InputError("not an IPv6 address or prefix: %r" % raw[:80])
    if len_text:
        if not len_text.isdigit() or not 0 <= int(len_text) <= 128:
            raise InputError("bad prefix length in %r (expected /0 to /128)" % raw[:80])
        length = int(len_text)
    else:
        length = 64
    if length == 128:
        length = 64  # a single address: its /64 is the RA prefix
    kind = "address" if addr & ((1 << (128 - length)) - 1) else "prefix"
    return LineInput(raw, addr, length, kind)


class Mapping:
    """Everything a MAP-E CE needs, computed from one rule and one prefix."""

    __slots__ = ("rule", "line", "ipv4", "ipv4_len", "psid", "ce", "ce_rfc", "end_user_prefix",
                 "end_user_len", "warnings")

    def __init__(self, rule, line, ipv4, ipv4_len, psid, ce, ce_rfc, end_user_prefix, end_user_len, warnings):
        self.rule = rule
        self.line = line
        self.ipv4 = ipv4
        self.ipv4_len = ipv4_len
        self.psid = psid
        self.ce = ce
        self.ce_rfc = ce_rfc
        self.end_user_prefix = end_user_prefix
        self.end_user_len = end_user_len
        self.warnings = warnings

    # -- derived values, as text ------------------------------------------------------
    @property
    def provider(self):
        return self.rule.provider

    @property
    def provider_names(self):
        return PROVIDERS.get(self.rule.provider, (self.rule.provider, self.rule.provider))

    @property
    def ipv4_text(self):
        return format_v4(self.ipv4)

    @property
    def ce_text(self):
        return format_v6(self.ce if self.rule.legacy else self.ce_rfc)

    @property
    def br(self):
        return self.rule.br

    @property
    def psid_offset(self):
        return self.rule.offset

    @property
    def psid_len(self):
        return self.rule.psidlen

    @property
    def port_sets(self):
        return port_sets(self.psid, self.rule.offset, self.rule.psidlen)

    @property
    def end_user_prefix_text(self):
        return "%s/%d" % (format_v6(self.end_user_prefix), self.end_user_len)

    def as_dict(self):
        sets = self.port_sets
        return {
            "provider": self.rule.provider,
            "provider_name": self.provider_names[0],
            "provider_name_ja": self.provider_names[1],
            "confidence": self.rule.confidence,
            "br": self.rule.br,
            "ipv4": self.ipv4_text,
            "ipv4_prefixlen": self.ipv4_len,
            "psid": self.psid,
            "psid_offset": self.rule.offset,
            "psid_len": self.rule.psidlen,
            "port_sets": [[first, last] for first, last in sets],
            "port_count": sum(last - first + 1 for first, last in sets),
            "ce": self.ce_text,
            "ce_legacy": format_v6(self.ce),
            "ce_rfc7597": format_v6(self.ce_rfc),
            "end_user_prefix": self.end_user_prefix_text,
            "input": self.line.as_dict(),
            "rule": self.rule.as_dict(),
            "warnings": [dict(w) for w in self.warnings],
        }


def _warning(code, message):
    return {"code": code, "message": message}


def compute(rule, line):
    """The mapping of ``line`` (LineInput) under ``rule``. Pure arithmetic plus checks."""
    eu_len = rule.ip6len + rule.ealen
    if line.length < eu_len:
        raise PrefixTooShort(
            "prefix /%d is shorter than the rule's /%d + %d EA bits = /%d: the EA bits are not all "
            "known (mapcalc would silently compute a wrong address)" % (line.length, rule.ip6len, rule.ealen, eu_len))
    ea = _bits(line.addr, rule.ip6len, rule.ealen)
    psid = ea & ((1 << rule.psidlen) - 1)
    suffix_len = rule.ealen - rule.psidlen
    ipv4_len = rule.ip4len + suffix_len
    ipv4 = rule.ipv4 | ((ea >> rule.psidlen) << (32 - ipv4_len))
    if rule.psidlen:
        ipv4_len = 32
    eu_prefix = _prefix(line.addr, eu_len)
    # Subnet-ID 0 (RFC 7597 5.2), then the interface identifier.
    ce = eu_prefix | (ipv4 << 24) | (psid << 8)      # draft-03: 0 | IPv4 | PSID(16) | 0
    ce_rfc = eu_prefix | (ipv4 << 16) | psid           # RFC 7597: 0(16) | IPv4 | PSID(16)

    warnings = []
    if rule.confidence == "low":
        warnings.append(_warning(
            "low-confidence-rule",
            "rule %s comes from aggregated data of unstated provenance, not from the calculator's "
            "table: check the result" % rule.describe()))
    if line.length > eu_len:
        inside = _bits(line.addr, eu_len, min(line.length, 64) - eu_len)
        if line.length < 64:
            if inside:
                warnings.append(_warning(
                    "pd-not-subnet-0",
                    "the /%d is not subnet 0 of the customer /%d %s: the CE address %s lies outside "
                    "it (the home gateway holds the /%d; it may already run MAP-E itself)" % (
                        line.length, eu_len, "%s/%d" % (format_v6(eu_prefix), eu_len),
                        format_v6(ce if rule.legacy else ce_rfc), eu_len)))
            else:
                warnings.append(_warning(
                    "pd-behind-gateway",
                    "a /%d is a sub-prefix handed out by a home gateway; the EA bits lie inside it, so "
                    "the mapping is complete" % line.length))
        elif inside:
            warnings.append(_warning(
                "subnet-not-0",
                "the /64 has subnet id %x, not 0: the CE uses subnet 0 of the customer /%d as the "
                "calculator does (OpenWrt's mapcalc would keep this /64)" % (inside, eu_len)))
    return Mapping(rule, line, ipv4, ipv4_len, psid, ce, ce_rfc, eu_prefix, eu_len, warnings)


def calc(text, table):
    """Parse ``text``, find its rule in ``table`` and compute the mapping."""
    line = parse_line_input(text)
    rule = table.lookup(_prefix(line.addr, line.length))
    if rule is None or line.length < rule.ip6len:
        raise UnsupportedPrefix(
            "no MAP-E rule covers %s (known providers: %s)" % (
                line.text, ", ".join(PROVIDERS[p][0] for p in table.providers() if p in PROVIDERS)))
    return compute(rule, line)
