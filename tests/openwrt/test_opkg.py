"""Our packages under the real opkg (opkg-lede of each profile, built by tools/openwrt/build.py),
on both profiles: install -> upgrade (after a user edit of the conffile) -> `--force-reinstall`
-> remove, into

* an OFFLINE root (``opkg -o ROOT --force-postinstall`` with IPKG_INSTROOT=ROOT: the scripts run
  with IPKG_INSTROOT set, as the image build runs them), and nothing may happen on the build host. The
  build host is the bed itself (a whole OpenWrt userland with procd emulation, rpcd, uci), so
  anything run against "/" shows: procd requests, changed /etc, recording stubs of uci, ubus,
  logger, python3, mape-py, killall first on PATH;
* the LIVE root of the bed (PD /56 line, so the daemon applies MAP-E): maintainer scripts run
  as on a router, the real rpcd serves our plugin, fw3 / fw4 hold the NAT rules.

One lifecycle per profile (module fixture, about 35 s each); the tests below check its
records: what each opkg run printed, which procd services the scripts called (the bed records
every request), how often our NAT rules were removed (an ``nft`` wrapper counts
``delete table inet mape_py``: mape-py removes on both backends when both tools exist), and
what was on disk / in uci / in the kernel / on ubus after each step. The transcript of every
step is printed and saved as test-artifacts/opkg/<profile>.txt.

Two versions of the three packages are built from copies of this tree: v1 (release 1, plus a
module that v2 no longer has) and v2 (release 2).

The bed's `rpcd reload` is carried out once its `service` object is idle (see
Lifecycle.defer_rpcd_reloads: in the bed procd's API is an rpcd plugin, on a router it is not).
"""
import gzip
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import threading
import time

import pytest

import owtier as C
import router as R

pytestmark = pytest.mark.openwrt

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
ARTIFACTS = os.path.join(TOP, "test-artifacts", "opkg")
SHARED = os.path.join(os.path.dirname(TOP), "shared", "openwrt")
PKGS = ("mape-py", "luci-app-mape-py", "luci-i18n-mape-py-ja")
V1_ONLY = "src/mape/core/_v1_only.py"
OFFROOT = "/tmp/offroot"
HOSTCMDS = "/tmp/.hostcmds"
HOST_STUBS = ("uci", "ubus", "logger", "python3", "mape-py", "killall")
NAT_LOG = "/tmp/.nat-removals"
# the opkg status entries a router has for our Depends (the bed registers its own userland;
# luci-base is not part of it)
LUCI_BASE_STATUS = ("Package: luci-base\nVersion: 1\nDepends: libc\nStatus: install user installed\n"
                    "Architecture: all\nInstalled-Time: 1700000000\n\n")
# luci-base's /etc/config/luci (not in the pinned LuCI tarball): the sections the i18n
# package's uci-defaults writes into
LUCI_CONFIG = """config core 'main'
	option lang 'auto'
	option mediaurlbase '/luci-static/bootstrap'
	option resourcebase '/luci-static/resources'

config internal 'languages'

config internal 'sauth'
	option sessionpath '/tmp/luci-sessions'
	option sessiontime '3600'
"""
# Counts mape-py's NAT removals: `nft -f -` fed exactly shell/netfilter.py's removal script,
# with the command line that ran it. (Everything passes through to the real nft.)
NFT_WRAPPER = r"""#!/bin/sh
# test instrumentation (tests/openwrt/test_opkg.py): count mape-py's NAT removals
if [ "$1" = "-f" ] && [ "$2" = "-" ]; then
	in=$(cat)
	# netfilter.remove's script exactly (an apply also deletes the table, then makes it anew)
	if [ "$in" = "$(printf 'table inet mape_py\ndelete table inet mape_py')" ]; then
		tr '\000' ' ' < /proc/$PPID/cmdline >> %s; echo >> %s
	fi
	printf '%%s\n' "$in" | /usr/sbin/nft.bed-real "$@"
	exit $?
fi
exec /usr/sbin/nft.bed-real "$@"
""" % (NAT_LOG, NAT_LOG)
HOST_STUB = '#!/bin/sh\necho "$0 $*" >> %s.log\nexit 0\n' % HOSTCMDS
# The bed's procd emulation is an rpcd exec plugin, which must answer a JSON object where
# procd answers no data: `ubus call service signal|set|delete` then prints "{ }" (on a router:
# nothing). Those lines are the bed's, not ours.
BED_NOISE = re.compile(r"^\s*[{}]?\s*$")


# ---------------------------------------------------------------------------------------
# the two versions

def _epoch():
    p = subprocess.run(["git", "-C", TOP, "log", "-1", "--format=%ct"], stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL, universal_newlines=True)
    return p.stdout.strip() or str(int(time.time()))


