"""Choosing the MAP-E input from netifd's wan6 status (pure), incl. fuzzing."""
import json
import os

from hypothesis import given, settings, strategies as st

from mape.core.observe import observe, parse_json_status

DATA = os.path.join(os.path.dirname(__file__), "..", "data")


def sample(name):
    with open(os.path.join(DATA, name)) as f:
        return json.load(f)


def test_pd56_prefers_the_delegated_prefix():
    o = observe(sample("wan6_status_dhcpv6_pd56.json"))
    assert (o.prefix, o.source, o.device, o.up) == ("240b:11:2233:4400::/56", "ipv6-prefix", "eth1", True)
    assert o.address == "240b:11:2233:4400:a00:27ff:fe12:3456/64"
    assert o.candidates[1] == ("240b:11:2233:4400:a00:27ff:fe12:3456/64", "ipv6-address")


def test_ra64_uses_the_address():
    o = observe(sample("wan6_status_ra64_userprefix.json"))
    assert (o.prefix, o.source) == ("240b:11:2233:4400:a00:27ff:fe12:3456/64", "ipv6-address")


def test_missing_down_and_empty():
    assert not observe(None).exists
    down = observe({"up": False, "device": "eth1"})
    assert down.exists and not down.up and down.prefix is None
    assert observe({"up": True}).prefix is None


def test_skips_ula_linklocal_expired_and_picks_supported():
    st_ = {"up": True, "l3_device": "eth1",
           "ipv6-prefix": [{"address": "fd00:1::", "mask": 48},
                           {"address": "2a01:4f8::", "mask": 56},
                           {"address": "240b:11:2233:4400::", "mask": 56, "valid": 0},
                           {"address": "240b:12:0:100::", "mask": 60}],
           "ipv6-address": [{"address": "fe80::1", "mask": 64}]}
    o = observe(st_)
    assert o.device == "eth1"
    assert [c[0] for c in o.candidates] == ["2a01:4f8::/56", "240b:12:0:100::/60"]
    assert o.prefix == "2a01:4f8::/56"
    o = observe(st_, supported=lambda t: t.startswith("240b"))
    assert (o.prefix, o.source) == ("240b:12:0:100::/60", "ipv6-prefix")


def test_garbage_entries_are_reported_not_raised():
    o = observe({"up": True, "ipv6-prefix": "x", "ipv6-address": [1, {"address": "zz", "mask": 64},
                                                                    {"address": "240b::1", "mask": True}]})
    assert o.prefix is None
    assert o.problems == ["ipv6-prefix is not a list", "ipv6-address[0] is not an object",
                          "ipv6-address[1]: 'zz' is not an IPv6 address", "ipv6-address[2] lacks address/mask"]


def test_parse_json_status():
    assert parse_json_status("") == (None, None)
    assert parse_json_status("[]")[1] == "ubus output for wan6 is not a JSON object"
    assert parse_json_status("Command failed")[1].startswith("ubus output for wan6 is not JSON")


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=40),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
                           max_leaves=20)
entry = st.fixed_dictionaries({}, optional={"address": st.one_of(st.text(max_size=45), st.sampled_from(
    ["240b:11:2233:4400::", "2404:7a80::", "fe80::1", "::", "240b::1%eth1"]), json_values),
    "mask": st.one_of(st.integers(-5, 200), json_values), "valid": json_values})


@settings(max_examples=400, deadline=None)
@given(st.fixed_dictionaries({}, optional={"up": st.one_of(st.just(True), json_values),
                                           "device": json_values, "l3_device": json_values,
                                           "ipv6-prefix": st.one_of(st.lists(entry, max_size=4), json_values),
                                           "ipv6-address": st.one_of(st.lists(entry, max_size=4), json_values)}))
def test_fuzz_observe_never_raises(status):
    o = observe(status)
    if o.prefix is not None:
        assert o.source in ("ipv6-prefix", "ipv6-address")
    json.dumps(o.as_dict())


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_fuzz_parse_json_status(text):
    value, problem = parse_json_status(text)
    assert value is None or isinstance(value, dict)


