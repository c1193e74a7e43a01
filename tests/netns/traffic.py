"""Traffic generators and the server for the netns tests and bench/nat.py.

Run inside a namespace: `ip netns exec NS python3 traffic.py COMMAND ...`. Each client
command prints one JSON line with its results.
"""
import argparse
import errno
import json
import os
import resource
import select
import selectors
import signal
import socket
import struct
import sys
import time


def _nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 65536) if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def server(args):
    """TCP: accept and hold, append each peer port to --record. UDP: echo."""
    _nofile()
    sel = selectors.DefaultSelector()
    listeners = []
    for addr in args.listen:
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        t.bind((addr, args.port))
        t.listen(4096)
        t.setblocking(False)
        sel.register(t, selectors.EVENT_READ, "listen")
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind((addr, args.port))
        u.setblocking(False)
        sel.register(u, selectors.EVENT_READ, "udp")
        listeners += [t, u]
    record = open(args.record, "a", buffering=1) if args.record else None
    open(args.ready, "w").close()
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    while True:
        for key, _ in sel.select():
            sock, kind = key.fileobj, key.data
            if kind == "listen":
                while True:
                    try:
                        conn, peer = sock.accept()
                    except (BlockingIOError, InterruptedError):
                        break
                    conn.setblocking(False)
                    sel.register(conn, selectors.EVENT_READ, "conn")
                    if record:
                        record.write("tcp %s %d\n" % peer)
            elif kind == "udp":
                while True:
                    try:
                        data, peer = sock.recvfrom(2048)
                    except (BlockingIOError, InterruptedError):
                        break
                    if record:
                        record.write("udp %s %d\n" % peer)
                    try:
                        sock.sendto(data, peer)
                    except OSError:
                        pass
            else:
                try:
                    data = sock.recv(4096)
                except OSError:
                    data = b""
                if not data:
                    sel.unregister(sock)
                    sock.close()


def _socket(kind, src):
    s = socket.socket(socket.AF_INET, kind)
    if src:
        s.bind((src, 0))
    return s


def _why(errors, code):
    """Count a failure by its kind: the errno name (ECONNREFUSED: a TCP reset arrived,
    EHOSTUNREACH: an ICMP unreachable), or "timeout" (no answer at all)."""
    name = errno.errorcode.get(code, str(code)) if code else "timeout"
    errors[name] = errors.get(name, 0) + 1


def tcp_hold(args):
    """Open N connections at once to one ip:port; count those established within timeout.
    --why adds {"errors": {kind: count}}; --hold -1 holds them until a line on stdin."""
    _nofile()
    socks = {}
    errors = {}
    poller = select.epoll()
    for _ in range(args.n):
        s = _socket(socket.SOCK_STREAM, args.src)
        s.setblocking(False)
        err = s.connect_ex((args.dst, args.port))
        if err not in (0, errno.EINPROGRESS):
            _why(errors, err)
            s.close()
            continue
        socks[s.fileno()] = s
        poller.register(s.fileno(), select.EPOLLOUT)
    ok = 0
    failed = args.n - len(socks)
    deadline = time.monotonic() + args.timeout
    pending = set(socks)
    while pending and time.monotonic() < deadline:
        for fd, _ in poller.poll(max(0.01, deadline - time.monotonic())):
            if fd not in pending:
                continue
            pending.discard(fd)
            poller.unregister(fd)
            err = socks[fd].getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err == 0:
                ok += 1
            else:
                failed += 1
                _why(errors, err)
    failed += len(pending)
    for _ in pending:
        _why(errors, 0)
    if args.hold > 0:
        time.sleep(args.hold)
    result = {"ok": ok, "failed": failed}
    if args.why:
        result["errors"] = errors
    print(json.dumps(result))
    sys.stdout.flush()
    if args.hold < 0:
        sys.stdin.readline()
    for s in socks.values():
        s.close()


