"""Issue 14 point 2: Debian's miniupnpd (nftables and iptables builds) configured from
mape.core.upnp behind the port-set NAT, in the MAP-E lab (harness.Lab: strict BR).

The router runs mape's NAT with the reserved ports kept out (what NatAdapter.with_forwards
gives the daemon) and miniupnpd with the conf lines the renderer makes (ext_ifname map-wan,
ext_ip the shared IPv4, the permission rules). A LAN host asks with upnpc (AddPortMapping,
AddAnyPortMapping), natpmpc and a PCP MAP request made here (RFC 6887); the BR's side reaches
what was granted; outgoing bursts never take a reserved port; the BR counts no bad packet.
"""
import os
import shutil
import socket
import struct
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from harness import LAN_HOSTS, WAN, Lab, TRAFFIC, allowed_ranges
from tests.prereq import require
from mape.core import upnp

pytestmark = pytest.mark.netns

CACHE = os.environ.get("MAPE_PY_MINIUPNPD_CACHE", "/var/cache/mape-py/miniupnpd")
PUBLIC = "153.240.0.10"   # miniupnpd refuses a reserved/documentation address as ext_ip
ROUTER = "10.77.0.1"
HOST = LAN_HOSTS[0]
DST = "198.51.100.1"
BUILDS = {
    # build: (binary, NAT backend of mape)
    "nftables": ("/usr/sbin/miniupnpd", "nftables"),
    "iptables": (os.path.join(CACHE, "iptables/usr/sbin/miniupnpd"), "iptables"),
}


@pytest.fixture(scope="module", autouse=True)
def prerequisites():
    require(os.geteuid() == 0, "the netns tier needs root")
    for tool in ("ip", "nft", "iptables-legacy", "conntrack", "upnpc", "natpmpc"):
        require(shutil.which(tool), "the UPnP netns tests need %s (miniupnpc, natpmpc)" % tool)
    require(os.path.exists("/etc/miniupnpd/nft_init.sh"), "the UPnP netns tests need miniupnpd-nftables")
    require(os.path.exists(os.path.join(CACHE, "common/etc/miniupnpd/miniupnpd_functions.sh")),
            "the UPnP netns tests need miniupnpd-iptables and miniupnpd extracted in %s (tools/setup-dev)" % CACHE)


