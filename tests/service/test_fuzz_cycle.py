"""The daemon's cycle, in-process, against a platform that returns arbitrary (hypothesis)
wan6 status documents and arbitrary ubus text: it never raises, never applies anything for
unusable input, always leaves a status document with a known state, and when it does
apply, the mapping is the one of the prefix the document carries."""
import io
import json
import os

from hypothesis import example, given, settings, strategies as st

from fakerouter import DATA

from mape.core.mapping import calc
from mape.core.observe import observe, parse_json_status
from mape.daemon import Daemon
from mape.platform.base import Platform
from mape.platform.openwrt import OpenWrt
from mape.settings import Settings
from mape.shell import log as logmod
from mape.shell.system import System

STATES = {"waiting-for-wan6", "applying", "ok", "unsupported-prefix", "error", "disabled"}


class StubPlatform(Platform):
    name = "stub"

    def __init__(self, system):
        Platform.__init__(self, system)
        self.status = None
        self.problem = None
        self.applied = []

    def observe(self, settings):
        return self.status, self.problem

    def current(self, settings):
        return None

    def apply(self, target, settings):
        self.applied.append(target.key())

    def health(self, target, settings):
        """As netifd and the firewall report a change that worked."""
        if not self.applied:
            return {"tunnel": {"interface": "wan", "up": False}}
        return {"tunnel": {"interface": "wan", "up": True, "ipv4": target.mapping.ipv4_text},
                "firewall": {"backend": "iptables", "health": "present"}}

    def conntrack_lines(self):
        return []


def make(tmp_path, platform_class=StubPlatform):
    system = System(str(tmp_path))
    platform = platform_class(system)
    d = Daemon(platform, system, logmod.Log(use_syslog=False, stream=io.StringIO()),
               config_path="/etc/config/mape", status_path="/status.json", pid_path="/pid")
    d.load_settings()
    d.settings = Settings(verify_timeout=0)
    return d, platform


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=30),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
                           max_leaves=15)
prefix_entry = st.fixed_dictionaries({}, optional={
    "address": st.one_of(st.sampled_from(["240b:11:2233:4400::", "2404:7a80:100::", "2400:4050:1:2300::",
                                          "240b:250::", "fe80::", "::", "2a01:4f8::", "zz"]), json_values),
    "mask": st.one_of(st.integers(0, 130), json_values)})
status = st.one_of(json_values, st.fixed_dictionaries({}, optional={
    "up": st.one_of(st.just(True), json_values), "device": json_values,
    "ipv6-prefix": st.one_of(st.lists(prefix_entry, max_size=3), json_values),
    "ipv6-address": st.one_of(st.lists(prefix_entry, max_size=3), json_values)}))


@settings(max_examples=300, deadline=None)
@given(status)
def test_cycle_survives_any_status(tmp_path_factory, doc):
    d, platform = make(tmp_path_factory.mktemp("f"))
    platform.status = doc if isinstance(doc, dict) else None
    d.cycle("fuzz")
    st_ = json.loads(open(d.system.path("/status.json")).read())
    assert st_["state"] in STATES and st_["version"] == 1
    if st_["state"] != "ok":
        assert not platform.applied
    o = observe(platform.status, "wan6", supported=d._supported)
    if not (o.exists and o.up and o.prefix):
        assert st_["state"] == "waiting-for-wan6", (o.as_dict(), st_["state"])
    if st_["state"] == "ok":
        # exactly one apply, of the mapping of the prefix the document carries
        want = calc(o.prefix, d.table)
        assert len(platform.applied) == 1
        assert st_["mapping"]["ipv4"] == want.ipv4_text and st_["mapping"]["psid"] == want.psid


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_cycle_survives_any_ubus_text(tmp_path_factory, text):
    d, platform = make(tmp_path_factory.mktemp("t"))
    platform.status, platform.problem = parse_json_status(text)
    d.cycle("fuzz")
    st_ = json.loads(open(d.system.path("/status.json")).read())
    assert st_["state"] in STATES
    if platform.problem:
        assert st_["state"] == "error" and not platform.applied
        assert platform.problem in st_["state_reason"]
    elif platform.status is None:
        assert st_["state"] == "waiting-for-wan6" and not platform.applied


# -- structure, not text: values of every JSON type (floats, surrogates), nested deep,
# in every field of netifd's status, for wan6 (observe) and wan (health), and as events --
ANY_TEXT = st.text(alphabet=st.characters(blacklist_categories=()), max_size=12)   # lone surrogates too
scalars = st.none() | st.booleans() | st.integers() | st.floats() | ANY_TEXT
anything = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                        | st.dictionaries(ANY_TEXT, inner, max_size=3), max_leaves=20)
ipv4_entry = st.fixed_dictionaries({}, optional={"address": st.one_of(st.just("106.73.34.51"), anything),
                                                 "mask": st.one_of(st.just(32), anything)})
