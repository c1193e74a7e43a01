"""MAP-E end to end on the real OpenWrt userland, run INSIDE the VM (root, Debian's kernel with
ip6tnl; stdlib only):

    python3 tests/vm/openwrt_scenarios.py --ipk MAPE.ipk 21.02=BUILD_DIR 24.10=BUILD_DIR

BUILD_DIR is a copy of tools/openwrt/build.py's output (layer/ and manifest.json) that the
guest can see. For each profile, one scenario on one bed (tests/openwrt/bed.py: real ubusd,
rpcd, netifd with map.sh + mapcalc, fw3 or fw4, odhcpd; procd emulated):

    line (tests/openwrt/lines.py "pd56": radvd with M/O, ISC dhcpd -6 delegating a /56)
      |  veth up0 <-> eth1      wan6 = proto dhcpv6: the real odhcp6c under netifd
    bed  (OpenWrt; our ipk installed by the real opkg, /etc/config/mape as shipped)
      |  veth eth0 (br-lan) <-> lan0
    lan  (the LAN host 192.168.1.100; IPv6 from odhcpd's RA)
    line -- BR -- inet       (tests/vm/provider.py: the strict BR and the IPv4 web server)

1. cold start: wan up through netifd (proto map, l3_device map-wan, the expected IPv4),
   `ubus call mape status` ok, HTTP over IPv4 from the LAN host; every BR counter of a bad
   packet 0;
2. prefix change: the line goes away and comes back delegating a new /56 (carrier loss on
   the router's WAN port, as when the ONU/HGW restarts or the NGN session is reset; dhcpd -6
   restarted with the new /56), the BR expects the new CE from then on. Measured: (a) from
   the carrier's return to the first IPv4 answer on the LAN (a prober, one try every 0.2 s);
   (b) what the BR counted, by reason, during the change and after it; (c) from netifd's
   interface.update notification carrying the new prefix (read by a `ubus subscribe
   network.interface` logger in the bed, stamped when read) to the daemon's `uci commit
   network` (the mtime of /etc/config/network, which libuci replaces at commit).
3. port forwards (issue 14 point 1), between 1 and 2: a TCP+UDP server on the LAN host
   behind two uci redirects from wan (as LuCI saves them, then LuCI's firewall reload), one
   on an allowed port, one on a port of no set. Both reported in the status; the allowed one
   reached from the internet host at the shared IPv4 and from the LAN (hairpin: fw3/fw4's
   reflection rules), the other never answers and the BR counts its drops. After the prefix
   change the status re-assesses the forward, `ubus call mape use_free_port` (LuCI's
   button) moves it into the new sets, and it is reached again at the new IPv4.

Each profile prints one ``MAPE-RESULT {json}`` line (name "openwrt-<profile>").
"""
import ipaddress
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(TOP, "tests", "openwrt"))

import ngn  # noqa: E402
import provider as P  # noqa: E402
from expect import expect, port_ok  # noqa: E402
import lines as OL  # noqa: E402
import router as R  # noqa: E402

LINE = "pd56"
PD_1 = OL.LINES[LINE]["pd"]            # 240b:10:3f6c:d400::/56 (v6plus; 106.72.63.108)
PD_2 = "240b:10:abcd:ef00::/56"        # the line's next delegation (same rule)
LAN_HOST = "192.168.1.100"
LAN_ROUTER = "192.168.1.1"
LAN_CLIENT2 = "192.168.1.101"          # a second LAN source (on lan0 too): the hairpin client
FWD_LAN_PORT = 5000                    # the LAN server behind both forwards (TCP and UDP)
SLOW = 4   # TCG: generous waits (the measurements are what the run reports, not these)


def say(msg):
    print("# " + msg, flush=True)


def stamp(t, t0):
    return None if t is None else round(t - t0, 2)


