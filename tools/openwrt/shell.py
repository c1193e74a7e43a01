#!/usr/bin/env python3
"""Run a command in a throwaway OpenWrt root: the built layer overlaid on the host's /.

    python3 tools/openwrt/shell.py [options] PROFILE [-- CMD ARGS...]   (default CMD: bash)

Builds the layer first if the cache lacks it (tools/openwrt/build.py). Then, as root:

    unshare -m -n -p --fork --kill-child --mount-proc   new mount, net and pid namespaces
    tmpfs on a scratch dir                     upper/ and work/ of the overlay (or --upper)
    cp -a <layer> to a tmpfs of its own        overlayfs refuses nested layers (ELOOP)
    mount -t overlay -o lowerdir=<copy>:/ ...  the OpenWrt layer over the host's /
    proc, sysfs (of the new netns), rbind /dev, tmpfs on /tmp and /run (/var/run -> /run)
    chroot into it, lo up, PATH=/usr/sbin:/usr/bin:/sbin:/bin, run CMD

Everything the command starts (ubusd, netifd, ...) dies with it: it runs under a pid-1 of
our own that reaps and, on exit, takes the namespace down. Writes land in the overlay's
upper dir and vanish, except under --bind paths. /bin/sh is the layer's busybox inside
the namespace by default (the host's /bin/sh is never touched): OpenWrt's scripts need ash
(netifd-proto.sh's `export -n`, flock on fd 1000, fw4's pipefail); --sh dash|bash for others.
Host files show through the overlay (writes go to its upper dir); the cwd and this tools
dir are bound in if they live on another filesystem than /.
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import build  # noqa: E402

PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


def sh(*cmd):
    subprocess.run([str(c) for c in cmd], check=True)


def inner(cfg, cmd):
    layer = cfg["layer"]
    scratch = Path(cfg["scratch"])
    if not cfg.get("upper"):
        sh("mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", scratch)
    for d in ("upper", "work", "root"):
        (scratch / d).mkdir(exist_ok=True)
    root = scratch / "root"
    # overlayfs refuses a lower layer that lies inside another one (ELOOP), and the cache
    # is somewhere under /: give it a copy on a tmpfs of its own (about 10 MB).
    lower = Path(cfg["lower"])
    sh("mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", lower)
    sh("cp", "-a", f"{layer}/.", lower)
    sh("mount", "-t", "overlay", "overlay", "-o",
       f"lowerdir={lower}:/,upperdir={scratch}/upper,workdir={scratch}/work", root)
    sh("mount", "-t", "proc", "proc", root / "proc")
    sh("mount", "-t", "sysfs", "sysfs", root / "sys")
    sh("mount", "--rbind", "/dev", root / "dev")
    for d in ("tmp", "run"):
        sh("mount", "-t", "tmpfs", "-o", "mode=1777" if d == "tmp" else "mode=0755", "tmpfs", root / d)
    var_run = root / "var/run"
    if not var_run.is_symlink():  # Debian: /var/run -> /run, already covered
        sh("mount", "-t", "tmpfs", "tmpfs", var_run)
    (root / "run/lock").mkdir(exist_ok=True)
    for spec in cfg.get("bind", []):
        src, _, dest = spec.partition(":")
        dest = root / (dest or src).lstrip("/")
        if Path(src).is_dir():
            dest.mkdir(parents=True, exist_ok=True)
        else:
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.touch(exist_ok=True)
        sh("mount", "--rbind", src, dest)
    if cfg.get("sh") in ("busybox", "bash"):  # dash: leave the host's link alone
        target = root / "usr/bin/sh"
        target.unlink()  # a whiteout in the upper dir: the host's /bin/sh is untouched
        os.symlink(cfg["sh"], target)

    os.chroot(root)
    cwd = cfg.get("cwd") or "/"
    os.chdir(cwd if os.path.isdir(cwd) else "/")
    subprocess.run(["ip", "link", "set", "lo", "up"], check=False)
    env = dict(os.environ, PATH=PATH, MAPE_OPENWRT_PROFILE=cfg["profile"])
    env.pop("MAPE_OPENWRT_SHELL_CFG", None)

    try:
        child = subprocess.Popen(cmd, env=env)
    except OSError as e:
        print(f"shell.py: {cmd[0]}: {e.strerror}", file=sys.stderr)
        return 127
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda s, _f: child.send_signal(s))
    # pid 1: reap every orphan until our command is done
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        if pid == child.pid:
            return os.waitstatus_to_exitcode(status)


def main(argv=None):
    signal.signal(signal.SIGTERM, build._sigterm)  # a build in progress cleans up
    argv = sys.argv[1:] if argv is None else argv
    cmd = []
    if "--" in argv:
        i = argv.index("--")
        argv, cmd = argv[:i], argv[i + 1:]
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", help="layer cache (as build.py)")
    ap.add_argument("--sources", help="tarball dir (as build.py)")
    ap.add_argument("--sh", choices=("busybox", "bash", "dash"), default="busybox",
                    help="what /bin/sh is inside the namespace (default: busybox, as on OpenWrt)")
    ap.add_argument("--bind", action="append", default=[], metavar="SRC[:DEST]",
                    help="bind-mount a host path into the root, writable (repeatable)")
    ap.add_argument("--upper", help="keep the overlay's upper/work dirs here (for inspection)")
    ap.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("profile", nargs="?")
    a = ap.parse_args(argv)
    cmd = cmd or ["bash"]

    if a.inner:
        sys.exit(inner(json.loads(os.environ["MAPE_OPENWRT_SHELL_CFG"]), cmd))

    if not a.profile:
        ap.error("PROFILE is required")
    if os.geteuid() != 0:
        sys.exit("shell.py: needs root (mount and network namespaces, overlayfs)")
    d = build.ensure(a.profile, a.cache, a.sources)
    binds = [os.path.abspath(b.split(":")[0]) + (":" + b.split(":", 1)[1] if ":" in b else "")
             for b in a.bind]
    # paths on another filesystem than / do not show through the overlay: bind them
    root_dev = os.stat("/").st_dev
    for p in {os.getcwd(), str(HERE)}:
        if os.stat(p).st_dev != root_dev and not any(b.split(":")[0] == p for b in binds):
            binds.append(p)
    # scratch mount points, empty on the host (the mounts live in the namespace only)
    mine = []
    if a.upper:
        scratch = os.path.abspath(a.upper)
        os.makedirs(scratch, exist_ok=True)
    else:
        scratch = tempfile.mkdtemp(prefix="mape-openwrt-")
        mine.append(scratch)
    lower = tempfile.mkdtemp(prefix="mape-openwrt-lower-")
    mine.append(lower)
    cfg = {"layer": str(d / "layer"), "profile": a.profile, "sh": a.sh, "bind": binds,
           "upper": bool(a.upper), "scratch": scratch, "lower": lower, "cwd": os.getcwd()}
    env = dict(os.environ, MAPE_OPENWRT_SHELL_CFG=json.dumps(cfg))
    try:
        r = subprocess.run(["unshare", "-m", "-n", "-p", "--fork", "--kill-child", "--mount-proc",
                            sys.executable, str(Path(__file__).resolve()), "--inner", "--", *cmd],
                           env=env)
    finally:
        for p in mine:
            try:
                if not a.upper or p != scratch:
                    os.rmdir(p)
            except OSError:
                pass
    sys.exit(r.returncode)


if __name__ == "__main__":
    main()