NETIFD_FIELDS = {
    "up": st.one_of(st.just(True), anything), "pending": anything, "available": anything,
    "proto": st.one_of(st.just("map"), anything), "device": anything, "l3_device": anything,
    "ipv4-address": st.one_of(st.lists(ipv4_entry, max_size=2), anything),
    "ipv6-address": st.one_of(st.lists(prefix_entry, max_size=2), anything),
    "ipv6-prefix": st.one_of(st.lists(prefix_entry, max_size=2), anything),
    "ipv6-prefix-assignment": anything, "route": anything, "dns-server": anything,
    "errors": st.one_of(st.lists(st.fixed_dictionaries({"code": anything}), max_size=2), anything),
    "data": anything, "interface": anything, "updated": anything,
}
netifd_status = st.fixed_dictionaries({}, optional=NETIFD_FIELDS)
PD56_STATUS = json.load(open(os.path.join(DATA, "wan6_status_dhcpv6_pd56.json")))


class FuzzOpenWrt(OpenWrt):
    """The real OpenWrt platform's status handling (observe payload, health, events) with
    the commands stubbed: wan6 and wan say what hypothesis says."""

    def __init__(self, system):
        super().__init__(system)
        self.nat.core = None   # no NAT engine: firewall health "unknown"
        self.wan6 = self.wan = None
        self.reloads = 0

    def observe(self, settings):
        return self.wan6, None

    def wan_status(self, settings):
        return self.wan

    def pending(self, target, settings):
        return []

    def reactivate(self, settings):
        self.reloads += 1

    def warnings(self, target, settings):
        return []

    def conntrack_text(self):
        return ""


def make_openwrt(tmp_path):
    return make(tmp_path, FuzzOpenWrt)


def strict_status(d):
    """The status file as LuCI / jsonfilter read it: UTF-8, plain JSON (no NaN)."""
    with open(d.system.path("/status.json"), encoding="utf-8", errors="strict") as f:
        text = f.read()

    def no_constant(name):
        raise AssertionError("status carries %s" % name)
    return json.loads(text, parse_constant=no_constant)


@settings(max_examples=300, deadline=None)
@given(netifd_status, netifd_status)
@example({}, {"up": True, "ipv4-address": True})          # was a TypeError out of cycle()
def test_cycle_survives_netifd_status_with_wrong_types(tmp_path_factory, wan6, wan):
    d, platform = make_openwrt(tmp_path_factory.mktemp("n"))
    for platform.wan6 in (wan6, PD56_STATUS):
        platform.wan = wan
        d.cycle("fuzz")
        doc = strict_status(d)
        assert doc["state"] in STATES
        assert not doc["state_reason"].startswith("internal error"), doc["state_reason"]


@settings(max_examples=200, deadline=None)
@given(st.lists(anything, max_size=6))
def test_events_of_any_structure(tmp_path_factory, values):
    d, platform = make_openwrt(tmp_path_factory.mktemp("e"))
    platform.interfaces = ("wan6", "wan")
    reasons = platform._consume(platform, values, 0)
    assert all(isinstance(r, str) for r in reasons)
    platform.wan6 = platform.payload
    d.cycle("fuzz")
    assert strict_status(d)["state"] in STATES


def test_deeply_nested_input_is_garbage_not_a_crash(tmp_path):
    from mape.shell.ubus import decode_stream

    deep = '{"interface.update":' * 100000 + "1" + "}" * 100000
    values, rest, garbage = decode_stream(deep + '\n{"interface.update": {"interface": "wan6"}}\n')
    assert values == [{"interface.update": {"interface": "wan6"}}] and garbage == 1
    status, problem = parse_json_status("[" * 100000 + "]" * 100000)
    assert status is None and "nested too deeply" in problem
    d, platform = make(tmp_path)
    platform.status, platform.problem = status, problem
    d.cycle("deep")
    assert strict_status(d)["state"] == "error"


def test_lone_surrogate_reaches_the_status_file(tmp_path):
    d, platform = make(tmp_path)
    status = json.loads(json.dumps(PD56_STATUS))
    status["device"] = "eth\ud800"          # ubus JSON may say "eth\ud800"
    platform.status = status
    d.cycle("surrogate")
    doc = strict_status(d)
    assert doc["state"] == "ok" and doc["wan6"]["device"] == "eth\ud800"
