"""mape.platform.linux without a VM: what it makes of the exact text iproute2 prints, and of
hand-built rtnetlink messages. (The real thing runs in tests/vm/test_vm.py.)"""
import json
import socket
import struct

import pytest

from mape.core.observe import observe
from mape.platform import linux
from mape.settings import Settings

LINK = [{"ifindex": 3, "ifname": "eth1", "flags": ["BROADCAST", "MULTICAST", "UP", "LOWER_UP"], "mtu": 1500,
         "operstate": "UP", "link_type": "ether", "address": "7e:ea:c9:c2:b8:75"}]

ADDRS_RA = [{"ifindex": 3, "ifname": "eth1", "flags": ["BROADCAST", "MULTICAST", "UP", "LOWER_UP"], "addr_info": [
    {"family": "inet6", "local": "240b:10:1234:5600:6a:4812:3400:5600", "prefixlen": 128, "scope": "global",
     "nodad": True, "valid_life_time": 4294967295, "preferred_life_time": 4294967295},
    {"family": "inet6", "local": "240b:10:abcd:ef00:7cea:c9ff:fec2:b875", "prefixlen": 64, "scope": "global",
     "dynamic": True, "mngtmpaddr": True, "valid_life_time": 14398, "preferred_life_time": 14398},
    {"family": "inet6", "local": "240b:10:1234:5600:7cea:c9ff:fec2:b875", "prefixlen": 64, "scope": "global",
     "deprecated": True, "dynamic": True, "valid_life_time": 7190, "preferred_life_time": 0},
    {"family": "inet6", "local": "240b:10:5555:5500:7cea:c9ff:fec2:b875", "prefixlen": 64, "scope": "global",
     "tentative": True, "valid_life_time": 14400, "preferred_life_time": 14400},
    {"family": "inet6", "local": "fe80::7cea:c9ff:fec2:b875", "prefixlen": 64, "scope": "link",
     "valid_life_time": 4294967295, "preferred_life_time": 4294967295}]}]

PD_ROUTES = [{"type": "unreachable", "dst": "240b:10:3f6c:d400::/56", "dev": "lo", "protocol": "dhcp",
              "metric": 1001, "flags": [], "pref": "medium"},
             {"type": "unreachable", "dst": "2001:db8::/32", "dev": "lo", "protocol": "static", "flags": []}]


class FakeSystem:
    root = "/"

    def __init__(self, answers, files=None):
        self.answers = answers
        self.files = dict(files or {})
        self.calls = []

    def run(self, argv, input=None, timeout=60, check=True):
        self.calls.append(argv)
        key = " ".join(argv)
        if key not in self.answers:
            from mape.shell.system import CommandError
            raise CommandError(argv, 1, 'Device "x" does not exist.')
        return 0, self.answers[key], ""

    def read(self, path, limit=None):
        return self.files.get(path)

    def write_atomic(self, path, text, sync=True, mode=0o644):
        self.files[path] = text

    def remove(self, path):
        self.files.pop(path, None)

    def exists(self, path):
        return path in self.files

    def path(self, path):
        return path


def settings():
    return Settings(wan6_iface="eth1", wan_iface="wan")


def answers(addrs, routes):
    return {"ip -json link show dev eth1": json.dumps(LINK),
            "ip -json -6 addr show dev eth1": json.dumps(addrs),
            "ip -json -6 route show table all type unreachable": json.dumps(routes)}


def test_observe_ra_skips_our_ce_deprecated_and_tentative():
    state = {"applied": {"ce": "240b:10:1234:5600:6a:4812:3400:5600"}}
    system = FakeSystem(answers(ADDRS_RA, []), {linux.STATE: json.dumps(state)})
    status, problem = linux.Linux(system).observe(settings())
    assert problem is None
    assert status["up"] is True and status["device"] == "eth1"
    assert status["ipv6-address"] == [{"address": "240b:10:abcd:ef00:7cea:c9ff:fec2:b875", "mask": 64,
                                       "preferred": 14398, "valid": 14398}]
    assert status["ipv6-prefix"] == []
    obs = observe(status, "eth1")
    assert obs.prefix == "240b:10:abcd:ef00:7cea:c9ff:fec2:b875/64" and obs.source == "ipv6-address"


