"""An OpenWrt test bed: the real OpenWrt userland of a profile (21.02 or 24.10, built by
tools/openwrt/build.py) in a mount + network + PID namespace. Stdlib only (the VM tier runs it
inside virtme-ng on the host file system).

    bed = Bed("21.02", build_dir)        # build_dir: build.py's last stdout line
    bed.start()                          # root + ubusd, rpcd, firewall, netifd, odhcpd
    bed.install(ipk_paths)               # the real opkg-cl, maintainer scripts as on a router
    bed.sh("uci show network"); bed.ubus("network.interface.wan", "status")
    bed.stop()                           # kills the namespace's PID 1: nothing survives

The root
--------
bedinit.py (PID 1 of the bed) mounts overlayfs ``lowerdir=<layer>:/`` with a fresh upper
dir, so OpenWrt's files (merged-usr: /lib, /sbin, /bin under usr/) sit on top of the host
system, which provides libc, python3, iptables/nft, busybox... Then tmpfs on /tmp and /run
(= Debian's /var/run), its own /dev/log (collected into ``<work>/syslog.log``), and the
stock /etc/config files of the profile (network with lan/wan/wan6 as config_generate writes
them for a two-port device: wan ``proto dhcp`` and wan6 ``proto dhcpv6`` on eth1; firewall
and rpcd from their packages' sources; a minimal system and dhcp for odhcpd).

procd
-----
There is no procd (it is PID 1 on a router and not part of the build). Every init script
runs unchanged; what it hands procd reaches the bed as follows, and the bed does what procd
would:

* ubusd: procd runs ``/sbin/ubusd`` itself (no init script); so does the bed.
* rpcd (which must run before the emulation below exists): the bed runs
  ``PROCD_DEBUG=1 /etc/init.d/rpcd start``; procd.sh then dumps the JSON it sends to
  ``ubus call service set`` on stderr, and the bed starts the instances it names.
* everything after rpcd: the bed puts an rpcd exec plugin ``/usr/libexec/rpcd/service`` into
  the root (bed-only, written to the upper dir), so procd's ``service`` ubus object exists.
  ``set``/``add``/``signal``/``delete`` requests are queued to /tmp/.bed/procd/requests and
  carried out by the bed (start the instance command lines with their env, respawn as
  asked, send the signal -- default SIGHUP as procd --, SIGTERM then SIGKILL after
  term_timeout); ``list`` answers from /tmp/.bed/procd/state.json, so ``running``,
  ``status`` and ``enabled`` of rc.common behave. Init scripts, rc.common, procd.sh and the
  package's maintainer scripts (``/etc/init.d/rpcd reload`` = SIGHUP, ``mape-py start``)
  therefore run exactly as on a router.
Instance stdout/stderr go to ``<work>/logs/<service>.<instance>.log`` (procd: syslog).
"""
import itertools
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import tarfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
BUILD = os.path.join(TOP, "tools", "openwrt", "build.py")
SHARED = os.path.join(os.path.dirname(TOP), "shared", "openwrt")
WORK_BASE = "/tmp/mape-owrt"
NS_PREFIX = "owb"
PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
PROFILES = ("21.02", "24.10")
_SEQ = itertools.count(1)


class BedError(RuntimeError):
    pass


def host(argv, check=True, timeout=60, input=None):
    p = subprocess.run(argv, input=input, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       universal_newlines=True, timeout=timeout)
    if check and p.returncode != 0:
        raise BedError("%s -> %d: %s" % (" ".join(argv), p.returncode, (p.stderr or p.stdout).strip()[:800]))
    return p


