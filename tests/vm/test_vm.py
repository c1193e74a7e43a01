"""End to end on a real kernel: a simulated FLET'S line in a qemu VM, the real ip6tnl MAP-E
tunnel, the mape-py daemon on its linux platform (tests/vm/scenarios.py runs inside; this
file boots the VM ONCE for all scenarios and asserts on the JSON each one prints).

The BR in the VM accepts only the CE address / IPv4 / ports that tests/vm/expect.py computes
from the rule table independently of mape-py, and counts everything else.

MAPE_VM_SCENARIOS=a,c narrows the run (default: all; the scenarios left out are skips, so
MAPE_ALLOW_SKIP=1 too). Figures of the run are written to MAPE_VM_RESULTS (default: a new
/tmp/mape-vm-results-*.json per run, named on stderr).
"""
import os
import sys

import pytest

pytestmark = pytest.mark.vm

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, TOP)

from tools import vm  # noqa: E402

BAD = ("outer_bad_src", "outer_encaplimit", "inner_bad_src", "inner_bad_port", "down_bad")
ALL = "abcdef"
RECOVERY_GOAL = 10.0   # seconds from a prefix change on the line to IPv4 working again
COLD_START_REF = 14.6  # (a)'s daemon start -> IPv4, quiet reference machine (docs/e2e.md)


def _selected():
    raw = os.environ.get("MAPE_VM_SCENARIOS", "")
    return [n for n in raw.replace(",", " ").split() if n in ALL] or list(ALL)


@pytest.fixture(scope="module")
def results():
    try:
        vm.preflight()
    except vm.VmUnavailable as e:
        pytest.fail("VM tier cannot run: %s" % e)
    names = _selected()
    res, out, wall, rc = vm.run_scenarios(names, timeout=1500)
    summary = {"vm_wall_seconds": round(wall, 1), "rc": rc,
               "scenarios": {k: {"ok": v.get("ok"), "wall_seconds": v.get("wall_seconds")} for k, v in res.items()}}
    if "c" in res:
        summary["recovery_seconds"] = res["c"].get("recovery_seconds")
    summary["br"] = {k: v.get("br") or v.get("br_after") for k, v in res.items()}
    vm.write_results({"summary": summary, "results": res}, "MAPE_VM_RESULTS", "mape-vm-results-", "VM tier")
    if not res:
        pytest.fail("the VM printed no scenario result (rc %s); its output ends:\n%s" % (rc, out[-4000:]))
    return res


def get(results, name):
    if name not in _selected():
        pytest.skip("not selected by MAPE_VM_SCENARIOS")
    r = results.get(name)
    assert r is not None, "scenario %s printed no result" % name
    assert r["ok"], "scenario %s failed: %s\n%s\ndaemon log:\n%s" % (name, r.get("error"), r.get("traceback"),
                                                                   r.get("daemon_log"))
    return r


def assert_br_clean(counters, what):
    assert counters, "no BR counters for %s" % what
    bad = {k: counters[k] for k in BAD if counters.get(k)}
    assert not bad, "the BR dropped invalid packets (%s): %s" % (what, counters)
    assert counters["outer_ok"] > 0 and counters["inner_ok"] > 0 and counters["down_ok"] > 0, counters


def test_a_cold_start_ra64(results):
    r = get(results, "a")
    exp = r["expect"]
    assert r["status"]["state"] == "ok"
    assert r["status"]["ipv4"] == exp["ipv4"] and r["status"]["ce"] == exp["ce"]
    assert r["status"]["wan6"]["source"] == "ipv6-address"
    assert r["fetch"]["ip"] == exp["ipv4"]
    assert r["tunnel"]["tunnel_ok"] and r["tunnel"]["ce_ok"] and r["tunnel"]["ipv4_ok"], r["tunnel"]
    assert r["traffic"]["good"] == r["traffic"]["fetches"], r["traffic"]
    assert_br_clean(r["br"], "cold start")
    assert r["status"]["firewall"]["health"] == "present", r["status"]["firewall"]
    # applying the same state again changes nothing
    assert r["idempotent"], r["idempotent_diff"]
    assert "up to date" in r["sighup_state_reason"]
    # --remove: the router is as it was before the daemon started
    assert r["remove_rc"] == 0, r["remove_output"]
    assert r["removed_clean"], r["remove_diff"]


