"""Delete the conntrack entries NATed to an IPv4 address that is no longer ours.

After a prefix change the old flows keep their old source address: their packets would
leave through the new tunnel with it, and the BR drops them, so the flows stall until the
entries time out (hours for established TCP). Deleting them makes the next packet of each
flow NEW, NATed to the new address; the far end resets it and the application reconnects.

This speaks ctnetlink directly (what `conntrack -D --reply-dst ADDR` does), so it needs no
`conntrack` package on the router, only the kernel's nf_conntrack_netlink (OpenWrt builds
it into every image that has conntrack). Without it nothing can delete entries from user
space: they time out by themselves, and flush() says so.
"""
import errno
import socket
import struct

NETLINK_NETFILTER = 12
NFNL_SUBSYS_CTNETLINK = 1
IPCTNL_MSG_CT_GET = 1
IPCTNL_MSG_CT_DELETE = 2
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_DUMP = 0x300
NLMSG_ERROR = 2
NLMSG_DONE = 3
CTA_TUPLE_ORIG = 1
CTA_TUPLE_REPLY = 2
CTA_ZONE = 18
CTA_TUPLE_IP = 1
CTA_IP_V4_DST = 2
NLA_TYPE_MASK = 0x3fff
HEADER = struct.Struct("=IHHII")   # nlmsghdr
NFGEN = struct.Struct("=BBH")      # nfgenmsg: family, version, res_id (big endian, 0)
ATTR = struct.Struct("=HH")


class Unavailable(Exception):
    pass


def _attrs(data):
    """(type, payload, raw bytes) of each netlink attribute in ``data``."""
    out = []
    i = 0
    while i + ATTR.size <= len(data):
        length, kind = ATTR.unpack_from(data, i)
        if length < ATTR.size:
            break
        out.append((kind & NLA_TYPE_MASK, data[i + ATTR.size:i + length], data[i:i + length]))
        i += (length + 3) & ~3
    return out


def _reply_dst(payload):
    for kind, value, _ in _attrs(payload):
        if kind == CTA_TUPLE_IP:
            for k, v, _ in _attrs(value):
                if k == CTA_IP_V4_DST:
                    return v
    return None


def matching_entries(messages, address):
    """Raw CTA_TUPLE_ORIG (+ CTA_ZONE) attributes of the entries whose reply tuple goes to
    ``address`` (4 bytes), from the ctnetlink messages of a dump (pure)."""
    found = []
    for body in messages:
        attrs = _attrs(body[NFGEN.size:])
        reply = [v for k, v, _ in attrs if k == CTA_TUPLE_REPLY]
        if reply and _reply_dst(reply[0]) == address:
            found.append(b"".join(raw for k, _, raw in attrs if k in (CTA_TUPLE_ORIG, CTA_ZONE)))
    return found


class Ctnetlink:
    def __init__(self, timeout=5.0):
        try:
            self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        except OSError as e:
            raise Unavailable("no netfilter netlink socket: %s" % e.strerror)
        self.sock.settimeout(timeout)
        self.sock.bind((0, 0))
        self.seq = 0

    def close(self):
        self.sock.close()

    def request(self, msg_type, flags, attrs=b""):
        """Send one ctnetlink request; the bodies (after nlmsghdr) of the answers until
        DONE or the ack. Raises OSError for a netlink error other than ENOENT."""
        self.seq += 1
        body = NFGEN.pack(socket.AF_INET, 0, 0) + attrs
        kind = (NFNL_SUBSYS_CTNETLINK << 8) | msg_type
        self.sock.send(HEADER.pack(HEADER.size + len(body), kind, NLM_F_REQUEST | flags, self.seq, 0) + body)
        bodies = []
        while True:
            data = self.sock.recv(1 << 16)
            i = 0
            while i + HEADER.size <= len(data):
                length, kind, _, seq, _ = HEADER.unpack_from(data, i)
                if length < HEADER.size:
                    return bodies
                body = data[i + HEADER.size:i + length]
                i += (length + 3) & ~3
                if seq != self.seq:
                    continue
                if kind == NLMSG_DONE:
                    return bodies
                if kind == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", body)[0]
                    if code in (0, errno.ENOENT):
                        return bodies
                    raise OSError(code, "ctnetlink: %s" % errno.errorcode.get(code, code))
                bodies.append(body)
                if not flags & NLM_F_DUMP:
                    return bodies


def flush(ipv4):
    """Delete the IPv4 conntrack entries whose replies go to ``ipv4`` (the ones SNATed to
    it). Returns (deleted count, None) or (0, one-line reason it could not)."""
    address = socket.inet_aton(ipv4)
    try:
        link = Ctnetlink()
    except Unavailable as e:
        return 0, str(e)
    try:
        entries = matching_entries(link.request(IPCTNL_MSG_CT_GET, NLM_F_DUMP), address)
        for raw in entries:   # after the dump: deleting during it can skip entries
            link.request(IPCTNL_MSG_CT_DELETE, NLM_F_ACK, raw)
        return len(entries), None
    except OSError as e:
        if e.errno in (errno.EOPNOTSUPP, errno.EPROTONOSUPPORT, errno.ENOENT):
            return 0, "the kernel has no nf_conntrack_netlink: the old entries time out by themselves"
        return 0, "conntrack flush failed: %s" % (e.strerror or e)
    except socket.timeout:
        return 0, "conntrack flush failed: no answer from the kernel"
    finally:
        link.close()
