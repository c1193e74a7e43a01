"""One mape-py daemon at a time: an exclusive lock held for the process's life. A second
daemon, a `daemon --once` or `daemon --remove` beside a running service is refused
instead of "recovering" the live daemon's half-done transaction or fighting over the
pid file. The kernel drops the lock when its holder dies, so a killed daemon never
blocks the next start."""
import fcntl
import os
import time

from mape.core.errors import MapeError

LOCK_PATH = "/var/run/mape-py/daemon.lock"


class AlreadyRunning(MapeError):
    pass


def acquire(system, path=LOCK_PATH, wait=0.0):
    """Take the lock, waiting up to ``wait`` seconds for a daemon that is exiting, or raise
    AlreadyRunning (one line, with the holder's PID). Returns the open fd; keep it open (and
    out of children: os.open's fds are not inheritable)."""
    real = system.path(path)
    os.makedirs(os.path.dirname(real), exist_ok=True)
    fd = os.open(real, os.O_RDWR | os.O_CREAT, 0o600)
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except OSError:
            if time.monotonic() < deadline:
                time.sleep(0.2)
                continue
            _refuse(fd)
    os.ftruncate(fd, 0)
    os.write(fd, ("%d\n" % os.getpid()).encode("ascii"))
    return fd


def _refuse(fd):
    os.lseek(fd, 0, os.SEEK_SET)
    holder = os.read(fd, 32).decode("ascii", "replace").strip()
    os.close(fd)
    raise AlreadyRunning("another mape-py daemon is running%s; stop it first (/etc/init.d/mape-py stop)"
                         % (" (pid %s)" % holder if holder.isdigit() else ""))
