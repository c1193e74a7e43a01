"""PID 1 of an OpenWrt test bed (see bed.py). Stdlib only.

Started by bed.py as ``ip netns exec NS unshare -m -p --fork --kill-child python3 bedinit.py
BASE LAYER SYSLOG``, i.e. already in the bed's network namespace and in a fresh mount and
PID namespace. It

1. mounts a tmpfs on BASE and copies the OpenWrt layer into it (overlayfs refuses a lower
   layer that lies inside another lower layer, and "/" is one: the copy puts the layer on a
   different superblock),
2. mounts overlayfs ``lowerdir=LAYER:/`` with a fresh upper dir on BASE/root,
3. mounts proc, sysfs (this network namespace's), a small /dev (device nodes bound from the
   host's, our own /dev/log), tmpfs on /tmp and /run (Debian's /var/run and /var/lock are
   symlinks into /run; OpenWrt keeps the ubus socket, /tmp/.uci, fw4.state there),
4. chroots into it, serves /dev/log (one line per datagram, appended to SYSLOG, a host
   path opened before the chroot), writes /tmp/.bed/ready and reaps orphans forever.

When bed.py kills this process, the kernel kills every process of the PID namespace, and the
mounts go with the mount namespace: nothing outlives the bed.
"""
import os
import socket
import subprocess
import sys
import threading
import time

DEV_NODES = ("null", "zero", "full", "random", "urandom", "tty")


def sh(*argv):
    subprocess.run(list(argv), check=True)


def setup(base, layer):
    sh("mount", "--make-rprivate", "/")
    sh("mount", "-t", "tmpfs", "-o", "mode=0755", "bedbase", base)
    for d in ("layer", "upper", "work", "root"):
        os.mkdir(os.path.join(base, d))
    sh("cp", "-a", layer + "/.", os.path.join(base, "layer"))
    root = os.path.join(base, "root")
    sh("mount", "-t", "overlay", "overlay", "-o",
       "lowerdir=%s:/,upperdir=%s,workdir=%s" % (os.path.join(base, "layer"), os.path.join(base, "upper"),
                                                 os.path.join(base, "work")), root)
    sh("mount", "-t", "proc", "proc", os.path.join(root, "proc"))
    sh("mount", "-t", "sysfs", "sysfs", os.path.join(root, "sys"))
    dev = os.path.join(root, "dev")
    sh("mount", "-t", "tmpfs", "-o", "mode=0755", "dev", dev)
    for node in DEV_NODES:
        path = os.path.join(dev, node)
        open(path, "w").close()
        sh("mount", "--bind", "/dev/" + node, path)
    os.mkdir(os.path.join(dev, "pts"))
    sh("mount", "-t", "devpts", "-o", "newinstance,ptmxmode=0666,mode=620", "devpts", os.path.join(dev, "pts"))
    os.symlink("pts/ptmx", os.path.join(dev, "ptmx"))
    os.mkdir(os.path.join(dev, "shm"))
    for fd, name in ((0, "stdin"), (1, "stdout"), (2, "stderr")):
        os.symlink("/proc/self/fd/%d" % fd, os.path.join(dev, name))
    os.symlink("/proc/self/fd", os.path.join(dev, "fd"))
    sh("mount", "-t", "tmpfs", "-o", "mode=1777", "tmp", os.path.join(root, "tmp"))
    sh("mount", "-t", "tmpfs", "-o", "mode=0755", "run", os.path.join(root, "run"))
    for d in ("run/lock", "run/ubus", "tmp/.bed"):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    return root


def syslog(sock, out):
    while True:
        try:
            data = sock.recv(8192)
        except OSError:
            time.sleep(0.1)
            continue
        line = data.decode("utf-8", "replace").rstrip("\n\0")
        out.write("%.3f %s\n" % (time.time(), line))
        out.flush()


def main():
    base, layer, syslog_path = sys.argv[1:4]
    root = setup(base, layer)
    out = open(syslog_path, "a", encoding="utf-8")
    os.chroot(root)
    os.chdir("/")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("/dev/log")
    os.chmod("/dev/log", 0o666)
    threading.Thread(target=syslog, args=(sock, out), daemon=True).start()
    with open("/tmp/.bed/ready", "w") as f:
        f.write("%d\n" % os.getpid())
    while True:
        try:
            os.wait()
        except ChildProcessError:
            time.sleep(0.2)
        except InterruptedError:
            pass


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # noqa: BLE001 - reported to bed.py through stderr
        sys.stderr.write("bedinit: %s: %s\n" % (type(e).__name__, e))
        sys.stderr.flush()
        sys.exit(1)
