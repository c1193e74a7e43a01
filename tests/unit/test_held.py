"""core.held: which owned values count as changed by someone else (issue 11 point 19)."""
from mape.core.held import changed_by_others, reason

WROTE = {"network.wan.proto": "map", "network.wan.mtu": "1460", "firewall.zone[wan].network+wan": "1"}


def test_no_record_no_hold_and_own_values_are_not_edits():
    assert changed_by_others(None, {"network.wan.proto": "pppoe"}, WROTE) == []
    assert changed_by_others(WROTE, dict(WROTE), WROTE) == []
    # the prefix moved: mape-py wants a new rule, the config still has what it wrote
    wanted = dict(WROTE, **{"network.wan.rule": "new"})
    assert changed_by_others(dict(WROTE, **{"network.wan.rule": "old"}), dict(WROTE, **{"network.wan.rule": "old"}),
                             wanted) == []
    # the user set what mape-py wants anyway (e.g. after adopting): not an edit to protect
    assert changed_by_others(WROTE, dict(WROTE, **{"network.wan.mtu": "1454"}),
                             dict(WROTE, **{"network.wan.mtu": "1454"})) == []


def test_edits_are_named_with_both_values():
    now = dict(WROTE, **{"network.wan.proto": "pppoe", "network.wan.mtu": "1454",
                         "firewall.zone[wan].network+wan": None})
    held = changed_by_others(WROTE, now, WROTE)
    assert held == [{"option": "firewall.zone[wan].network+wan", "written": "1", "now": None},
                    {"option": "network.wan.mtu", "written": "1460", "now": "1454", "setting": "mtu"},
                    {"option": "network.wan.proto", "written": "map", "now": "pppoe"}]
    text = reason(held)
    assert "network.wan.proto is 'pppoe', mape-py wrote 'map'" in text and "(unset)" in text
    assert "mape-py held reapply" in text and "\n" not in text
