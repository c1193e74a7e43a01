"""Desired UCI state, the diff against `uci export` text and the exact batch (pure)."""
import os

from mape.core.mapping import calc
from mape.core.plan import Target, desired_state, make_plan, name_zone, parse_export, quote, undo_plan
from mape.core.rules import load_table
from mape.core.observe import observe
from mape.settings import Settings

SDATA = os.path.join(os.path.dirname(__file__), "..", "service", "data")
TABLE = load_table()


def current(network=None, firewall=None):
    def read(name):
        with open(os.path.join(SDATA, name)) as f:
            return f.read()
    return {"network": parse_export(network if network is not None else read("network.initial"), "network"),
            "firewall": parse_export(firewall if firewall is not None else read("firewall.initial"), "firewall")}


def plan_for(prefix="240b:11:2233:4400::/56", settings=None, cur=None, original=None):
    s = settings or Settings()
    return make_plan(desired_state(calc(prefix, TABLE), s), cur or current(), original)


RULE_PD56 = ("type=map-e,ipv6prefix=240b:10::,prefix6len=31,ipv4prefix=106.72.0.0,prefix4len=15,ealen=25,"
             "psidlen=8,offset=4,br=2404:9200:225:100::64,pd=240b:11:2233:4400::,pdlen=56")

# What mape-py < 0.2 wrote: the per-field options, tunlink wan6pd and the wan6pd helper.
OLD_NETWORK = """
config interface 'wan'
\toption device 'eth1'
\toption proto 'map'
\toption maptype 'map-e'
\toption peeraddr '2404:9200:225:100::64'
\toption ipaddr '106.72.0.0'
\toption ip4prefixlen '15'
\toption ip6prefix '240b:10::'
\toption ip6prefixlen '31'
\toption ealen '25'
\toption psidlen '8'
\toption offset '4'
\toption legacymap '1'
\toption mtu '1460'
\toption tunlink 'wan6pd'

config interface 'wan6pd'
\toption proto 'static'
\toption device 'eth1'
\tlist ip6addr '240b:11:2233:4400::1001'
\toption ip6gw '240b:11:2233:4400::1'
\toption ip6prefix '240b:11:2233:4400::/56'
\toption defaultroute '0'
"""
OLD_FIREWALL = "config zone\n\toption name 'wan'\n\tlist network 'wan'\n\tlist network 'wan6pd'\n" \
               "\toption masq '1'\n\toption mtu_fix '1'\n"


def test_exact_batch_from_the_initial_config():
    with open(os.path.join(SDATA, "firewall.initial")) as f:
        firewall = f.read()
    # the platform names the anonymous zone first (name_zone), then plans against that
    command, name = name_zone(parse_export(firewall, "firewall"), "wan")
    assert (command, name) == ("rename firewall.@zone[1]='wan'", "wan")
    named = firewall.replace("config zone\n\toption name 'wan'", "config zone 'wan'\n\toption name 'wan'")
    assert name_zone(parse_export(named, "firewall"), "wan") == (None, None)
    p = plan_for(cur=current(firewall=named))
    with open(os.path.join(SDATA, "batch_pd56.txt")) as f:
        assert p.batch_text() == f.read()
    assert p.packages == ["network", "firewall"]  # the zone lacks mtu_fix (MSS clamping)
    assert not p.problems


def test_plan_is_empty_once_applied():
    after_network = """
config interface 'wan'
\toption device 'eth1'
\toption proto 'map'
\toption maptype 'map-e'
\toption rule '%s'
\toption legacymap '1'
\toption mtu '1460'
\toption tunlink 'wan6'
""" % RULE_PD56
    firewall = "config zone\n\toption name 'wan'\n\tlist network 'wan'\n\toption masq '1'\n\toption mtu_fix '1'\n"
    p = plan_for(cur=current(after_network, firewall))
    assert p.empty and p.batch_text() == "" and p.packages == []


def test_upgrade_from_the_wan6pd_layout_removes_what_mape_py_made():
    """The original (saved before mape-py's first change) had no wan6pd: it goes, with its
    zone entry, and the per-field options give way to the rule string."""
    original = current(None, "config zone\n\toption name 'wan'\n\tlist network 'wan'\n")
    p = plan_for(cur=current(OLD_NETWORK, OLD_FIREWALL), original=original)
    assert p.batch_text() == (
        "set network.wan.rule='%s'\nset network.wan.tunlink='wan6'\n"
        "delete network.wan.peeraddr\ndelete network.wan.ipaddr\ndelete network.wan.ip4prefixlen\n"
        "delete network.wan.ip6prefix\ndelete network.wan.ip6prefixlen\ndelete network.wan.ealen\n"
        "delete network.wan.psidlen\ndelete network.wan.offset\n"
        "delete network.wan6pd\n"
        "del_list firewall.@zone[0].network='wan6pd'\n" % RULE_PD56)
    assert p.packages == ["network", "firewall"]


def test_a_wan6pd_the_user_had_before_stays():
    original = current(OLD_NETWORK, OLD_FIREWALL)
    p = plan_for(cur=current(OLD_NETWORK, OLD_FIREWALL), original=original)
    assert "wan6pd" not in p.batch_text().replace("tunlink='wan6'", "")
    assert plan_for(cur=current(OLD_NETWORK, OLD_FIREWALL)).batch_text() == p.batch_text()  # no original: keep


