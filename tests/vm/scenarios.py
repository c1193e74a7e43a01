"""The end-to-end scenarios, run INSIDE the VM (root, real kernel with ip6tnl):

    python3 tests/vm/scenarios.py a b c d e f

Each scenario builds a fresh simulated line (line.py), runs the mape-py daemon with the
linux platform on the router, and prints one line ``MAPE-RESULT {json}`` that the host-side
test asserts on. Progress lines start with '# '. The BR's expectations come from expect.py
(independent of mape-py's code).
"""
import json
import os
import signal
import subprocess
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import line as L  # noqa: E402
from expect import expect, port_ok  # noqa: E402

# Real v6plus rule (240b:10::/31 -> 106.72.0.0/15, EA 25, PSID offset 4, length 8) with
# prefixes of our choosing inside it; and a prefix no Japanese rule covers.
RA_PREFIX = "240b:10:1234:5600::/64"
RA_PREFIX_2 = "240b:10:abcd:ef00::/64"
PD_PREFIX = "240b:10:3f6c:d400::/56"
UNSUPPORTED = "2a0f:1234:5600::/64"

CONF = L.WORK + "/mape.conf"
STATUS = "/run/mape-py/status.json"
DAEMON = [sys.executable, "-m", "mape", "daemon", "--platform", "linux", "--config", CONF,
          "--status-file", STATUS, "--stderr", "--verbose"]
DEMO = os.environ.get("MAPE_DEMO") == "1"
BAD = ("outer_bad_src", "outer_encaplimit", "inner_bad_src", "inner_bad_port", "down_bad")


def say(msg):
    print("# " + msg, flush=True)


def write_conf():
    with open(CONF, "w") as f:
        f.write("config mape 'main'\n\toption wan6_iface '%s'\n\toption wan_iface 'wan'\n"
                "\toption debounce '1'\n\toption verify_timeout '30'\n" % L.WAN_DEV)


def status():
    try:
        with open(STATUS) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def status_brief(st):
    if not st:
        return None
    m = st.get("mapping") or {}
    return {"state": st.get("state"), "state_reason": st.get("state_reason"), "ipv4": m.get("ipv4"),
            "ce": m.get("ce"), "psid": m.get("psid"), "port_count": m.get("port_count"),
            "br": m.get("br"), "wan6": st.get("wan6"), "tunnel": st.get("tunnel"),
            "firewall": {k: v for k, v in (st.get("firewall") or {}).items() if k in ("backend", "strategy",
                                                                                       "health", "detail")},
            "last_error": st.get("last_error")}


def wait_state(line, want, ipv4=None, timeout=180):
    def ok():
        st = status()
        if line.procs.get("daemon") is not None and line.procs["daemon"].poll() is not None:
            raise RuntimeError("daemon exited (%s):\n%s" % (line.procs["daemon"].returncode, line.logtail("daemon")))
        if st and st.get("state") == want and (ipv4 is None or (st.get("mapping") or {}).get("ipv4") == ipv4):
            return st
        return None
    return L.wait_for("daemon state %s%s" % (want, " with " + ipv4 if ipv4 else ""), ok, timeout=timeout)


def watch_change(probe, ipv4, t0, timeout=180, after=30):
    """Poll the router's status document every 0.1 s until the prober has its answer (and
    at most ``after`` s more for the daemon to report the change applied); returns the
    seconds after ``t0`` at which the document first showed the change noticed (its
    prefix-changed event) and applied. Finer than the history's whole-second times."""
    seen = {}
    deadline = time.time() + timeout
    answered = None
    while time.time() < deadline:
        now = time.time()
        for h in (status() or {}).get("history") or []:
            if h.get("ipv4") == ipv4 and h.get("event") in ("prefix-changed", "applied"):
                seen.setdefault(h["event"], round(now - t0, 1))
        if answered is None and os.path.exists(probe):
            answered = now
        if answered is not None and (len(seen) == 2 or now - answered > after):
            break
        time.sleep(0.1)
    return seen.get("prefix-changed"), seen.get("applied")


