"""Boot Debian's kernel in qemu over the host filesystem (virtme-ng) and run a command in it.

Why a VM: the MAP-E tunnel is an ip6tnl device; the kernel of the machine running the tests
may lack ip6_tunnel (this one does). Debian's `linux-image-amd64` has it, and virtme-ng
boots that kernel with the host's own root filesystem (read-only, with writable overlays),
so the guest runs the same python3, iproute2, nft, radvd, dhcpd and dhcpcd as the host.

    .venv/bin/python -m tools.vm 'ip -V; modprobe ip6_tunnel && echo ok'
    .venv/bin/python -m tools.vm --scenarios a c      # tests/vm/scenarios.py inside

No /dev/kvm is needed: qemu runs under TCG (MAPE_VM_KVM=1 tries KVM). Memory and CPUs:
MAPE_VM_MEMORY (default 2G), MAPE_VM_CPUS (default 2).
"""
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULT = "MAPE-RESULT "


class VmUnavailable(Exception):
    """Something the VM needs is missing; the message says what and how to get it."""


def _version_key(path):
    return [int(x) if x.isdigit() else x for x in re.split(r"[.-]", os.path.basename(path))]


def kernel():
    """(vmlinuz path, version) of the newest Debian kernel that has the ip6_tunnel module."""
    found = []
    for path in glob.glob("/boot/vmlinuz-*"):
        version = os.path.basename(path)[len("vmlinuz-"):]
        mods = "/lib/modules/%s/kernel/net/ipv6" % version
        if glob.glob(mods + "/ip6_tunnel.ko*"):
            found.append((path, version))
    if not found:
        raise VmUnavailable("no kernel with the ip6_tunnel module in /boot: install Debian's "
                            "`linux-image-amd64` (tools/setup-dev does: it is in tools/apt-packages.txt)")
    found.sort(key=lambda pv: _version_key(pv[0]))
    path, version = found[-1]
    if not os.access(path, os.R_OK):
        raise VmUnavailable("%s is not readable: run as root (or make it readable)" % path)
    return path, version


