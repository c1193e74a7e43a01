"""The router behind the LuCI tier: an OpenWrt test bed (tests/openwrt/bed.py: the real
ubusd, rpcd, uci, netifd, firewall of a profile in a namespace root) with

* luci-base's runtime files from the pinned tarball (tests/luci/luci_runtime.py) where
  luci-base installs them: htdocs of luci-base, luci-mod-status and the bootstrap theme in
  /www, their rpcd ACLs in /usr/share/rpcd/acl.d, their menus in /usr/share/luci/menu.d,
  luci-base's Japanese catalog compiled with luci-base's own po2lmo into
  /usr/lib/lua/luci/i18n/base.ja.lmo; registered in opkg's status like firmware packages;
* mape-py, luci-app-mape-py and luci-i18n-mape-py-ja (tools/build_ipk.py) installed with
  the real opkg, maintainer scripts and all (so our rpcd plugin and ACL are the installed
  ones, and rpcd was reloaded by the package as on a router);
* two rpcd logins (/etc/config/rpcd `config login`, as LuCI's users): ``root`` (read and
  write ``*``, the stock entry, with a password) and ``viewer`` (read ``*`` only: a read-only
  LuCI user); each logged in once with ``session login`` as LuCI's dispatcher does.

Bed-only (not part of any package): an rpcd exec plugin ``luci`` answering the two methods
luci.js calls at start-up (getFeatures, getVersion): luci-base's own backend needs Lua
(21.02) or luci's ucode modules (24.10), neither of which the bed has.

The daemon's states: ``show(doc)`` makes ``ubus call mape status`` -- the real rpcd running
our real plugin -- answer for a recorded/synthetic status document: a running daemon is the
real mape-py daemon started by its init script, then frozen (SIGSTOP) so that it keeps its
pid file and command line (what the plugin checks) but does not overwrite the document we
write into /var/run/mape-py/status.json; a stopped one is stopped through its init script,
and the plugin then marks whatever document is left as stopped itself.

ubus calls from the test host go to the bed's ubusd socket (/proc/<pid1>/root/...) with the
profile's own ubus CLI (Ubus below), so every call passes through the bed's real rpcd.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(TOP, "tests", "openwrt"))

import bed as B  # noqa: E402  (tests/openwrt/bed.py, imported as the OpenWrt tier does)

PASSWORD = "mape-luci"
USERS = {"root": ("*", "*"), "viewer": ("*", None)}   # login: (list read, list write)
INIT = "/etc/init.d/mape-py"
STATUS = "/var/run/mape-py/status.json"
PIDFILE = "/var/run/mape-py/mape-py.pid"
PLUGIN = "/usr/libexec/rpcd/mape"
ANON = "00000000000000000000000000000000"

LUCI_PLUGIN = r"""#!/bin/sh
# test bed only: the two methods of luci-base's `luci` rpcd object that luci.js calls at
# start-up (luci-base's own backend needs Lua or luci's ucode modules, absent here)
case "$1" in
list) echo '{"getFeatures":{},"getVersion":{}}' ;;
call)
	case "$2" in
	getFeatures) echo '%(features)s' ;;
	getVersion) echo '{"revision":"%(revision)s","branch":"%(branch)s"}' ;;
	*) echo '{}' ;;
	esac
	;;
