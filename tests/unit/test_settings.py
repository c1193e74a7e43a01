"""/etc/config/mape: defaults, validation, garbage (pure)."""
import pytest
from hypothesis import given, settings as hsettings, strategies as st

from mape.core.errors import InputError, MapeError
from mape.settings import Settings, load_settings, settings_from_text


def test_defaults_when_missing(tmp_path):
    s = load_settings(str(tmp_path / "nope"))
    assert s == Settings()
    assert (s.enabled, s.wan_iface, s.wan6_iface, s.wan6pd_iface, s.mtu, s.recheck) == (True, "wan", "wan6", "wan6pd", 1460, 300)
    assert s.debounce == 0.5


def test_shipped_config_parses():
    import os
    path = os.path.join(os.path.dirname(__file__), "..", "..", "files", "etc", "config", "mape")
    s = load_settings(path)
    assert s == Settings()


def test_values_and_user_rule():
    s = settings_from_text("config mape 'config'\n\toption enabled '0'\n\toption manage_wan6pd '1'\n"
                           "\toption mtu '1454'\n\toption nat_strategy 'hash'\n"
                           "config rule\n\toption ip6prefix '2001:db8::/32'\n\toption ipaddr '192.0.2.0/24'\n"
                           "\toption ealen '16'\n\toption psidlen '8'\n\toption peeraddr '2001:db8::1'\n")
    assert (s.enabled, s.mtu) == (False, 1454)
    assert not hasattr(s, "manage_wan6pd")  # an option of mape-py < 0.2: accepted, ignored
    assert s.nat_options == {"nat_strategy": "hash"} and len(s.rules) == 1


@pytest.mark.parametrize("text, message", [
    ("config mape\n\toption mtu 'big'\n", "option 'mtu' must be a number, not 'big'"),
    ("config mape\n\toption mtu '9000'\n", "option 'mtu' must be between 1280 and 1500, not 9000"),
    ("config mape\n\toption debounce '1e3'\n", "option 'debounce' must be a number of seconds such as 0.5"),
    ("config mape\n\toption debounce '61'\n", "option 'debounce' must be between 0 and 60 seconds, not 61"),
    ("config mape\n\toption enabled 'maybe'\n", "option 'enabled' must be 0 or 1, not 'maybe'"),
    ("config mape\n\toption wan_iface 'wan; reboot'\n", "option 'wan_iface' must be an interface/zone name"),
    ("config mape\n\toption wan6_iface 'wan'\n", "wan_iface, wan6_iface and wan6pd_iface must be different"),
    ("config mape\n\tlist mtu '1'\n\tlist mtu '2'\n", "option 'mtu' must be a single value, not a list"),
    ("config mape\n\toption wan_iface 'abcdefghijkl'\n", "is too long"),
    ("option mtu '1'\n", "option/list command found before the first section"),  # libuci's words
])
def test_bad_values_one_line_errors(text, message):
    with pytest.raises(InputError) as e:
        settings_from_text(text, source="/etc/config/mape")
    assert message in str(e.value) and "\n" not in str(e.value)


@hsettings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_fuzz_garbage_only_raises_mape_errors(text):
    try:
        s = settings_from_text(text)
    except MapeError as e:
        assert "\n" not in str(e)      # one line, as the daemon logs and LuCI shows it
        return
    assert_valid(s)


def assert_valid(s):
    """Whatever was accepted is within what Settings.FIELDS allows."""
    for name, (_, kind, lower, upper) in Settings.FIELDS.items():
        value = getattr(s, name)
        if lower is not None:
            assert lower <= value <= upper, (name, value)
        elif kind == "bool":
            assert value is True or value is False, (name, value)
        else:
            assert isinstance(value, str) and value and " " not in value and "'" not in value, (name, value)


@hsettings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted(Settings.FIELDS) + ["nat_x", "other"]),
                       st.text(alphabet="0123456789abwn6_-' ", max_size=12), max_size=6))
def test_fuzz_options(options):
    text = "config mape 'config'\n" + "".join("\toption %s '%s'\n" % (k, v.replace("'", "")) for k, v in options.items())
    try:
        s = settings_from_text(text)
    except MapeError:
        return
    assert 1280 <= s.mtu <= 1500
    assert_valid(s)