def vng():
    """The `vng` program (virtme-ng), looked up next to this python first (the venv)."""
    here = os.path.dirname(sys.executable)
    for candidate in (os.path.join(here, "vng"), shutil.which("vng")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise VmUnavailable("virtme-ng (`vng`) not found: `make setup` installs it into .venv "
                        "(requirements-dev.txt)")


def preflight():
    """Raise VmUnavailable with a clear message when something is missing."""
    problems = []
    for prog, pkg in (("qemu-system-x86_64", "qemu-system-x86"), ("busybox", "busybox-static"),
                      ("radvd", "radvd"), ("dhcpd", "isc-dhcp-server"), ("dhcpcd", "dhcpcd-base"),
                      ("curl", "curl"), ("nft", "nftables"), ("iptables", "iptables")):
        if not shutil.which(prog) and not os.path.exists("/usr/sbin/" + prog) and not os.path.exists("/sbin/" + prog):
            problems.append("%s (Debian package %s)" % (prog, pkg))
    if problems:
        raise VmUnavailable("missing: %s. Run `make setup` (tools/setup-dev installs "
                            "tools/apt-packages.txt)" % ", ".join(problems))
    if os.geteuid() != 0:
        raise VmUnavailable("the VM needs root: Debian's /boot/vmlinuz-* is readable by root only, and "
                            "the scenarios create network namespaces. Run it as root (e.g. `sudo make demo`)")
    if not os.path.exists("/usr/bin/python3"):
        raise VmUnavailable("/usr/bin/python3 is missing (the guest runs the system python3)")
    return kernel(), vng()


def command(guest_cmd, memory=None, cpus=None):
    (kpath, _), prog = preflight()
    argv = [prog, "--run", kpath, "--user", "root",
            "--memory", memory or os.environ.get("MAPE_VM_MEMORY", "2G"),
            "--cpus", str(cpus or os.environ.get("MAPE_VM_CPUS", "2"))]
    if os.environ.get("MAPE_VM_KVM") != "1" or not os.access("/dev/kvm", os.W_OK):
        argv.append("--disable-kvm")
    argv += ["--exec", guest_cmd]
    return argv


def run(guest_cmd, timeout=1800, on_line=None, memory=None, cpus=None):
    """Boot, run ``guest_cmd`` (a shell command, cwd = the repository), return (rc, output).
    ``on_line`` gets every output line as it arrives."""
    argv = command(guest_cmd, memory, cpus)
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(argv[0]) + os.pathsep + env.get("PATH", "/usr/bin:/bin")
    proc = subprocess.Popen(argv, cwd=TOP, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, universal_newlines=True, errors="replace",
                            start_new_session=True)
    lines = []
    expired = []

    def kill():
        expired.append(True)
        try:
            os.killpg(proc.pid, 9)   # vng, virtme-run and qemu share the session we started
        except OSError:
            pass
    watchdog = threading.Timer(timeout, kill)
    watchdog.daemon = True
    watchdog.start()
    try:
        for text in proc.stdout:
            lines.append(text)
            if on_line:
                on_line(text.rstrip("\n"))
        rc = proc.wait()
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            kill()
            proc.wait()
    if expired:
        lines.append("\n[tools.vm] VM killed after %d s\n" % timeout)
        rc = 124
    return rc, "".join(lines)


def scenario_command(names, demo=False):
    env = "PYTHONDONTWRITEBYTECODE=1" + (" MAPE_DEMO=1" if demo else "")
    return "cd %s && %s /usr/bin/python3 tests/vm/scenarios.py %s" % (_shquote(TOP), env, " ".join(names))


def _shquote(text):
    return "'" + text.replace("'", "'\\''") + "'"


def run_scenarios(names, demo=False, on_line=None, timeout=1800):
    """Boot once, run the scenarios; ({name: result}, output, boot+run seconds, rc)."""
    t0 = time.time()
    rc, out = run(scenario_command(names, demo), timeout=timeout, on_line=on_line)
    return parse_results(out), out, time.time() - t0, rc


def parse_results(out):
    """{name: result} of the ``MAPE-RESULT {json}`` lines in a guest's output."""
    results = {}
    for text in out.splitlines():
        idx = text.find(RESULT)
        if idx >= 0:
            try:
                value = json.loads(text[idx + len(RESULT):])
            except ValueError:
                continue
            results[value.get("name")] = value
    return results


def write_results(doc, env_var, prefix, label):
    """Write a tier's figures ({"summary", "results"}) as JSON to $env_var, or to a new
    /tmp/<prefix>*.json (unique per run: concurrent runs must not overwrite each other's
    figures), and name it with the summary on stderr. Returns the path, or why it was not
    written."""
    import tempfile

    path = os.environ.get(env_var)
    try:
        if path:
            f = open(path, "w")
        else:
            fd, path = tempfile.mkstemp(prefix=prefix, suffix=".json")
            f = os.fdopen(fd, "w")
        with f:
            json.dump(doc, f, indent=1)
    except OSError as e:
        path = "not written: %s" % e
    sys.stderr.write("\n%s: %s\n%s results: %s\n" % (label, json.dumps(doc["summary"]), label, path))
    return path


def main(argv):
    import argparse

    p = argparse.ArgumentParser(prog="tools.vm", description=__doc__.split("\n\n")[0])
    p.add_argument("--scenarios", nargs="*", metavar="NAME", help="run tests/vm/scenarios.py NAME... (a-f)")
    p.add_argument("cmd", nargs="?", help="shell command to run in the guest")
    args = p.parse_args(argv)
    try:
        if args.scenarios is not None:
            results, _, wall, rc = run_scenarios(args.scenarios or list("abcdef"), on_line=print)
            print("VM wall time %.0f s; results: %s" % (wall, {k: v.get("ok") for k, v in results.items()}))
            return 0 if rc == 0 and results and all(v.get("ok") for v in results.values()) else 1
        rc, _ = run(args.cmd or "uname -r", on_line=print)
        return rc
    except VmUnavailable as e:
        print("tools.vm: %s" % e, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
