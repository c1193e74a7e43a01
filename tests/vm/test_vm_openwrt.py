"""MAP-E end to end on the real OpenWrt userland of both profiles (21.02/fw3, 24.10/fw4), in the
VM (the only place here with ip6tnl): tests/vm/openwrt_scenarios.py runs inside, this file
builds what it needs, boots the VM ONCE for both profiles and asserts on the JSON each
profile prints (issue 10 point 3).

Built on the host first (a failure fails the tier, nothing skips): both profiles with
tools/openwrt/build.py (cached), the mape-py ipk with tools/build_ipk.py. The guest sees
the host's file system, except /var/cache (a tmpfs there), so the layers are copied to a
temp dir under /tmp for the run and removed afterwards.

Figures of the run go to MAPE_VM_OPENWRT_RESULTS (default: a new
/tmp/mape-vm-openwrt-results-*.json per run, named on stderr).
"""
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

pytestmark = pytest.mark.vm

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, TOP)
sys.path.insert(0, os.path.join(TOP, "tests", "openwrt"))

from tools import vm  # noqa: E402
import bed as B  # noqa: E402  (build_profile: tools/openwrt/build.py, failures raise)
from expect import port_ok  # noqa: E402  (tests/vm, on sys.path as the test's directory)

# MAPE_VM_OPENWRT_PROFILES=24.10 narrows a run by hand (a test of a profile not run fails)
PROFILES = tuple(os.environ.get("MAPE_VM_OPENWRT_PROFILES", "21.02 24.10").split())
BAD = ("outer_bad_src", "outer_encaplimit", "inner_bad_src", "inner_bad_port", "down_bad")
LAN_GOAL = 5.0      # s from the new PD to the first IPv4 answer on the LAN (issue 10 point 3)
COMMIT_GOAL = 1.0   # s from netifd's interface.update to the daemon's `uci commit network`
# Reported, never asserted: TCG on a shared 2-core machine is several times slower than a
# router (results file, stderr; docs/e2e.md has the figures of a quiet run).


def _guest_copy(build_dir, dest):
    os.makedirs(dest)
    shutil.copytree(os.path.join(build_dir, "layer"), os.path.join(dest, "layer"), symlinks=True)
    shutil.copy2(os.path.join(build_dir, "manifest.json"), dest)