esac
"""

# luci-base's firmware packages, registered in opkg's status so that our packages' Depends
# (luci-app-mape-py: luci-base) resolve as on an image that has LuCI.
LUCI_PACKAGES = ("luci-base", "luci-mod-status", "luci-theme-bootstrap", "luci-i18n-base-ja", "luci")


class Ubus:
    """The bed's ubus from the test host: the profile's ubus CLI (LD_LIBRARY_PATH = the
    layer's libubus/libubox) on the bed's ubusd socket."""

    def __init__(self, bed):
        self.exe = os.path.join(bed.layer, "usr", "bin", "ubus")
        self.env = {"LD_LIBRARY_PATH": os.path.join(bed.layer, "usr", "lib"), "PATH": "/usr/bin:/bin"}
        for sock in ("/var/run/ubus/ubus.sock", "/var/run/ubus.sock"):
            if bed.exists(sock):
                self.sock = bed.path(sock)
                break
        else:
            raise B.BedError("the bed has no ubus socket")

    def _run(self, argv, timeout=60):
        return subprocess.run([self.exe, "-s", self.sock, "-t", str(timeout)] + argv, env=self.env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                              timeout=timeout + 10)

    def call(self, obj, method, args=None, timeout=60):
        """(ubus status, reply object or None). The CLI exits with the status (21.02) or its
        negation (24.10, when stderr is not a tty)."""
        p = self._run(["call", obj, method, json.dumps(args or {})], timeout)
        rc = p.returncode
        status = rc if rc < 128 else 256 - rc
        out = p.stdout.strip()
        data = json.loads(out) if out else None
        return status, data

    def has(self, obj):
        if "*" in obj:
            return False
        p = self._run(["list", obj], 15)
        return p.returncode == 0 and obj in p.stdout.split()

    def objects(self):
        return [l for l in self._run(["list"], 15).stdout.split() if l]

    def signature(self, obj):
        """{method: {argument: type}} as `ubus -v list obj` prints it."""
        p = self._run(["-v", "list", obj], 15)
        out = {}
        for line in p.stdout.splitlines()[1:]:
            line = line.strip()
            if not line.startswith('"'):
                continue
            name, _, sig = line.partition(":")
            try:
                out[json.loads(name)] = json.loads(sig)
            except ValueError:
                continue
        return out


class LuciRouter:
    def __init__(self, profile, runtime, ipks, workdir):
        self.profile = profile
        self.runtime = runtime
        self.ipks = list(ipks)
        self.workdir = workdir
        self.bed = None
        self.ubus = None
        self.sessions = {}       # user -> {"sid", "token"}
        self.pristine = None     # /etc/config/mape as the package installed it
        self.opkg = None
        self.timings = {}
        self.relogins = []

    # -- bring-up ------------------------------------------------------------------------
    def up(self):
        t0 = time.time()
        build = B.build_profile(self.profile)
        self.timings["build"] = time.time() - t0
        self.bed = B.Bed(self.profile, build, name="%s%d-luci%s" % (B.NS_PREFIX, os.getpid(),
                                                                     self.profile.replace(".", "")))
        self.bed.start()
        self.bed.boot(odhcpd=False)
        self.timings["boot"] = time.time() - t0
        self.ubus = Ubus(self.bed)
        self.install_luci_base()
        self.install_ipks()
        self.timings["install"] = time.time() - t0
        self.setup_logins()
        self.pristine = self.bed.read("/etc/config/mape")
        self.wait_daemon_up()
        self.timings["ready"] = time.time() - t0
        return self

    def down(self):
        if self.bed is not None:
            if self.bed.initpid:
                self.thaw()
            self.bed.stop()

    def install_luci_base(self):
        """luci-base (+ luci-mod-status, the bootstrap theme, luci-base's ja catalog) the way
        their packages install them (luci.mk: htdocs -> /www, root -> /)."""
        rt, b = self.runtime, self.bed
        www = b.path("/www")
        for src in rt.htdocs:
            shutil.copytree(src, www, dirs_exist_ok=True, symlinks=True)
        for dst, files in (("/usr/share/rpcd/acl.d", rt.acl_files), ("/usr/share/luci/menu.d", rt.menu_files)):
            for f in files:
                with open(f, encoding="utf-8") as fh:
                    b.write("%s/%s" % (dst, os.path.basename(f)), fh.read())
        i18n = "/usr/lib/lua/luci/i18n"
        os.makedirs(b.path(i18n), exist_ok=True)
        rt.po2lmo(rt.base_po("ja"), b.path(i18n + "/base.ja.lmo"))
        features = {"firewall": b.exists("/usr/sbin/fw3") or b.exists("/sbin/fw3"),
                    "firewall4": b.exists("/usr/sbin/fw4") or b.exists("/sbin/fw4"),
                    "opkg": True, "ipv6": True}
        b.write("/usr/libexec/rpcd/luci", LUCI_PLUGIN % {
            "features": json.dumps(features, separators=(",", ":")),
            "revision": "test-bed", "branch": "LuCI %s" % self.profile}, 0o755)
        status = b.read("/usr/lib/opkg/status", "")
        for name in LUCI_PACKAGES:
            if "Package: %s\n" % name in status:
                continue
            status += ("Package: %s\nVersion: %s\nDepends: libc\nStatus: install user installed\n"
                       "Architecture: all\nInstalled-Time: 1700000000\n\n" % (name, self.profile))
            b.write("/usr/lib/opkg/info/%s.list" % name, "")
        b.write("/usr/lib/opkg/status", status)

    def install_ipks(self):
        """opkg install with the real opkg; the maintainer scripts' procd requests (rpcd
        reload, mape-py start) are carried out when opkg is done, as procd would."""
        with self.bed.lock:
            self.opkg = self.bed.install(self.ipks)
        self.bed.pump()
        if self.opkg.returncode != 0:
            raise B.BedError("opkg install failed (%d):\n%s\n%s" % (self.opkg.returncode, self.opkg.stdout,
                                                                   self.opkg.stderr))
        # rpcd re-reads acl.d and re-scans its plugins on SIGHUP (the postinst's reload);
        # one more, so that luci-base's ACL files placed before are in effect whatever the
        # package's scripts did
        self.reload_rpcd(lambda: self.ubus.has("mape") and self.ubus.has("luci"))

    def _rpcd_id(self):
        """The ubus id of rpcd's session object: a re-exec'd rpcd registers it anew."""
        p = self.ubus._run(["-v", "list", "session"], 15)
        first = (p.stdout.splitlines() or [""])[0]
        return first.split("@")[-1] if "@" in first else None

    def reload_rpcd(self, ready, what="rpcd to come back"):
        """/etc/init.d/rpcd reload (procd: SIGHUP; rpcd saves its sessions, re-executes
        itself, re-reads acl.d and its plugins, restores the sessions); returns once the new
        rpcd is registered and ``ready()`` holds."""
        before = self._rpcd_id()
        self.bed.service("/etc/init.d/rpcd", "reload")
        self.bed.wait(what, lambda: self._rpcd_id() not in (None, before) and ready(), 30, 0.05)
        self.check_sessions()

    def check_sessions(self):
        """Re-login users whose session rpcd no longer knows, or knows without its ACLs
        (counted in self.relogins). The second happens on 21.02 after every rpcd reload:
        its rpc_session_thaw() loads /etc/config/rpcd once per restored session into one uci
        context, the second uci_load fails, and every session but the first comes back
        without ACLs (24.10's rpcd unloads the package first); a LuCI user then has to log
        in again."""
        for user, s in list(self.sessions.items()):
            status, data = self.ubus.call("session", "get", {"ubus_rpc_session": s["sid"]})
            ok = status == 0 and ((data or {}).get("values") or {}).get("token")
            if ok:
                _, acls = self.ubus.call("session", "access", {"ubus_rpc_session": s["sid"]})
                ok = "luci-base" in ((acls or {}).get("access-group") or {})
            if not ok:
                self.relogins.append((user, "no session" if status else "no ACLs"))
                self.sessions[user] = self.login(user)

    def setup_logins(self):
        b = self.bed
        crypt = b.sh("busybox mkpasswd -m md5 '%s'" % PASSWORD).strip()
        if not crypt.startswith("$1$"):
            raise B.BedError("busybox mkpasswd gave %r" % crypt)
        cmds = []
        for user, (read, write) in USERS.items():
            if user == "root":
                cmds.append("uci set rpcd.@login[0].password='%s'" % crypt)
                continue
            cmds += ["uci add rpcd login >/dev/null", "uci set rpcd.@login[-1].username='%s'" % user,
                     "uci set rpcd.@login[-1].password='%s'" % crypt, "uci add_list rpcd.@login[-1].read='%s'" % read]
            if write:
                cmds.append("uci add_list rpcd.@login[-1].write='%s'" % write)
        b.sh("; ".join(cmds) + "; uci commit rpcd")
        for user in USERS:
            self.sessions[user] = self.login(user)

    def login(self, user, password=PASSWORD):
        """What LuCI's dispatcher does for a login form: session login, then a CSRF token in
        the session (session set values.token)."""
        status, res = self.ubus.call("session", "login", {"username": user, "password": password,
                                                          "timeout": 3600})
        if status != 0 or not res or not res.get("ubus_rpc_session"):
            raise B.BedError("rpcd refused the login of %s (status %s)" % (user, status))
        sid = res["ubus_rpc_session"]
        token = os.urandom(16).hex()
        self.ubus.call("session", "set", {"ubus_rpc_session": sid, "values": {"token": token}})
        return {"sid": sid, "token": token}

    # -- the daemon ---------------------------------------------------------------------
    def _instance(self):
        inst = self.bed.instance("mape-py")
        return inst if inst is not None and inst.running() else None

    def _doc(self):
        try:
            return json.loads(self.bed.read(STATUS, "") or "null")
        except ValueError:
            return None

    def wait_daemon_up(self, timeout=30):
        """The daemon started and wrote its first status document (its signal handlers are
        installed before it writes the pid file)."""
        def up():
            inst = self._instance()
            doc = self._doc()
            pid = self.bed.read(PIDFILE, "").strip()
            return inst and doc and doc.get("running") and str(doc.get("pid")) == pid
        self.bed.wait("mape-py's daemon to write its status", up, timeout, 0.1)

    def frozen(self):
        inst = self._instance()
        if inst is None:
            return False
        try:
            with open("/proc/%d/stat" % inst.hostpid) as f:
                return f.read().rsplit(")", 1)[1].split()[0] in ("T", "t")
        except OSError:
            return False

    def start_daemon(self, freeze=True):
        if self._instance() is None:
            self.bed.service(INIT, "start")
            self.wait_daemon_up()
        if freeze and not self.frozen():
            os.kill(self._instance().hostpid, signal.SIGSTOP)
            self.bed.wait("the daemon to stop (SIGSTOP)", self.frozen, 10, 0.02)

    def thaw(self):
        """SIGCONT. nsenter (the daemon's parent, see bed.py) stops itself when its child
        stops and continues it when continued itself: continue both."""
        inst = self._instance()
        if inst is not None:
            for pid in (inst.proc.pid, inst.hostpid):
                try:
                    os.kill(pid, signal.SIGCONT)
                except OSError:
                    pass

    def stop_daemon(self):
        inst = self._instance()
        if inst is None:
            return
        self.thaw()
        self.bed.service(INIT, "stop")
        self.bed.wait("the daemon to exit", lambda: self._instance() is None and not self.bed.exists(PIDFILE), 30)

    def daemon_pid(self):
        """The daemon's PID inside the bed (what its pid file says), or None."""
        return int(self.bed.read(PIDFILE, "").strip() or 0) or None if self._instance() else None

    def pending_signals(self):
        """Signals queued for the (frozen) daemon: set of signal numbers."""
        inst = self._instance()
        if inst is None:
            return set()
        out = 0
        with open("/proc/%d/status" % inst.hostpid) as f:
            for line in f:
                if line.startswith(("SigPnd:", "ShdPnd:")):
                    out |= int(line.split()[1], 16)
        return {n + 1 for n in range(64) if out >> n & 1}

    def write_status(self, doc):
        from mape.shell.statusfile import dumps   # the daemon's own serialisation
        path = self.bed.path(STATUS)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path + ".luci-tmp", "w", encoding="utf-8") as f:
            f.write(dumps(doc))
        os.rename(path + ".luci-tmp", path)

    def show(self, doc, running=None):
        """Make the real plugin answer for ``doc``: running (doc["running"], unless given)
        with the daemon frozen, or stopped; ``doc`` None: a daemon that never ran."""
        if doc is None:
            self.stop_daemon()
            if self.bed.exists(STATUS):
                os.unlink(self.bed.path(STATUS))
            return
        if running is None:
            running = bool(doc.get("running"))
        doc = dict(doc)
        if running:
            self.start_daemon()
            doc["pid"] = self.daemon_pid()
        else:
            self.stop_daemon()
        self.write_status(doc)

    # -- plugin presence -------------------------------------------------------------------
    def remove_plugin(self):
        """As if mape-py's rpcd plugin were not installed (rpcd reloaded): no `mape` object."""
        if self.bed.exists(PLUGIN):
            shutil.move(self.bed.path(PLUGIN), self.bed.path("/tmp/.luci-test-mape-plugin"))
            self.reload_rpcd(lambda: not self.ubus.has("mape"), "rpcd without the mape object")

    def restore_plugin(self):
        if self.bed.exists("/tmp/.luci-test-mape-plugin"):
            shutil.move(self.bed.path("/tmp/.luci-test-mape-plugin"), self.bed.path(PLUGIN))
            self.reload_rpcd(lambda: self.ubus.has("mape"), "rpcd with the mape object")

    # -- between tests ---------------------------------------------------------------------
    def reset(self):
        """/etc/config/mape as installed, no staged uci changes in any session, no pending
        apply (rpcd keeps one global rollback: confirm it so a later apply is not refused)."""
        self.restore_plugin()
        self.check_sessions()
        self.bed.write("/etc/config/mape", self.pristine)
        for s in self.sessions.values():
            self.ubus.call("uci", "revert", {"config": "mape", "ubus_rpc_session": s["sid"]})
            self.ubus.call("uci", "confirm", {"ubus_rpc_session": s["sid"]})
        self.ubus.call("session", "set", {"ubus_rpc_session": ANON, "values": {"rollback": {}}})

    def uci_show(self, config="mape"):
        return self.bed.sh("uci -q show %s" % config, check=False)
