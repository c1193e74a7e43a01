"""`make demo`: MAP-E end to end on a real kernel, on any Debian machine.

Boots Debian's kernel in qemu (virtme-ng, over this machine's own filesystem; no /dev/kvm
needed, TCG works; MAPE_VM_KVM=1 uses KVM where there is one), builds a simulated FLET'S line in network namespaces inside it (the NGN
announcing a v6plus prefix by RA, the provider's BR, an IPv4 web server, a LAN client), runs
the mape-py daemon (linux platform) on the simulated router and shows:

  (a) cold start: the router's status and an HTTP fetch over IPv4 through the MAP-E tunnel;
  (c) the line changes the prefix: how many seconds until IPv4 works again.

    .venv/bin/python -m tools.demo          (make demo; `make setup` installs what it needs)
"""
import json
import os
import sys
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, TOP)

from tools import vm  # noqa: E402

BAD = ("outer_bad_src", "outer_encaplimit", "inner_bad_src", "inner_bad_port", "down_bad")


def out(text=""):
    print(text, flush=True)


def progress(line):
    """Show the scenario's own progress lines; keep the kernel's boot chatter out."""
    if line.startswith("# "):
        out("   " + line[2:])
    elif line.startswith("MAPE-KERNEL "):
        out("   VM up: Linux %s" % line.split()[1])


def br_line(counters):
    if not counters:
        return "(no counters)"
    bad = sum(counters.get(k, 0) for k in BAD)
    return "%d packets in from the CE accepted, %d answers sent back, %d invalid" % (
        counters.get("outer_ok", 0), counters.get("down_ok", 0), bad)


def secs(value):
    """Seconds with one decimal, as every time in the demo is shown."""
    return "%.1f s" % value if isinstance(value, (int, float)) else "(not seen)"


def main():
    out("mape-py demo: MAP-E (v6plus rule 240b:10::/31) over a simulated FLET'S line in a VM")
    out("=" * 78)
    try:
        (kpath, version), prog = vm.preflight()
    except vm.VmUnavailable as e:
        out("cannot start the VM: %s" % e)
        return 2
    kvm = os.environ.get("MAPE_VM_KVM") == "1" and os.access("/dev/kvm", os.W_OK)
    if kvm:
        how = "KVM (MAPE_VM_KVM=1)"
    elif os.access("/dev/kvm", os.W_OK):
        how = "TCG (no KVM needed; MAPE_VM_KVM=1 would use this machine's /dev/kvm)"
    else:
        how = "TCG (no KVM needed; MAPE_VM_KVM=1 uses /dev/kvm where there is one)"
    out("kernel %s (%s), qemu under %s; booting takes about a minute without KVM..." % (version, kpath, how))
    t0 = time.time()
    results, output, wall, rc = vm.run_scenarios(["a", "c"], demo=True, on_line=progress, timeout=1200)
    out("=" * 78)
    a, c = results.get("a"), results.get("c")
    if not a or not a.get("ok"):
        out("scenario (a) did not succeed: %s" % ((a or {}).get("error") or "no result (rc %s)" % rc))
        if a and a.get("daemon_log"):
            out("daemon log:\n" + a["daemon_log"])
        if not a:
            out(output[-3000:])
        return 1
    st = a["status"]
    out("(a) cold start, RA /64 %s" % (st.get("wan6") or {}).get("prefix"))
    out("    router status  : %s - %s" % (st["state"], st["state_reason"]))
    out("    mapping        : IPv4 %s, PSID %s, %s ports, CE %s, BR %s" % (
        st["ipv4"], st["psid"], st["port_count"], st["ce"], st["br"]))
    out("    tunnel         : %s" % json.dumps(st.get("tunnel")))
    out("    firewall (NAT) : %s" % json.dumps(st.get("firewall")))
    out("    HTTP over IPv4 : GET http://203.0.113.80/ from the LAN -> %s" % json.dumps(a["fetch"]))
    out("    IPv4 working   : %s after the daemon started" % secs(a["seconds_to_ipv4"]))
    out("    BR saw         : %s" % br_line(a["br"]))
    if not c or not c.get("ok"):
        out("(c) did not succeed: %s" % ((c or {}).get("error") or "no result"))
        return 1
    out("(c) the line changes the prefix %s -> %s" % ("240b:10:1234:5600::/64", "240b:10:abcd:ef00::/64"))
    out("    IPv4 back after: %s (%s -> %s), as a LAN client saw it" % (
        secs(c["recovery_seconds"]), c["expect_before"]["ipv4"], c["expect_after"]["ipv4"]))
    bd = c.get("recovery_breakdown") or {}
    out("    the router     : reported the new prefix noticed after %s, applied and verified after %s"
        % (secs(bd.get("noticed_after")), secs(bd.get("applied_after"))))
    out("    router status  : %s - %s" % (c["status"]["state"], c["status"]["state_reason"]))
    out("    HTTP over IPv4 : %s" % json.dumps(c["fetch_after"]))
    out("    old mapping    : %s" % ("gone" if not any(v for k, v in c["old_gone"].items() if k != "new_ipv4_in_nat")
                                      else json.dumps(c["old_gone"])))
    out("    BR after       : %s" % br_line(c["br_after"]))
    out("=" * 78)
    out("done in %s (VM boot included). The full suite: make test (tests/vm: scenarios a-f)." % secs(time.time() - t0))
    return 0 if rc == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