def fetch_until(line, ipv4, timeout=120, step_timeout=2):
    """Fetch from the LAN client until the server sees ``ipv4``; (result, seconds, tries)."""
    t0 = time.time()
    tries = 0
    while True:
        tries += 1
        r = line.fetch(timeout=step_timeout)
        if r and r.get("ip") == ipv4:
            return r, time.time() - t0, tries
        if time.time() - t0 > timeout:
            raise TimeoutError("no HTTP over IPv4 from %s after %.0f s (last: %r)" % (ipv4, timeout, r))
        time.sleep(0.2)


def start_line_ra(line, prefix):
    line.build()
    exp = expect(prefix)
    if exp:
        line.br_configure(exp)
    line.announce_ra(prefix)
    line.link_up()
    net = prefix.split("::")[0]
    L.wait_for("the SLAAC address from the RA", lambda: [a for a in line.router_addrs(L.WAN_DEV)
                                                         if a.startswith(net)], timeout=60)
    return exp


def start_daemon(line):
    write_conf()
    line.start_daemon(DAEMON)


def check_tunnel(line, exp):
    tuns = line.tunnels()
    addrs = line.router_addrs(L.WAN_DEV)
    ces = [a for a in addrs if a.endswith("/128")]
    v4 = line.router_addrs("map-wan", "inet")
    return {"tunnels": tuns, "ce_addresses": ces, "tunnel_ipv4": v4,
            "tunnel_ok": len(tuns) == 1 and tuns[0]["local"] == exp["ce"] and tuns[0]["remote"] == exp["br"]
            and tuns[0]["mtu"] == 1460 and tuns[0]["up"],
            "ce_ok": ces == [exp["ce"] + "/128"], "ipv4_ok": v4 == [exp["ipv4"] + "/32"]}


def traffic(line, exp, n=10):
    """n sequential fetches; every one must come from the shared IPv4 and an allowed port."""
    results = [line.fetch(timeout=5) for _ in range(n)]
    good = [r for r in results if r and r.get("ip") == exp["ipv4"] and port_ok(r["port"], exp["ports"])]
    return {"fetches": n, "good": len(good), "ports": sorted(r["port"] for r in results if r)}


def nat_mentions(line, ipv4):
    text = L.nsx("rt", "nft", "list", "ruleset", check=False) + L.nsx("rt", "iptables-save", check=False)
    return ipv4 in text


def stop_daemon(line):
    return line.stop("daemon", signal.SIGTERM, wait=20)


# -- scenarios ----------------------------------------------------------------------------
def scenario_a(line):
    """cold start, RA /64 -> IPv4 works from the LAN; every packet the BR sees is valid;
    applying again changes nothing; --remove puts the router back as it was."""
    exp = start_line_ra(line, RA_PREFIX)
    say("line up: RA %s; the BR expects CE %s, IPv4 %s, PSID %d" % (RA_PREFIX, exp["ce"], exp["ipv4"], exp["psid"]))
    before = line.router_snapshot()
    t0 = time.time()
    start_daemon(line)
    st = wait_state(line, "ok", exp["ipv4"])
    t_ok = time.time() - t0
    say("router status: %s (%s)" % (st["state"], st["state_reason"]))
    first, t_fetch, _ = fetch_until(line, exp["ipv4"])
    t_ipv4 = time.time() - t0
    say("HTTP over IPv4 from the LAN: %s" % json.dumps(first))
    tun = check_tunnel(line, exp)
    tr = traffic(line, exp, 20)
    counters = line.br_counters()
    # idempotence: a forced recompute (SIGHUP) must change nothing
    snap1 = line.router_snapshot()
    line.procs["daemon"].send_signal(signal.SIGHUP)
    # the recompute is done when the reason says "up to date" (or something else went on)
    st2 = L.wait_for("the SIGHUP recompute", lambda: (status() or {}).get("state_reason", "").find("applied") < 0
                     and status(), timeout=120)
    snap2 = line.router_snapshot()
    rc = stop_daemon(line)
    rm = subprocess.run(["ip", "netns", "exec", "rt"] + DAEMON[:3] + ["daemon", "--platform", "linux", "--config",
                                                                        CONF, "--status-file", STATUS, "--remove"],
                        env=dict(os.environ, PYTHONPATH=L.SRC), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                        universal_newlines=True)
    after = line.router_snapshot()
    diff = {k: [before.get(k), after.get(k)] for k in before if before.get(k) != after.get(k)}
    return {"expect": exp, "status": status_brief(st), "fetch": first, "seconds_to_ok": round(t_ok, 1),
            "seconds_to_ipv4": round(t_ipv4, 1), "tunnel": tun, "traffic": tr, "br": counters,
            "sighup_state_reason": st2.get("state_reason"), "idempotent": snap1 == snap2,
            "idempotent_diff": {k: [snap1[k], snap2[k]] for k in snap1 if snap1[k] != snap2.get(k)},
            "daemon_exit": rc, "remove_output": rm.stdout.strip()[-500:], "remove_rc": rm.returncode,
            "removed_clean": not diff, "remove_diff": diff}