def _build_version(tmp, n, epoch):
    top = os.path.join(tmp, "v%d" % n)
    for d in ("src", "files", "package", "luci-app-mape-py"):
        shutil.copytree(os.path.join(TOP, d), os.path.join(top, d),
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "node_modules"))
    os.makedirs(os.path.join(top, "tools"))
    shutil.copy(os.path.join(TOP, "tools", "build_ipk.py"), os.path.join(top, "tools"))
    if n == 1:
        with open(os.path.join(top, V1_ONLY), "w") as f:
            f.write('"""Only in v1 of the upgrade test: its bytecode must not outlive the upgrade."""\n')
    else:
        mk = os.path.join(top, "package", "mape-py", "Makefile")
        text = open(mk).read()
        assert "PKG_RELEASE:=1\n" in text
        open(mk, "w").write(text.replace("PKG_RELEASE:=1\n", "PKG_RELEASE:=2\n"))
        mk = os.path.join(top, "luci-app-mape-py", "Makefile")
        text = open(mk).read()
        text = re.sub(r"^PKG_RELEASE:=.*\n", "", text, flags=re.M)
        open(mk, "w").write(text.replace("include $(TOPDIR)/rules.mk\n",
                                         "include $(TOPDIR)/rules.mk\n\nPKG_RELEASE:=2\n", 1))
    out = os.path.join(top, "dist")
    p = subprocess.run([sys.executable, os.path.join(top, "tools", "build_ipk.py"), "--out", out],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                       env=dict(os.environ, SOURCE_DATE_EPOCH=epoch))
    if p.returncode != 0:
        pytest.fail("build_ipk.py (v%d) failed:\n%s" % (n, p.stdout[-3000:]))
    found = {}
    for name in os.listdir(out):
        found[name.split("_")[0]] = os.path.join(out, name)
    missing = [p for p in PKGS if p not in found]
    if missing:
        pytest.fail("v%d: build_ipk.py made no %s (made %s)" % (n, missing, sorted(found)))
    return [found[p] for p in PKGS]


def payload(path):
    """Install paths of the regular files of an ipk."""
    with open(path, "rb") as f:
        outer = tarfile.open(fileobj=io.BytesIO(gzip.decompress(f.read())))
    data = outer.extractfile("./data.tar.gz").read()
    inner = tarfile.open(fileobj=io.BytesIO(gzip.decompress(data)))
    return sorted("/" + m.name[2:] for m in inner.getmembers() if m.isfile())


@pytest.fixture(scope="module")
def versions(tmp_path_factory):
    tmp = str(tmp_path_factory.mktemp("opkg-versions"))
    epoch = _epoch()
    return {1: _build_version(tmp, 1, epoch), 2: _build_version(tmp, 2, epoch), "epoch": epoch}


# ---------------------------------------------------------------------------------------
# the lifecycle

