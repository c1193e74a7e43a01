"""The rpcd exec plugin (/usr/libexec/rpcd/mape) under dash and busybox sh: `list`, and
`call status|calc|recompute` printing exactly one JSON object, daemon up or down."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from fakerouter import TOP

PLUGIN = os.path.join(TOP, "files/usr/libexec/rpcd/mape")
SHELLS = [s for s in (["dash"], ["busybox", "sh"]) if shutil.which(s[0])]


@pytest.fixture(params=[" ".join(s) for s in SHELLS])
def plugin(request, tmp_path):
    shell = request.param.split()
    shell[0] = shutil.which(shell[0])
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    launcher = tmp_path / "mape-py"
    launcher.write_text("#!/bin/sh\nPYTHONPATH=%s exec %s -m mape \"$@\"\n" % (os.path.join(TOP, "src"), sys.executable))
    launcher.chmod(0o755)
    env = dict(os.environ, MAPE_PY_RUN_DIR=str(run_dir), MAPE_PY_BIN=str(launcher),
               MAPE_PY_SHARE=os.path.join(TOP, "files/usr/share/mape-py"))
    if shell[0].endswith("busybox"):
        # busybox's applets, not the host's GNU tools, as on the router
        bbin = tmp_path / "bbin"
        bbin.mkdir()
        for applet in ("sh", "cat", "sed", "head", "grep", "tr", "kill", "printf"):
            os.symlink(shutil.which("busybox"), str(bbin / applet))
        env["PATH"] = str(bbin)

    def call(*args, stdin=""):
        p = subprocess.run(shell + [PLUGIN] + list(args), input=stdin, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, universal_newlines=True, timeout=60)
        assert p.returncode == 0, p.stderr
        assert p.stdout.count("\n") == 1, p.stdout  # one JSON object, one line
        return json.loads(p.stdout)

    call.run_dir = run_dir
    return call


DOC = {"version": 1, "running": True, "pid": 4242, "state": "ok",
       "state_reason": "MAP-E up: \"quoted\" \\ text", "updated": 1764130000,
       "wan6": {"interface": "wan6", "up": True, "state": "inner"}, "history": [{"state": "x"}]}


def write_doc(run_dir, doc):
    (run_dir / "status.json").write_text(json.dumps(doc, separators=(",", ":")) + "\n")


def test_list(plugin):
    assert plugin("list") == {"status": {}, "calc": {"prefix": "str"}, "recompute": {}, "adopt": {}, "give_up": {},
                              "reapply": {}, "use_free_port": {"section": "str"}}


@pytest.mark.parametrize("section, error", [("", "missing argument: section"),
                                            ("x;reboot", "not a firewall section name"),
                                            ("$(reboot)", "not a firewall section name")])
def test_use_free_port_takes_only_a_section_name(plugin, section, error):
    assert plugin("call", "use_free_port", stdin=json.dumps({"section": section})) == {"ok": False, "error": error}


def test_status_daemon_never_ran(plugin):
    assert plugin("call", "status") == {"version": 1, "running": False, "state": "stopped",
                                        "state_reason": "mape-py daemon is not running"}


def test_status_daemon_down_marks_last_document_stopped(plugin):
    write_doc(plugin.run_dir, DOC)
    (plugin.run_dir / "mape-py.pid").write_text("999999\n")  # stale pid
    doc = plugin("call", "status")
    assert doc["running"] is False and doc["state"] == "stopped"
    assert doc["state_reason"] == "mape-py daemon is not running"
    assert "pid" not in doc
    assert doc["wan6"] == DOC["wan6"] and doc["history"] == DOC["history"]


def test_status_daemon_running_returns_the_document_and_asks_for_fresh_ports(plugin):
    # a stand-in daemon whose command line says mape, recording the signals it gets
    rec = plugin.run_dir / "signals"
    code = ("import signal,sys,time\n"
            "def h(n,f): open(sys.argv[1],'a').write('%d\\n' % n)\n"
            "signal.signal(signal.SIGUSR1,h); signal.signal(signal.SIGHUP,h)\n"
            "open(sys.argv[1],'a').close()\n"
            "while True: time.sleep(0.1)\n")
    p = subprocess.Popen([sys.executable, "-c", code, str(rec), "/usr/bin/mape-py", "daemon"])
    try:
        while not rec.exists():
            time.sleep(0.02)
        (plugin.run_dir / "mape-py.pid").write_text("%d\n" % p.pid)
        write_doc(plugin.run_dir, dict(DOC, pid=p.pid))
        assert plugin("call", "status") == dict(DOC, pid=p.pid)
        assert plugin("call", "recompute") == {"ok": True}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and rec.read_text().split() != [str(int(signal.SIGUSR1)), str(int(signal.SIGHUP))]:
            time.sleep(0.05)
        assert rec.read_text().split() == [str(int(signal.SIGUSR1)), str(int(signal.SIGHUP))]
        (plugin.run_dir / "status.json").unlink()
        doc = plugin("call", "status")
        assert doc["running"] is True and doc["state"] == "waiting-for-wan6"
    finally:
        p.kill()
        p.wait()


@pytest.mark.parametrize("argv", [["sleep", "60"], ["/etc/config/mape", "mape"], ["/usr/bin/mape-py", "status"]])
def test_a_stale_pid_file_never_reaches_another_process(plugin, tmp_path, argv):
    """The pid file names a process that is not the daemon (its PID was reused): status says
    stopped, recompute says not running, and neither the plugin nor the hotplug script
    signals it (fault: an unrelated `sleep` got SIGUSR2, a `python3 ... /etc/config/mape`
    got USR1 and was reported as running)."""
    rec = tmp_path / "signals"
    code = ("import signal,sys,time\n"
            "def h(n,f): open(sys.argv[1],'a').write('%d\\n' % n)\n"
            "[signal.signal(s, h) for s in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP)]\n"
            "open(sys.argv[1],'a').close()\n"
            "while True: time.sleep(0.1)\n")
    p = subprocess.Popen([sys.executable, "-c", code, str(rec)] + argv)
    try:
        while not rec.exists():
            time.sleep(0.02)
        (plugin.run_dir / "mape-py.pid").write_text("%d\n" % p.pid)
        write_doc(plugin.run_dir, dict(DOC, pid=p.pid))
        doc = plugin("call", "status")
        assert doc["running"] is False and doc["state"] == "stopped"
        assert plugin("call", "recompute") == {"ok": False, "error": "mape-py daemon is not running"}
        hotplug = os.path.join(TOP, "files/etc/hotplug.d/iface/95-mape-py")
        env = dict(os.environ, ACTION="ifup", INTERFACE="wan6", MAPE_PY_RUN_DIR=str(plugin.run_dir),
                   MAPE_PY_SHARE=os.path.join(TOP, "files/usr/share/mape-py"))
        assert subprocess.run(["sh", hotplug], env=env, timeout=60).returncode == 0
        time.sleep(0.5)
        assert rec.read_text() == ""
    finally:
        p.kill()
        p.wait()


def test_recompute_daemon_down(plugin):
    assert plugin("call", "recompute") == {"ok": False, "error": "mape-py daemon is not running"}


def test_calc(plugin):
    doc = plugin("call", "calc", stdin='{ "prefix": "240b:11:2233:4400::/56" }')
    assert doc["ipv4"] == "106.73.34.51" and doc["psid"] == 68
    doc = plugin("call", "calc", stdin='{"prefix":"2a01:4f8:c0c:1200::/56"}')
    assert doc["exit_code"] == 3 and "no MAP-E rule covers" in doc["error"]


def test_calc_rejects_what_is_not_a_prefix(plugin):
    assert plugin("call", "calc", stdin="{}") == {"error": "missing argument: prefix"}
    for bad in ("$(reboot)", "-", "a b", "`id`;x"):
        assert plugin("call", "calc", stdin=json.dumps({"prefix": bad})) in (
            {"error": "not an IPv6 prefix"}, {"error": "missing argument: prefix"})
