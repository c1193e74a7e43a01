"""Port-set source NAT for a shared MAP-E IPv4: pure renderers (no I/O).

One NatSpec (shared IPv4, the allowed port ranges, the tunnel device, the strategy and
options) renders to a complete ruleset for either backend:

- render_iptables(spec): iptables-restore text for fw3 (`iptables-restore --noflush`),
  own chains ``mape_py*`` in the nat table (and the filter table for the guard), one
  jump from each built-in chain, all scoped to the tunnel device (``-o``).
- render_nft(spec): an nft script for fw4 (`nft -f`): ``table inet mape_py`` of its own,
  deleted and re-created in the same transaction, NAT base chain at priority
  srcnat - 5 (95), i.e. before fw4's srcnat (100); the first NAT chain that binds a
  connection wins, so fw4's masquerade and netifd's SNAT entries never see tunnel
  connections.

Strategies (see docs/nat.md for the measurements):

- ``rr`` (default): round robin over the port ranges, a separate counter per protocol.
  nft: one ``numgen inc mod N vmap`` rule. iptables: a mixed-radix tree of exact nth
  cascades (rule i of a node of k children: ``--every k-i --packet 0``, the last rule
  unconditional), so ~log(N) rule checks per new connection and it never falls through.
- ``hash``: per-source stable (the same source address and port always land in the same
  range), without marks. nft: ``jhash ip saddr . sport mod N vmap``; iptables: digits of
  the source port (ICMP: identifier) read with ``u32`` range tests in a binary tree, with
  rejection of digits >= N (see _ipt_hash).

No strategy writes the packet mark or the conntrack mark: every foreign mark bit survives
by construction. ``mark_mask`` is validated and reserved (the bits mape-py may own).

All rules live in NAT chains, which the kernel consults only for the first packet of a
connection; established packets cost no rule evaluation there. The optional guard (on by
default) costs one rule check per packet leaving through the tunnel: it drops packets
conntrack could not track (INVALID/UNTRACKED: NAT never sees them, so they would leave
with a private source address) and, on iptables, new connections of protocols without
ports (GRE, ESP, ...), which a shared IPv4 cannot carry. nft drops those inside its NAT
chain instead (free).

The optional per-host cap (``host_cap``, off by default) limits the tunnel connections
one LAN source address may hold at once, so that one host cannot take every port. It
lives in the filter table (REJECT is not allowed in a nat chain) and counts only the
first packet of a connection (NEW and not yet confirmed: a retransmitted SYN or a second
datagram before the reply is not counted again): iptables, one FORWARD jump
``-o <tunnel> --ctstate NEW ! --ctstatus CONFIRMED -m connlimit --connlimit-above N
--connlimit-mask 32 --connlimit-saddr -j mape_py_cap``, placed after fw3's
RELATED,ESTABLISHED accept like the guard; nft, the guard's forward rule becomes a
``ct state vmap`` whose ``new`` branch counts with ``add @cap_hosts { ip saddr ct count
over N }`` (still one rule per established packet; with the guard off that one rule is
the cap's). Over the cap a connection is refused at once: TCP reset, else ICMP
administratively prohibited (which the kernel rate-limits per LAN host).
"""
import ipaddress
import re

from mape.core.errors import InputError
from mape.core.portset import port_sets as _port_sets

STRATEGIES = ("rr", "hash")
DEFAULT_STRATEGY = "rr"
BACKENDS = ("auto", "iptables", "nftables", "off")
DEFAULT_MARK_MASK = 0x00FF0000
RESERVED_MARK_BITS = 0x0000F000      # GL.iNet: VPN policy routing, DNS leak guard
CHAIN = "mape_py"                    # iptables chain prefix
NFT_TABLE = "mape_py"                # table inet mape_py
NFT_PRIORITY = 95                    # srcnat - 5: before fw4's srcnat (100)
COMMENT = "mape-py"
HASH_SEED = 0x6D617065               # "mape": fixed, so a source keeps its range across reloads
HASH_BITS = 12                       # iptables hash: bits 1..12 of the source port

HOST_CAP_SET = "cap_hosts"           # nft dynamic set: per-source connection counts

_IFNAME = re.compile(r"^[A-Za-z0-9_.@:+-]{1,15}\Z")  # \Z: "$" would accept a trailing newline
_TRUE = ("1", "yes", "on", "true", "enabled")
_FALSE = ("0", "no", "off", "false", "disabled")