def build_profile(profile, python=None):
    """Build (or take from the cache) ``profile`` with tools/openwrt/build.py; its output dir.
    Any failure raises: a missing prerequisite must fail the tier, not skip it."""
    import sys
    if not os.path.exists(BUILD):
        raise BedError("%s does not exist" % BUILD)
    p = subprocess.run([python or sys.executable, BUILD, profile], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, universal_newlines=True, cwd=TOP)
    lines = [l for l in p.stdout.splitlines() if l.strip()]
    if p.returncode != 0 or not lines:
        raise BedError("tools/openwrt/build.py %s failed (rc %d):\n%s\n%s"
                       % (profile, p.returncode, p.stdout[-3000:], p.stderr[-6000:]))
    out = lines[-1].strip()
    for need in ("layer", "manifest.json"):
        if not os.path.exists(os.path.join(out, need)):
            raise BedError("build.py %s printed %s, which has no %s" % (profile, out, need))
    return out


def stale_cleanup():
    """Remove beds left behind by a test process that died (netns owb*-* whose creator is gone)."""
    try:
        names = [l.split()[0] for l in host(["ip", "netns", "list"]).stdout.splitlines() if l.strip()]
    except (BedError, OSError):
        return
    for name in names:
        m = re.match(r"(%s|owl)(\d+)-" % NS_PREFIX, name)
        if not m or os.path.exists("/proc/%s" % m.group(2)):
            continue
        kill_netns(name)
    # work dirs (logs) of test processes that are gone
    for name in os.listdir(WORK_BASE) if os.path.isdir(WORK_BASE) else []:
        m = re.match(r"%s(\d+)-" % NS_PREFIX, name)
        if m and not os.path.exists("/proc/%s" % m.group(1)):
            shutil.rmtree(os.path.join(WORK_BASE, name), ignore_errors=True)


def kill_netns(name):
    for pid in host(["ip", "netns", "pids", name], check=False).stdout.split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (OSError, ValueError):
            pass
    host(["ip", "netns", "del", name], check=False)


def die_with_parent():
    """preexec_fn: SIGKILL this child when the (thread that started the) test process dies,
    so that a killed test run leaves no bed behind (unshare --kill-child passes it on to
    the bed's PID 1, whose death ends the PID namespace)."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _children(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def _nspid(hostpid):
    try:
        with open("/proc/%d/status" % hostpid) as f:
            for line in f:
                if line.startswith("NSpid:"):
                    return int(line.split()[-1])
    except OSError:
        pass
    return None


def tree_file(profile, package_path):
    """One file of the profile's pinned openwrt-tree (or firewall4) tarball, as text."""
    name, _, inner = package_path.partition(":")
    with tarfile.open(os.path.join(SHARED, profile, name + ".tar.gz")) as t:
        f = t.extractfile(inner)
        return f.read().decode("utf-8")


# Stock configuration, as a freshly flashed two-port router has it. config_generate writes
# network from board.json (lan = br-lan over eth0, wan/wan6 on eth1); 12_network-generate-ula
# adds a random ULA prefix (a fixed one here).
NETWORK_2102 = """
config interface 'loopback'
	option device 'lo'
	option proto 'static'
	option ipaddr '127.0.0.1'
	option netmask '255.0.0.0'

config globals 'globals'
	option ula_prefix 'fd4b:8c2e:61a5::/48'

config device
	option name 'br-lan'
	option type 'bridge'
	list ports 'eth0'

config interface 'lan'
	option device 'br-lan'
	option proto 'static'
	option ipaddr '192.168.1.1'
	option netmask '255.255.255.0'
	option ip6assign '60'

config interface 'wan'
	option device 'eth1'
	option proto 'dhcp'

config interface 'wan6'
	option device 'eth1'
	option proto 'dhcpv6'
"""
NETWORK = {"21.02": NETWORK_2102, "24.10": NETWORK_2102}
BRIDGE_LAN = """config device
	option name 'br-lan'
	option type 'bridge'
	list ports 'eth0'

"""

SYSTEM = """
config system
	option hostname 'OpenWrt'
	option timezone 'UTC'
	option ttylogin '0'
	option log_size '64'
	option urandom_seed '0'
"""

