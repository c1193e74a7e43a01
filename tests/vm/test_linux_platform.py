"""mape.platform.linux without a VM: what it makes of the exact text iproute2 prints, and of
hand-built rtnetlink messages. (The real thing runs in tests/vm/test_vm.py.)"""
import json
import socket
import struct

import pytest

from mape.core.observe import observe
from mape.platform import linux
from mape.settings import Settings

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
    return {"ip -json -6 addr show dev eth1": json.dumps(addrs),
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
    system = FakeSystem(answers([{"ifindex": 3, "ifname": "eth1", "flags": ["UP", "LOWER_UP"], "addr_info": []}],
                                PD_ROUTES))
    status, _ = linux.Linux(system).observe(settings())
    assert status["ipv6-prefix"] == [{"address": "240b:10:3f6c:d400::", "mask": 56, "class": "dhcpcd"}]
    obs = observe(status, "eth1")
    assert obs.prefix == "240b:10:3f6c:d400::/56" and obs.source == "ipv6-prefix"


def test_observe_missing_device():
    assert linux.Linux(FakeSystem({})).observe(settings()) == (None, None)


def test_observe_link_down():
    a = answers([dict(ADDRS_RA[0], flags=["BROADCAST", "MULTICAST"])], [])
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


# -- plan(): the exact `ip -batch` lines ------------------------------------------------------
CE1, V41 = "240b:10:1234:5600:6a:4812:3400:5600", "106.72.18.52"
CE2, V42 = "240b:10:abcd:ef00:6a:48ab:cd00:ef00", "106.72.171.205"
BR = "2404:9200:225:100::64"
SLAAC = {"family": "inet6", "local": "240b:10:1234:5600:7cea:c9ff:fec2:b875", "prefixlen": 64, "scope": "global"}


def summary(ce, v4):
    return {"ce": ce, "br": BR, "ipv4": v4, "device": "eth1", "port_sets": [[5472, 5487]]}


def tunnel_link(ce, v4, mtu=1460, up=True):
    return {"ifindex": 9, "link": "eth1", "ifname": "map-wan", "mtu": mtu,
            "flags": ["POINTOPOINT", "NOARP", "UP", "LOWER_UP"] if up else ["POINTOPOINT", "NOARP"],
            "linkinfo": {"info_kind": "ip6tnl", "info_data": {
                "proto": "ipip6", "remote": BR, "local": ce, "link": "eth1", "ttl": 64,
                "ip6_tnl_f_ign_encap_limit": True}},
            "addr_info": [{"family": "inet", "local": v4, "prefixlen": 32, "scope": "global"}]}


def system_with(links, default, state=None):
    files = {linux.STATE: json.dumps(state)} if state else {}
    return FakeSystem({"ip -json -d addr show": json.dumps(links),
                       "ip -json -4 route show default": json.dumps(default)}, files)


def eth1(*extra):
    return {"ifindex": 3, "ifname": "eth1", "flags": ["UP", "LOWER_UP"], "addr_info": [SLAAC] + list(extra)}


def ce_addr(ce):
    return {"family": "inet6", "local": ce, "prefixlen": 128, "scope": "global", "nodad": True}


def test_plan_cold_start():
    p = linux.Linux(system_with([eth1()], []))
    changes, batch = p.plan(summary(CE1, V41), settings())
    assert batch == [
        "addr replace %s/128 dev eth1 nodad" % CE1,
        "link add name map-wan type ip6tnl mode ip4ip6 local %s remote %s dev eth1 encaplimit none" % (CE1, BR),
        "link set map-wan mtu 1460 up",
        "addr add %s/32 dev map-wan" % V41,
        "route replace 0.0.0.0/0 dev map-wan",
    ]
    assert changes[0] == "CE %s/128 on eth1" % CE1


def test_plan_nothing_when_the_system_matches():
    state = {"applied": summary(CE1, V41)}
    p = linux.Linux(system_with([eth1(ce_addr(CE1)), tunnel_link(CE1, V41)], [{"dst": "default", "dev": "map-wan"}],
                                state))
    assert p.plan(summary(CE1, V41), settings()) == ([], [])


def test_plan_prefix_change_replaces_everything_of_the_old_mapping():
    state = {"applied": summary(CE1, V41)}
    p = linux.Linux(system_with([eth1(ce_addr(CE1)), tunnel_link(CE1, V41)], [{"dst": "default", "dev": "map-wan"}],
                                state))
    _, batch = p.plan(summary(CE2, V42), settings())
    assert batch == [
        "link del map-wan",
        "addr replace %s/128 dev eth1 nodad" % CE2,
        "addr del %s/128 dev eth1" % CE1,
        "link add name map-wan type ip6tnl mode ip4ip6 local %s remote %s dev eth1 encaplimit none" % (CE2, BR),
        "link set map-wan mtu 1460 up",
        "addr add %s/32 dev map-wan" % V42,
        "route replace 0.0.0.0/0 dev map-wan",
    ]


def test_plan_repairs_mtu_and_default_route_only():
    state = {"applied": summary(CE1, V41)}
    p = linux.Linux(system_with([eth1(ce_addr(CE1)), tunnel_link(CE1, V41, mtu=1500)],
                                [{"dst": "default", "gateway": "192.0.2.1", "dev": "eth0"}], state))
    _, batch = p.plan(summary(CE1, V41), settings())
    assert batch == ["link set map-wan mtu 1460 up", "route replace 0.0.0.0/0 dev map-wan"]


def test_plan_rebuilds_a_tunnel_that_keeps_the_encap_limit():
    state = {"applied": summary(CE1, V41)}
    tun = tunnel_link(CE1, V41)
    tun["linkinfo"]["info_data"]["ip6_tnl_f_ign_encap_limit"] = False
    p = linux.Linux(system_with([eth1(ce_addr(CE1)), tun], [{"dst": "default", "dev": "map-wan"}], state))
    _, batch = p.plan(summary(CE1, V41), settings())
    assert batch[0] == "link del map-wan" and batch[1].startswith("link add name map-wan type ip6tnl")


def test_apply_runs_one_batch_and_records_state():
    class Target:
        def summary(self):
            return summary(CE2, V42)

    state = {"applied": summary(CE1, V41)}
    system = system_with([eth1(ce_addr(CE1)), tunnel_link(CE1, V41)], [{"dst": "default", "dev": "map-wan"}], state)
    system.answers["ip -batch -"] = ""
    p = linux.Linux(system)

    class Nat:   # stands in for the NAT engine (tested in tests/netns): records the order
        available = True

        def spec(self, target, settings, device):
            return ("spec", target.summary()["ipv4"], device)

        def apply(self, spec):
            system.calls.append(["nat-apply", spec])
    p.nat = Nat()
    changes = p.apply(Target(), settings())
    assert system.calls.index(["nat-apply", ("spec", V42, "map-wan")]) < system.calls.index(["ip", "-batch", "-"])
    assert [c for c in system.calls if c[:2] == ["ip", "-batch"]] == [["ip", "-batch", "-"]]
    doc = json.loads(system.files[linux.STATE])
    assert doc["applied"]["ipv4"] == V42 and doc["previous"]["ipv4"] == V41 and "applying" not in doc
    assert any("remove old CE" in c for c in changes)