def scenario_b(line):
    """DHCPv6-PD /56 (link-local-only WAN, as on FLET'S Cross)."""
    line.build()
    exp = expect(PD_PREFIX)
    line.br_configure(exp)
    line.link_up()
    line.delegate_pd(PD_PREFIX)
    say("line up: DHCPv6-PD %s; the BR expects CE %s, IPv4 %s" % (PD_PREFIX, exp["ce"], exp["ipv4"]))
    pd = L.wait_for("the delegated prefix", lambda: [r for r in L.sh("ip", "-n", "rt", "-6", "route", "show", "table",
                                                                       "all", "type", "unreachable").splitlines()
                                                     if "240b" in r], timeout=90)
    t0 = time.time()
    start_daemon(line)
    st = wait_state(line, "ok", exp["ipv4"])
    first, _, _ = fetch_until(line, exp["ipv4"])
    t_ipv4 = time.time() - t0
    say("HTTP over IPv4 from the LAN: %s" % json.dumps(first))
    tun = check_tunnel(line, exp)
    tr = traffic(line, exp, 10)
    counters = line.br_counters()
    stop_daemon(line)
    return {"expect": exp, "pd_route": pd, "status": status_brief(st), "fetch": first,
            "seconds_to_ipv4": round(t_ipv4, 1), "tunnel": tun, "traffic": tr, "br": counters}


