"""RFC 7597 section 5.1 port sets (GMA algorithm).

A port p belongs to PSID ``psid`` when its k bits after the first a bits equal psid:
    p = A * 2^(16-a) + psid * 2^m + j,   m = 16 - a - k,  0 <= j < 2^m
A = 0 is excluded when a > 0 (ports 0-1023 and the like are never handed out).
"""


def port_sets(psid, offset, psid_len):
    """Allowed ports as a list of inclusive (first, last) ranges, ascending."""
    m = 16 - offset - psid_len
    if m < 0 or offset < 0 or psid_len < 0:
        raise ValueError("offset + psid_len must be <= 16")
    if not 0 <= psid < (1 << psid_len):
        raise ValueError("psid out of range")
    size = 1 << m
    first_a = 1 if offset > 0 else 0
    sets = []
    for a in range(first_a, 1 << offset):
        start = (a << (16 - offset)) | (psid << m)
        end = start + size - 1
        if start == 0:
            start = 1  # port 0 is never usable (mapcalc bumps it the same way)
        if start <= end:
            sets.append((start, end))
    return sets


def port_count(offset, psid_len):
    return sum(last - first + 1 for first, last in port_sets(0, offset, psid_len))


def psid_of_port(port, offset, psid_len):
    """The PSID a port belongs to (the inverse used by BRs to check a source port)."""
    m = 16 - offset - psid_len
    return (port >> m) & ((1 << psid_len) - 1)


def port_allowed(port, psid, offset, psid_len):
    if offset > 0 and port >> (16 - offset) == 0:
        return False
    if port == 0:
        return False
    return psid_of_port(port, offset, psid_len) == psid
