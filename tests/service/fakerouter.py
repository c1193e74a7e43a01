"""The service tests' fake router (imported by conftest.py, bench/service.py): a temp root with real config files, the recorded ubus
samples and fake `uci`/`ubus`/init scripts (tests/service/fakebin) that behave like the
real tools on that text."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
FAKEBIN = os.path.join(HERE, "fakebin")
DATA = os.path.join(TOP, "tests", "data")
SDATA = os.path.join(HERE, "data")


def firewall_initial(named=False):
    """firewall.initial; ``named``: its wan zone with the section name mape-py gives it."""
    with open(os.path.join(SDATA, "firewall.initial")) as f:
        text = f.read()
    return text.replace("config zone\n\toption name 'wan'", "config zone 'wan'\n\toption name 'wan'") if named else text


class Router:
    def __init__(self, root):
        self.root = str(root)
        self.procs = []
        for d in ("etc/config", "etc/init.d", "ubus", "tmp", "var/run", "scenario", "lib/netifd/proto", "usr/sbin"):
            os.makedirs(os.path.join(self.root, d), exist_ok=True)
        shutil.copy(os.path.join(SDATA, "network.initial"), self.path("etc/config/network"))
        shutil.copy(os.path.join(SDATA, "firewall.initial"), self.path("etc/config/firewall"))
        self.write("etc/config/mape", "config mape 'config'\n\toption enabled '1'\n\toption verify_timeout '3'\n"
                                      "\toption debounce '0'\n")
        for name in ("network", "firewall"):
            os.symlink(os.path.join(FAKEBIN, "netifd_reload"), self.path("etc/init.d/" + name))
        for fifo in ("subscribe", "listen"):
            os.mkfifo(self.path("ubus/%s.fifo" % fifo))
        self.set_wan6("wan6_status_dhcpv6_pd56.json")

    def path(self, rel):
        return os.path.join(self.root, rel)

    def write(self, rel, text):
        os.makedirs(os.path.dirname(self.path(rel)), exist_ok=True)
        with open(self.path(rel), "w") as f:
            f.write(text)

    def read(self, rel):
        try:
            with open(self.path(rel)) as f:
                return f.read()
        except FileNotFoundError:
            return None

    def set_wan6(self, sample=None, text=None):
        if sample:
            with open(os.path.join(DATA, sample)) as f:
                text = f.read()
        if text is None:
            try:
                os.unlink(self.path("ubus/network.interface.wan6.status.json"))
            except FileNotFoundError:
                pass
        else:
            self.write("ubus/network.interface.wan6.status.json", text)
        if os.path.exists(self.path("ubus/network.interface.wan.status.json")):
            # netifd re-evaluates map.sh's host dependency when wan6 comes and goes
            subprocess.run([self.path("etc/init.d/network"), "event"], env=self.env(), check=True, timeout=60)

    def env(self):
        env = dict(os.environ)
        env["PATH"] = FAKEBIN + os.pathsep + env.get("PATH", "")
        env["PYTHONPATH"] = os.path.join(TOP, "src")
        env["FAKE_ROOT"] = self.root
        env["MAPE_PY_UBUS"] = "cli"
        env["MAPE_PY_LOG"] = "stderr"
        env["MAPE_PY_FW_BACKEND"] = "iptables"
        env["MAPE_PY_RUN_DIR"] = self.path("var/run/mape-py")
        env["MAPE_PY_SHARE"] = os.path.join(TOP, "files/usr/share/mape-py")
        env.pop("MAPE_PY_IPTABLES", None)
        return env

    def argv(self, *extra):
        return [sys.executable, "-m", "mape", "daemon", "--platform", "openwrt", "--root", self.root,
                "--config", "/etc/config/mape", "--status-file", "/var/run/mape-py/status.json", "--stderr"] + list(extra)

    def once(self, *extra):
        return subprocess.run(self.argv("--once", *extra), env=self.env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, universal_newlines=True, timeout=120)

    def start(self, *extra):
        p = subprocess.Popen(self.argv(*extra), env=self.env(), stdout=subprocess.DEVNULL,
                             stderr=open(self.path("daemon.log"), "a"), universal_newlines=True,
                             start_new_session=True)
        self.procs.append(p)
        return p

    def status(self):
        text = self.read("var/run/mape-py/status.json")
        return json.loads(text) if text else None

    def calls(self):
        return self.read("calls.log") or ""

    def clear_calls(self):
        self.write("calls.log", "")

    def batches(self):
        out = []
        for chunk in self.calls().split("uci batch <<\n")[1:]:
            out.append(chunk.split(">>")[0])
        return out

    def notify(self, obj):
        """Write one event line into the fake `ubus subscribe` stream."""
        fd = os.open(self.path("ubus/subscribe.fifo"), os.O_WRONLY)
        os.write(fd, (json.dumps(obj, separators=(",", ":")) + "\n").encode())
        os.close(fd)

    def wait_for(self, predicate, timeout=60, what="condition"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.05)
        raise AssertionError("timed out waiting for %s\ncalls:\n%s" % (what, self.calls()))

    def kill_hard(self, p):
        """SIGKILL the daemon and everything it started (its own session)."""
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait()

    def kill_all(self):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        reached = self.path("reached")
        if os.path.isdir(reached):
            for name in os.listdir(reached):
                try:
                    os.kill(int(open(os.path.join(reached, name)).read()), signal.SIGKILL)
                except (ValueError, OSError):
                    pass


def alive(pid):
    """The process runs (a zombie does not: its parent died and nobody reaped it yet)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False