class Lifecycle:
    def __init__(self, router, versions):
        self.r = router
        self.bed = router.bed
        self.profile = router.profile
        self.versions = versions
        self.steps = []
        self.lines = []
        self.error = None
        self.opkg_running = False   # defer_rpcd_reloads holds rpcd's reload while it is True
        ours = set()
        for n in (1, 2):
            for p in versions[n]:
                ours.update(payload(p))
        self.ours = sorted(ours)

    # -- plumbing ------------------------------------------------------------------------
    def say(self, text=""):
        self.lines.append(text)

    def copy_in(self, paths):
        names = []
        for path in paths:
            dst = "/tmp/ipk/" + os.path.basename(path)
            os.makedirs(os.path.dirname(self.bed.path(dst)), exist_ok=True)
            shutil.copy(path, self.bed.path(dst))
            names.append(dst)
        return names

    def nat_removals(self):
        return len(self.bed.read(NAT_LOG, "").splitlines())

    def wan_proto(self):
        """network.wan's proto, read from /etc/config/network (cheap enough to poll)."""
        text = self.bed.read("/etc/config/network", "")
        m = re.search(r"^config interface '?wan'?\n(.*?)(?:^config |\Z)", text, re.M | re.S)
        p = re.search(r"option proto '?([\w-]+)", m.group(1)) if m else None
        return p.group(1) if p else None

    def watch_wan(self):
        """Sample wan's proto every 0.1 s in a thread until stop(); [(time, proto)] on changes."""
        samples, stop = [], threading.Event()

        def run():
            last = object()
            while not stop.is_set():
                proto = self.wan_proto()
                if proto != last:
                    samples.append((time.time(), proto))
                    last = proto
                stop.wait(0.1)
        t = threading.Thread(target=run, daemon=True)
        t.start()

        def done():
            stop.set()
            t.join(5)
            return samples
        return done

    def opkg(self, where, title, args, hold=False, settings=None):
        """One opkg run (``where``: "offline" or "live"); its record."""
        env = {}
        argv = ["opkg"]
        if where == "offline":
            argv = ["env", "PATH=%s:/usr/sbin:/usr/bin:/sbin:/bin" % HOSTCMDS, "opkg",
                    "-o", OFFROOT, "-f", OFFROOT + "/etc/opkg.conf", "--force-postinstall"]
            env = {"IPKG_INSTROOT": OFFROOT, "TMPDIR": OFFROOT + "/tmp"}
        argv += args
        self.bed.pump()
        req0, nat0 = len(self.bed.request_log), self.nat_removals()
        t0 = time.time()
        self.opkg_running = True
        try:
            if hold:
                with self.bed.lock:    # procd requests wait until the settings are written
                    p = self.bed.run(argv, check=False, timeout=300, env=env)
                    if settings:
                        self.bed.sh("; ".join("uci set mape.config.%s='%s'" % kv
                                              for kv in sorted(settings.items())) + "; uci commit mape")
            else:
                p = self.bed.run(argv, check=False, timeout=300, env=env)
        finally:
            self.opkg_running = False
        took = time.time() - t0
        self.bed.pump()
        time.sleep(0.5)
        self.bed.pump()
        step = {"where": where, "title": title, "argv": argv, "rc": p.returncode, "stdout": p.stdout,
                "stderr": p.stderr, "seconds": took, "req0": req0, "nat0": nat0, "t0": t0}
        self.steps.append(step)
        return step

    def finish(self, step, settle=False):
        """Wait for the daemon (live), then record procd requests, NAT removals and state."""
        if settle:
            self.settle()
        self.flush_rpcd()
        step["requests"] = [(m, msg.get("name"), msg.get("signal")) for _, m, msg in self.bed.request_log[step["req0"]:]]
        step["nat_removals"] = self.nat_removals() - step["nat0"]
        step["nat_by"] = [l.strip() for l in self.bed.read(NAT_LOG, "").splitlines()[step["nat0"]:]]
        step["state"] = self.offline_state() if step["where"] == "offline" else self.live_state()
        self.report(step)
        if step["rc"] != 0:
            raise RuntimeError("%s %s: opkg exit %d" % (step["where"], step["title"], step["rc"]))

    def flush_rpcd(self, timeout=10):
        """Carry out a deferred rpcd reload (defer_rpcd_reloads) and wait for rpcd to be back."""
        end = time.time() + timeout
        while True:
            self.bed.pump()
            if not self.rpcd_pending:
                break
            if time.time() > end:
                raise RuntimeError("the deferred rpcd reload never found the service object idle")
            time.sleep(0.1)
        self.bed.wait("rpcd back on ubus", lambda: self.bed.run(["ubus", "list", "session"], check=False)
                      .returncode == 0, 20)

    def settle(self, timeout=45):
        """The daemon applied MAP-E: wan proto map, NAT rules present, a settled state."""
        def done():
            st = self.r.status() or {}
            if st.get("state") not in R.SETTLED:
                return None
            if self.bed.sh("uci -q get network.wan.proto", check=False).strip() != "map":
                return None
            return st if self.r.nat_rules()[0] else None
        try:
            return self.bed.wait("the daemon to apply MAP-E", done, timeout)
        except TimeoutError:
            return None

    def step(self, where, title):
        for s in self.steps:
            if s["where"] == where and s["title"] == title:
                return s
        raise AssertionError("no %s step %r (the lifecycle stopped: %s)\n%s" % (
            where, title, self.error, self.transcript()))

    # -- state -----------------------------------------------------------------------------
    def _tree(self, top):
        out = []
        base = self.bed.path(top)
        for dirpath, dirnames, filenames in os.walk(base):
            for name in filenames:
                out.append(top + os.path.join(dirpath, name)[len(base):])
        return sorted(out)

    def _files(self, root=""):
        present = [p for p in self.ours if os.path.lexists(self.bed.path(root + p))]
        pyc = [p[len(root):] for p in self._tree(root + "/usr/lib/mape-py") if p.endswith(".pyc")]
        stale = []
        for p in pyc:
            d, name = os.path.split(p)
            src = os.path.join(os.path.dirname(d), name.split(".")[0] + ".py")
            if not os.path.exists(self.bed.path(root + src)):
                stale.append(p)
        other = {}
        for top in ("/usr/lib/mape-py", "/etc/mape-py", "/var/run/mape-py"):
            files = [p[len(root):] for p in self._tree(root + top)]
            other[top] = [p for p in files if p not in self.ours and not p.endswith(".pyc")]
            other[top + " (exists)"] = os.path.lexists(self.bed.path(root + top))
        dirs = [d for d in ("/usr/lib/mape-py", "/usr/share/mape-py", "/etc/mape-py", "/var/run/mape-py")
                if os.path.isdir(self.bed.path(root + d))]
        return {
            "ours": present, "pyc": pyc, "stale_pyc": stale, "other": other, "dirs": dirs,
            "conffile": self.bed.read(root + "/etc/config/mape", None) if os.path.exists(
                self.bed.path(root + "/etc/config/mape")) else None,
            "mape-opkg": os.path.exists(self.bed.path(root + "/etc/config/mape-opkg")),
            "uci_defaults": [n for n in self.bed.listdir(root + "/etc/uci-defaults")
                             if "mape" in n],
            "rc.d": [n for n in self.bed.listdir(root + "/etc/rc.d") if "mape" in n],
        }

    def uci(self, what):
        return self.bed.sh("uci -q show %s" % what, check=False).strip()

    def live_state(self):
        st = self._files()
        status = self.r.status() or {}
        rules, _ = self.r.nat_rules()
        st.update({
            "wan": self.uci("network.wan"),
            "include": self.uci("firewall.mape_py"),
            "zone_wan": _zone_networks(self.bed),
            "luci_ja": self.bed.sh("uci -q get luci.languages.ja", check=False).strip(),
            "nat": rules,
            "ubus_mape": self.bed.run(["ubus", "list", "mape"], check=False).returncode == 0,
            "daemon_pid": self.r.daemon_pid(),
            "daemon_state": status.get("state"),
            "original_network": self.bed.read("/etc/mape-py/original/network", ""),
        })
        return st

    def offline_state(self):
        st = self._files(OFFROOT)
        st["host"] = self.host_state()
        st["host_calls"] = self.bed.read(HOSTCMDS + ".log", "").splitlines()
        return st

    def host_state(self):
        """What the build host (the bed outside OFFROOT) looks like: must not change."""
        configs = {n: self.bed.read("/etc/config/" + n, "") for n in self.bed.listdir("/etc/config")}
        return {
            "configs": configs,
            "rc.d": self.bed.listdir("/etc/rc.d"),
            "uci-defaults": self.bed.listdir("/etc/uci-defaults"),
            "ours": [p for p in self.ours if os.path.lexists(self.bed.path(p))],
            "usr/lib/mape-py": os.path.lexists(self.bed.path("/usr/lib/mape-py")),
            "ubus": sorted(self.bed.sh("ubus list", check=False).split()),
            "instances": sorted("%s/%s" % k for k in self.bed.instances),
        }

    # -- transcript ------------------------------------------------------------------------
    def report(self, s):
        self.say("== %s %s: %s" % (s["where"], self.profile, s["title"]))
        shown = [a for a in s["argv"] if not a.startswith("PATH=") and a != "env"]
        env = "IPKG_INSTROOT=%s " % OFFROOT if s["where"] == "offline" else ""
        self.say("$ %s%s    # %.1f s, exit %d" % (env, " ".join(shown), s["seconds"], s["rc"]))
        for line in s["stdout"].splitlines():
            if BED_NOISE.match(line):
                continue
            self.say("  " + line)
        for line in s["stderr"].splitlines():
            self.say("  stderr| " + line)
        reqs = ["%s %s%s" % (m, n, " (signal %s)" % sig if sig else "") for m, n, sig in s["requests"]]
        self.say("procd requests: %s" % ("; ".join(reqs) or "none"))
        if s.get("wan_protos"):
            self.say("network.wan's proto meanwhile (s after opkg started): %s" % ", ".join(
                "%.1f %s" % tp for tp in s["wan_protos"]))
        if s["where"] == "live":
            self.say("NAT removals (nft 'delete table inet mape_py'): %d%s" % (
                s["nat_removals"], "".join("\n  by: " + b for b in s["nat_by"])))
        st = s["state"]
        self.say("after: %d of our files; bytecode %d .pyc (%d without source); /etc/config/mape %s%s"
                 % (len(st["ours"]), len(st["pyc"]), len(st["stale_pyc"]),
                    "absent" if st["conffile"] is None else "edited" if "option history '7'" in st["conffile"]
                    else "present", "; mape-opkg written" if st["mape-opkg"] else ""))
        self.say("       uci-defaults left: %s; rc.d: %s; our directories: %s" % (
            st["uci_defaults"] or "none", st["rc.d"] or "none", " ".join(st["dirs"]) or "none"))
        for top in ("/usr/lib/mape-py", "/etc/mape-py", "/var/run/mape-py"):
            if st["other"][top + " (exists)"]:
                self.say("       %s: %s" % (top, ", ".join(os.path.relpath(p, top) for p in st["other"][top])
                                            or "(only package files)"))
        if s["where"] == "live":
            self.say("       network.wan: %s" % " ".join(
                l.split(".", 2)[-1] for l in st["wan"].splitlines()[1:] if ".proto=" in l or ".rule=" not in l))
            self.say("       firewall.mape_py: %s; zone wan networks: %s; luci.languages.ja: %s" % (
                "present" if st["include"] else "absent", " ".join(st["zone_wan"]), st["luci_ja"] or "unset"))
            self.say("       NAT rules: %d; ubus mape: %s; daemon: %s" % (
                len(st["nat"]), "yes" if st["ubus_mape"] else "no",
                "pid %s, %s" % (st["daemon_pid"], st["daemon_state"]) if st["daemon_pid"] else "not running"))
        else:
            self.say("       host calls: %s; host changed: %s" % (st["host_calls"] or "none",
                                                                 self.host_diff(st["host"]) or "no"))
        self.say()

    def host_diff(self, now):
        return sorted(k for k in now if now[k] != self.host_before[k])

    def transcript(self):
        return "\n".join(self.lines) + "\n"

    def save(self):
        os.makedirs(ARTIFACTS, exist_ok=True)
        path = os.path.join(ARTIFACTS, "%s.txt" % self.profile)
        with open(path, "w") as f:
            f.write(self.transcript())
        return path

    # -- the runs --------------------------------------------------------------------------
    def defer_rpcd_reloads(self):
        """Carry out `rpcd reload` (procd: SIGHUP) only when the bed's `service` object is idle.

        In the bed, procd's `service` object is an exec plugin of rpcd (bed.py), so a SIGHUP
        (rpcd re-execs itself) that lands while a `ubus call service set` is being answered
        loses the answer: the init script's ubus call waits 30 s and prints "Command failed:
        ... (Request timed out)". On a router procd serves `service` and an rpcd reload cannot
        touch it. 24.10's default_postinst starts the service right after our postinst-pkg
        reloaded rpcd, so the race is real here; the bed carries the reload out once opkg has
        exited, no request came for 0.3 s and no plugin process runs (this bed only; for
        bed.py's owner). Not while opkg runs: under load a maintainer script's next `ubus call
        service` came more than 0.3 s after the last and met rpcd re-executing ("Command
        failed: Not found", CI of 38f69c1)."""
        bed = self.bed
        procd, pump = bed._procd, bed.pump
        pending = self.rpcd_pending = []
        mnt = os.readlink("/proc/%d/ns/mnt" % bed.initpid)

        def plugin_running():
            for pid in os.listdir("/proc"):
                try:
                    if os.readlink("/proc/%s/ns/mnt" % pid) != mnt:
                        continue
                    with open("/proc/%s/cmdline" % pid, "rb") as f:
                        if b"/usr/libexec/rpcd/service" in f.read():
                            return True
                except (OSError, ValueError):
                    continue
            return False

        def deferring(method, msg):
            if method == "signal" and msg.get("name") == "rpcd":
                pending.append(msg)
                return
            procd(method, msg)

        def pumping():
            pump()
            with bed.lock:
                last = bed.request_log[-1][0] if bed.request_log else 0
                if pending and not self.opkg_running and time.time() - last > 0.3 and not plugin_running():
                    msg = pending.pop(0)
                    del pending[:]      # one SIGHUP covers them all
                    procd("signal", msg)
        bed._procd = deferring
        bed.pump = pumping

    def prepare(self):
        bed = self.bed
        self.defer_rpcd_reloads()
        status = bed.read("/usr/lib/opkg/status")
        if "Package: luci-base\n" not in status:
            bed.write("/usr/lib/opkg/status", status + LUCI_BASE_STATUS)
            bed.write("/usr/lib/opkg/info/luci-base.list", "")
        bed.write("/etc/config/luci", LUCI_CONFIG)
        # base-files' keep lists, for sysupgrade's backup list (the layer leaves sysupgrade out)
        for f in ("etc/sysupgrade.conf", "lib/upgrade/keep.d/base-files-essential"):
            bed.write("/" + f, _tree_text(self.profile, "openwrt-tree/package/base-files/files/" + f))
        real = bed.path("/usr/sbin/nft")
        shutil.copy2(real, bed.path("/usr/sbin/nft.bed-real"))
        os.unlink(real)
        bed.write("/usr/sbin/nft", NFT_WRAPPER, 0o755)
        for cmd in HOST_STUBS:
            bed.write("%s/%s" % (HOSTCMDS, cmd), HOST_STUB, 0o755)
        # the offline root: what an image has before our packages (base-files' functions and
        # rc.common, opkg's status with our dependencies)
        os.makedirs(bed.path(OFFROOT + "/tmp"), exist_ok=True)
        for src, dst in (("/usr/lib/functions.sh", "/lib/functions.sh"), ("/usr/lib/functions", "/lib/functions"),
                         ("/etc/rc.common", "/etc/rc.common"),
                         ("/usr/share/libubox/jshn.sh", "/usr/share/libubox/jshn.sh")):
            s, d = bed.path(src), bed.path(OFFROOT + dst)
            os.makedirs(os.path.dirname(d), exist_ok=True)
            if os.path.isdir(s):
                shutil.copytree(s, d)
            else:
                shutil.copy2(s, d)
        text = ""
        for name in ("libc", "map", "python3-light", "luci-base"):
            text += ("Package: %s\nVersion: 1\nDepends: libc\nStatus: install user installed\n"
                     "Architecture: all\nInstalled-Time: 1700000000\n\n" % name)
            bed.write(OFFROOT + "/usr/lib/opkg/info/%s.list" % name, "")
        bed.write(OFFROOT + "/usr/lib/opkg/status", text)
        bed.write(OFFROOT + "/etc/opkg.conf", "dest root /\nlists_dir ext /var/opkg-lists\n"
                                               "arch all 1\narch noarch 1\narch x86_64 10\n")
        for d in ("/etc/config", "/etc/rc.d", "/etc/uci-defaults", "/usr/lib/opkg/info", "/var/lock"):
            os.makedirs(bed.path(OFFROOT + d), exist_ok=True)
        self.v1 = self.copy_in(self.versions[1])
        self.v2 = self.copy_in(self.versions[2])
        self.host_before = self.host_state()

    def offline(self):
        self.say("##### OFFLINE root %s (%s), the bed as build host" % (OFFROOT, self.profile))
        self.say()
        s = self.opkg("offline", "install v1", ["install"] + self.v1)
        self.finish(s)
        self.bed.sh("sed -i \"s/option history '10'/option history '7'/\" %s/etc/config/mape" % OFFROOT)
        self.say("# user edit: option history '7' in %s/etc/config/mape" % OFFROOT)
        self.say()
        s = self.opkg("offline", "upgrade to v2", ["install"] + self.v2)
        self.finish(s)
        s = self.opkg("offline", "force-reinstall mape-py", ["install", "--force-reinstall", self.v2[0]])
        self.finish(s)
        s = self.opkg("offline", "remove", ["remove"] + list(reversed(PKGS)))
        self.finish(s)

    def live(self):
        self.say("##### LIVE root of the bed (%s, %s, PD /56 line)" % (self.profile, self.bed.fw))
        self.say("# The daemon's state is 'error' here: this kernel has no ip6tnl, so wan (proto map) never")
        self.say("# comes up; rollback is off (owtier.NO_ROLLBACK), so MAP-E stays applied. 'procd requests'")
        self.say("# are what the scripts asked procd (the bed's emulation records them).")
        self.say()
        s = self.opkg("live", "install v1", ["install"] + self.v1, hold=True, settings=C.NO_ROLLBACK)
        self.finish(s, settle=True)
        self.original = s["state"]["original_network"]
        self.bed.sh("uci set mape.config.history='7'; uci commit mape")
        self.say("# user edit: uci set mape.config.history='7'; uci commit mape")
        self.say()
        s = self.opkg("live", "upgrade to v2", ["install"] + self.v2)
        self.finish(s, settle=True)
        watch = self.watch_wan()
        s = self.opkg("live", "force-reinstall mape-py", ["install", "--force-reinstall", self.v2[0]])
        self.settle()
        s["wan_protos"] = [(max(0.0, t - s["t0"]), p) for t, p in watch()]
        self.finish(s)
        self.saved_before_sysupgrade = self._tree("/etc/mape-py")
        self.sysupgrade_list = self.backup_list()
        s = self.opkg("live", "remove", ["remove"] + list(reversed(PKGS)))
        time.sleep(1)
        self.finish(s)

    def backup_list(self):
        """What `sysupgrade` would keep: base-files' own list functions (pinned source)."""
        text = _tree_text(self.profile, "openwrt-tree/package/base-files/files/sbin/sysupgrade")
        funcs = []
        for name in ("list_conffiles", "list_changed_conffiles", "list_static_conffiles", "add_conffiles",
                     "build_list_of_backup_config_files"):
            m = re.search(r"^%s\(\) \{\n.*?^\}\n" % name, text, re.M | re.S)
            if m:
                funcs.append(m.group(0))
        build = "build_list_of_backup_config_files" if "build_list_of_backup_config_files()" in text else "add_conffiles"
        script = "cd /tmp\n" + "\n".join(funcs) + '\nfind_filter=""\n%s /tmp/.keep.list; cat /tmp/.keep.list\n' % build
        out = self.bed.sh(script, check=False).split()
        assert len(out) < 200, "sysupgrade's list is not a list of config files: %s ..." % out[:20]
        self.say("# sysupgrade's backup list now (base-files' %s; base-files' own conffiles such as"
                 % build)
        self.say("# /etc/config/network are not registered in the bed): %s" % (" ".join(out) or "empty"))
        self.say()
        return out