def tcp_seq(args):
    """Open connections one after another to one ip:port, holding them, until the first
    one fails (or n). Reports how many were up before the first failure."""
    _nofile()
    socks = []
    ok = 0
    for _ in range(args.n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(args.timeout)
        try:
            s.connect((args.dst, args.port))
        except OSError:
            s.close()
            break
        socks.append(s)
        ok += 1
    print(json.dumps({"ok": ok}))
    for s in socks:
        s.close()


def flows(args):
    """Open N connections (concurrently, spread over the --dst list), report; on a stdin
    line send --rounds small segments on each, report; on the next stdin line close."""
    _nofile()
    dsts = args.dst.split(",")
    pending = []
    for k in range(args.n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)
        s.connect_ex((dsts[k % len(dsts)], args.port))
        pending.append(s)
    socks = []
    deadline = time.monotonic() + args.timeout
    while pending and time.monotonic() < deadline:
        _, w, _ = select.select([], pending, [], max(0.01, deadline - time.monotonic()))
        for s in w:
            pending.remove(s)
            if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                socks.append(s)
            else:
                s.close()
    print(json.dumps({"ok": len(socks)}))
    sys.stdout.flush()
    sys.stdin.readline()
    sent = 0
    for _ in range(args.rounds):
        for s in socks:
            try:
                s.send(b"x" * 100)
                sent += 1
            except OSError:
                pass
        time.sleep(0.05)
    time.sleep(0.5)
    print(json.dumps({"sent": sent}))
    sys.stdout.flush()
    sys.stdin.readline()
    for s in socks + pending:
        s.close()


def tcp_bound(args):
    """For each source port in --sports, one short connection to each --dst."""
    ok = failed = 0
    for sport in [int(x) for x in args.sports.split(",")]:
        for dst in args.dst.split(","):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.settimeout(args.timeout)
            try:
                s.bind(("0.0.0.0", sport))
                s.connect((dst, args.port))
                ok += 1
            except OSError:
                failed += 1
            s.close()
    print(json.dumps({"ok": ok, "failed": failed}))


def tcp_short(args):
    """N short connections (connect, send a byte, close) spread over destinations."""
    _nofile()
    dsts = args.dst.split(",")
    ok = failed = 0
    i = 0
    while i < args.n:
        batch = []
        for j in range(min(args.parallel, args.n - i)):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.connect_ex((dsts[(i + j) % len(dsts)], args.port))
            batch.append(s)
        i += len(batch)
        deadline = time.monotonic() + args.timeout
        pending = list(batch)
        while pending and time.monotonic() < deadline:
            _, w, _ = select.select([], pending, [], max(0.01, deadline - time.monotonic()))
            for s in w:
                pending.remove(s)
                if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                    ok += 1
                else:
                    failed += 1
        failed += len(pending)
        for s in batch:
            s.close()
    print(json.dumps({"ok": ok, "failed": failed}))


def udp_burst(args):
    """N sockets each send one datagram to ip:port; count echoes."""
    _nofile()
    socks = []
    errors = {}
    for k in range(args.n):
        s = _socket(socket.SOCK_DGRAM, args.src)
        s.setblocking(False)
        s.connect((args.dst, args.port))
        socks.append(s)
    got = set()
    refused = set()

    def refuse(s, e):        # an ICMP error for this flow (reported by send or recv)
        if s.fileno() not in got and s.fileno() not in refused:
            refused.add(s.fileno())
            _why(errors, e.errno)

    for _ in range(args.rounds):
        for k, s in enumerate(socks):
            try:
                s.send(b"x%d" % k)
            except BlockingIOError:
                pass
            except OSError as e:
                refuse(s, e)
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline and len(got) + len(refused) < args.n:
        r, _, _ = select.select([s for s in socks if s.fileno() not in refused], [], [],
                                max(0.01, deadline - time.monotonic()))
        for s in r:
            try:
                s.recv(100)
                got.add(s.fileno())
            except BlockingIOError:
                pass
            except OSError as e:
                refuse(s, e)
    result = {"ok": len(got), "failed": args.n - len(got)}
    if args.why:
        for _ in range(args.n - len(got) - len(refused)):
            _why(errors, 0)
        result["errors"] = errors
    print(json.dumps(result))


def _checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return (~total) & 0xFFFF


def icmp_burst(args):
    """N echo requests with distinct identifiers; count distinct identifiers answered."""
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    s.setblocking(False)
    ids = [(args.first_id + k) & 0xFFFF for k in range(args.n)]
    for _ in range(args.rounds):
        for ident in ids:
            hdr = struct.pack("!BBHHH", 8, 0, 0, ident, 1)
            payload = b"mape-py"
            pkt = struct.pack("!BBHHH", 8, 0, _checksum(hdr + payload), ident, 1) + payload
            s.sendto(pkt, (args.dst, 0))
    got = set()
    want = set(ids)
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline and not want <= got:
        r, _, _ = select.select([s], [], [], max(0.01, deadline - time.monotonic()))
        if not r:
            continue
        while True:
            try:
                data = s.recv(2048)
            except BlockingIOError:
                break
            ihl = (data[0] & 0xF) * 4
            typ, _, _, ident, _ = struct.unpack("!BBHHH", data[ihl:ihl + 8])
            if typ == 0 and ident in want:
                got.add(ident)
    print(json.dumps({"ok": len(got), "failed": len(want - got)}))


def raw_proto(args):
    """Send N raw packets of an IP protocol without ports (47 = GRE, 50 = ESP)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, args.proto)
    for _ in range(args.n):
        s.sendto(b"\0\0\x08\0" + b"x" * 20, (args.dst, 0))
    print(json.dumps({"sent": args.n}))


def main(argv=None):
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("server")
    a.add_argument("--listen", action="append", required=True)
    a.add_argument("--port", type=int, default=80)
    a.add_argument("--record")
    a.add_argument("--ready", required=True)
    a.set_defaults(fn=server)
    for name, fn in (("tcp-hold", tcp_hold), ("tcp-short", tcp_short), ("udp-burst", udp_burst),
                     ("icmp-burst", icmp_burst), ("raw", raw_proto), ("tcp-seq", tcp_seq), ("flows", flows),
                     ("tcp-bound", tcp_bound)):
        a = sub.add_parser(name)
        a.add_argument("--dst", required=True)
        a.add_argument("--port", type=int, default=80)
        a.add_argument("-n", type=int, default=1)
        a.add_argument("--timeout", type=float, default=4.0)
        a.add_argument("--hold", type=float, default=0)
        a.add_argument("--parallel", type=int, default=50)
        a.add_argument("--rounds", type=int, default=2)
        a.add_argument("--first-id", type=int, default=1000)
        a.add_argument("--proto", type=int, default=47)
        a.add_argument("--sports", default="")
        a.add_argument("--src", default=None, help="bind to this source address (a second LAN host)")
        a.add_argument("--why", action="store_true", help="report failures by kind")
        a.set_defaults(fn=fn)
    args = p.parse_args(argv)
    args.fn(args)


if __name__ == "__main__":
    main()