def test_b_dhcpv6_pd56(results):
    r = get(results, "b")
    exp = r["expect"]
    assert r["status"]["state"] == "ok"
    assert r["status"]["wan6"]["source"] == "ipv6-prefix"
    assert r["status"]["wan6"]["prefix"] == "240b:10:3f6c:d400::/56"
    assert r["status"]["ipv4"] == exp["ipv4"] == "106.72.63.108"   # a published vector (rokoucha/mape-tool)
    assert r["fetch"]["ip"] == exp["ipv4"]
    assert r["tunnel"]["tunnel_ok"] and r["tunnel"]["ce_ok"] and r["tunnel"]["ipv4_ok"], r["tunnel"]
    assert r["traffic"]["good"] == r["traffic"]["fetches"], r["traffic"]
    assert_br_clean(r["br"], "DHCPv6-PD")


def test_c_prefix_change(results):
    r = get(results, "c")
    old, new = r["expect_before"], r["expect_after"]
    assert old["ipv4"] != new["ipv4"]
    assert r["fetch_after"]["ip"] == new["ipv4"]
    assert r["status"]["ipv4"] == new["ipv4"] and r["status"]["state"] == "ok"
    assert r["tunnel"]["tunnel_ok"] and r["tunnel"]["ce_ok"] and r["tunnel"]["ipv4_ok"], r["tunnel"]
    assert r["old_gone"] == {"old_ce_on_wan": False, "old_ipv4_on_tunnel": False, "old_ipv4_in_nat": False,
                             "new_ipv4_in_nat": True}, r["old_gone"]
    assert_br_clean(r["br_before"], "before the change")
    # while the line changes, packets from the old CE address (the router has not noticed
    # yet) are expected and dropped; once the new tunnel is up nothing may carry the old
    # IPv4 or a port outside the new set
    during = r["br_during_change"]
    assert during["inner_bad_src"] == 0 and during["inner_bad_port"] == 0 and during["down_bad"] == 0, during
    assert_br_clean(r["br_after"], "after the change")
    assert r["traffic"]["good"] == r["traffic"]["fetches"], r["traffic"]
    # the goal (docs/e2e.md): IPv4 back within RECOVERY_GOAL s of the new RA. The test
    # allows three times the goal, stretched by how much slower than the reference machine
    # this run is (its own cold start (a) against COLD_START_REF): under TCG an overloaded
    # machine is several times slower at everything. At most 5x: 150 s still catches a
    # daemon that only recovers at its 300 s re-check
    a = results.get("a") or {}
    slower = min(5.0, max(1.0, (a.get("seconds_to_ipv4") or 0) / COLD_START_REF))
    limit = 3 * RECOVERY_GOAL * slower
    assert 0 < r["recovery_seconds"] <= limit, "IPv4 back after %s s; limit %.1f s (this run %.1fx slower)" % (
        r["recovery_seconds"], limit, slower)


def test_d_240_concurrent(results):
    r = get(results, "d")
    assert r["n_ok"] == 240 and r["n_errors"] == 0, (r["n_errors"], r["errors"])
    assert r["distinct_ports"] == 240
    assert r["all_ipv4_shared"]
    assert r["ports_outside"] == []
    assert_br_clean(r["br"], "240 concurrent connections")
    # one more than the port set holds: it may fail, but must never leak
    assert r["overflow_ok"] <= 240
    assert r["overflow_ports_outside"] == []
    assert r["overflow_ips"] in ([], [r["expect"]["ipv4"]])
    assert not any(r["br_overflow"].get(k) for k in BAD), r["br_overflow"]


def test_e_unsupported_prefix(results):
    r = get(results, "e")
    assert r["status"]["state"] == "unsupported-prefix"
    assert "no MAP-E rule covers" in r["status"]["state_reason"]
    assert "2a0f:1234:5600" in r["status"]["state_reason"]
    assert r["fetch"] is None
    assert r["tunnels"] == []
    assert r["untouched"], r["diff"]
    assert sum(r["br"].values()) == 0, r["br"]


def test_f_killed_and_restarted(results):
    r = get(results, "f")
    assert r["status_1"]["state"] == "ok" and r["tunnel_1"]["tunnel_ok"] and r["tunnel_1"]["ce_ok"], r["tunnel_1"]
    assert r["firewall_1"] == "present"
    assert r["status_2"]["state"] == "ok" and r["status_2"]["ipv4"] == r["expect_2"]["ipv4"]
    assert r["tunnel_2"]["tunnel_ok"] and r["tunnel_2"]["ce_ok"] and r["tunnel_2"]["ipv4_ok"], r["tunnel_2"]
    assert r["fetch_2"]["ip"] == r["expect_2"]["ipv4"]
    assert not r["old_ipv4_in_nat"]
    assert r["traffic"]["good"] == r["traffic"]["fetches"]
    assert_br_clean(r["br"], "after restart")