def valid_ifname(name):
    """A usable Linux interface name: 1-15 of letters, digits, _ . - @ : + (no quotes, no
    spaces). What `firewall --wan-if` and `calc --device` accept."""
    return isinstance(name, str) and _IFNAME.match(name) is not None


class NatSpec:
    """What the NAT rules need. Plain class; build it with from_mapping()/from_params()."""

    def __init__(self, ipv4, port_sets, wan_if, lan_if=None, strategy=DEFAULT_STRATEGY,
                 mark_mask=DEFAULT_MARK_MASK, kept_out=(), guard=True, tcp_time_wait=None,
                 backend="auto", psid=None, psid_offset=None, psid_len=None, host_cap=None):
        try:
            self.ipv4 = str(ipaddress.IPv4Address(str(ipv4)))
        except ValueError:
            raise InputError("not an IPv4 address: %r" % (ipv4,))
        if not wan_if or not valid_ifname(str(wan_if)):
            raise InputError("bad tunnel interface name %r (1-15 letters, digits, _ . - @ :)" % (wan_if,))
        if lan_if is not None and not _IFNAME.match(str(lan_if)):
            raise InputError("bad LAN interface name %r" % (lan_if,))
        if strategy not in STRATEGIES:
            raise InputError("unknown NAT strategy %r (choose: %s)" % (strategy, ", ".join(STRATEGIES)))
        if backend not in BACKENDS:
            raise InputError("unknown firewall backend %r (choose: %s)" % (backend, ", ".join(BACKENDS)))
        self.wan_if = str(wan_if)
        self.lan_if = lan_if
        self.strategy = strategy
        self.backend = backend
        self.mark_mask = check_mark_mask(mark_mask)
        self.kept_out = normalize_ranges(kept_out)
        self.guard = bool(guard)
        self.tcp_time_wait = tcp_time_wait
        self.port_sets = [(int(a), int(b)) for a, b in port_sets]
        self.psid = psid
        self.psid_offset = psid_offset
        self.psid_len = psid_len
        self.ranges = subtract_ranges(self.port_sets, self.kept_out)
        if not self.ranges:
            raise InputError("no port left for NAT (all allowed ports are kept out)")
        self.host_cap_setting = check_host_cap(host_cap)
        self.host_cap = resolve_host_cap(self.host_cap_setting, self.port_count)

    # -- constructors --------------------------------------------------------------
    @classmethod
    def from_params(cls, ipv4, psid, psid_offset, psid_len, wan_if=None, device=None, options=None, **kw):
        """From --ipv4/--psid/--psid-offset/--psid-len (checked; InputError on bad values)."""
        for name, value, hi in (("psid-offset", psid_offset, 15), ("psid-len", psid_len, 16)):
            if not isinstance(value, int) or not 0 <= value <= hi:
                raise InputError("%s must be 0..%d, not %r" % (name, hi, value))
        if psid_offset + psid_len > 16:
            raise InputError("psid-offset + psid-len must be <= 16 (got %d + %d)" % (psid_offset, psid_len))
        if not isinstance(psid, int) or not 0 <= psid < (1 << psid_len):
            raise InputError("psid must be 0..%d for psid-len %d, not %r" % ((1 << psid_len) - 1, psid_len, psid))
        sets = _port_sets(psid, psid_offset, psid_len)
        return cls._build(ipv4, sets, wan_if, device, options, kw,
                          psid=psid, psid_offset=psid_offset, psid_len=psid_len)

    @classmethod
    def from_mapping(cls, mapping, wan_if=None, device=None, options=None, **kw):
        """From a mape.core.mapping.Mapping. ``device``/``wan_if`` name the tunnel device
        (map-wan); ``options`` is parse_nat_options() output; keywords override it."""
        return cls._build(mapping.ipv4_text, mapping.port_sets, wan_if, device, options, kw,
                          psid=mapping.psid, psid_offset=mapping.psid_offset, psid_len=mapping.psid_len)

    @classmethod
    def _build(cls, ipv4, sets, wan_if, device, options, kw, **extra):
        values = {}
        for key, value in (options or {}).items():
            if key in ("strategy", "backend", "mark_mask", "kept_out", "guard", "tcp_time_wait", "lan_if",
                       "host_cap"):
                values[key] = value
        values.update(kw)
        wan = wan_if or device
        if not wan:
            raise InputError("the tunnel interface (wan_if, e.g. map-wan) is required")
        return cls(ipv4, sets, wan, **dict(values, **extra))

    # -- derived -------------------------------------------------------------------
    @property
    def port_count(self):
        return sum(b - a + 1 for a, b in self.ranges)

    def allowed(self, port):
        return any(a <= port <= b for a, b in self.ranges)

    def as_dict(self):
        return {"ipv4": self.ipv4, "wan_if": self.wan_if, "lan_if": self.lan_if, "strategy": self.strategy,
                "backend": self.backend, "mark_mask": "0x%08x" % self.mark_mask,
                "kept_out": [list(r) for r in self.kept_out], "guard": self.guard,
                "tcp_time_wait": self.tcp_time_wait, "ranges": [list(r) for r in self.ranges],
                "port_count": self.port_count, "host_cap": self.host_cap}


