"""How long miniupnpd takes to answer the farthest NAT-PMP request, the reserve in the last
port set (before) against the top port of every set (core.upnp.reserve): a figure to
report, not a test. Run as root from the top of the tree:

    .venv/bin/python tests/netns/upnp_walk.py [nftables|iptables]

miniupnpd walks up from a denied port one at a time (wrapping past 65535 to 1), so the
farthest request is the port just above the last reserved one."""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
sys.path[:0] = [HERE, TOP, os.path.join(TOP, "src")]

from test_upnp_netns import HOST, ROUTER, Upnp  # noqa: E402

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


def measure(build, layout):
    rig = Upnp(build, reserved=layout)
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
    build = sys.argv[1] if len(sys.argv) > 1 else "nftables"
    from harness import allowed_ranges
    from mape.core import upnp
    sets = allowed_ranges(0x34, 4, 8)
    for name, layout in (("last set", [sets[-1]]), ("top of every set", upnp.reserve(sets, 1))):
        for eport, seconds, port in measure(build, layout):
            print("%-16s asked %5d -> granted %5d after %6.2f s (%s)" % (name, eport, port, seconds, build))


if __name__ == "__main__":
    main()