def _tree_text(profile, inner):
    with tarfile.open(os.path.join(SHARED, profile, inner.split("/")[0] + ".tar.gz")) as t:
        return t.extractfile(inner).read().decode()


def _zone_networks(bed, zone="wan"):
    out = bed.sh("uci -q show firewall", check=False)
    for sec in re.findall(r"^firewall\.(@zone\[\d+\]|\w+)=zone$", out, re.M):
        if bed.sh("uci -q get firewall.%s.name" % sec, check=False).strip() == zone:
            return bed.sh("uci -q get firewall.%s.network" % sec, check=False).split()
    return []


@pytest.fixture(scope="module", params=C.PROFILES)
def life(request, versions):
    profile = request.param
    r = R.Router(profile, "pd56", C.build_dir(profile), [], C.NO_ROLLBACK)
    lc = Lifecycle(r, versions)
    t0 = time.time()
    try:
        r.bed.start()
        r.line.attach()
        r.bed.boot()
        r.wait_wan6()
        lc.prepare()
    except Exception as e:  # noqa: BLE001 - reported by the fixture
        explain = r.explain()
        r.down()
        pytest.fail("bringing up the %s bed failed: %s\n%s" % (profile, e, explain))
    try:
        lc.offline()
        lc.live()
    except Exception as e:  # noqa: BLE001 - the tests report what is missing
        lc.error = "%s: %s" % (type(e).__name__, e)
        lc.say("!!! lifecycle stopped: %s" % lc.error)
    C.walls["opkg lifecycle %s" % profile] = time.time() - t0
    path = lc.save()
    print("\n" + lc.transcript() + "(saved as %s)" % os.path.relpath(path, TOP))
    lc.explain = r.explain()
    yield lc
    r.down()