# -- helpers ---------------------------------------------------------------------------
def check_mark_mask(value):
    if isinstance(value, str):
        text = value.strip()
        try:
            value = int(text, 0)
        except ValueError:
            raise InputError("mark mask must be a number such as 0x00ff0000, not %r" % text[:40])
    if not isinstance(value, int) or not 0 < value <= 0xFFFFFFFF:
        raise InputError("mark mask must be between 0x1 and 0xffffffff, not %r" % (value,))
    if value & RESERVED_MARK_BITS:
        raise InputError("mark mask 0x%08x overlaps 0x0000f000, which GL.iNet firmware uses "
                         "(VPN policy routing, DNS leak guard)" % value)
    return value


def check_host_cap(value):
    """The per-host cap setting: None (off), a count N (int) or a share "P%" (1-100 % of
    the NAT pool). "" and 0 (or 0%) mean off. InputError on anything else (the LuCI page
    checks the same)."""
    if value is None or value is False:
        return None
    text = str(value).strip()
    if text == "":
        return None
    m = re.match(r"^([0-9]{1,5}) *(%?)\Z", text)     # ASCII digits, as the LuCI page
    if not m:
        raise InputError("the per-host cap must be a number of connections such as 60 or a share "
                         "of the ports such as 25%%, not %r" % text[:40])
    number = int(m.group(1))
    if number == 0:
        return None
    if m.group(2):
        if not 1 <= number <= 100:
            raise InputError("a share of the ports must be 1%%..100%%, not %d%%" % number)
        return "%d%%" % number
    if not 1 <= number <= 65535:
        raise InputError("the per-host cap must be 1..65535 connections, not %d" % number)
    return number


def resolve_host_cap(setting, pool):
    """Connections per LAN host for a checked setting (check_host_cap) and a NAT pool of
    ``pool`` ports: a share rounds down, but is at least 1. None when off."""
    if setting is None:
        return None
    if isinstance(setting, str):
        return max(1, pool * int(setting[:-1]) // 100)
    return int(setting)


def normalize_ranges(items):
    """Ports/ranges ("80", "5190-5199", 80, (a, b)) -> sorted merged [(a, b)]."""
    out = []
    for item in items or ():
        if isinstance(item, (tuple, list)) and len(item) == 2:
            a, b = item
        elif isinstance(item, int):
            a = b = item
        else:
            text = str(item).strip()
            m = re.match(r"^(\d{1,5})(?:\s*[-:]\s*(\d{1,5}))?$", text)
            if not m:
                raise InputError("bad port or range %r (expected e.g. 5190 or 5190-5199)" % text[:40])
            a = int(m.group(1))
            b = int(m.group(2)) if m.group(2) else a
        a, b = int(a), int(b)
        if not 1 <= a <= b <= 65535:
            raise InputError("bad port range %d-%d (1..65535, first <= last)" % (a, b))
        out.append((a, b))
    out.sort()
    merged = []
    for a, b in out:
        if merged and a <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(b, merged[-1][1]))
        else:
            merged.append((a, b))
    return merged


def subtract_ranges(ranges, holes):
    out = []
    for a, b in ranges:
        pieces = [(a, b)]
        for ha, hb in holes:
            nxt = []
            for pa, pb in pieces:
                if hb < pa or ha > pb:
                    nxt.append((pa, pb))
                    continue
                if pa < ha:
                    nxt.append((pa, ha - 1))
                if hb < pb:
                    nxt.append((hb + 1, pb))
            pieces = nxt
        out.extend(pieces)
    return out


