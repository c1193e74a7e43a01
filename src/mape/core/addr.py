"""IPv4/IPv6 text <-> int, strict, formatted as RFC 5952 (same text as the stdlib's
ipaddress). Kept here so that `mape-py calc` imports nothing heavy: on the router a cold
start is dominated by imports (ipaddress pulls in functools and collections)."""

_HEX = set("0123456789abcdefABCDEF")


def parse_v4(text):
    """int of a dotted-quad IPv4 address; ValueError otherwise."""
    parts = text.split(".")
    if len(parts) != 4:
        raise ValueError("not an IPv4 address: %r" % text)
    value = 0
    for part in parts:
        if not part.isdigit() or not part.isascii() or len(part) > 3 or (len(part) > 1 and part[0] == "0"):
            raise ValueError("not an IPv4 address: %r" % text)
        octet = int(part)
        if octet > 255:
            raise ValueError("not an IPv4 address: %r" % text)
        value = value << 8 | octet
    return value


def format_v4(value):
    return "%d.%d.%d.%d" % (value >> 24 & 255, value >> 16 & 255, value >> 8 & 255, value & 255)


def _groups(part, text):
    if part == "":
        return []
    groups = []
    for group in part.split(":"):
        if not 1 <= len(group) <= 4 or not set(group) <= _HEX:
            raise ValueError("not an IPv6 address: %r" % text)
        groups.append(int(group, 16))
    return groups


def parse_v6(text):
    """int of an IPv6 address (with '::' and a trailing dotted quad allowed); ValueError otherwise."""
    if not isinstance(text, str) or not text or "%" in text or len(text) > 45:
        raise ValueError("not an IPv6 address: %r" % text)
    head = text
    tail_v4 = []
    if "." in text:
        head, _, v4 = text.rpartition(":")
        if not head:
            raise ValueError("not an IPv6 address: %r" % text)
        v4_int = parse_v4(v4)
        tail_v4 = [v4_int >> 16, v4_int & 0xFFFF]
        if head.endswith(":"):
            head += ":"  # "...::1.2.3.4": the '::' lost its second colon to rpartition
    if head.count("::") > 1:
        raise ValueError("not an IPv6 address: %r" % text)
    if "::" in head:
        left, right = head.split("::")
        lg, rg = _groups(left, text), _groups(right, text) + tail_v4
        if len(lg) + len(rg) > 7:
            raise ValueError("not an IPv6 address: %r" % text)
        groups = lg + [0] * (8 - len(lg) - len(rg)) + rg
    else:
        groups = _groups(head, text) + tail_v4
        if len(groups) != 8:
            raise ValueError("not an IPv6 address: %r" % text)
    value = 0
    for group in groups:
        value = value << 16 | group
    return value


def format_v6(value):
    """RFC 5952: lowercase, no leading zeros, the longest run (>= 2) of zero groups as '::'."""
    groups = [(value >> (112 - 16 * i)) & 0xFFFF for i in range(8)]
    best_start, best_len, start = -1, 1, -1
    for i, group in enumerate(groups + [1]):
        if group == 0 and start < 0:
            start = i
        elif group != 0 and start >= 0:
            if i - start > best_len:
                best_start, best_len = start, i - start
            start = -1
    text = ["%x" % g for g in groups]
    if best_start < 0:
        return ":".join(text)
    return ":".join(text[:best_start]) + "::" + ":".join(text[best_start + best_len:])