# ---------------------------------------------------------------------------------------
# checks shared by the tests

def uci_text(text):
    """A uci file without its blank lines (uci commit and the stock file space them apart
    differently)."""
    return [l.strip() for l in text.splitlines() if l.strip()]


def printed(step):
    """Output lines of a step that are not opkg's own progress lines nor the bed's noise."""
    opkg_own = re.compile(r"^(Installing|Upgrading|Configuring|Removing|Downgrading) |"
                          r"^Package \S+ \(.*\) installed in root is up to date|"
                          r"^Not deleting modified conffile (%s)?/etc/config/mape\.$" % OFFROOT)
    return [l for l in step["stdout"].splitlines() if not BED_NOISE.match(l) and not opkg_own.match(l)]


RESOLVE = ("resolve_conffiles: Existing conffile %s/etc/config/mape is different from the conffile in the new "
           "package. The new conffile will be placed at %s/etc/config/mape-opkg.")


def errors(step, root=""):
    """stderr lines, less opkg's own conffile notice (README: "opkg says resolve_conffiles")."""
    lines = [l for l in step["stderr"].splitlines() if l.strip()]
    allowed = {"Collected errors:", " * " + RESOLVE % (root, root)}
    return [l for l in lines if l not in allowed]


# ---------------------------------------------------------------------------------------
# offline root