def _factors(n):
    """Prime factors of n, ascending (mixed radix of the nth tree)."""
    out = []
    d = 2
    while d * d <= n:
        while n % d == 0:
            out.append(d)
            n //= d
        d += 1
    if n > 1:
        out.append(n)
    return out


def hash_buckets(n, bits=HASH_BITS):
    """Split 0..2^bits-1 into n contiguous bucket ranges, sizes differing by at most one."""
    total = 1 << bits
    if n > total:
        raise InputError("too many port ranges (%d) for the hash strategy" % n)
    return [(i * total // n, (i + 1) * total // n - 1) for i in range(n)]


def rr_slots(ranges):
    """Round-robin slot -> range index. Equal ranges: one slot each. Unequal ranges (ports
    kept out): one slot per port, interleaved, so each range gets its share of connections."""
    sizes = [b - a + 1 for a, b in ranges]
    if len(set(sizes)) == 1:
        return list(range(len(ranges)))
    total = sum(sizes)
    # Smooth weighted round robin: deterministic, interleaved, exact shares.
    current = [0] * len(sizes)
    slots = []
    for _ in range(total):
        for i, s in enumerate(sizes):
            current[i] += s
        best = max(range(len(sizes)), key=lambda i: current[i])
        current[best] -= total
        slots.append(best)
    return slots


PROTOS = ("tcp", "udp", "icmp")


# -- iptables (fw3) -------------------------------------------------------------------
def _ipt_to(spec, rng):
    a, b = rng
    return "%s:%d" % (spec.ipv4, a) if a == b else "%s:%d-%d" % (spec.ipv4, a, b)


def iptables_jumps(spec):
    """(table, builtin chain, rule args without -A/-I) for the jumps into our chains."""
    jumps = [("nat", "POSTROUTING", "-o %s -m comment --comment %s -j %s" % (spec.wan_if, COMMENT, CHAIN))]
    if spec.host_cap:
        # before the guard's FORWARD jump here: both are inserted at the same position, so
        # the guard ends up first (port-less protocols are dropped before being counted)
        jumps.append(("filter", "FORWARD",
                      "-o %s -m conntrack --ctstate NEW ! --ctstatus CONFIRMED -m connlimit --connlimit-above %d "
                      "--connlimit-mask 32 "
                      "--connlimit-saddr -m comment --comment %s -j %s_cap"
                      % (spec.wan_if, spec.host_cap, COMMENT, CHAIN)))
    if spec.guard:
        for builtin in ("FORWARD", "OUTPUT"):
            jumps.append(("filter", builtin,
                          "-o %s -m conntrack --ctstate NEW,INVALID,UNTRACKED -m comment --comment %s -j %s_guard"
                          % (spec.wan_if, COMMENT, CHAIN)))
    return jumps


def _ipt_rr(spec, proto, chains):
    """Mixed-radix tree of exact nth cascades ending in SNAT rules. ``chains`` is an
    ordered dict-like list of (name, rules)."""
    n = len(spec.ranges)
    factors = _factors(n) if n > 1 else []
    root = "%s_%s" % (CHAIN, proto)

    def node(name, level, base, stride):
        rules = []
        chains.append((name, rules))
        k = factors[level]
        for i in range(k):
            leaf = base + i * stride
            if level == len(factors) - 1:
                target = "SNAT --to-source %s" % _ipt_to(spec, spec.ranges[leaf])
            else:
                target = "%s_%d" % (name, i)
                node(target, level + 1, leaf, stride * k)
            match = "" if i == k - 1 else "-m statistic --mode nth --every %d --packet 0 " % (k - i)
            rules.append("-A %s -p %s %s-j %s" % (name, proto, match, target))

    if not factors:
        chains.append((root, ["-A %s -p %s -j SNAT --to-source %s" % (root, proto, _ipt_to(spec, spec.ranges[0]))]))
    else:
        node(root, 0, 0, 1)
    return root


def _u32(proto, shift, bits, lo, hi):
    # transport header offset from IHL, then `bits` bits of the source port (ICMP:
    # identifier) starting `shift` bits above its lowest bit.
    word = 4 if proto == "icmp" else 0
    return '-m u32 --u32 "0>>22&0x3C@%d>>%d&0x%X=%d:%d"' % (word, 16 + shift, (1 << bits) - 1, lo, hi)


def hash_levels(n):
    """(bits per digit, number of levels) of the iptables hash: digit k is bits
    1+bits*k .. of the source port (bit 0 skipped: Linux prefers even ports for connect)."""
    bits = max(1, (n - 1).bit_length())
    return bits, max(1, 15 // bits)


def _ipt_hash(spec, proto, chains):
    """Stable per source without marks: digit d = `bits` bits of the source port; d < n
    picks range d through a binary tree of u32 range tests; d >= n (rejection) tries the
    next digit; after the last digit, range 0. Ports from one host are often consecutive,
    so digits are taken from the low bits, where consecutive ports differ."""
    n = len(spec.ranges)
    root = "%s_%s" % (CHAIN, proto)
    if n == 1:
        chains.append((root, ["-A %s -p %s -j SNAT --to-source %s" % (root, proto, _ipt_to(spec, spec.ranges[0]))]))
        return root
    bits, levels = hash_levels(n)
    counter = [0]

    def snat(i):
        return "SNAT --to-source %s" % _ipt_to(spec, spec.ranges[i])

    def tree(name, level, lo, hi, rules):
        """Rules choosing range lo..hi-1 by the digit of ``level`` (known to be in lo..hi-1)."""
        mid = (lo + hi) // 2
        for side, (a, b) in enumerate(((lo, mid), (mid, hi))):
            if b - a == 1:
                target = snat(a)
            else:
                counter[0] += 1
                target = "%s_h%d" % (root, counter[0])     # short: names are <= 28 chars
                sub = []
                chains.append((target, sub))
                tree(target, level, a, b, sub)
            match = "%s " % _u32(proto, 1 + bits * level, bits, a, b - 1) if side == 0 else ""
            rules.append("-A %s -p %s %s-j %s" % (name, proto, match, target))

    for level in range(levels):
        name = root if level == 0 else "%s_l%d" % (root, level)
        rules = []
        chains.append((name, rules))
        if n < (1 << bits):
            nxt = "%s_l%d" % (root, level + 1) if level + 1 < levels else None
            rules.append("-A %s -p %s %s -j %s" % (name, proto, _u32(proto, 1 + bits * level, bits, n, (1 << bits) - 1),
                                                    nxt or snat(0)))
        tree(name, level, 0, n, rules)
        if n == (1 << bits):
            break
    return root


def render_iptables(spec, insert=True):
    """iptables-restore text (for `iptables-restore --noflush`). Declaring our chains
    flushes them; the jumps are inserted at position 1 of the built-in chains. Applying
    this text twice would add a second jump: mape.shell.netfilter.apply() first deletes
    the existing jumps in the same transaction (insert=False renders chains only)."""
    top = []
    chains = [(CHAIN, top)]
    for proto in PROTOS:
        builder = _ipt_hash if spec.strategy == "hash" else _ipt_rr
        root = builder(spec, proto, chains)
        top.append("-A %s -p %s -j %s" % (CHAIN, proto, root))
    # Protocols without ports. With the guard on they never get here (filter runs first);
    # without it they are bound to the shared address (the BR may drop them).
    top.append("-A %s -j SNAT --to-source %s" % (CHAIN, spec.ipv4))
    out = ["# mape-py iptables NAT: %s ports of %s on %s (strategy %s)"
           % (spec.port_count, spec.ipv4, spec.wan_if, spec.strategy), "*nat"]
    out += [":%s - [0:0]" % name for name, _ in chains]
    if insert:
        out += ["-I %s 1 %s" % (chain, args) for table, chain, args in iptables_jumps(spec) if table == "nat"]
    for _, rules in chains:
        out += rules
    out.append("COMMIT")
    if spec.guard or spec.host_cap:
        guard, cap = CHAIN + "_guard", CHAIN + "_cap"
        out.append("*filter")
        out += [":%s - [0:0]" % name for name, on in ((guard, spec.guard), (cap, spec.host_cap)) if on]
        if insert:
            out += ["-I %s 1 %s" % (chain, args) for table, chain, args in iptables_jumps(spec)
                    if table == "filter"]
        if spec.guard:
            # Only NEW, INVALID and UNTRACKED packets get here. New TCP first (the common case).
            out += ["-A %s -p tcp -m conntrack --ctstate NEW -j RETURN" % guard,
                    "-A %s -m conntrack --ctstate INVALID,UNTRACKED -j DROP" % guard]
            out += ["-A %s -p %s -j RETURN" % (guard, p) for p in PROTOS[1:]]
            out += ["-A %s -j DROP" % guard]
        if spec.host_cap:
            # over the cap: refused at once, never left to time out
            out += ["-A %s -p tcp -j REJECT --reject-with tcp-reset" % cap,
                    "-A %s -j REJECT --reject-with icmp-admin-prohibited" % cap]
        out.append("COMMIT")
    return "\n".join(out) + "\n"


def iptables_chains(spec):
    """{table: [our chain names]} the rendered text declares."""
    tables = {}
    table = None
    for line in render_iptables(spec).splitlines():
        if line.startswith("*"):
            table = line[1:]
        elif line.startswith(":"):
            tables.setdefault(table, []).append(line[1:].split()[0])
    return tables


# -- nftables (fw4) --------------------------------------------------------------------
def _nft_ports(rng):
    a, b = rng
    return "%d" % a if a == b else "%d-%d" % (a, b)


def _vmap(pairs):
    return "{ %s }" % ", ".join("%s : jump %s" % (k, v) for k, v in pairs)


def render_nft(spec):
    """nft script: (re)creates `table inet mape_py` atomically (one `nft -f` transaction)."""
    t = NFT_TABLE
    lines = ["# mape-py nftables NAT: %d ports of %s on %s (strategy %s)"
             % (spec.port_count, spec.ipv4, spec.wan_if, spec.strategy),
             "table inet %s" % t, "delete table inet %s" % t, "", "table inet %s {" % t]

    def chain(name, body, hook=None):
        lines.append("\tchain %s {" % name)
        if hook:
            lines.append("\t\t%s" % hook)
        lines.extend("\t\t%s" % r for r in body)
        lines.append("\t}")

    # One rule decides every tunnel connection with ports; the next drops the rest
    # (nft allows drop in a nat chain; nothing tunnel-bound falls through to fw4).
    chain("srcnat", ['meta nfproto ipv4 oifname "%s" meta l4proto vmap '
                     '{ tcp : goto pick_tcp, udp : goto pick_udp, icmp : goto pick_icmp }' % spec.wan_if,
                     'meta nfproto ipv4 oifname "%s" counter drop comment "protocols without ports cannot '
                     'share an IPv4"' % spec.wan_if],
          hook="type nat hook postrouting priority %d; policy accept;" % NFT_PRIORITY)
    n = len(spec.ranges)
    for proto in PROTOS:
        body = []
        if n == 1:
            body.append("goto set_%s_0" % proto)    # (one range: no choice to make)
        elif spec.strategy == "hash":
            key = "icmp id" if proto == "icmp" else "%s sport" % proto
            total = 1 << HASH_BITS
            pairs = [("%d-%d" % b if b[0] != b[1] else "%d" % b[0], "set_%s_%d" % (proto, i))
                     for i, b in enumerate(hash_buckets(n))]
            body.append("jhash ip saddr . %s mod %d seed 0x%08x vmap %s" % (key, total, HASH_SEED, _vmap(pairs)))
            if proto == "icmp":   # ICMP queries other than echo have no `icmp id` match
                body.append("numgen inc mod %d vmap %s" % (n, _vmap((i, "set_icmp_%d" % i) for i in range(n))))
        else:
            slots = rr_slots(spec.ranges)
            body.append("numgen inc mod %d vmap %s" % (len(slots), _vmap(
                (k, "set_%s_%d" % (proto, r)) for k, r in enumerate(slots))))
        chain("pick_" + proto, body)
        for i, rng in enumerate(spec.ranges):
            chain("set_%s_%d" % (proto, i), ["meta l4proto %s snat ip to %s:%s" % (proto, spec.ipv4, _nft_ports(rng))])
    guard = ['oifname "%s" ct state invalid,untracked counter drop' % spec.wan_if]
    forward = "type filter hook forward priority -5; policy accept;"
    if spec.host_cap:
        # One rule per forwarded packet, as with the guard alone: a vmap on the ct state.
        if spec.guard:
            chain("guard_fwd", ['oifname "%s" ct state vmap { invalid : goto guard_drop, untracked : goto '
                                'guard_drop, new : goto host_cap }' % spec.wan_if], hook=forward)
            chain("guard_drop", ["counter drop"])
        else:
            chain("cap_fwd", ['oifname "%s" ct state new goto host_cap' % spec.wan_if], hook=forward)
        lines.insert(lines.index("table inet %s {" % t) + 1,
                     "\tset %s {\n\t\ttype ipv4_addr; size 65535; flags dynamic;\n\t}" % HOST_CAP_SET)
        chain("host_cap", ["ct status & confirmed == 0 add @%s { ip saddr ct count over %d } goto refuse"
                           % (HOST_CAP_SET, spec.host_cap)])
        # over the cap: refused at once, never left to time out
        chain("refuse", ["meta l4proto tcp counter reject with tcp reset",
                         "counter reject with icmpx type admin-prohibited"])
    elif spec.guard:
        chain("guard_fwd", guard, hook=forward)
    if spec.guard:
        chain("guard_out", guard, hook="type filter hook output priority -5; policy accept;")
    lines.append("}")
    return "\n".join(lines) + "\n"


def render(spec, backend):
    if backend == "iptables":
        return render_iptables(spec)
    if backend == "nftables":
        return render_nft(spec)
    raise InputError("unknown backend %r (iptables or nftables)" % (backend,))


# -- /etc/config/mape options ------------------------------------------------------------
OPTION_NAMES = {
    # uci option -> NatSpec keyword
    "nat_strategy": "strategy", "strategy": "strategy",
    "nat_backend": "backend", "backend": "backend", "fw_backend": "backend",
    "nat_mark_mask": "mark_mask",
    "nat_keep_out": "kept_out", "keep_out": "kept_out", "kept_out": "kept_out",
    "nat_guard": "guard",
    "nat_tcp_time_wait": "tcp_time_wait",
    "nat_host_cap": "host_cap",
}


def _single(name, raw):
    if isinstance(raw, list):
        raise InputError("option '%s' must be a single value, not a list" % name)
    return str(raw).strip()


def parse_nat_options(section_options):
    """UCI options of `config mape` (see OPTION_NAMES) -> keywords for NatSpec.
    Pure; raises InputError with a one-line message naming the option."""
    out = {"strategy": DEFAULT_STRATEGY, "backend": "auto", "mark_mask": DEFAULT_MARK_MASK,
           "kept_out": [], "guard": True, "tcp_time_wait": None, "host_cap": None}
    for name, raw in (section_options or {}).items():
        key = OPTION_NAMES.get(name)
        if key is None:
            if name.startswith("nat_"):
                raise InputError("unknown option '%s' (known: %s)" % (
                    name, ", ".join(sorted(k for k in OPTION_NAMES if k.startswith("nat_")))))
            continue
        try:
            if key == "kept_out":
                items = raw if isinstance(raw, list) else str(raw).replace(",", " ").split()
                out[key] = normalize_ranges(items)
            elif key == "strategy":
                value = _single(name, raw).lower()
                if value not in STRATEGIES:
                    raise InputError("must be one of %s, not %r" % (", ".join(STRATEGIES), value))
                out[key] = value
            elif key == "backend":
                value = _single(name, raw).lower()
                value = {"fw3": "iptables", "fw4": "nftables", "nft": "nftables", "none": "off",
                         "0": "off"}.get(value, value)
                if value not in BACKENDS:
                    raise InputError("must be one of %s, not %r" % (", ".join(BACKENDS), value))
                out[key] = value
            elif key == "mark_mask":
                out[key] = check_mark_mask(_single(name, raw))
            elif key == "guard":
                value = _single(name, raw).lower()
                if value not in _TRUE + _FALSE:
                    raise InputError("must be 0 or 1, not %r" % value)
                out[key] = value in _TRUE
            elif key == "host_cap":
                out[key] = check_host_cap(_single(name, raw))
            elif key == "tcp_time_wait":
                value = _single(name, raw)
                if value.lower() in ("", "0", "off", "default"):
                    out[key] = None
                else:
                    if not value.isdigit() or not 1 <= int(value) <= 120:
                        raise InputError("must be seconds 1..120 (kernel default 120), or 0 to leave "
                                         "the kernel default, not %r" % value[:20])
                    out[key] = int(value)
        except InputError as e:
            raise InputError("option '%s': %s" % (name, e))
    return out