def test_observe_pd_from_the_unreachable_route_dhcpcd_installs():
    system = FakeSystem(answers([{"ifindex": 3, "ifname": "eth1", "addr_info": []}], PD_ROUTES))
    status, _ = linux.Linux(system).observe(settings())
    assert status["ipv6-prefix"] == [{"address": "240b:10:3f6c:d400::", "mask": 56, "class": "dhcpcd"}]
    obs = observe(status, "eth1")
    assert obs.prefix == "240b:10:3f6c:d400::/56" and obs.source == "ipv6-prefix"


def test_observe_missing_device():
    assert linux.Linux(FakeSystem({})).observe(settings()) == (None, None)


def test_observe_link_down():
    down = [dict(LINK[0], flags=["BROADCAST", "MULTICAST"])]
    a = answers(ADDRS_RA, [])
    a["ip -json link show dev eth1"] = json.dumps(down)
    status, _ = linux.Linux(FakeSystem(a)).observe(settings())
    assert status["up"] is False


def nlmsg(mtype, body):
    return struct.pack("=IHHII", 16 + len(body), mtype, 0, 0, 0) + body + b"\0" * ((4 - len(body) % 4) % 4)


@pytest.mark.parametrize("msg, want", [
    (nlmsg(linux.RTM_NEWADDR, struct.pack("=BBBBI", socket.AF_INET6, 64, 0, 0, 3)), ["address added/updated"]),
    (nlmsg(linux.RTM_DELADDR, struct.pack("=BBBBI", socket.AF_INET6, 64, 0, 0, 3)), ["address removed"]),
    # our own CE /128, another device, link-local: not events
    (nlmsg(linux.RTM_NEWADDR, struct.pack("=BBBBI", socket.AF_INET6, 128, 0, 0, 3)), []),
    (nlmsg(linux.RTM_NEWADDR, struct.pack("=BBBBI", socket.AF_INET6, 64, 0, 0, 7)), []),
    (nlmsg(linux.RTM_NEWADDR, struct.pack("=BBBBI", socket.AF_INET6, 64, 0, 253, 3)), []),
    (nlmsg(linux.RTM_NEWLINK, struct.pack("=BxHiII", 0, 1, 3, 1, 0)), ["link up"]),
    (nlmsg(linux.RTM_NEWLINK, struct.pack("=BxHiII", 0, 1, 3, 0, 0)), ["link down"]),
    (nlmsg(linux.RTM_NEWROUTE, struct.pack("=BBBBBBBBI", socket.AF_INET6, 56, 0, 0, 254, 16, 0, 7, 0)),
     ["delegated prefix /56 added"]),
    (nlmsg(linux.RTM_NEWROUTE, struct.pack("=BBBBBBBBI", socket.AF_INET6, 64, 0, 0, 254, 9, 0, 1, 0)), []),
])
def test_classify_netlink(msg, want):
    assert linux.classify_netlink(msg, 3) == want


def test_classify_netlink_several_messages_and_garbage():
    a = nlmsg(linux.RTM_NEWADDR, struct.pack("=BBBBI", socket.AF_INET6, 64, 0, 0, 3))
    b = nlmsg(linux.RTM_DELLINK, struct.pack("=BxHiII", 0, 1, 3, 0, 0))
    assert linux.classify_netlink(a + b, 3) == ["address added/updated", "link removed"]
    assert linux.classify_netlink(b"\x01\x02", 3) == []
    assert linux.classify_netlink(struct.pack("=IHHII", 0, 20, 0, 0, 0), 3) == []
