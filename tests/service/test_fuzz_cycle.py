"""The daemon's cycle, in-process, against a platform that returns arbitrary (hypothesis)
wan6 status documents and arbitrary ubus text: it never raises, never applies anything for
unusable input, always leaves a status document with a known state, and when it does
apply, the mapping is the one of the prefix the document carries."""
import io
import json

from hypothesis import given, settings, strategies as st

from mape.core.mapping import calc
from mape.core.observe import observe, parse_json_status
from mape.daemon import Daemon
from mape.platform.base import Platform
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


def make(tmp_path):
    system = System(str(tmp_path))
    platform = StubPlatform(system)
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