def test_offline_install_upgrade_reinstall_remove(life):
    """Image-builder style: every step succeeds, the files land in the root, our uci-defaults
    wait there for the first boot, the service is enabled for it, nothing is compiled yet, the
    user's edit of the conffile survives upgrade and reinstall, and removal leaves only that
    edited conffile."""
    inst = life.step("offline", "install v1")
    for s in life.steps:
        if s["where"] == "offline":
            assert s["rc"] == 0, "%s failed\n%s" % (s["title"], life.transcript())
            assert not errors(s, OFFROOT), "%s printed errors: %s" % (s["title"], errors(s, OFFROOT))
            assert not printed(s), "%s printed: %s" % (s["title"], printed(s))
    st = inst["state"]
    assert "/usr/bin/mape-py" in st["ours"] and "/usr/libexec/rpcd/mape" in st["ours"], st["ours"]
    assert st["uci_defaults"] == ["40_luci-mape-py", "90-mape-py-firewall", "91-mape-py-bytecode",
                                  "luci-i18n-mape-py-ja"], st["uci_defaults"]
    assert st["rc.d"] == ["K10mape-py", "S95mape-py"], st["rc.d"]
    assert st["pyc"] == []
    for title in ("upgrade to v2", "force-reinstall mape-py"):
        s = life.step("offline", title)
        assert "option history '7'" in (s["state"]["conffile"] or ""), "%s lost the user's edit" % title
        assert s["state"]["mape-opkg"], "%s: no /etc/config/mape-opkg" % title
    st = life.step("offline", "remove")["state"]
    assert st["ours"] == ["/etc/config/mape"], "left after removal: %s" % st["ours"]
    assert not st["mape-opkg"], "/etc/config/mape-opkg left after removal"
    assert st["rc.d"] == [] and st["uci_defaults"] == []
    assert not st["other"]["/usr/lib/mape-py (exists)"], st["other"]
    assert not st["dirs"], "directories left: %s" % st["dirs"]