# -- prefix choice (issue 11 point 11): netifd-shaped status, from the recorded dumps -------

def _pd56_with(prefixes, addresses=None):
    st_ = sample("wan6_status_dhcpv6_pd56.json")
    st_["ipv6-prefix"] = prefixes
    if addresses is not None:
        st_["ipv6-address"] = addresses
    return st_


OLD56 = {"address": "240b:11:2233:4400::", "mask": 56, "preferred": 0, "valid": 6800, "class": "wan6"}
NEW56 = {"address": "240b:10:3f6c:d400::", "mask": 56, "preferred": 13935, "valid": 13935, "class": "wan6"}


def test_renumbering_the_deprecated_prefix_loses_in_either_order():
    for order in ([OLD56, NEW56], [NEW56, OLD56]):
        o = observe(_pd56_with(order), supported=lambda t: True)
        assert o.prefix == "240b:10:3f6c:d400::/56", order
        d = o.as_dict()
        assert d["candidates"][0] == {"prefix": "240b:10:3f6c:d400::/56", "source": "ipv6-prefix",
                                      "supported": True}
        assert {"prefix": "240b:11:2233:4400::/56", "source": "ipv6-prefix", "deprecated": True,
                "supported": True} in d["candidates"]
        assert "preferred lifetime > 0" in d["choice"]


def test_a_deprecated_prefix_alone_is_still_used():
    o = observe(_pd56_with([OLD56], addresses=[]))
    assert o.prefix == "240b:11:2233:4400::/56"
    assert o.as_dict()["choice"] == "the only candidate"


def test_rogue_ra_address_in_a_covered_range_loses_to_the_delegated_64():
    # home gateway delegates a /64 (with lifetimes); a rogue RA on the WAN link gives the
    # router an address in another covered /64
    pd64 = {"address": "2400:4050:1234:5600::", "mask": 64, "preferred": 3000, "valid": 7000}
    rogue = {"address": "2400:4050:1234:5700::1", "mask": 64, "preferred": 604800, "valid": 2592000}
    o = observe(_pd56_with([pd64], addresses=[rogue]), supported=lambda t: True)
    assert (o.prefix, o.source) == ("2400:4050:1234:5600::/64", "ipv6-prefix")
    assert "a delegated prefix beats an RA address" in o.as_dict()["choice"]
    assert [c["source"] for c in o.as_dict()["candidates"]] == ["ipv6-prefix", "ipv6-address"]


def test_newest_of_two_live_delegations_wins():
    a = dict(NEW56, valid=100, preferred=50)
    b = dict(OLD56, preferred=13000, valid=13935)
    o = observe(_pd56_with([a, b]))
    assert o.prefix == "240b:11:2233:4400::/56"
    assert "longest valid lifetime" in o.as_dict()["choice"]


def test_deprecated_ra_address_is_not_the_reported_address():
    old = {"address": "240b:11:2233:4400::1", "mask": 64, "preferred": 0, "valid": 600}
    new = {"address": "240b:10:3f6c:d400::1", "mask": 64, "preferred": 600, "valid": 600}
    o = observe(_pd56_with([], addresses=[old, new]))
    assert o.prefix == "240b:10:3f6c:d400::1/64"
    assert o.address == "240b:10:3f6c:d400::1/64"


@settings(max_examples=50, deadline=None)
@given(st.permutations([OLD56, NEW56, dict(OLD56, address="240b:11:2233:4500::", mask=64)]),
       st.permutations([{"address": "240b:11:2233:4400::1", "mask": 64, "preferred": 0, "valid": 50},
                        {"address": "240b:10:3f6c:d400::1", "mask": 64, "preferred": 50, "valid": 50}]))
def test_choice_does_not_depend_on_netifd_order(prefixes, addresses):
    o = observe(_pd56_with(prefixes, addresses=addresses))
    assert o.prefix == "240b:10:3f6c:d400::/56"