class Watch:
    """What happens in the bed, with wall-clock times (one clock: the VM's):
    ubus notifications/events (``ubus -S subscribe network.interface`` and ``ubus -S listen
    network.interface``, each line stamped when read) and every new mtime of
    /etc/config/network and /etc/config/firewall (polled every 20 ms; the recorded time is
    the mtime itself)."""

    def __init__(self, bed):
        self.bed = bed
        self.events = []          # (time, kind, message)
        self.mtimes = {"network": [], "firewall": []}
        self.procs = []
        self.stopping = False

    def start(self):
        for kind, argv in (("subscribe", ["ubus", "-S", "subscribe", "network.interface"]),
                           ("listen", ["ubus", "-S", "listen", "network.interface"])):
            p = subprocess.Popen(self.bed._enter(argv), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                 stdin=subprocess.DEVNULL, start_new_session=True)
            self.procs.append(p)
            threading.Thread(target=self._read, args=(kind, p), daemon=True).start()
        threading.Thread(target=self._poll, daemon=True).start()

    def _read(self, kind, p):
        for raw in iter(p.stdout.readline, b""):
            t = time.time()
            try:
                msg = json.loads(raw.decode("utf-8", "replace"))
            except ValueError:
                continue
            self.events.append((t, kind, msg))

    def _poll(self):
        paths = {name: self.bed.path("/etc/config/" + name) for name in self.mtimes}
        while not self.stopping:
            for name, seen in self.mtimes.items():
                try:
                    m = os.stat(paths[name]).st_mtime
                except OSError:
                    continue
                if not seen or seen[-1] != m:
                    seen.append(m)
            time.sleep(0.02)

    def stop(self):
        self.stopping = True
        for p in self.procs:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except OSError:
                pass
            p.wait(10)

    def update_with_prefix(self, iface, prefix, after):
        """Time of the first interface.update for ``iface`` listing ``prefix`` after ``after``."""
        for t, kind, msg in self.events:
            body = msg.get("interface.update") if kind == "subscribe" else None
            if t < after or not isinstance(body, dict) or body.get("interface") != iface:
                continue
            if prefix in ["%s/%s" % (p.get("address"), p.get("mask")) for p in body.get("ipv6-prefix", [])]:
                return t
        return None

    def ifup(self, iface, after):
        for t, kind, msg in self.events:
            body = msg.get("network.interface") if kind == "listen" else None
            if t >= after and isinstance(body, dict) and body.get("interface") == iface \
                    and body.get("action") == "ifup":
                return t
        return None

    def commit_after(self, name, after):
        return next((m for m in self.mtimes[name] if m >= after), None)