def test_offline_nothing_runs_on_the_build_host(life):
    for s in life.steps:
        if s["where"] != "offline":
            continue
        assert s["requests"] == [], "%s: procd requests on the host: %s" % (s["title"], s["requests"])
        assert s["state"]["host_calls"] == [], "%s ran on the host: %s" % (s["title"], s["state"]["host_calls"])
        assert not life.host_diff(s["state"]["host"]), "%s changed the host: %s" % (
            s["title"], life.host_diff(s["state"]["host"]))


# ---------------------------------------------------------------------------------------
# live root

def test_live_every_step_succeeds(life):
    for title in ("install v1", "upgrade to v2", "force-reinstall mape-py", "remove"):
        s = life.step("live", title)
        assert s["rc"] == 0, "%s failed (exit %d)\n%s" % (title, s["rc"], life.transcript())


def test_live_install(life):
    """Installed, daemon started, MAP-E applied, the `mape` object on ubus, bytecode compiled,
    our uci-defaults consumed, Japanese registered with LuCI (#13: luci.mk's uci-defaults)."""
    st = life.step("live", "install v1")["state"]
    assert st["daemon_pid"], "the daemon is not running\n" + life.transcript()
    assert "network.wan.proto='map'" in st["wan"], st["wan"]
    assert st["nat"], "no NAT rules after install"
    assert st["ubus_mape"], "rpcd does not serve `mape`"
    assert st["include"], "no firewall include"
    assert st["uci_defaults"] == [], "uci-defaults not consumed: %s" % st["uci_defaults"]
    assert st["pyc"] and not st["stale_pyc"], (st["pyc"], st["stale_pyc"])
    assert st["luci_ja"] == "日本語 (Japanese)", "luci.languages.ja = %r" % st["luci_ja"]
    assert st["rc.d"] == ["K10mape-py", "S95mape-py"], st["rc.d"]


@pytest.mark.parametrize("title", ["install v1", "upgrade to v2", "force-reinstall mape-py", "remove"])
def test_live_nothing_of_ours_printed(life, title):
    """#10: no `.: line 2: can't open '/etc/uci-defaults/40_luci-mape-py'` (or anything else
    of ours on stderr); only opkg's progress lines and its conffile notice."""
    s = life.step("live", title)
    assert not errors(s), "%s printed on stderr: %s" % (title, errors(s))
    extra = [l for l in printed(s) if not l.startswith("mape-py: restored")]
    assert not extra, "%s printed: %s" % (title, extra)


def test_live_rpcd_reloaded_once_per_install(life):
    """#15: installing the app with mape-py reloads rpcd once (mape-py's reload already
    covers the app's ACL); so does the upgrade of both."""
    for title in ("install v1", "upgrade to v2"):
        s = life.step("live", title)
        reloads = [r for r in s["requests"] if r[:2] == ("signal", "rpcd")]
        assert len(reloads) == 1, "%s: rpcd reloaded %d times: %s" % (title, len(reloads), s["requests"])


def test_live_upgrade_keeps_map_e_and_the_edit(life):
    """#12: the old prerm runs (`prerm upgrade`, PKG_UPGRADE=1): default_prerm stops the daemon,
    nothing is undone; the new postinst's default part starts it again. No restart of ours on
    top; NAT rules never removed; the user's edit kept (opkg writes the new default as
    /etc/config/mape-opkg)."""
    s = life.step("live", "upgrade to v2")
    before = life.step("live", "install v1")["state"]
    st = s["state"]
    calls = [(m, n) for m, n, _ in s["requests"] if n == "mape-py"]
    assert calls == [("delete", "mape-py"), ("set", "mape-py")], \
        "upgrade: procd requests for mape-py %s (want one stop by the old prerm, one start)" % s["requests"]
    assert s["nat_removals"] == 0, "the upgrade removed the NAT rules %d times" % s["nat_removals"]
    assert st["daemon_pid"] and st["daemon_pid"] != before["daemon_pid"], "the new code is not running"
    assert "network.wan.proto='map'" in st["wan"] and st["nat"]
    assert "option history '7'" in st["conffile"], "the upgrade lost the user's edit"
    assert st["mape-opkg"]
    assert st["original_network"] == life.original, "the upgrade touched /etc/mape-py/original"


def test_live_upgrade_leaves_no_stale_bytecode(life):
    """v1 had core/_v1_only.py, v2 has not: its bytecode goes with it."""
    st = life.step("live", "upgrade to v2")["state"]
    assert st["pyc"] and not st["stale_pyc"], "bytecode without source after the upgrade: %s" % st["stale_pyc"]


