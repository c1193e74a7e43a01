"""Names in /etc/config/mape that belong to something mape-py does not own are refused
before anything is planned (issue 11 point 17), on OpenWrt's stock network/firewall."""
import os

import pytest

from mape.core.mapping import calc
from mape.core.observe import observe
from mape.core.ownership import NotOurs, refusals
from mape.core.plan import Target, make_plan, parse_export
from mape.core.rules import load_table
from mape.settings import Settings

SDATA = os.path.join(os.path.dirname(__file__), "..", "service", "data")
GUEST_NET = "\nconfig interface 'guest'\n\toption device 'br-guest'\n\toption proto 'static'\n"
GUEST_FW = ("\nconfig zone\n\toption name 'guest'\n\tlist network 'guest'\n"
            "\nconfig forwarding\n\toption src 'guest'\n\toption dest 'wan'\n")
LAN2_NET = "\nconfig interface 'lan2'\n\toption device 'br-lan'\n\toption proto 'static'\n"


def current(extra_net="", extra_fw=""):
    with open(os.path.join(SDATA, "network.initial")) as f:
        net = f.read() + extra_net
    with open(os.path.join(SDATA, "firewall.initial")) as f:
        fw = f.read() + extra_fw
    return {"network": parse_export(net, "network"), "firewall": parse_export(fw, "firewall")}


def names(**kw):
    d = {"wan_iface": "wan", "wan6_iface": "wan6", "wan6pd_iface": "wan6pd", "fw_zone": "wan"}
    d.update(kw)
    return d


def test_the_defaults_are_ours():
    assert refusals(names(), current()) == []
    assert refusals(names(wan_iface="wanmap"), current()) == []        # created by mape-py
    assert refusals(names(fw_zone=None), current()) == []              # firewall not managed


@pytest.mark.parametrize("key,value,words", [
    ("wan_iface", "lan", "wan_iface 'lan' is a LAN-side interface (zone lan)"),
    ("wan_iface", "loopback", "wan_iface 'loopback' is a LAN-side interface"),
    ("wan6_iface", "lan", "wan6_iface 'lan' is a LAN-side interface (zone lan)"),
    ("wan6pd_iface", "lan", "wan6pd_iface 'lan' is a LAN-side interface (zone lan)"),
    ("fw_zone", "lan", "fw_zone 'lan' is a LAN-side zone"),
    ("wan_iface", "wan6", "wan_iface 'wan6' is an IPv6 uplink (proto dhcpv6)"),
    ("wan_iface", "guest", "wan_iface 'guest' is a LAN-side interface (zone guest)"),
    ("fw_zone", "guest", "fw_zone 'guest' is a LAN-side zone"),
    ("wan_iface", "lan2", "wan_iface 'lan2' is on the LAN's device br-lan"),
])
def test_names_that_are_not_ours_are_refused(key, value, words):
    reasons = refusals(names(**{key: value}), current(GUEST_NET + LAN2_NET, GUEST_FW))
    assert len(reasons) == 1 and reasons[0].startswith(words), reasons


def test_a_plan_with_a_refused_name_writes_nothing():
    o = observe({"up": True, "device": "eth1", "ipv6-prefix": [{"address": "240b:11:2233:4400::", "mask": 56}]})
    for bad in ({"wan_iface": "lan"}, {"fw_zone": "lan"}, {"wan6pd_iface": "lan"}):
        s = Settings(**bad)
        with pytest.raises(NotOurs) as e:
            make_plan(Target(calc(o.prefix, load_table()), o, s).uci, current())
        assert str(e.value).startswith("refusing to write network/firewall: ")
        assert "\n" not in str(e.value)