# odhcpd's part of the stock /etc/config/dhcp (dnsmasq is not run in the bed).
DHCP = """
config dnsmasq
	option domainneeded '1'
	option localise_queries '1'
	option rebind_protection '1'
	option rebind_localhost '1'
	option local '/lan/'
	option domain 'lan'
	option expandhosts '1'
	option authoritative '1'
	option readethers '1'
	option leasefile '/tmp/dhcp.leases'
	option resolvfile '/tmp/resolv.conf.d/resolv.conf.auto'
	option localservice '1'

config dhcp 'lan'
	option interface 'lan'
	option start '100'
	option limit '150'
	option leasetime '12h'
	option dhcpv4 'server'
	option dhcpv6 'server'
	option ra 'server'
	list ra_flags 'managed-config'
	list ra_flags 'other-config'

config dhcp 'wan'
	option interface 'wan'
	option ignore '1'

config odhcpd 'odhcpd'
	option maindhcp '0'
	option leasefile '/tmp/hosts/odhcpd'
	option leasetrigger '/usr/sbin/odhcpd-update'
	option loglevel '4'
"""

OPKG_CONF = """dest root /
dest ram /tmp
lists_dir ext /var/opkg-lists
option overlay_root /overlay
arch all 1
arch noarch 1
arch x86_64 10
"""

# procd's `service` object for the bed (see the module docstring). Requests are queued for
# the bed; `list` answers from the state the bed keeps.
SERVICE_PLUGIN = r"""#!/bin/sh
# test bed only: procd's `service` ubus API as a queue (there is no procd in the bed)
Q=/tmp/.bed/procd
mkdir -p "$Q"
case "$1" in
list)
	echo '{"set":{},"add":{},"signal":{},"delete":{},"list":{},"event":{},"validate":{},"get_data":{},"state":{}}'
	;;
call)
	in=$(cat)
	case "$2" in
	list) cat "$Q/state.json" 2>/dev/null || echo '{}' ;;
	set|add|signal|delete)
		printf '%s %s\n' "$2" "$(printf '%s' "$in" | tr -d '\n')" >> "$Q/requests"
		echo '{}'
		;;
	*) echo '{}' ;;
	esac
	;;
esac
"""


class Instance:
    def __init__(self, service, name, spec, proc, log):
        self.service, self.name, self.spec, self.proc, self.log = service, name, spec, proc, log
        self.started = time.time()
        self.respawn_at = None

    @property
    def hostpid(self):
        kids = _children(self.proc.pid)
        return kids[0] if kids else None

    def running(self):
        return self.proc.poll() is None and self.hostpid is not None


