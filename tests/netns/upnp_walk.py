"""How long miniupnpd takes to answer the farthest NAT-PMP request, the reserve in the last
port set (before) against the top port of every set (core.upnp.reserve): a figure to
report, not a test. Run as root from the top of the tree:

    .venv/bin/python tests/netns/upnp_walk.py [nftables|iptables] [--daemon]

--daemon runs miniupnpd as a router does (no -d: it forks and logs only up to LOG_NOTICE);
without it, as the tests do (-d: every permission check logs a debug line, which is most of
the cost of each step).

miniupnpd walks up from a denied port one at a time (wrapping past 65535 to 1), so the
farthest request is the port just above the last reserved one."""
import os
import signal
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
sys.path[:0] = [HERE, TOP, os.path.join(TOP, "src")]

from test_upnp_netns import HOST, ROUTER, Upnp  # noqa: E402


class Daemon(Upnp):
    """miniupnpd without -d: forked, LOG_DEBUG masked."""

    def start(self):
        pid = os.path.join(self.lab.tmp, "pid")
        self.lab.ex("rtr", [self.binary, "-P", pid, "-f", os.path.join(self.lab.tmp, "miniupnpd.conf")])
        deadline = time.monotonic() + 20
        while not os.path.exists(pid):
            assert time.monotonic() < deadline, "miniupnpd wrote no pid file"
            time.sleep(0.05)
        time.sleep(1)   # its sockets

    def stop(self):
        pid = os.path.join(self.lab.tmp, "pid")
        if os.path.exists(pid):
            os.kill(int(open(pid).read().split()[0]), signal.SIGTERM)
            time.sleep(0.5)   # it removes its pid file itself

ASK = r"""
import socket, struct, sys, time
host, router, eport = sys.argv[1], sys.argv[2], int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((host, 0))
s.settimeout(300)
t = time.monotonic()
s.sendto(struct.pack("!BBHHHI", 0, 1, 0, 9999, eport, 600), (router, 5351))   # one request, no retry
data = s.recv(16)
print("%.2f %d" % (time.monotonic() - t, struct.unpack("!H", data[10:12])[0]))
"""


def measure(build, layout, daemon):
    rig = (Daemon if daemon else Upnp)(build, reserved=layout)
    try:
        rig.init_chains()
        rig.start()
        out = []
        for eport in (3074, rig.reserved[-1][1] + 1):
            got = rig.lab.ex("lan", [sys.executable, "-c", ASK, HOST, ROUTER, str(eport)])
            seconds, port = got.stdout.split()
            out.append((eport, float(seconds), int(port)))
        return out
    finally:
        rig.down()


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    build = args[0] if args else "nftables"
    daemon = "--daemon" in sys.argv
    from harness import allowed_ranges
    from mape.core import upnp
    sets = allowed_ranges(0x34, 4, 8)
    for name, layout in (("last set", [sets[-1]]), ("top of every set", upnp.reserve(sets, 1))):
        for eport, seconds, port in measure(build, layout, daemon):
            print("%-16s asked %5d -> granted %5d after %6.2f s (%s%s)"
                  % (name, eport, port, seconds, build, ", no -d" if daemon else ", -d"), flush=True)


if __name__ == "__main__":
    main()