def scenario_c(line):
    """the line changes the prefix -> the daemon notices, recomputes, re-applies."""
    exp1 = start_line_ra(line, RA_PREFIX)
    start_daemon(line)
    wait_state(line, "ok", exp1["ipv4"])
    first, _, _ = fetch_until(line, exp1["ipv4"])
    say("before: IPv4 %s via CE %s; fetch %s" % (exp1["ipv4"], exp1["ce"], json.dumps(first)))
    before_counters = line.br_counters(reset=True)
    exp2 = expect(RA_PREFIX_2)
    say("the line changes the prefix: %s -> %s (BR now expects CE %s, IPv4 %s)"
        % (RA_PREFIX, RA_PREFIX_2, exp2["ce"], exp2["ipv4"]))
    probe = line.start_probe(exp2["ipv4"])
    time.sleep(2)   # the prober's python is up and trying (it ignores answers from the old IPv4)
    t0 = time.time()
    line.br_configure(exp2)
    line.announce_ra(RA_PREFIX_2, deprecated=[RA_PREFIX])
    noticed, applied = watch_change(probe, exp2["ipv4"], t0)
    seen = line.probe_result(probe)
    recovery, tries = seen["time"] - t0, seen["tries"]
    second = line.fetch(timeout=5)
    say("IPv4 works again after %.1f s: %s" % (recovery, json.dumps(second)))
    st = wait_state(line, "ok", exp2["ipv4"])
    breakdown = {"noticed_after": noticed, "applied_after": applied,
                 "note": "when the status document first showed the event (polled every 0.1 s)"}
    say("the router reported the new prefix noticed after %s s and applied after %s s" % (noticed, applied))
    say("router status: %s (%s)" % (st["state"], st["state_reason"]))
    during = line.br_counters(reset=True)
    tun = check_tunnel(line, exp2)
    tr = traffic(line, exp2, 10)
    after = line.br_counters()
    old_gone = {"old_ce_on_wan": any(a.startswith(exp1["ce"] + "/") for a in line.router_addrs(L.WAN_DEV)),
                "old_ipv4_on_tunnel": any(a.startswith(exp1["ipv4"] + "/") for a in line.router_addrs("map-wan", "inet")),
                "old_ipv4_in_nat": nat_mentions(line, exp1["ipv4"]),
                "new_ipv4_in_nat": nat_mentions(line, exp2["ipv4"])}
    history = [h for h in (st.get("history") or []) if h.get("event") in ("prefix-changed", "applied")]
    stop_daemon(line)
    return {"expect_before": exp1, "expect_after": exp2, "recovery_seconds": round(recovery, 1),
            "recovery_breakdown": breakdown,
            "fetch_tries": tries, "fetch_after": second, "status": status_brief(st), "tunnel": tun,
            "traffic": tr, "br_before": before_counters, "br_during_change": during, "br_after": after,
            "old_gone": old_gone, "history": history}


def scenario_d(line):
    """240 concurrent connections from the LAN to one server: all work, none leak; a 241st
    connection must not leak either."""
    exp = start_line_ra(line, RA_PREFIX)
    start_daemon(line)
    st = wait_state(line, "ok", exp["ipv4"])
    line.br_counters(reset=True)
    t0 = time.time()
    res = line.many(240, port=8080, hold=5)
    wall = time.time() - t0
    errors = [r["error"] for r in res if "error" in r]
    ok = [r for r in res if "error" not in r]
    ports = [r["port"] for r in ok]
    counters = line.br_counters(reset=True)
    say("240 concurrent: %d ok, %d errors, %d distinct ports, BR %s" % (len(ok), len(errors), len(set(ports)),
                                                                         counters))
    res2 = line.many(241, port=8081, hold=5, timeout=120)
    ok2 = [r for r in res2 if "error" not in r]
    counters2 = line.br_counters()
    st = status() or st
    stop_daemon(line)
    return {"expect": exp, "status": status_brief(st), "n_ok": len(ok), "errors": errors[:5], "n_errors": len(errors),
            "distinct_ports": len(set(ports)), "all_ipv4_shared": all(r["ip"] == exp["ipv4"] for r in ok),
            "ports_outside": sorted(p for p in ports if not port_ok(p, exp["ports"])), "br": counters,
            "wall_seconds": round(wall, 1), "overflow_ok": len(ok2),
            "overflow_ports_outside": sorted(r["port"] for r in ok2 if not port_ok(r["port"], exp["ports"])),
            "overflow_ips": sorted(set(r["ip"] for r in ok2)), "br_overflow": counters2,
            "ports_status": (st.get("ports") or {}).get("capacity")}


def scenario_e(line):
    """an unsupported prefix -> IPv4 stays down, status says why, nothing else is touched."""
    line.build()
    line.br_configure(expect(RA_PREFIX))   # a BR that would count anything the router sends
    line.announce_ra(UNSUPPORTED)
    line.link_up()
    L.wait_for("the SLAAC address", lambda: [a for a in line.router_addrs(L.WAN_DEV) if a.startswith("2a0f")], 60)
    before = line.router_snapshot()
    start_daemon(line)
    st = wait_state(line, "unsupported-prefix", timeout=120)
    say("router status: %s (%s)" % (st["state"], st["state_reason"]))
    fetch = line.fetch(timeout=3)
    after = line.router_snapshot()
    counters = line.br_counters()
    stop_daemon(line)
    diff = {k: [before.get(k), after.get(k)] for k in before if before.get(k) != after.get(k)}
    return {"status": status_brief(st), "mapping_error": st.get("mapping_error"), "fetch": fetch,
            "untouched": not diff, "diff": diff, "br": counters, "tunnels": line.tunnels()}