class Run:
    """One bed on the pd56 line with the provider behind it."""

    def __init__(self, profile, build_dir, ipks):
        self.profile = profile
        self.router = R.Router(profile, LINE, build_dir, ipks, None)   # None: the package's defaults
        self.bed = self.router.bed
        self.line = self.router.line
        self.procs = {}
        self.provider = P.Provider(self.line.ns, self.start, br=self.line.ns + "-br", inet=self.line.ns + "-inet")
        self.watch = None
        self.bed_ll = None

    # processes of the provider side (HTTP server, prober)
    def start(self, name, ns, argv):
        out = open(os.path.join(self.line.work, name + ".log"), "ab")
        self.procs[name] = subprocess.Popen(["ip", "netns", "exec", ns] + argv, stdout=out, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        out.close()
        return self.procs[name]

    def stop(self, name):
        p = self.procs.pop(name, None)
        if p is not None and p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except OSError:
                pass
            p.wait(10)

    def down(self):
        if self.watch:
            self.watch.stop()
        for name in list(self.procs):
            self.stop(name)
        for ns in (self.provider.br, self.provider.inet):
            if os.path.exists("/run/netns/" + ns):
                for pid in P.sh("ip", "netns", "pids", ns, check=False).split():
                    try:
                        os.kill(int(pid), signal.SIGKILL)
                    except (OSError, ValueError):
                        pass
                P.sh("ip", "netns", "del", ns, check=False)
        self.router.down()

    # -- pieces ----------------------------------------------------------------------
    def lan_fetch(self, timeout=3):
        return P.fetch(self.line.lan_ns, timeout=timeout)

    def fetch_until(self, ipv4, timeout):
        t0 = time.time()
        last = None
        while time.time() - t0 < timeout:
            last = self.lan_fetch(timeout=2)
            if last and last.get("ip") == ipv4:
                return last, time.time()
            time.sleep(0.2)
        raise TimeoutError("no HTTP over IPv4 from %s on the LAN after %.0f s (last: %r)" % (ipv4, timeout, last))

    def traffic(self, exp, n=10):
        results = [self.lan_fetch(timeout=15) for _ in range(n)]   # TCG on a busy host: slow, not lost
        good = [r for r in results if r and r.get("ip") == exp["ipv4"] and port_ok(r["port"], exp["ports"])]
        return {"fetches": n, "good": len(good), "ports": sorted(r["port"] for r in results if r)}

    def wan_up_with(self, ipv4):
        st = self.router.iface("wan")
        addrs = [a.get("address") for a in st.get("ipv4-address", [])]
        if st.get("up") and ipv4 in addrs and st.get("l3_device") == "map-wan":
            return st
        return None

    def status_ok_with(self, ipv4):
        st = self.router.status() or {}
        if st.get("state") == "ok" and (st.get("mapping") or {}).get("ipv4") == ipv4 \
                and (st.get("tunnel") or {}).get("up") is True:
            return st
        return None

    def wait(self, what, fn, timeout):
        try:
            return self.bed.wait(what, fn, timeout, interval=0.3)
        except TimeoutError as e:
            raise TimeoutError("%s\nmape status: %s\nwan: %s\nwan6: %s" % (
                e, json.dumps(self.router.status()), json.dumps(self.router.iface("wan")),
                json.dumps(self.router.iface("wan6"))))

    def tunnel(self):
        """map-wan as the kernel has it in the bed."""
        try:
            data = json.loads(P.sh("ip", "-n", self.bed.name, "-d", "-json", "link", "show", "map-wan"))
        except (RuntimeError, ValueError):
            return None
        l = data[0]
        d = (l.get("linkinfo") or {}).get("info_data") or {}
        v4 = json.loads(P.sh("ip", "-n", self.bed.name, "-json", "-4", "addr", "show", "dev", "map-wan"))
        return {"kind": (l.get("linkinfo") or {}).get("info_kind"), "proto": d.get("proto"), "local": d.get("local"),
                "remote": d.get("remote"), "mtu": l.get("mtu"), "up": "UP" in l.get("flags", []),
                "encap_limit": d.get("encap_limit"),
                "ipv4": ["%s/%s" % (a["local"], a["prefixlen"]) for x in v4 for a in x.get("addr_info", [])]}

    def addrs(self, ns, dev, family="-6"):
        data = json.loads(P.sh("ip", "-n", ns, "-json", family, "addr", "show", "dev", dev))
        return ["%s/%s" % (a["local"], a["prefixlen"]) for x in data for a in x.get("addr_info", [])
                if a.get("scope") == "global"]

    def ll(self, ns, dev):
        for x in json.loads(P.sh("ip", "-n", ns, "-json", "-6", "addr", "show", "dev", dev)):
            for a in x.get("addr_info", []):
                if a.get("scope") == "link" and not a.get("tentative"):
                    return a["local"]
        return None

    def odhcp6c_pid(self):
        """Host pid of the odhcp6c netifd runs for wan6."""
        mine = os.stat("/proc/%d/ns/net" % self.bed.initpid).st_ino
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open("/proc/%s/comm" % pid) as f:
                    if f.read().strip() != "odhcp6c":
                        continue
                if os.stat("/proc/%s/ns/net" % pid).st_ino == mine:
                    return int(pid)
            except OSError:
                continue
        return None

    def stop_dhcpd(self):
        old = self.line.procs.pop("dhcpd", None)
        if old is not None and old.poll() is None:
            os.killpg(old.pid, signal.SIGTERM)
            old.wait(20)

    def delegate(self, prefix):
        """The line's dhcpd -6 (re)started delegating ``prefix`` with an empty lease file; the
        line routes ``prefix`` to the router."""
        self.stop_dhcpd()
        if not [a for a in self.addrs(self.line.ns, "up0") if a == self.line.spec["link"]]:
            P.sh("ip", "-n", self.line.ns, "addr", "replace", self.line.spec["link"], "dev", "up0", "nodad")
        conf = os.path.join(self.line.work, "dhcpd6.conf")
        leases = os.path.join(self.line.work, "dhcpd6.leases")
        open(leases, "w").close()
        link = str(ipaddress.IPv6Interface(self.line.spec["link"]).network)
        with open(conf, "w") as f:
            f.write(ngn.dhcpd6_conf(link, prefix))
        out = open(os.path.join(self.line.work, "dhcpd.log"), "ab")
        self.line.procs["dhcpd"] = subprocess.Popen(
            ["ip", "netns", "exec", self.line.ns, "dhcpd", "-6", "-f", "-cf", conf,
             "-lf", leases, "-pf", os.path.join(self.line.work, "dhcpd6.pid"),
             "up0"], stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        out.close()
        P.wait_for("dhcpd -6 listening", lambda: P.nsx(self.line.ns, "ss", "-Hlun", "sport = :547", check=False).strip(),
                   timeout=30 * SLOW, interval=0.1)
        P.sh("ip", "-n", self.line.ns, "-6", "route", "replace", prefix, "via", self.bed_ll, "dev", "up0")

    def stamped_syslog(self):
        """(time, text) of each syslog line of the bed (bedinit stamps each datagram when it
        receives it)."""
        for raw in self.bed.syslog().splitlines():
            ts, _, text = raw.partition(" ")
            try:
                yield float(ts), text
            except ValueError:
                continue

    def syslog_after(self, pattern, after):
        """(time, line) of the first syslog line matching ``pattern`` after ``after``."""
        for t, text in self.stamped_syslog():
            if t >= after and re.search(pattern, text):
                return t, text[:300]
        return None, None

    def syslog_since(self, after, limit=150):
        """The bed's syslog from ``after`` on, stamped relative to it (the change's timeline:
        netifd, the firewall's hotplug reloads, map.sh, mape-py)."""
        return ["%7.2f %s" % (t - after, text[:200]) for t, text in self.stamped_syslog() if t >= after][:limit]

    def diagnose(self):
        """What a failure report needs: the BR's counters, the bed's addresses, routes and
        firewall, the line's routes, a ping from the LAN host."""
        out = {}
        for key, argv in (("br_counters", None),
                          ("bed_addr", ["ip", "-n", self.bed.name, "-br", "addr"]),
                          ("bed_route4", ["ip", "-n", self.bed.name, "-4", "route", "show", "table", "all"]),
                          ("bed_route6", ["ip", "-n", self.bed.name, "-6", "route"]),
                          ("bed_tunnel", ["ip", "-n", self.bed.name, "-d", "link", "show", "map-wan"]),
                          ("line_route6", ["ip", "-n", self.line.ns, "-6", "route"]),
                          ("lan_addr", ["ip", "-n", self.line.lan_ns, "addr"]),
                          ("lan_ping_router", ["ip", "netns", "exec", self.line.lan_ns, "ping", "-c1", "-W2", LAN_ROUTER]),
                          ("lan_ping_inet", ["ip", "netns", "exec", self.line.lan_ns, "ping", "-c1", "-W3", P.INET_ADDR]),
                          ("bed_ping_inet", ["ip", "netns", "exec", self.bed.name, "ping", "-c1", "-W3", P.INET_ADDR]),
                          ("br_ruleset", ["ip", "netns", "exec", self.provider.br, "nft", "list", "ruleset"]),
                          ("br_route4", ["ip", "-n", self.provider.br, "-4", "route"])):
            try:
                if argv is None:
                    out[key] = self.provider.br_counters()
                else:
                    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                       universal_newlines=True, timeout=60)
                    out[key] = p.stdout[-4000:]
            except Exception as e:  # noqa: BLE001
                out[key] = "%s: %s" % (type(e).__name__, e)
        try:
            out["bed_firewall"] = (self.bed.sh("iptables-save -c; ip6tables-save -c | head -80", check=False)
                                   if self.profile == "21.02" else self.bed.sh("nft list ruleset", check=False))[-12000:]
            out["uci_network"] = self.bed.sh("uci show network; uci show firewall | grep -i 'zone\\|include\\|mape'",
                                             check=False)[-5000:]
            out["conntrack"] = self.bed.sh("cat /proc/net/nf_conntrack 2>/dev/null | head -20; conntrack -L 2>&1 | head -20",
                                           check=False)[-4000:]
        except Exception as e:  # noqa: BLE001
            out["bed_sh"] = "%s: %s" % (type(e).__name__, e)
        return out

    # -- port forwards (issue 14 point 1) --------------------------------------------
    def knock(self, ns, proto, ipv4, port, timeout, src=None):
        """One TCP connection / UDP datagram from namespace ``ns`` (provider.knock)."""
        out = P.nsx(ns, *P.knock_argv(proto, ipv4, port, timeout, src), timeout=timeout + 60, check=False)
        try:
            return json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            return {"ok": False, "error": "no result: %r" % out[-300:]}

    def reach(self, ns, proto, ipv4, port, src=None, tries=3):
        """knock() until it answers (TCG on a busy host: slow, not lost), at most ``tries``."""
        t0 = time.time()
        for i in range(tries):
            r = self.knock(ns, proto, ipv4, port, 10, src)
            if r["ok"]:
                break
        r.update({"tries": i + 1, "seconds_total": round(time.time() - t0, 2)})
        return r

    def forward_status(self, what, fn, timeout=60 * SLOW):
        """The status once fn(status) holds (status forwards[] / warnings / mapping)."""
        return self.wait(what, lambda: (lambda st: st if st and fn(st) else None)(self.router.status()), timeout)

    def reflection_rules(self):
        """The firewall's NAT-loopback rules as the kernel has them (fw3: iptables comments
        "... (reflection)", fw4: nft comments)."""
        text = self.bed.sh("iptables-save -t nat" if self.profile == "21.02" else "nft list table inet fw4",
                           check=False)
        return [l.strip() for l in text.splitlines() if "reflection" in l]

    def forward_checks(self, ipv4, port, blocked=None):
        """The forward at ipv4:port from the BR's side (the internet host) and from the LAN
        (hairpin, from LAN_CLIENT2), TCP and UDP; the blocked port from the BR's side once
        each (short timeout: it must not answer); what the BR counted meanwhile."""
        base = self.provider.br_counters()
        out = {"port": port}
        for proto in ("tcp", "udp"):
            out["inet_" + proto] = self.reach(self.provider.inet, proto, ipv4, port)
            out["hairpin_" + proto] = self.reach(self.line.lan_ns, proto, ipv4, port, src=LAN_CLIENT2)
            if blocked is not None:
                out["blocked_" + proto] = self.knock(self.provider.inet, proto, ipv4, blocked, 3)
        after = self.provider.br_counters()
        out["br_delta"] = {k: after.get(k, 0) - base.get(k, 0) for k in after}
        out["reflection_rules"] = self.reflection_rules()
        return out

    def nat_mentions(self, ipv4):
        lines, _ = self.router.nat_rules()
        return any(ipv4 in l for l in lines)


def status_excerpt(st):
    if not st:
        return st
    m = st.get("mapping") or {}
    fw = st.get("firewall") or {}
    return {"state": st.get("state"), "state_reason": st.get("state_reason"), "ipv4": m.get("ipv4"),
            "ce": m.get("ce"), "psid": m.get("psid"), "br": m.get("br"), "wan6": st.get("wan6"),
            "tunnel": st.get("tunnel"), "firewall": {k: fw.get(k) for k in ("backend", "strategy", "health", "detail")
                                                      if k in fw},
            "last_error": st.get("last_error")}


def wan_excerpt(st):
    return {k: st.get(k) for k in ("up", "available", "proto", "l3_device", "device", "ipv4-address", "route",
                                   "errors") if k in st}


def scenario(profile, build_dir, ipks):
    run = Run(profile, build_dir, ipks)
    res = {"profile": profile, "line": LINE, "fw": run.bed.fw}
    t_start = time.time()
    timings = res["setup_seconds"] = {}
    try:
        exp1, exp2 = expect(PD_1), expect(PD_2)
        res["expect_before"], res["expect_after"] = exp1, exp2
        run.bed.start()
        run.line.attach()
        run.provider.build()
        run.provider.br_configure(exp1)
        P.sh("ip", "-n", run.line.lan_ns, "addr", "add", LAN_HOST + "/24", "dev", "lan0")
        P.sh("ip", "-n", run.line.lan_ns, "route", "add", "default", "via", LAN_ROUTER)
        timings["bed_and_line"] = round(time.time() - t_start, 1)
        run.bed.boot()
        timings["boot"] = round(time.time() - t_start, 1)
        run.router.wait_wan6(timeout=40 * SLOW)
        run.bed_ll = P.wait_for("eth1's link-local address", lambda: run.ll(run.bed.name, "eth1"), 30)
        P.sh("ip", "-n", run.line.ns, "-6", "route", "replace", PD_1, "via", run.bed_ll, "dev", "up0")
        wan6 = run.router.iface("wan6")
        res["wan6_before"] = {"up": wan6.get("up"), "ipv6-prefix": R.Router.prefixes(wan6)}
        timings["wan6"] = round(time.time() - t_start, 1)
        say("%s: bed up, wan6 has %s; installing mape-py (defaults)" % (profile, res["wan6_before"]["ipv6-prefix"]))
        run.watch = Watch(run.bed)
        run.watch.start()
        t_install = time.time()
        run.router.install()
        res["opkg_rc"] = run.router.opkg.returncode
        res["mape_config_untouched"] = run.bed.read("/etc/config/mape") == open(
            os.path.join(TOP, "files", "etc", "config", "mape")).read()
        st1 = run.wait("mape status ok with %s" % exp1["ipv4"], lambda: run.status_ok_with(exp1["ipv4"]), 60 * SLOW)
        t_ok = time.time()
        wan1 = run.wait("wan up with %s on map-wan" % exp1["ipv4"], lambda: run.wan_up_with(exp1["ipv4"]), 30 * SLOW)
        first, t_first = run.fetch_until(exp1["ipv4"], 60 * SLOW)
        say("%s: IPv4 from the LAN after %.1f s: %s" % (profile, t_first - t_install, json.dumps(first)))
        res.update({"seconds_install_to_ok": round(t_ok - t_install, 1),
                    "seconds_install_to_lan_ipv4": round(t_first - t_install, 1),
                    "status_before": status_excerpt(st1), "wan_before": wan_excerpt(wan1), "fetch_before": first,
                    "tunnel_before": run.tunnel(), "ce_on_wan_before": run.addrs(run.bed.name, "eth1"),
                    "lan_host_ipv6_before": run.addrs(run.line.lan_ns, "lan0"),
                    "traffic_before": run.traffic(exp1, 10)})
        res["br_before"] = run.provider.br_counters()
        timings["cold_start"] = round(time.time() - t_start, 1)

        # -- port forwards (issue 14 point 1) ---------------------------------------------
        # A TCP+UDP server on the LAN host behind a forward on an allowed port ("game") and
        # one on a port of no set ("blocked"), as LuCI saves them, then LuCI's reload.
        allowed, blocked = exp1["ports"][1][0] + 3, exp1["ports"][0][1] + 100
        run.start("echo", run.line.lan_ns, P.echo_argv(FWD_LAN_PORT))
        P.sh("ip", "-n", run.line.lan_ns, "addr", "add", LAN_CLIENT2 + "/24", "dev", "lan0")
        P.wait_for("the LAN server", lambda: P.nsx(run.line.lan_ns, "ss", "-Htln", "sport = :%d" % FWD_LAN_PORT,
                                                    check=False).strip(), timeout=30 * SLOW)
        # LuCI 24.10 saves proto as a list, older LuCI as one option "tcp udp": fw3/fw4 read both
        proto = ("uci set firewall.{s}.proto='tcp udp'" if profile == "21.02" else
                 "uci add_list firewall.{s}.proto=tcp; uci add_list firewall.{s}.proto=udp")
        t_fw = time.time()
        run.bed.sh("; ".join(
            "uci set firewall.{s}=redirect; uci set firewall.{s}.name={n}; uci set firewall.{s}.src=wan; "
            "uci set firewall.{s}.src_dport={p}; uci set firewall.{s}.dest=lan; uci set firewall.{s}.dest_ip={h}; "
            "uci set firewall.{s}.dest_port={d}; uci set firewall.{s}.target=DNAT; ".format(
                s=sec, n=name, p=port, h=LAN_HOST, d=FWD_LAN_PORT) + proto.format(s=sec)
            for sec, name, port in (("game", "Game", allowed), ("blocked", "Blocked", blocked)))
            + "; uci commit firewall; /etc/init.d/firewall reload")
        st = run.forward_status("both forwards in the status", lambda st: [
            (f.get("section"), f.get("allowed")) for f in st.get("forwards") or []] == [
            ("game", "yes"), ("blocked", "no")])
        res["forwards_before"] = {
            "seconds_reload_to_status": round(time.time() - t_fw, 2), "allowed_port": allowed,
            "blocked_port": blocked, "forwards": st.get("forwards"),
            "warnings": [w for w in st.get("warnings") or [] if w.get("code", "").startswith("forward")]}
        res["forwards_before"].update(run.forward_checks(exp1["ipv4"], allowed, blocked))
        say("%s: forwards %s" % (profile, json.dumps({k: v for k, v in res["forwards_before"].items()
                                                      if k not in ("forwards", "reflection_rules")})))
        timings["forwards"] = round(time.time() - t_start, 1)

        # -- the prefix change -----------------------------------------------------------
        say("%s: the line delegates %s instead of %s (BR now expects CE %s, IPv4 %s)"
            % (profile, PD_2, PD_1, exp2["ce"], exp2["ipv4"]))
        probe = os.path.join(run.line.work, "probe.json")
        run.start("probe", run.line.lan_ns, P.probe_argv(exp2["ipv4"], 0.2, probe))
        # the line goes away (ONU/HGW restart, NGN session reset): carrier loss on eth1
        t_down = time.time()
        P.sh("ip", "-n", run.line.ns, "link", "set", "up0", "down")
        run.wait("wan6 down after the carrier loss", lambda: not run.router.iface("wan6").get("up"), 30 * SLOW)
        res["seconds_wan6_down_after_carrier_loss"] = round(time.time() - t_down, 1)
        run.stop_dhcpd()
        run.provider.br_configure(exp2)      # a fresh table: counters from zero
        time.sleep(1.0)
        # ... and comes back delegating the new /56
        t0 = time.time()
        P.sh("ip", "-n", run.line.ns, "link", "set", "up0", "up")
        run.delegate(PD_2)
        t_line = time.time()
        seen = P.wait_for("IPv4 via %s on the LAN" % exp2["ipv4"], lambda: P.read_probe(probe), timeout=120 * SLOW,
                          interval=0.1)
        run.stop("probe")
        st2 = run.wait("mape status ok with %s" % exp2["ipv4"], lambda: run.status_ok_with(exp2["ipv4"]), 60 * SLOW)
        wan2 = run.wait("wan up with %s on map-wan" % exp2["ipv4"], lambda: run.wan_up_with(exp2["ipv4"]), 30 * SLOW)
        time.sleep(1.0)                      # the watchers catch up (commit mtime, late events)
        during = run.provider.br_counters(reset=True)
        t_update = run.watch.update_with_prefix("wan6", PD_2, t0)
        t_commit = run.watch.commit_after("network", t_update) if t_update else None
        t_applying, applying_line = run.syslog_after(r"mape-py.*applying", t0)
        t_ifup = run.watch.ifup("wan", t0)
        res["change"] = {
            "t0": "the line's link back up (carrier on eth1), dhcpd -6 then delegating %s" % PD_2,
            "a_seconds_to_lan_ipv4": round(seen["time"] - t0, 2),
            "probe_tries": seen["tries"],
            # the router's share: netifd's notification of the new prefix -> first answer
            "a_seconds_update_to_lan_ipv4": None if t_update is None else round(seen["time"] - t_update, 2),
            "c_seconds_update_to_commit": None if t_commit is None else round(t_commit - t_update, 3),
            "after_t0": {"line_dhcpd_ready": stamp(t_line, t0),
                         "wan6_update_with_new_prefix": stamp(t_update, t0),
                         "daemon_applying_logged": stamp(t_applying, t0),
                         "network_committed": stamp(t_commit, t0),
                         "firewall_committed": stamp(run.watch.commit_after("firewall", t0), t0),
                         "wan_ifup": stamp(t_ifup, t0),
                         "lan_ipv4_answer": stamp(seen["time"], t0)},
            "applying_line": applying_line,
            "network_mtimes_after_t0": [stamp(m, t0) for m in run.watch.mtimes["network"] if m >= t0],
        }
        say("%s: IPv4 back on the LAN %.1f s after the line came back; interface.update -> uci commit %s s"
            % (profile, seen["time"] - t0, res["change"]["c_seconds_update_to_commit"]))
        res["br_during_change"] = during
        res["br_during_bad_by_reason"] = {k: during.get(k, 0) for k in P.BAD}
        res.update({"status_after": status_excerpt(st2), "wan_after": wan_excerpt(wan2), "tunnel_after": run.tunnel(),
                    "wan6_after": R.Router.prefixes(run.router.iface("wan6")),
                    "ce_on_wan_after": run.addrs(run.bed.name, "eth1"),
                    "lan_host_ipv6_after": run.addrs(run.line.lan_ns, "lan0"),
                    "traffic_after": run.traffic(exp2, 10)})
        res["fetch_after"] = run.lan_fetch(timeout=15)
        res["br_after"] = run.provider.br_counters()
        res["old_gone"] = {"old_ce_on_wan": any(a.startswith(exp1["ce"] + "/") for a in res["ce_on_wan_after"]),
                           "old_ipv4_in_nat": run.nat_mentions(exp1["ipv4"]),
                           "new_ipv4_in_nat": run.nat_mentions(exp2["ipv4"])}

        # -- the forward after the prefix change: the new PSID's sets do not hold its port;
        # the status says so (with the suggestion), LuCI's "use a free allowed port" moves it
        t_fw = time.time()
        st = run.forward_status("the game forward re-assessed for %s" % exp2["ipv4"], lambda st: (
            st.get("mapping") or {}).get("ipv4") == exp2["ipv4"] and [
            (f.get("section"), f.get("allowed")) for f in st.get("forwards") or []][:1] == [("game", "no")])
        game = st["forwards"][0]
        t_move = time.time()
        # rpcd (/etc/config/rpcd timeout 30) cuts an exec plugin off after 30 s, and the firewall
        # reload behind the call can take longer under TCG on a busy host: then no reply (None),
        # though the move is done; the test checks the move itself
        moved = run.bed.ubus("mape", "use_free_port", {"section": "game"}, check=False, timeout=120)
        seconds_move = round(time.time() - t_move, 2)
        new_port = int(run.bed.sh("uci -q get firewall.game.src_dport").strip())
        st = run.forward_status("the moved game forward allowed", lambda st: [
            (f.get("section"), f.get("allowed")) for f in st.get("forwards") or []][:1] == [("game", "yes")])
        res["forwards_after"] = {"game_after_change": game, "use_free_port": moved, "new_port": new_port,
                                 "seconds_use_free_port_call": seconds_move,
                                 "forwards": st.get("forwards"),
                                 "seconds_moved_to_status": round(time.time() - t_fw, 2)}
        res["forwards_after"].update(run.forward_checks(exp2["ipv4"], new_port))
        say("%s: forward after the change %s" % (profile, json.dumps({
            k: v for k, v in res["forwards_after"].items() if k not in ("forwards", "reflection_rules")})))
        timings["forwards_after"] = round(time.time() - t_start, 1)
        res["daemon_log"] = "".join(l + "\n" for l in run.bed.syslog().splitlines() if "mape-py" in l)[-6000:]
        res["syslog_after_t0"] = run.syslog_since(t0 - 1)
        res["ok"] = True
    except Exception as e:  # noqa: BLE001 - reported to the host
        res.update({"ok": False, "error": "%s: %s" % (type(e).__name__, e), "traceback": traceback.format_exc()})
        try:
            res["diagnosis"] = run.diagnose()
            res["status_at_error"] = run.router.status()
            res["explain"] = run.router.explain()[-12000:]
            res["daemon_log"] = "".join(l + "\n" for l in run.bed.syslog().splitlines() if "mape-py" in l)[-6000:]
        except Exception as e2:  # noqa: BLE001
            res["explain"] = "could not collect: %s" % e2
    finally:
        try:
            run.down()
        except Exception as e:  # noqa: BLE001
            res["teardown_error"] = str(e)
    res["wall_seconds"] = round(time.time() - t_start, 1)
    return res


def main(argv):
    ipks = []
    profiles = []
    args = list(argv)
    while args:
        a = args.pop(0)
        if a == "--ipk":
            ipks.append(args.pop(0))
        else:
            profile, _, path = a.partition("=")
            profiles.append((profile, path))
    for mod in ("ip6_tunnel", "tunnel6", "veth", "bridge", "nf_tables", "nf_nat", "nft_chain_nat", "nft_nat",
                "ip_tables", "iptable_nat", "iptable_filter", "iptable_mangle", "ip6_tables", "ip6table_filter",
                "ip6table_mangle", "nf_conntrack"):
        subprocess.run(["modprobe", mod], stderr=subprocess.DEVNULL)
    print("MAPE-KERNEL %s" % os.uname().release, flush=True)
    for profile, path in profiles:
        say("OpenWrt %s (%s): %s" % (profile, "fw3" if profile == "21.02" else "fw4", path))
        # the layer into the guest's RAM first: bedinit copies it again within bed.start()'s
        # 60 s, which reading ~200 files over 9p under TCG can exceed
        local = os.path.join("/run/mape-vm-openwrt", profile)
        subprocess.run(["rm", "-rf", local])
        os.makedirs(local)
        subprocess.run(["cp", "-a", os.path.join(path, "layer"), os.path.join(path, "manifest.json"), local],
                       check=True)
        path = local
        res = scenario(profile, path, ipks)
        res["name"] = "openwrt-" + profile
        print("MAPE-RESULT " + json.dumps(res), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
