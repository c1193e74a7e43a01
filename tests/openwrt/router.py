"""A bed (bed.py) on a line (lines.py) with mape-py installed: what the tests share.

Router.up(): root + line, OpenWrt's boot order, wait until wan6 has what the line gives,
then `opkg install` our ipk (the postinst's procd requests -- rpcd reload, mape-py
enable/start -- are held until opkg returns, then carried out as procd would), and wait
until the daemon settled. Stdlib only.
"""
import ipaddress
import json
import os
import re
import time

import bed as B
import lines as L

SETTLED = ("ok", "error", "unsupported-prefix", "disabled")


class Router:
    def __init__(self, profile, line, build_dir, ipks, settings=None):
        self.profile = profile
        self.line_name = line
        self.spec = L.LINES[line]
        self.ipks = list(ipks)
        self.settings = dict(settings or {})
        self.bed = B.Bed(profile, build_dir)
        self.line = L.Line(line, self.bed.name, self.bed.work)
        self.opkg = None
        self.files_at_install = None
        self.timings = {}

    # -- bring-up ------------------------------------------------------------------------
    def up(self):
        t0 = time.time()
        self.bed.start()
        self.line.attach()
        self.bed.boot()
        self.timings["boot"] = time.time() - t0
        self.wait_wan6()
        self.timings["wan6"] = time.time() - t0
        self.install()
        self.timings["install"] = time.time() - t0
        self.wait_settled()
        self.timings["settled"] = time.time() - t0
        return self

    def down(self):
        try:
            self.line.detach()
        finally:
            self.bed.stop()

    def wait_wan6(self, timeout=40):
        def ready():
            st = self.bed.ubus("network.interface.wan6", "status", check=False) or {}
            if not st.get("up"):
                return None
            if self.spec["pd"]:
                return st if self.prefixes(st) else None
            return st if st.get("ipv6-address") else None
        try:
            return self.bed.wait("wan6 up with what the %s line gives" % self.line_name, ready, timeout)
        except TimeoutError as e:
            raise B.BedError("%s\nwan6: %s\n%s\n%s" % (e, json.dumps(self.bed.ubus("network.interface.wan6", "status",
                                                                                  check=False)),
                                                      self.line.logtail(), self.bed.snapshot()))

    @staticmethod
    def prefixes(st):
        return ["%s/%s" % (p["address"], p["mask"]) for p in st.get("ipv6-prefix", [])]

    def install(self):
        with self.bed.lock:  # hold procd requests until opkg is done
            self.opkg = self.bed.install(self.ipks)
            self.files_at_install = self.tree("/usr/lib/mape-py")
            if self.settings:
                cmds = ["uci set mape.config.%s='%s'" % kv for kv in sorted(self.settings.items())]
                self.bed.sh("; ".join(cmds) + "; uci commit mape")
        self.bed.pump()
        if self.opkg.returncode != 0:
            raise B.BedError("opkg install failed (%d):\n%s\n%s" % (self.opkg.returncode, self.opkg.stdout,
                                                                   self.opkg.stderr))

    def wait_settled(self, timeout=45):
        def settled():
            st = self.status()
            return st if st and st.get("state") in SETTLED else None
        try:
            return self.bed.wait("the daemon to settle", settled, timeout)
        except TimeoutError:
            return None  # the tests say what is wrong

    # -- views ---------------------------------------------------------------------------
    def tree(self, top):
        """{path: (size, mtime)} of every file under ``top`` in the root."""
        out = {}
        base = self.bed.path(top)
        for dirpath, dirnames, filenames in os.walk(base):
            for name in filenames:
                full = os.path.join(dirpath, name)
                try:
                    st = os.lstat(full)
                except OSError:
                    continue
                out[top + full[len(base):]] = (st.st_size, st.st_mtime)
        return out

    def status(self):
        """`ubus call mape status` through the real rpcd (None if the call fails)."""
        return self.bed.ubus("mape", "status", check=False)

    def iface(self, name):
        return self.bed.ubus("network.interface.%s" % name, "status", check=False) or {}

    def calc(self, prefix=None):
        """`mape-py calc --json` for the line's prefix, run by the installed package."""
        out = self.bed.sh("mape-py calc --json %s" % (prefix or self.spec["calc"]))
        return json.loads(out.splitlines()[0])

    def map_rules(self, cfg="wan"):
        """/tmp/map-<cfg>.rules as map.sh wrote it: ({key: value}, raw text) or (None, None)."""
        text = self.bed.read("/tmp/map-%s.rules" % cfg, "")
        if not text:
            return None, None
        values = {}
        for m in re.finditer(r"^(RULE_\w+)=(?:'([^']*)'|(\S*))", text, re.M):
            values[m.group(1)] = m.group(2) if m.group(2) is not None else m.group(3)
        return values, text

    def nat_rules(self):
        """Our NAT rule lines as the kernel has them (iptables-save on fw3, nft on fw4)."""
        if self.profile == "21.02":
            text = self.bed.sh("iptables-save -t nat; iptables-save -t mangle; iptables-save -t filter", check=False)
            chains = set(re.findall(r"^:(\S*mape\S*)", text, re.M | re.I))
            lines = [l for l in text.splitlines() if l.startswith("-A ")
                     and (any(c in l.split() for c in chains) or "mape" in l.lower())]
            return lines, text
        text = self.bed.sh("nft list ruleset", check=False)
        lines, table, chain = [], None, None
        for l in text.splitlines():
            m = re.match(r"table (\S+) (\S+) \{", l)
            if m:
                table, chain = "%s %s" % (m.group(1), m.group(2)), None
                continue
            s = l.strip()
            m = re.match(r"(chain|set|map|counter) (\S+) \{", s)
            if m:
                chain = m.group(2)
                continue
            if not s or s == "}" or re.match(r"(type |policy |flags |elements )", s):
                continue
            if table and ("mape" in table.lower() or "mape" in s.lower()):
                lines.append("%s %s: %s" % (table, chain, re.sub(r"counter packets \d+ bytes \d+", "counter", s)))
        tables = re.findall(r"^table (\S+ \S*mape\S*) \{", text, re.M | re.I)
        return lines + ["table %s" % t for t in tables], text

    def daemon_pid(self):
        return self.bed.pid("mape-py")

    def logs(self):
        return self.bed.log("mape-py", "mape-py") + self.bed.syslog()

    def explain(self):
        return "%s/%s\n%s\n%s" % (self.profile, self.line_name, self.line.logtail(), self.bed.snapshot())


def in_subnet0(ce, customer56):
    """Is the CE address inside subnet 0 (the first /64) of the customer /56?"""
    net = ipaddress.IPv6Network(customer56)
    return ipaddress.IPv6Address(ce) in ipaddress.IPv6Network((net.network_address, 64))


def portsets_text(port_sets):
    """mapcalc's RULE_n_PORTSETS text for [[first, last], ...]."""
    return "".join("%d-%d " % (a, b) for a, b in port_sets)