def scenario_f(line):
    """the daemon killed mid-way and restarted -> converges (twice: killed while applying;
    killed, then the prefix changes while it is down)."""
    exp1 = start_line_ra(line, RA_PREFIX)
    start_daemon(line)
    # kill -9 as soon as anything of the mapping exists on the router
    L.wait_for("the first change on the router", lambda: line.tunnels() or
               any(a.endswith("/128") for a in line.router_addrs(L.WAN_DEV)), timeout=120, interval=0.05)
    line.stop("daemon", signal.SIGKILL)
    left = {"tunnels": line.tunnels(), "ce": [a for a in line.router_addrs(L.WAN_DEV) if a.endswith("/128")],
            "ipv4": line.router_addrs("map-wan", "inet"), "nat_rules": nat_mentions(line, exp1["ipv4"])}
    say("killed the daemon mid-apply; it left: %s" % json.dumps(left))
    start_daemon(line)
    st1 = wait_state(line, "ok", exp1["ipv4"])
    first, _, _ = fetch_until(line, exp1["ipv4"])
    tun1 = check_tunnel(line, exp1)
    fw1 = (st1.get("firewall") or {}).get("health")
    # second: killed, the line changes while it is down, restarted
    line.stop("daemon", signal.SIGKILL)
    exp2 = expect(RA_PREFIX_2)
    line.br_configure(exp2)
    line.announce_ra(RA_PREFIX_2, deprecated=[RA_PREFIX])
    L.wait_for("the new SLAAC address", lambda: [a for a in line.router_addrs(L.WAN_DEV)
                                                 if a.startswith("240b:10:abcd:ef00")], timeout=60)
    start_daemon(line)
    st2 = wait_state(line, "ok", exp2["ipv4"])
    second, _, _ = fetch_until(line, exp2["ipv4"])
    tun2 = check_tunnel(line, exp2)
    line.br_counters(reset=True)
    tr = traffic(line, exp2, 10)
    counters = line.br_counters()
    stop_daemon(line)
    return {"left_after_kill": left, "status_1": status_brief(st1), "fetch_1": first, "tunnel_1": tun1,
            "firewall_1": fw1, "status_2": status_brief(st2), "fetch_2": second, "tunnel_2": tun2,
            "old_ipv4_in_nat": nat_mentions(line, exp1["ipv4"]), "traffic": tr, "br": counters,
            "expect_2": exp2}


SCENARIOS = {"a": scenario_a, "b": scenario_b, "c": scenario_c, "d": scenario_d, "e": scenario_e, "f": scenario_f}


def main(names):
    for mod in ("ip6_tunnel", "nf_nat", "nf_tables", "nft_nat", "iptable_nat", "veth"):
        subprocess.run(["modprobe", mod], stderr=subprocess.DEVNULL)
    print("MAPE-KERNEL %s" % os.uname().release, flush=True)
    line = L.Line()
    for name in names:
        fn = SCENARIOS[name]
        say("scenario %s: %s" % (name, " ".join(fn.__doc__.split())))
        t0 = time.time()
        try:
            result = fn(line)
            result["ok"] = True
        except Exception as e:  # noqa: BLE001 - reported to the host
            result = {"ok": False, "error": "%s: %s" % (type(e).__name__, e), "traceback": traceback.format_exc(),
                      "status": status_brief(status())}
        result["daemon_log"] = line.logtail("daemon", 40)
        result["name"] = name
        result["wall_seconds"] = round(time.time() - t0, 1)
        line.teardown()
        print("MAPE-RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or sorted(SCENARIOS)))