def test_leftover_rule_option_is_replaced_and_named_zone_and_string_network():
    net = "config interface 'wan'\n\toption proto 'map'\n\toption rule 'type=map-e,...'\n\toption psid '3'\n"
    fw = "config zone 'wanzone'\n\toption name 'wan'\n\toption network 'wan6 lan6'\n\toption masq '1'\n"
    p = plan_for(cur=current(net, fw))
    text = p.batch_text()
    assert "set network.wan.rule='%s'\n" % RULE_PD56 in text and "delete network.wan.psid\n" in text
    assert ("delete firewall.wanzone.network\nadd_list firewall.wanzone.network='wan6'\n"
            "add_list firewall.wanzone.network='lan6'\nadd_list firewall.wanzone.network='wan'\n"
            "set firewall.wanzone.mtu_fix='1'\n") in text


def test_zone_not_found_is_a_problem_not_a_crash():
    p = plan_for(cur=current(None, "config zone\n\toption name 'lan'\n"))
    assert p.problems == ["firewall zone 'wan' not found: add wan to your WAN zone by hand"]
    assert "firewall" not in p.packages


def test_names_and_mtu_from_the_settings():
    s = Settings(wan_iface="wanmap", wan6_iface="wan6x", mtu=1454)
    p = plan_for(settings=s)
    text = p.batch_text()
    assert text.startswith("set network.wanmap=interface\nset network.wanmap.proto='map'\n")
    assert "set network.wanmap.tunlink='wan6x'\n" in text and "wan6pd" not in text
    assert "set network.wanmap.mtu='1454'\n" in text
    assert "add_list firewall.@zone[1].network='wanmap'\n" in text


def test_quote():
    assert quote("a'b") == "'a'\\''b'"


def test_target_status_view():
    o = observe({"up": True, "device": "eth1", "ipv6-prefix": [{"address": "240b:11:2233:4400::", "mask": 56}]})
    t = Target(calc(o.prefix, TABLE), o, Settings())
    st = t.uci.as_status()
    assert st["network.wan"]["rule"] == RULE_PD56 and st["network.wan"]["tunlink"] == "wan6"
    assert "network.wan6pd" not in st
    assert st["firewall.zone[wan]"] == {"masq": "1", "mtu_fix": "1", "network+": ["wan"]}
    assert t.summary()["ipv4"] == "106.73.34.51"


def test_undo_plan_restores_only_owned_values():
    from mape.core.plan import undo_plan
    original = current(
        "config interface 'wan'\n\toption proto 'map'\n\toption peeraddr 'old'\n\toption mtu '1280'\n"
        "config interface 'wan6pd'\n\toption proto 'static'\n\tlist ip6addr 'a::1'\n\tlist ip6addr 'a::2'\n",
        "config zone\n\toption name 'wan'\n\toption network 'wan6'\n")
    now = current(
        "config interface 'wan'\n\toption proto 'map'\n\toption mtu '1460'\n\toption tunlink 'wan6'\n"
        "\toption rule 'r'\n\toption x 'y'\n"
        "config interface 'wan6pd'\n\toption proto 'static'\n\tlist ip6addr 'b::1001'\n",
        "config zone\n\toption name 'wan'\n\toption network 'wan6 wan'\n\toption masq '1'\n")
    p = undo_plan(Settings(), original, now)
    assert p.batch_text() == (
        "delete network.wan.rule\nset network.wan.mtu='1280'\ndelete network.wan.tunlink\n"
        "set network.wan.peeraddr='old'\n"
        "delete network.wan6pd.ip6addr\nadd_list network.wan6pd.ip6addr='a::1'\nadd_list network.wan6pd.ip6addr='a::2'\n"
        "delete firewall.@zone[0].network\nadd_list firewall.@zone[0].network='wan6'\n"
        "delete firewall.@zone[0].masq\n")
    assert p.packages == ["network", "firewall"]
    assert undo_plan(Settings(), original, original).empty


def test_undo_plan_deletes_a_wan6pd_mape_py_created():
    from mape.core.plan import undo_plan
    original = current(None, "config zone\n\toption name 'wan'\n\tlist network 'wan'\n")
    p = undo_plan(Settings(), original, current(OLD_NETWORK, OLD_FIREWALL))
    text = p.batch_text()
    assert "delete network.wan6pd\n" in text and "del_list firewall.@zone[0].network='wan6pd'\n" in text
    assert "set network.wan.proto='dhcp'\n" in text


def test_rollback_plan_puts_back_only_the_owned_values_of_the_backup():
    """undo_plan(exact): from the backup of one transaction (the wan6pd layout of mape-py
    < 0.2), on a live config that the transaction changed and others edited meanwhile: wan's
    owned options, the deleted wan6pd and its zone entry come back, the other edits stay."""
    backup = current(OLD_NETWORK, OLD_FIREWALL)
    live = current("config interface 'lan'\n\toption ipaddr '192.168.77.1'\n\n"
                   "config interface 'wan'\n\toption device 'eth1'\n\toption proto 'map'\n"
                   "\toption rule '%s'\n\toption tunlink 'wan6'\n" % RULE_PD56,
                   "config zone 'wan'\n\toption name 'wan'\n\tlist network 'wan'\n"
                   "\toption masq '1'\n\toption mtu_fix '1'\n\toption input 'ACCEPT'\n")
    text = undo_plan(Settings(), backup, live, exact=True).batch_text()
    assert "set network.wan6pd=interface\n" in text and "set network.wan.tunlink='wan6pd'\n" in text
    assert "delete network.wan.rule\n" in text and "set network.wan.ipaddr='106.72.0.0'\n" in text
    assert "add_list firewall.wan.network='wan6pd'\n" in text
    assert "lan" not in text and "input" not in text and "device" not in text.replace("network.wan6pd.device", "")
    # a firewall-only backup leaves network alone
    assert undo_plan(Settings(), {"firewall": backup["firewall"]}, live, exact=True).packages == ["firewall"]