@pytest.fixture(scope="module")
def results():
    try:
        vm.preflight()
    except vm.VmUnavailable as e:
        pytest.fail("VM tier cannot run: %s" % e)
    t_start = time.time()
    builds = {}
    for profile in PROFILES:
        try:
            builds[profile] = B.build_profile(profile)
        except B.BedError as e:
            pytest.fail("building OpenWrt %s failed: %s" % (profile, e))
    t_built = time.time()
    stage = tempfile.mkdtemp(prefix="mape-vm-openwrt-", dir="/tmp")
    try:
        p = subprocess.run([sys.executable, os.path.join(TOP, "tools", "build_ipk.py"), "--out", stage,
                            "--only", "mape-py"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           universal_newlines=True, cwd=TOP)
        ipks = sorted(glob.glob(os.path.join(stage, "mape-py_*.ipk")))
        if p.returncode != 0 or not ipks:
            pytest.fail("tools/build_ipk.py failed:\n" + p.stdout[-3000:])
        args = []
        for profile in PROFILES:
            dest = os.path.join(stage, profile)
            _guest_copy(builds[profile], dest)
            args.append("%s=%s" % (profile, dest))
        cmd = "cd %s && PYTHONDONTWRITEBYTECODE=1 /usr/bin/python3 tests/vm/openwrt_scenarios.py %s %s" % (
            vm._shquote(TOP), " ".join("--ipk %s" % vm._shquote(i) for i in ipks),
            " ".join(vm._shquote(a) for a in args))
        t_boot = time.time()
        rc, out = vm.run(cmd, timeout=3600)
        wall = time.time() - t_boot
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    res = vm.parse_results(out)
    summary = {"tier_wall_seconds": round(time.time() - t_start, 1), "build_seconds": round(t_built - t_start, 1),
               "vm_wall_seconds": round(wall, 1), "rc": rc, "profiles": {}}
    for name, r in res.items():
        ch = r.get("change") or {}
        summary["profiles"][name] = {
            "ok": r.get("ok"), "error": r.get("error"), "wall_seconds": r.get("wall_seconds"),
            "a_seconds_to_lan_ipv4": ch.get("a_seconds_to_lan_ipv4"),
            "a_seconds_update_to_lan_ipv4": ch.get("a_seconds_update_to_lan_ipv4"),
            "c_seconds_update_to_commit": ch.get("c_seconds_update_to_commit"),
            "after_t0": ch.get("after_t0"),
            "br_during_bad_by_reason": r.get("br_during_bad_by_reason"), "br_before": r.get("br_before"),
            "br_after": r.get("br_after"), "seconds_install_to_lan_ipv4": r.get("seconds_install_to_lan_ipv4"),
            "forwards": {when: _forward_figures(r.get(when)) for when in ("forwards_before", "forwards_after")}}
    vm.write_results({"summary": summary, "results": res}, "MAPE_VM_OPENWRT_RESULTS", "mape-vm-openwrt-results-",
                     "VM OpenWrt tier")
    if not res:
        pytest.fail("the VM printed no OpenWrt result (rc %s); its output ends:\n%s" % (rc, out[-6000:]))
    return res


def _forward_figures(fw):
    """Seconds of each reach of a forward (BR side, hairpin, blocked) and the BR's deltas."""
    if not fw:
        return None
    out = {k: {"ok": v.get("ok"), "seconds": v.get("seconds"), "tries": v.get("tries")}
           for k, v in fw.items() if isinstance(v, dict) and "ok" in v and k != "use_free_port"}
    out.update({k: fw.get(k) for k in ("seconds_reload_to_status", "seconds_use_free_port_call", "seconds_moved_to_status",
                                       "br_delta")
                if k in fw})
    return out


def get(results, profile):
    r = results.get("openwrt-" + profile)
    assert r is not None, "profile %s printed no result" % profile
    assert r["ok"], "OpenWrt %s failed: %s\n%s\n%s\ndaemon log:\n%s" % (
        profile, r.get("error"), r.get("traceback"), r.get("explain", "")[-6000:], r.get("daemon_log"))
    return r


def assert_traffic(tr):
    """Sequential fetches from the LAN host: every answer from the shared IPv4 and a port of
    the set; under TCG on a busy host one of ten may time out (the BR counts no drop then)."""
    answered = len(tr["ports"])
    assert tr["good"] == answered and answered >= tr["fetches"] - 2, tr


def assert_br_clean(counters, what):
    assert counters, "no BR counters for %s" % what
    bad = {k: counters[k] for k in BAD if counters.get(k)}
    assert not bad, "the BR dropped invalid packets (%s): %s" % (what, counters)
    assert counters["outer_ok"] > 0 and counters["inner_ok"] > 0 and counters["down_ok"] > 0, counters


@pytest.mark.parametrize("profile", PROFILES)
def test_cold_start(results, profile):
    """wan up through netifd with the expected IPv4 on map-wan; status ok with the tunnel up
    and the NAT present; HTTP over IPv4 from the LAN host; the BR saw only valid packets."""
    r = get(results, profile)
    exp = r["expect_before"]
    assert r["opkg_rc"] == 0 and r["mape_config_untouched"], "not the package's defaults"
    wan = r["wan_before"]
    assert wan["up"] is True and wan["proto"] == "map" and wan["l3_device"] == "map-wan", wan
    assert [a["address"] for a in wan["ipv4-address"]] == [exp["ipv4"]], wan
    st = r["status_before"]
    assert st["state"] == "ok" and st["ipv4"] == exp["ipv4"] and st["ce"] == exp["ce"], st
    assert st["tunnel"]["up"] is True, st["tunnel"]
    assert st["firewall"]["health"] == "present", st["firewall"]
    assert st["firewall"]["backend"] == ("iptables" if profile == "21.02" else "nftables"), st["firewall"]
    tun = r["tunnel_before"]
    assert tun["kind"] == "ip6tnl" and tun["local"] == exp["ce"] and tun["remote"] == exp["br"], tun
    assert tun["mtu"] == 1460 and tun["ipv4"] == [exp["ipv4"] + "/32"], tun
    assert r["fetch_before"]["ip"] == exp["ipv4"]
    assert_traffic(r["traffic_before"])
    assert_br_clean(r["br_before"], "cold start")


@pytest.mark.parametrize("profile", PROFILES)
def test_prefix_change(results, profile):
    """the line delegates a new /56: IPv4 back on the LAN through the new mapping; the old CE
    and IPv4 gone; no wrong port or inner address at the BR, only packets of the old CE while
    the router had not switched yet; after it, a clean BR."""
    r = get(results, profile)
    old, new = r["expect_before"], r["expect_after"]
    wan = r["wan_after"]
    assert wan["up"] is True and wan["l3_device"] == "map-wan", wan
    assert [a["address"] for a in wan["ipv4-address"]] == [new["ipv4"]], wan
    st = r["status_after"]
    assert st["state"] == "ok" and st["ipv4"] == new["ipv4"] and st["tunnel"]["up"] is True, st
    assert st["firewall"]["health"] == "present", st["firewall"]
    tun = r["tunnel_after"]
    assert tun["local"] == new["ce"] and tun["remote"] == new["br"] and tun["ipv4"] == [new["ipv4"] + "/32"], tun
    assert r["fetch_after"]["ip"] == new["ipv4"]
    assert_traffic(r["traffic_after"])
    assert r["old_gone"] == {"old_ce_on_wan": False, "old_ipv4_in_nat": False, "new_ipv4_in_nat": True}, \
        r["old_gone"]
    assert old["ipv4"] != new["ipv4"]
    during = r["br_during_change"]
    assert during["inner_bad_src"] == 0 and during["inner_bad_port"] == 0 and during["down_bad"] == 0 \
        and during["outer_encaplimit"] == 0, during
    assert_br_clean(r["br_after"], "after the change")


@pytest.mark.parametrize("profile", PROFILES)
def test_prefix_change_timeline(results, profile):
    """The change happens in the order the transaction promises: netifd's interface.update,
    the daemon's `uci commit network`, wan up, then the first IPv4 answer on the LAN. The
    figures (a) new PD -> LAN IPv4 and (c) update -> commit are reported, not asserted
    (goals 5 s and 1 s on a router; TCG on a shared machine is several times slower)."""
    r = get(results, profile)
    ch = r["change"]
    t = ch["after_t0"]
    sys.stderr.write("\n%s: (a) %.2f s new PD -> LAN IPv4 (goal %.0f s), (c) %.3f s update -> commit "
                     "(goal %.0f s)\n" % (profile, ch["a_seconds_to_lan_ipv4"], LAN_GOAL,
                                          ch["c_seconds_update_to_commit"], COMMIT_GOAL))
    assert t["wan6_update_with_new_prefix"] <= t["network_committed"] <= t["wan_ifup"] <= t["lan_ipv4_answer"], t
    assert ch["a_seconds_to_lan_ipv4"] == t["lan_ipv4_answer"] and ch["c_seconds_update_to_commit"] >= 0, ch


LAN_HOST, LAN_ROUTER, INET = "192.168.1.100", "192.168.1.1", "203.0.113.80"


def assert_reached(fw, ipv4, port, via):
    """TCP and UDP to the LAN server at ipv4:port answered: from the BR's side the server saw
    the internet host itself, from the LAN (hairpin) the router's LAN address (the firewall's
    reflection SNAT)."""
    for proto in ("tcp", "udp"):
        got = fw["%s_%s" % (via, proto)]
        assert got["ok"], "%s %s to %s:%d: %s\nreflection rules: %s" % (via, proto, ipv4, port, got,
                                                                      fw.get("reflection_rules"))
        assert got["seen"] == dict(got["seen"], proto=proto, ip=INET if via == "inet" else LAN_ROUTER), got


def assert_br_inbound(delta, what):
    """The BR forwarded the inbound packets to the CE and saw only valid packets back (what
    counts as bad is BAD minus down_bad: the blocked port's packets are meant to be dropped)."""
    assert delta["down_ok"] > 0 and delta["inner_ok"] > 0, (what, delta)
    bad = {k: delta[k] for k in BAD if k != "down_bad" and delta.get(k)}
    assert not bad, "the BR dropped invalid packets (%s): %s" % (what, delta)


@pytest.mark.parametrize("profile", PROFILES)
def test_forward_reached_from_the_br_side(results, profile):
    """Issue 14 point 1: a TCP and a UDP server on the LAN host behind a forward (a uci
    redirect from wan, as LuCI saves it) on an allowed port answer the internet host at the
    shared IPv4; the forward on a port of no set is reported (allowed "no", the warning, the
    nearest free allowed port) and never answers: the BR drops it and counts it."""
    r = get(results, profile)
    fw, exp = r["forwards_before"], r["expect_before"]
    port, blocked = fw["allowed_port"], fw["blocked_port"]
    game, nas = fw["forwards"]
    assert (game["section"], game["allowed"], game["kept_out"]) == ("game", "yes", [[port, port]]), game
    assert nas["section"] == "blocked" and nas["allowed"] == "no" and nas["suggestion"], nas
    assert any(w["code"] == "forward-port-not-allowed" for w in fw["warnings"]), fw["warnings"]
    assert_reached(fw, exp["ipv4"], port, "inet")
    for proto in ("tcp", "udp"):
        assert not fw["blocked_" + proto]["ok"], fw["blocked_" + proto]
    assert fw["br_delta"]["down_bad"] >= 2, fw["br_delta"]     # a SYN and a datagram at least
    assert_br_inbound(fw["br_delta"], "forwards")


@pytest.mark.parametrize("profile", PROFILES)
def test_forward_hairpin(results, profile):
    """NAT loopback: a LAN host reaching the shared IPv4:port of the forward gets to the LAN
    server (TCP and UDP), through fw3's / fw4's reflection rules."""
    r = get(results, profile)
    fw = r["forwards_before"]
    assert fw["reflection_rules"], "the firewall made no reflection rule"
    assert_reached(fw, r["expect_before"]["ipv4"], fw["allowed_port"], "hairpin")


@pytest.mark.parametrize("profile", PROFILES)
def test_forward_after_prefix_change(results, profile):
    """After the prefix change the status re-assesses the forward against the new PSID (its
    port is in no new set: allowed "no" with a suggestion); LuCI's "use a free allowed port"
    moves it, and it answers at the new shared IPv4 from the BR's side and from the LAN."""
    r = get(results, profile)
    fa, new = r["forwards_after"], r["expect_after"]
    before = r["forwards_before"]["allowed_port"]
    assert fa["game_after_change"]["allowed"] == "no" and fa["game_after_change"]["suggestion"], fa
    # the reply is None when rpcd's 30 s exec limit ran out under TCG (seconds_use_free_port_call)
    assert fa["use_free_port"] is None or fa["use_free_port"].get("ok") is True, fa["use_free_port"]
    port = fa["new_port"]
    assert port == fa["game_after_change"]["suggestion"][0] and port_ok(port, new["ports"]) and port != before
    assert fa["forwards"][0]["allowed"] == "yes" and fa["forwards"][0]["kept_out"] == [[port, port]], fa
    assert_reached(fa, new["ipv4"], port, "inet")
    assert_reached(fa, new["ipv4"], port, "hairpin")
    assert_br_inbound(fa["br_delta"], "forward after the change")