class Bed:
    def __init__(self, profile, build_dir, name=None, lan=True):
        if profile not in PROFILES:
            raise BedError("unknown profile %r" % profile)
        self.profile = profile
        self.build_dir = build_dir
        self.layer = os.path.join(build_dir, "layer")
        with open(os.path.join(build_dir, "manifest.json")) as f:
            self.manifest = json.load(f)
        self.name = name or "%s%d-%d" % (NS_PREFIX, os.getpid(), next(_SEQ))
        self.work = os.path.join(WORK_BASE, self.name)
        self.logs = os.path.join(self.work, "logs")
        self.syslog_path = os.path.join(self.work, "syslog.log")
        self.init = None
        self.initpid = None
        self.instances = {}
        self.requests_done = 0
        self.request_log = []
        self.lock = threading.RLock()
        self.pump_thread = None
        self.stopping = False
        self.lan = lan
        self.fw = "fw3" if profile == "21.02" else "fw4"

    # -- lifecycle -----------------------------------------------------------------------
    def start(self):
        stale_cleanup()
        self.stop()
        self.stopping = False
        os.makedirs(self.logs, exist_ok=True)
        base = os.path.join(self.work, "base")
        os.makedirs(base, exist_ok=True)
        host(["ip", "netns", "add", self.name])
        import sys
        self.init = subprocess.Popen(
            ["ip", "netns", "exec", self.name, "unshare", "-m", "-p", "--fork", "--kill-child",
             sys.executable, "-S", os.path.join(HERE, "bedinit.py"), base, self.layer, self.syslog_path],
            stdout=open(os.path.join(self.logs, "init.log"), "ab"), stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=die_with_parent)
        end = time.time() + 60
        while True:
            kids = _children(self.init.pid)
            if kids and os.path.exists("/proc/%d/root/tmp/.bed/ready" % kids[0]):
                self.initpid = kids[0]
                break
            if self.init.poll() is not None or time.time() > end:
                raise BedError("the bed's init did not come up:\n" + self.file_tail(os.path.join(self.logs, "init.log")))
            time.sleep(0.05)
        host(["ip", "-n", self.name, "link", "set", "lo", "up"])
        self._configure()
        self.pump_thread = threading.Thread(target=self._pump_loop, daemon=True)
        self.pump_thread.start()
        return self

    def stop(self):
        """Kill the bed's PID 1 (the kernel then kills every process in its PID namespace;
        its mounts go with the mount namespace) and delete the network namespace."""
        self.stopping = True
        if self.init is not None:
            for pid in ([self.initpid] if self.initpid else []) + [self.init.pid]:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            try:
                self.init.wait(10)
            except subprocess.TimeoutExpired:
                pass
            for inst in list(self.instances.values()):
                try:
                    inst.proc.wait(10)
                except subprocess.TimeoutExpired:
                    inst.proc.kill()
        self.instances = {}
        self.init = None
        self.initpid = None
        if os.path.exists("/run/netns/" + self.name):
            kill_netns(self.name)
        base = os.path.join(self.work, "base")
        if os.path.isdir(base):
            try:
                os.rmdir(base)
            except OSError:
                pass

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- running things inside -----------------------------------------------------------
    def _enter(self, argv, env=None):
        e = ["PATH=" + PATH, "HOME=/root", "TERM=dumb"] + ["%s=%s" % kv for kv in sorted((env or {}).items())]
        return ["nsenter", "-t", str(self.initpid), "-m", "-n", "-p", "-r", "-w", "--",
                "/usr/bin/env", "-i"] + e + list(argv)

    def run(self, argv, check=True, timeout=120, env=None, input=None):
        """Run ``argv`` inside the root; CompletedProcess (stdout and stderr apart)."""
        p = subprocess.run(self._enter(argv, env), input=input, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           universal_newlines=True, timeout=timeout)
        if check and p.returncode != 0:
            raise BedError("[%s] %s -> %d\nstdout: %s\nstderr: %s" % (self.name, " ".join(argv), p.returncode,
                                                                     p.stdout[-3000:], p.stderr[-3000:]))
        return p

    def sh(self, cmd, check=True, timeout=120, env=None, input=None):
        """``/bin/sh -c cmd`` inside the root; its stdout (see run() for both streams)."""
        return self.run(["/bin/sh", "-c", cmd], check=check, timeout=timeout, env=env, input=input).stdout

    def ubus(self, path, method, args=None, check=True, timeout=30):
        argv = ["ubus", "-t", str(timeout), "call", path, method]
        if args is not None:
            argv.append(json.dumps(args))
        p = self.run(argv, check=check, timeout=timeout + 10)
        if p.returncode != 0:
            return None
        return json.loads(p.stdout) if p.stdout.strip() else {}

    def path(self, path):
        """Host path of ``path`` inside the root (through /proc/<pid1>/root). Symlinks in the
        directories are resolved inside the root (an absolute one, e.g. Debian's /var/run ->
        /run, would otherwise point into the host); the last component is left as it is."""
        top = "/proc/%d/root" % self.initpid
        parts = [p for p in path.split("/") if p and p != "."]
        done = []
        hops = 0
        while len(parts) > 1:
            part = parts.pop(0)
            if part == "..":
                if done:
                    done.pop()
                continue
            cur = top + "/" + "/".join(done + [part])
            if os.path.islink(cur):
                hops += 1
                if hops > 40:
                    raise OSError("symlink loop at %s" % path)
                target = os.readlink(cur)
                if target.startswith("/"):
                    done = []
                parts = [p for p in target.split("/") if p and p != "."] + parts
            else:
                done.append(part)
        return top + "/" + "/".join(done + parts)

    def read(self, path, default=None):
        try:
            with open(self.path(path), encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            if default is not None:
                return default
            raise

    def write(self, path, text, mode=None):
        full = self.path(path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "w", encoding="utf-8") as f:
            f.write(text)
        if mode is not None:
            os.chmod(full, mode)

    def exists(self, path):
        return os.path.lexists(self.path(path))

    def listdir(self, path):
        try:
            return sorted(os.listdir(self.path(path)))
        except OSError:
            return []

    def syslog(self):
        return self.file_tail(self.syslog_path, None)

    def log(self, service, instance=None):
        name = "%s.%s.log" % (service, instance or service)
        return self.file_tail(os.path.join(self.logs, name), None)

    @staticmethod
    def file_tail(path, n=60):
        try:
            with open(path, errors="replace") as f:
                lines = f.readlines()
        except OSError:
            return ""
        return "".join(lines if n is None else lines[-n:])

    def wait(self, what, fn, timeout=60, interval=0.2):
        end = time.time() + timeout
        while True:
            value = fn()
            if value:
                return value
            if time.time() > end:
                raise TimeoutError("[%s] gave up waiting for %s after %.0f s" % (self.name, what, timeout))
            time.sleep(interval)

    # -- configuration -------------------------------------------------------------------
    def _configure(self):
        # what /etc/init.d/boot makes (OpenWrt's /var is /tmp; here /var/run and /var/lock are)
        for d in ("etc/config", "overlay", "etc/rc.d", "usr/lib/opkg/info", "tmp/.uci", "tmp/.bed/procd",
                  "var/lock", "var/log", "var/state", "var/tmp", "tmp/resolv.conf.d"):
            os.makedirs(self.path(d), exist_ok=True)
        self.write("/tmp/resolv.conf.d/resolv.conf.auto", "")
        network = NETWORK[self.profile].lstrip()
        if self.profile != "21.02" and not self._bridge_vlan_filtering():
            # 24.10's netifd always sets IFLA_BR_VLAN_FILTERING when it creates a bridge; a
            # kernel without CONFIG_BRIDGE_VLAN_FILTERING refuses that, and br-lan never
            # exists (21.02's netifd does not set it). LAN on its port without a bridge then.
            network = network.replace(BRIDGE_LAN, "").replace("option device 'br-lan'", "option device 'eth0'")
        self.write("/etc/config/network", network)
        self.write("/etc/config/system", SYSTEM.lstrip())
        self.write("/etc/config/dhcp", DHCP.lstrip())
        if not self.exists("/etc/config/firewall"):
            src = ("openwrt-tree:openwrt-tree/package/network/config/firewall/files/firewall.config"
                   if self.profile == "21.02" else "firewall4:firewall4/root/etc/config/firewall")
            self.write("/etc/config/firewall", tree_file(self.profile, src))
        if not self.exists("/etc/config/rpcd"):
            self.write("/etc/config/rpcd", tree_file(
                self.profile, "openwrt-tree:openwrt-tree/package/system/rpcd/files/rpcd.config"))
        if not self.exists("/etc/opkg.conf"):
            self.write("/etc/opkg.conf", OPKG_CONF)
        self.write("/usr/libexec/rpcd/service", SERVICE_PLUGIN, 0o755)
        # OpenWrt's /bin/sh is busybox ash (Debian's is dash, which fw4's scripts refuse)
        os.unlink(self.path("/usr/bin/sh"))
        os.symlink("busybox", self.path("/usr/bin/sh"))
        self.write("/tmp/.bed/procd/state.json", "{}")
        self._opkg_status()

    def _opkg_status(self):
        """Register the packages the layer provides in opkg's status file (on a router they
        came with the image), so our package's Depends resolve as there."""
        pkgs = self.manifest.get("packages") or {}
        if isinstance(pkgs, list):
            pkgs = {p if isinstance(p, str) else p["name"]: (None if isinstance(p, str) else p.get("version"))
                    for p in pkgs}
        provided = dict.fromkeys(("libc", "busybox", "base-files", "ubus", "ubusd", "uci", "libuci", "rpcd",
                                  "netifd", "map", "odhcp6c", "odhcpd", "odhcpd-ipv6only", "jsonfilter",
                                  "opkg", "python3-light", "python3-base", "python3"))
        if self.profile == "21.02":
            provided.update(dict.fromkeys(("firewall", "iptables", "ip6tables")))
        else:
            provided.update(dict.fromkeys(("firewall4", "nftables", "ucode", "kmod-nft-nat")))
        provided.update(pkgs)
        existing = self.read("/usr/lib/opkg/status", "")
        have = set(re.findall(r"^Package: (\S+)", existing, re.M))
        text = existing
        for name, version in sorted(provided.items()):
            if name in have:
                continue
            text += ("Package: %s\nVersion: %s\nDepends: libc\nStatus: install user installed\n"
                     "Architecture: x86_64\nInstalled-Time: 1700000000\n\n" % (name, version or "1"))
            if not self.exists("/usr/lib/opkg/info/%s.list" % name):
                self.write("/usr/lib/opkg/info/%s.list" % name, "")
        self.write("/usr/lib/opkg/status", text)

    def _bridge_vlan_filtering(self):
        """Can this kernel make a bridge with IFLA_BR_VLAN_FILTERING (as netifd 24.10 does)?"""
        p = host(["ip", "-n", self.name, "link", "add", "owbprobe", "type", "bridge", "vlan_filtering", "0"],
                 check=False)
        host(["ip", "-n", self.name, "link", "del", "owbprobe"], check=False)
        return p.returncode == 0

    def uci_set_network(self, text):
        self.write("/etc/config/network", text)

    # -- procd emulation ----------------------------------------------------------------
    def _pump_loop(self):
        while not self.stopping:
            try:
                self.pump()
            except Exception as e:  # noqa: BLE001 - logged, the loop must go on
                with open(os.path.join(self.logs, "pump.log"), "a") as f:
                    f.write("%.3f pump error: %s: %s\n" % (time.time(), type(e).__name__, e))
            time.sleep(0.1)

    def pump(self):
        """Carry out queued procd requests and respawns; write the state `list` answers."""
        with self.lock:
            if self.initpid is None:
                return
            try:
                with open(self.path("/tmp/.bed/procd/requests")) as f:
                    lines = f.readlines()
            except OSError:
                lines = []
            changed = False
            for line in lines[self.requests_done:]:
                if not line.endswith("\n"):
                    break
                self.requests_done += 1
                method, _, payload = line.strip().partition(" ")
                try:
                    msg = json.loads(payload or "{}")
                except ValueError:
                    continue
                self.request_log.append((time.time(), method, msg))
                self._procd(method, msg)
                changed = True
            for key, inst in list(self.instances.items()):
                if inst.proc.poll() is None:
                    continue
                respawn = inst.spec.get("respawn")
                if respawn is None or self.stopping:
                    continue
                if inst.respawn_at is None:
                    delay = int(respawn[1]) if len(respawn) > 1 else 5
                    inst.respawn_at = time.time() + delay
                    changed = True
                elif time.time() >= inst.respawn_at:
                    self._spawn(inst.service, inst.name, inst.spec)
                    changed = True
            if changed:
                self._write_state()

    def _procd(self, method, msg):
        name = msg.get("name")
        if method in ("set", "add"):
            wanted = msg.get("instances") or {}
            for iname, spec in wanted.items():
                old = self.instances.get((name, iname))
                if old and old.running() and old.spec.get("command") == spec.get("command") \
                        and old.spec.get("env") == spec.get("env"):
                    old.spec = spec
                    continue
                if old:
                    self._kill(old)
                self._spawn(name, iname, spec)
            if method == "set":
                for (svc, iname), inst in list(self.instances.items()):
                    if svc == name and iname not in wanted:
                        self._kill(inst)
                        del self.instances[(svc, iname)]
        elif method == "signal":
            sig = int(msg.get("signal") or signal.SIGHUP)
            for (svc, iname), inst in self.instances.items():
                if svc == name and msg.get("instance") in (None, iname) and inst.hostpid:
                    try:
                        os.kill(inst.hostpid, sig)
                    except OSError:
                        pass
        elif method == "delete":
            for (svc, iname), inst in list(self.instances.items()):
                if (name is None or svc == name) and msg.get("instance") in (None, iname):
                    self._kill(inst)
                    del self.instances[(svc, iname)]

    def _spawn(self, service, iname, spec):
        cmd = spec.get("command") or []
        if not cmd:
            return None
        env = dict(spec.get("env") or {})
        log = os.path.join(self.logs, "%s.%s.log" % (service, iname))
        out = open(log, "ab")
        out.write(("--- %.3f start %s\n" % (time.time(), " ".join(shlex.quote(c) for c in cmd))).encode())
        out.flush()
        proc = subprocess.Popen(self._enter(cmd, env), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        out.close()
        inst = Instance(service, iname, spec, proc, log)
        self.instances[(service, iname)] = inst
        end = time.time() + 5
        while inst.hostpid is None and proc.poll() is None and time.time() < end:
            time.sleep(0.01)
        return inst

    def _kill(self, inst, timeout=None):
        timeout = int(inst.spec.get("term_timeout") or 5) if timeout is None else timeout
        inst.spec = dict(inst.spec, respawn=None)
        pid = inst.hostpid
        if pid:
            try:
                os.kill(pid, signal.SIGTERM)
            except OSError:
                pass
        try:
            inst.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pid = inst.hostpid
            if pid:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            inst.proc.wait(10)

    def _write_state(self):
        state = {}
        for (svc, iname), inst in self.instances.items():
            running = inst.running()
            entry = {"running": running, "command": inst.spec.get("command")}
            if running:
                entry["pid"] = _nspid(inst.hostpid)
            state.setdefault(svc, {"instances": {}})["instances"][iname] = entry
        tmp = self.path("/tmp/.bed/procd/state.json.tmp")
        with open(tmp, "w") as f:
            json.dump(state, f)
        os.rename(tmp, self.path("/tmp/.bed/procd/state.json"))

    # -- services ------------------------------------------------------------------------
    def instance(self, service, iname=None):
        with self.lock:
            for (svc, name), inst in self.instances.items():
                if svc == service and (iname is None or name == iname):
                    return inst
        return None

    def pid(self, service, iname=None):
        """Host pid of a running instance (None if not running)."""
        inst = self.instance(service, iname)
        return inst.hostpid if inst and inst.running() else None

    def procd_dump(self, initscript, action="start"):
        """What ``initscript action`` hands procd, from procd.sh's PROCD_DEBUG dump."""
        p = self.run([initscript, action], check=False, env={"PROCD_DEBUG": "1"})
        dumps = []
        for line in (p.stderr + "\n" + p.stdout).splitlines():
            line = line.strip()
            if line.startswith("{"):
                try:
                    dumps.append(json.loads(line))
                except ValueError:
                    pass
        return dumps

    def start_from_dump(self, initscript, action="start"):
        dumps = [d for d in self.procd_dump(initscript, action) if d.get("instances")]
        if not dumps:
            raise BedError("%s start handed procd no instance" % initscript)
        with self.lock:
            self._procd("set", dumps[-1])
            self._write_state()
        return dumps[-1]

    def service(self, initscript, action="start", check=True):
        """Run an init script action inside the root; procd requests it makes are carried
        out before this returns. The CompletedProcess."""
        p = self.run([initscript, action], check=check)
        self.pump()
        return p

    def sysctl_defaults(self):
        """What /etc/init.d/sysctl (S11) applies at boot, for the bed's network namespace: the
        net.ipv4/net.ipv6 keys of base-files' /etc/sysctl.d/10-default.conf (ip_forward=1 and
        IPv6 forwarding: without them the router forwards nothing from LAN to WAN). The
        kernel-wide keys of that file are not the bed's to set."""
        text = tree_file(self.profile, "openwrt-tree:openwrt-tree/package/base-files/files/etc/sysctl.d/"
                                       "10-default.conf")
        pairs = []
        for line in text.splitlines():
            key, sep, value = line.partition("=")
            if sep and key.strip().startswith(("net.ipv4.", "net.ipv6.")):
                pairs.append("%s=%s" % (key.strip(), value.strip()))
        host(["ip", "netns", "exec", self.name, "sysctl", "-q", "-w"] + pairs)

    def boot(self, odhcpd=True):
        """Bring the services up as procd does at boot (`/etc/rc.d/S*` in order with "boot":
        rpcd S12, firewall S19, network S20, odhcpd S35); returns when netifd answers."""
        self.sysctl_defaults()
        with self.lock:
            self._procd("set", {"name": "ubus", "instances": {"ubus": {"command": ["/sbin/ubusd"], "respawn": []}}})
        self.wait("ubusd's socket", lambda: self.exists("/var/run/ubus/ubus.sock") or self.exists("/var/run/ubus.sock"),
                  20)
        # enabled, as in the image (hotplug scripts check `/etc/init.d/firewall enabled`)
        for svc in ("rpcd", "firewall", "network", "odhcpd"):
            if self.exists("/etc/init.d/" + svc):
                self.run(["/etc/init.d/" + svc, "enable"], check=False)
        self.start_from_dump("/etc/init.d/rpcd", "boot")
        self.wait("rpcd's service object", lambda: self.run(["ubus", "list", "service"], check=False).returncode == 0, 20)
        self.service("/etc/init.d/firewall", "boot", check=False)
        self.service("/etc/init.d/network", "boot")
        self.wait("netifd on ubus", lambda: self.run(["ubus", "list", "network.interface.wan6"],
                                                      check=False).returncode == 0, 30)
        if odhcpd and self.exists("/etc/init.d/odhcpd"):
            self.service("/etc/init.d/odhcpd", "boot")

    # -- our package ----------------------------------------------------------------------
    def install(self, ipks, extra_args=()):
        """``opkg install`` the ipks (copied into the root's /tmp) with the real opkg-cl;
        maintainer scripts run as on a router. The CompletedProcess (opkg's output). The
        procd requests the scripts made are carried out by the next pump() (at once, unless
        the caller holds self.lock)."""
        names = []
        for path in ipks:
            dst = "/tmp/ipk/" + os.path.basename(path)
            os.makedirs(os.path.dirname(self.path(dst)), exist_ok=True)
            shutil.copy(path, self.path(dst))
            names.append(dst)
        opkg = "opkg" if self.exists("/usr/bin/opkg") or self.exists("/bin/opkg") else "opkg-cl"
        p = self.run([opkg, "install"] + list(extra_args) + names, check=False, timeout=300)
        with open(os.path.join(self.logs, "opkg.log"), "a") as f:
            f.write("$ %s install %s\n%s\n%s\n" % (opkg, " ".join(names), p.stdout, p.stderr))
        return p

    def opkg(self, *args, check=True):
        opkg = "opkg" if self.exists("/usr/bin/opkg") or self.exists("/bin/opkg") else "opkg-cl"
        p = self.run([opkg] + list(args), check=check, timeout=300)
        with open(os.path.join(self.logs, "opkg.log"), "a") as f:
            f.write("$ %s %s\n%s\n%s\n" % (opkg, " ".join(args), p.stdout, p.stderr))
        self.pump()
        return p

    def snapshot(self):
        """Logs for an assertion message."""
        parts = []
        for name in sorted(os.listdir(self.logs)) if os.path.isdir(self.logs) else []:
            parts.append("== %s\n%s" % (name, self.file_tail(os.path.join(self.logs, name), 25)))
        parts.append("== syslog\n" + self.file_tail(self.syslog_path, 40))
        return "\n".join(parts)