def test_live_force_reinstall_is_a_removal_then_an_install(life):
    """#11: opkg-lede's --force-reinstall runs `prerm remove` with PKG_UPGRADE=0, the same as
    `opkg remove`, so the removal path runs (documented in docs/packaging.md); afterwards the
    fresh daemon saves fresh originals (= the stock config) and applies MAP-E again; the
    user's edit survives."""
    s = life.step("live", "force-reinstall mape-py")
    st = s["state"]
    assert s["nat_removals"] == 1, "NAT rules removed %d times" % s["nat_removals"]
    calls = [(m, n) for m, n, _ in s["requests"]]
    assert ("delete", "mape-py") in calls and ("set", "mape-py") in calls, calls
    assert "network.wan.proto='map'" in st["wan"] and st["nat"], "MAP-E not applied again"
    assert uci_text(st["original_network"]) == uci_text(life.original), \
        "the originals saved again differ from the first ones:\n%s\n--\n%s" % (life.original, st["original_network"])
    assert "option history '7'" in st["conffile"]


def test_live_remove_leaves_nothing(life):
    """#9, #15: after `opkg remove`: none of our files, no bytecode, no /usr/lib/mape-py,
    /etc/mape-py, /var/run/mape-py, no mape-opkg; network and firewall as before the install;
    no NAT rules (removed once); no `mape` on ubus (rpcd reloaded once); only the user's edited
    conffile stays (opkg keeps modified conffiles)."""
    s = life.step("live", "remove")
    st = s["state"]
    assert st["ours"] == ["/etc/config/mape"], "left: %s" % st["ours"]
    assert "option history '7'" in st["conffile"]
    assert not st["mape-opkg"], "/etc/config/mape-opkg left"
    assert not st["pyc"], "bytecode left: %s" % st["pyc"]
    for top in ("/usr/lib/mape-py", "/etc/mape-py", "/var/run/mape-py"):
        assert not st["other"][top + " (exists)"], "%s left: %s" % (top, st["other"][top])
    assert not st["dirs"], "directories left: %s" % st["dirs"]
    assert "network.wan.proto='dhcp'" in st["wan"], st["wan"]
    assert not st["include"], st["include"]
    assert st["zone_wan"] == ["wan", "wan6"], st["zone_wan"]
    assert not st["nat"], st["nat"]
    assert s["nat_removals"] == 1, "NAT rules removed %d times" % s["nat_removals"]
    assert not st["ubus_mape"]
    assert [r for r in s["requests"] if r[:2] == ("signal", "rpcd")] == [("signal", "rpcd", None)], s["requests"]
    assert not st["daemon_pid"] and st["rc.d"] == []


def test_sysupgrade_keeps_the_saved_originals(life):
    """#14: a sysupgrade that keeps settings keeps /etc/config (network with wan proto map);
    it must keep /etc/mape-py/original too (/lib/upgrade/keep.d/mape-py), so that a
    reinstall after the upgrade can still put the user's wan back on removal."""
    keep = life.sysupgrade_list
    saved = [p for p in life.saved_before_sysupgrade if p.startswith("/etc/mape-py/original/")]
    assert "/etc/mape-py/original/network" in saved, saved
    missing = [p for p in saved if p not in keep]
    assert not missing, "sysupgrade would drop %s (keeps %s)" % (missing, keep)


# ---------------------------------------------------------------------------------------
# our ipks and OpenWrt's ipkg-build

def _ipk_parts(path):
    with open(path, "rb") as f:
        outer_tar = gzip.decompress(f.read())
    outer = tarfile.open(fileobj=io.BytesIO(outer_tar))
    heads = [(m.name, m.mode, m.uid, m.gid, m.uname, m.gname, m.mtime, m.type) for m in outer.getmembers()]
    inner = {m.name: gzip.decompress(outer.extractfile(m).read()) for m in outer.getmembers()
             if m.name.endswith(".tar.gz")}
    return heads, inner


@pytest.mark.parametrize("pkg", PKGS)
def test_ipks_equal_what_ipkg_build_makes(pkg, versions, tmp_path):
    """OpenWrt's own scripts/ipkg-build (24.10's, from the layer's tools/) run on the tree and
    CONTROL of our ipk makes the same data and control tars and the same outer archive; only
    the gzip streams differ (GNU gzip -6 there, zlib -9 here)."""
    ipkg_build = os.path.join(C.build_dir("24.10"), "tools", "ipkg-build")
    assert os.path.exists(ipkg_build), ipkg_build
    ours = versions[1][PKGS.index(pkg)]
    tree = tmp_path / "pkg"
    (tree / "CONTROL").mkdir(parents=True)
    with open(ours, "rb") as f:
        outer = tarfile.open(fileobj=io.BytesIO(gzip.decompress(f.read())))
    for name, dest in (("./data.tar.gz", tree), ("./control.tar.gz", tree / "CONTROL")):
        tarfile.open(fileobj=io.BytesIO(outer.extractfile(name).read()), mode="r:gz").extractall(str(dest))
    out = tmp_path / "out"
    out.mkdir()
    p = subprocess.run(["bash", ipkg_build, str(tree), str(out)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       universal_newlines=True, env=dict(os.environ, SOURCE_DATE_EPOCH=versions["epoch"]))
    assert p.returncode == 0, p.stdout
    made = [os.path.join(str(out), n) for n in os.listdir(str(out))]
    assert [os.path.basename(m) for m in made] == [os.path.basename(ours)]
    h1, i1 = _ipk_parts(ours)
    h2, i2 = _ipk_parts(made[0])
    assert h1 == h2
    assert i1["./control.tar.gz"] == i2["./control.tar.gz"]
    assert i1["./data.tar.gz"] == i2["./data.tar.gz"]