class Upnp:
    """The lab, mape's NAT with the reserve kept out, miniupnpd from the renderer's lines."""

    def __init__(self, build, count=1, reserved=None):
        self.build = build
        self.binary, self.backend = BUILDS[build]
        self.lab = Lab(shared=PUBLIC).up()
        self.proc = None
        self.server = None
        self.configure(count, reserved=reserved)

    def configure(self, count, ipv4=PUBLIC, reserved=None):
        """``reserved``: another layout than core.upnp's (tests/netns/upnp_walk.py)."""
        lab = self.lab
        self.reserved = reserved if reserved is not None else upnp.reserve(lab.allowed, count)
        keep = [w for a, b in self.reserved for w in ("--keep-out", "%d-%d" % (a, b))]
        lab.mape("apply", "--backend", self.backend, *(lab.mapping_args() + keep), backend=self.backend)
        want = upnp.desired(SimpleNamespace(ipv4_text=ipv4), self.reserved, "wan")
        self.leases = os.path.join(lab.tmp, "leases")
        lines = upnp.conf_lines(want) + [
            "listening_ip=rtr-lan", "http_port=5000", "enable_natpmp=yes", "secure_mode=yes",
            "lease_file=%s" % self.leases, "uuid=3d3cec3a-8cf0-11e0-98ee-001a6bd2d07b", "force_igd_desc_v1=no"]
        with open(os.path.join(lab.tmp, "miniupnpd.conf"), "w") as f:
            f.write("\n".join(lines) + "\n")

    def init_chains(self):
        """Run the package's own init script for the build's chains (as its service does)."""
        lab = self.lab
        scripts = os.path.join(lab.tmp, "scripts")
        os.makedirs(scripts, exist_ok=True)
        if self.build == "nftables":
            # Debian ships nft_init.sh without the nft flavour of miniupnpd_functions.sh it
            # sources: give it the names of miniupnpd's nftables defaults (table filter,
            # chains miniupnpd, prerouting_miniupnpd, postrouting_miniupnpd)
            shutil.copy("/etc/miniupnpd/nft_init.sh", scripts)
            with open(os.path.join(scripts, "miniupnpd_functions.sh"), "w") as f:
                f.write("NFT=$(command -v nft)\nTABLE=filter\nNAT_TABLE=filter\nCHAIN=miniupnpd\n"
                        "PREROUTING_CHAIN=prerouting_miniupnpd\nPOSTROUTING_CHAIN=postrouting_miniupnpd\n")
            lab.ex("rtr", ["sh", os.path.join(scripts, "nft_init.sh")])
            # its forward chain drops by default ("add other rules here"): the lab's own traffic
            lab.nft("rtr", "add rule inet filter forward ct state established,related accept\n"
                           "add rule inet filter forward iifname rtr-lan accept\n")
        else:
            shutil.copy(os.path.join(CACHE, "iptables/etc/miniupnpd/iptables_init.sh"), scripts)
            shutil.copy(os.path.join(CACHE, "common/etc/miniupnpd/miniupnpd_functions.sh"), scripts)
            bindir = os.path.join(lab.tmp, "bin")
            os.makedirs(bindir, exist_ok=True)
            if not os.path.exists(os.path.join(bindir, "iptables")):   # the lab's NAT is iptables-legacy
                os.symlink(shutil.which("iptables-legacy"), os.path.join(bindir, "iptables"))
            lab.ex("rtr", ["sh", os.path.join(scripts, "iptables_init.sh"), "-i", "map-wan"],
                   env={"PATH": bindir + ":" + os.environ["PATH"]})

    def start(self):
        self.log = open(os.path.join(self.lab.tmp, "miniupnpd.log"), "a")
        self.proc = subprocess.Popen(["ip", "netns", "exec", self.lab.ns["rtr"], self.binary, "-d", "-P",
                                      os.path.join(self.lab.tmp, "pid"), "-f",
                                      os.path.join(self.lab.tmp, "miniupnpd.conf")],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while "Listening for NAT-PMP" not in self.log_text():
            assert self.proc.poll() is None and time.monotonic() < deadline, self.log_text()[-2000:]
            time.sleep(0.05)

    def restart_empty(self):
        """What OpenWrt's sync_upnp does on a prefix change: miniupnpd stopped, its chains
        removed (the package's init script flushes them at stop), the lease file emptied,
        miniupnpd started again."""
        self.stop()
        scripts = os.path.join(self.lab.tmp, "scripts")
        if self.build == "nftables":
            shutil.copy("/etc/miniupnpd/nft_removeall.sh", scripts)
            self.lab.ex("rtr", ["sh", os.path.join(scripts, "nft_removeall.sh")])
        else:
            shutil.copy(os.path.join(CACHE, "iptables/etc/miniupnpd/iptables_removeall.sh"), scripts)
            self.lab.ex("rtr", ["sh", os.path.join(scripts, "iptables_removeall.sh"), "-i", "map-wan"],
                        env={"PATH": os.path.join(self.lab.tmp, "bin") + ":" + os.environ["PATH"]})
        open(self.leases, "w").close()
        self.init_chains()
        self.start()

    def stop(self):
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def log_text(self):
        with open(os.path.join(self.lab.tmp, "miniupnpd.log")) as f:
            return f.read()

    def lan_server(self, port):
        ready = os.path.join(self.lab.tmp, "lan-ready")
        self.server = subprocess.Popen(["ip", "netns", "exec", self.lab.ns["lan"], sys.executable, TRAFFIC, "server",
                                        "--port", str(port), "--listen", HOST, "--ready", ready],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while not os.path.exists(ready):
            assert self.server.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)

    def down(self):
        self.stop()
        if self.server is not None:
            self.server.kill()
            self.server.wait()
        self.lab.down()

    def upnpc(self, *args):
        return self.lab.ex("lan", ["upnpc", "-u", "http://%s:5000/rootDesc.xml" % ROUTER] + list(args), check=False)

    def lease_ports(self):
        return [x["port"] for x in upnp.parse_leases(open(self.leases).read() if os.path.exists(self.leases) else "")]

    def in_reserve(self, port):
        return any(a <= port <= b for a, b in self.reserved)


@pytest.fixture(params=sorted(BUILDS))
def rig(request):
    require(os.path.exists(BUILDS[request.param][0]), "miniupnpd %s build missing" % request.param)
    rig = Upnp(request.param)
    try:
        rig.init_chains()
        rig.start()
        yield rig
    finally:
        rig.down()


PCP_CLIENT = r"""
import os, socket, struct, sys
host, router, proto, iport, eport = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
mapped = lambda ip: b"\0" * 10 + b"\xff\xff" + socket.inet_aton(ip)
nonce = os.urandom(12)
# RFC 6887: version 2, opcode MAP (1), lifetime; client address; MAP: nonce, protocol,
# internal port, suggested external port and address
req = struct.pack("!BBHI", 2, 1, 0, 600) + mapped(host) + nonce + struct.pack("!B3xHH", proto, iport, eport) \
    + mapped("0.0.0.0")
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((host, 0))
s.settimeout(10)   # generous: miniupnpd answers after its walk to a permitted port
for _ in range(5):
    s.sendto(req, (router, 5351))
    try:
        data = s.recv(1100)
        break
    except socket.timeout:
        continue
else:
    sys.exit("no PCP answer")
version, op, result, lifetime = data[0], data[1], data[3], struct.unpack("!I", data[4:8])[0]
assert data[24:36] == nonce, "nonce"
port = struct.unpack("!H", data[42:44])[0]
print(version, op, result, port, socket.inet_ntoa(data[56:60]))
"""


def pcp_map(rig, proto, iport, eport):
    out = rig.lab.ex("lan", [sys.executable, "-c", PCP_CLIENT, HOST, ROUTER, str(proto), str(iport), str(eport)])
    version, op, result, port, addr = out.stdout.split()
    assert (version, op) == ("2", "129"), out.stdout   # a PCP answer to MAP (0x80 | 1)
    return int(result), int(port), addr


def test_disallowed_requests_are_refused_or_remapped_into_the_reserve(rig):
    """AddPortMapping of a port outside the reserve: refused (606). A game console's usual
    asks, AddAnyPortMapping 25565, NAT-PMP 3074, PCP MAP 9308: each answered with a reserved
    port (the next one up: the reserve is the top port of every set), at the shared IPv4."""
    lab = rig.lab
    assert rig.reserved == [(b, b) for _, b in lab.allowed]
    outside = lab.allowed[0][0] + 1          # allowed by the PSID, but not reserved: SNAT's
    refused = rig.upnpc("-e", "game", "-a", HOST, "8080", str(outside), "TCP")
    assert refused.returncode != 0 and "606" in refused.stdout, refused.stdout
    anyport = rig.upnpc("-e", "game", "-n", HOST, "25565", "25565", "TCP")
    assert anyport.returncode == 0, anyport.stdout
    granted = [int(line.split(":")[1].split()[0]) for line in anyport.stdout.splitlines()
               if line.startswith("external %s:" % PUBLIC)]
    assert len(granted) == 1 and rig.in_reserve(granted[0]), anyport.stdout
    # NAT-PMP and PCP walk up from the asked port (eport++) to the first permitted one: with
    # a reserved port in every set that is at most one set stride (4096 ports here)
    pmp = lab.ex("lan", ["natpmpc", "-g", ROUTER, "-a", "3074", "3074", "tcp", "600"], check=False)
    assert pmp.returncode == 0 and "Public IP address : %s" % PUBLIC in pmp.stdout, pmp.stdout
    mapped = [int(line.split()[3]) for line in pmp.stdout.splitlines() if line.startswith("Mapped public port")]
    assert mapped == [next_reserved(rig, 3074)], pmp.stdout
    result, port, addr = pcp_map(rig, 17, 9308, 9308)
    assert (result, port, addr) == (0, next_reserved(rig, 9308), PUBLIC)
    # what miniupnpd holds (the lease file the status reads; 2.3.1 writes no PCP lease
    # there): reserved ports only
    ports = rig.lease_ports()
    assert {granted[0], mapped[0]} <= set(ports) and all(rig.in_reserve(p) for p in ports), ports


def next_reserved(rig, port):
    return min(a for a, _ in rig.reserved if a >= port)


def test_a_granted_mapping_is_reached_from_the_br_side_and_never_taken_by_snat(rig):
    lab = rig.lab
    rig.lan_server(8080)
    tcp = rig.upnpc("-e", "srv", "-n", HOST, "8080", str(rig.reserved[0][0]), "TCP")
    udp = rig.upnpc("-e", "srv", "-n", HOST, "8080", str(rig.reserved[0][0]), "UDP")
    assert tcp.returncode == 0 and udp.returncode == 0, (tcp.stdout, udp.stdout)
    leases = {x["proto"]: x["port"] for x in upnp.parse_leases(open(rig.leases).read())}
    assert set(leases) == {"tcp", "udp"} and all(rig.in_reserve(p) for p in leases.values()), leases
    probe = (r"import socket, sys; ip, t, u = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]);"
             r"c = socket.create_connection((ip, t), timeout=5); c.close();"
             r"s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(5);"
             r"s.sendto(b'ping', (ip, u)); print(s.recv(100).decode())")
    out = lab.ex("srv", [sys.executable, "-c", probe, PUBLIC, str(leases["tcp"]), str(leases["udp"])])
    assert out.stdout.strip() == "ping"
    # 240 outgoing connections and a UDP burst from both LAN hosts: the 225 SNAT ports only
    held = sum(b - a + 1 for a, b in rig.reserved)
    got = lab.traffic("tcp-hold", "--dst", DST, "-n", 240, "--timeout", 2)
    assert got["ok"] == 240 - held and got["failed"] == held, got
    udp_burst = lab.traffic("udp-burst", "--dst", DST, "-n", 240, "--timeout", 1.5, "--src", LAN_HOSTS[1])
    ports = lab.server_ports(expect=got["ok"]) + lab.server_ports(proto="udp", expect=udp_burst["ok"])
    assert ports and not [p for p in ports if rig.in_reserve(p)]
    assert lab.leaked() == 0, lab.leaks()
    # the mapping still answers with every SNAT port taken
    out = lab.ex("srv", [sys.executable, "-c", probe, PUBLIC, str(leases["tcp"]), str(leases["udp"])])
    assert out.stdout.strip() == "ping" and lab.leaked() == 0, lab.leaks()


def readdress(rig, psid, ipv4):
    """A prefix change in the lab: another PSID and shared IPv4 on the router's WAN, at the
    BR (route, strict port check) and in mape's NAT and miniupnpd's configuration."""
    lab = rig.lab
    lab.ex("rtr", ["ip", "addr", "del", lab.shared + "/32", "dev", WAN])
    lab.ex("rtr", ["ip", "addr", "add", ipv4 + "/32", "dev", WAN])
    lab.ex("br", ["ip", "route", "del", lab.shared + "/32"])
    lab.ex("br", ["ip", "route", "add", ipv4 + "/32", "via", "100.64.0.2"])
    lab.psid, lab.shared = psid, ipv4
    lab.allowed = allowed_ranges(psid, lab.offset, lab.psid_len)
    lab.reset()   # the BR's strict check for the new address and sets, counters zero
    rig.configure(1, ipv4=ipv4)


def test_a_prefix_change_moves_the_mappings(rig):
    """A mapping granted on the old IPv4/PSID is gone after the change (miniupnpd restarted
    with an empty lease file); a new request is granted in the new reserve, reachable from
    the BR's side at the new IPv4; the BR counts no bad packet."""
    lab = rig.lab
    rig.lan_server(8080)
    old = rig.reserved[0][0]
    assert rig.upnpc("-e", "srv", "-n", HOST, "8080", str(old), "TCP").returncode == 0
    assert rig.lease_ports() == [old]
    new_ipv4 = "153.240.0.11"
    readdress(rig, 0x35, new_ipv4)
    assert not rig.in_reserve(old)
    rig.restart_empty()
    listed = rig.upnpc("-l")
    assert rig.lease_ports() == [] and "%d->%s:8080" % (old, HOST) not in listed.stdout, listed.stdout
    got = rig.upnpc("-e", "srv", "-n", HOST, "8080", "3074", "TCP")
    assert got.returncode == 0, got.stdout
    granted = [int(line.split(":")[1].split()[0]) for line in got.stdout.splitlines()
               if line.startswith("external %s:" % new_ipv4)]
    assert granted == [next_reserved(rig, 3074)] and rig.lease_ports() == granted, got.stdout
    probe = r"import socket, sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5).close(); print('ok')"
    out = lab.ex("srv", [sys.executable, "-c", probe, new_ipv4, str(granted[0])])
    assert out.stdout.strip() == "ok" and lab.leaked() == 0, lab.leaks()
