"""Running commands and touching files, relative to a root directory (`/` on the router,
a temp dir in the service tests). Commands are argv lists: nothing reaches a shell.

Every program mape-py starts goes through run_command(): bounded by a timeout, in its own
process group (killed as a group on timeout), interrupted within half a second when the
daemon is told to stop (configure_children(interrupted=...)), and holding a shared lock on
the children lock file while it runs. The lock outlives a daemon killed by PID alone (what
procd does), so the next start waits for, or kills, the orphans before its crash recovery
(wait_for_orphans()): an orphaned `uci commit` can never land after the recovery. No ctypes
(PR_SET_PDEATHSIG) needed: python3-ctypes is a split package on OpenWrt."""
import fcntl
import os
import signal
import subprocess
import time

from mape.core.errors import MapeError

STEP = 0.5          # how often a wait for a child checks whether the daemon must stop
_interrupted = None  # callable: True when the daemon was told to stop
_children_lock = None  # real path of the lock file every child holds (shared)


class CommandError(MapeError):
    """A system command failed (one line; exit code 1 for the CLI)."""

    def __init__(self, argv, returncode, stderr):
        self.argv = argv
        self.returncode = returncode
        self.stderr = (stderr or "").strip()
        first = self.stderr.splitlines()[0] if self.stderr else "exit status %s" % returncode
        MapeError.__init__(self, "%s failed: %s" % (" ".join(argv[:3]), first[:200]))


class Interrupted(MapeError):
    """The daemon was told to stop while a child ran (the child's group was killed)."""


def configure_children(interrupted=None, lock_path=None):
    """Set for the whole process: ``interrupted()`` -> True aborts every wait for a child;
    ``lock_path``: the children lock file (None: no lock)."""
    global _interrupted, _children_lock
    _interrupted = interrupted
    _children_lock = lock_path


def stopping():
    return bool(_interrupted is not None and _interrupted())


def _hold_children_lock():
    """A fresh open file description with a shared lock, for one child to inherit."""
    if not _children_lock:
        return None
    try:
        os.makedirs(os.path.dirname(_children_lock), exist_ok=True)
        fd = os.open(_children_lock, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:   # an orphan's recovery holds it exclusively: run without
        os.close(fd)
        return None
    return fd


def _kill_group(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass
    try:
        proc.kill()
    except OSError:
        pass
    try:   # a grandchild that left the group may hold the pipes: do not wait for it
        proc.communicate(timeout=2)
    except (subprocess.TimeoutExpired, ValueError, OSError):
        for f in (proc.stdin, proc.stdout, proc.stderr):
            try:
                if f is not None:
                    f.close()
            except OSError:
                pass
        try:
            proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            pass


def run_command(argv, input=None, timeout=60):
    """(returncode, stdout, stderr) of ``argv``. CommandError when the program is missing
    or ran out of ``timeout`` seconds (its process group is killed); Interrupted when the
    daemon must stop (configure_children)."""
    if stopping():
        raise Interrupted("stopping: %s not started" % " ".join(argv[:3]))
    held = _hold_children_lock()
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                                errors="replace", start_new_session=True,
                                pass_fds=(held,) if held is not None else ())
    except FileNotFoundError:
        raise CommandError(argv, 127, "%s: not found" % argv[0])
    except OSError as e:
        raise CommandError(argv, 126, "%s: %s" % (argv[0], e.strerror))
    finally:
        if held is not None:
            os.close(held)   # the child's copy keeps the lock
    deadline = time.monotonic() + timeout
    pending_input = input
    while True:
        try:
            out, err = proc.communicate(pending_input, timeout=max(0.0, min(STEP, deadline - time.monotonic())))
            return proc.returncode, out, err
        except subprocess.TimeoutExpired:
            pending_input = None   # communicate() goes on writing what it started
        if stopping():
            _kill_group(proc)
            raise Interrupted("stopping: %s killed" % " ".join(argv[:3]))
        if time.monotonic() >= deadline:
            _kill_group(proc)
            raise CommandError(argv, 124, "timed out after %ss" % timeout)


def wait_for_orphans(lock_path, timeout=20, clock=time.monotonic, sleep=time.sleep):
    """Before crash recovery: wait until no child of a killed daemon still runs (none holds
    the children lock); after ``timeout`` seconds kill the holders. Returns log lines."""
    try:
        fd = os.open(lock_path, os.O_RDWR)
    except OSError:
        return []     # no daemon ever started a child here
    lines = []
    try:
        deadline = clock() + timeout
        killed = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(fd, fcntl.LOCK_UN)
                return lines
            except OSError:
                pass
            if not lines:
                lines.append("waiting for the programs a killed run left behind before recovering")
            if clock() >= deadline:
                if killed:
                    lines.append("programs of a killed run still hold %s; recovering anyway" % lock_path)
                    return lines
                pids = _holders(lock_path)
                for pid in pids:
                    for kill in (os.killpg, os.kill):
                        try:
                            kill(pid, signal.SIGKILL)
                        except OSError:
                            pass
                lines.append("killed %d program(s) a killed run left behind (pids %s)"
                             % (len(pids), " ".join(map(str, pids)) or "-"))
                killed = True
                deadline = clock() + 5
            sleep(0.1)
    finally:
        os.close(fd)


def _holders(path):
    """PIDs (other than ours) with ``path`` open, from /proc/*/fd."""
    try:
        want = os.stat(path)
    except OSError:
        return []
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            fds = os.listdir("/proc/%s/fd" % name)
        except OSError:
            continue
        for fd in fds:
            try:
                st = os.stat("/proc/%s/fd/%s" % (name, fd))
            except OSError:
                continue
            if (st.st_dev, st.st_ino) == (want.st_dev, want.st_ino):
                out.append(int(name))
                break
    return out


class System:
    def __init__(self, root="/"):
        self.root = root

    def path(self, path):
        """The real location of an absolute router path."""
        if self.root in ("", "/"):
            return path
        return os.path.join(self.root, path.lstrip("/"))

    def run(self, argv, input=None, timeout=60, check=True):
        """(returncode, stdout, stderr). Raises CommandError when check and rc != 0, or
        when the program is missing or timed out; Interrupted (see run_command)."""
        rc, out, err = run_command(argv, input, timeout)
        if check and rc != 0:
            raise CommandError(argv, rc, err or out)
        return rc, out, err

    def exists(self, path):
        return os.path.exists(self.path(path))

    def read(self, path, limit=None):
        """File text, or None when it does not exist / cannot be read."""
        try:
            with open(self.path(path), encoding="utf-8", errors="replace") as f:
                return f.read(limit) if limit else f.read()
        except OSError:
            return None

    def write_atomic(self, path, text, sync=True, mode=None):
        """temp file in the same directory + fsync + rename: readers see old or new, never half.
        ``mode`` None keeps the mode and owner of the file it replaces (0644 for a new one);
        a failure (a full overlay) leaves no temp file behind."""
        real = self.path(path)
        directory = os.path.dirname(real)
        os.makedirs(directory, exist_ok=True)
        tmp = os.path.join(directory, ".%s.tmp%d" % (os.path.basename(real), os.getpid()))
        try:
            old = os.stat(real)
        except OSError:
            old = None
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)
                if sync:
                    f.flush()
                    os.fsync(f.fileno())
            if mode is None and old is not None:
                os.chmod(tmp, old.st_mode & 0o7777)
                if (old.st_uid, old.st_gid) != (os.geteuid(), os.getegid()):
                    try:
                        os.chown(tmp, old.st_uid, old.st_gid)
                    except PermissionError:   # not root: the mode is what matters
                        pass
            else:
                os.chmod(tmp, 0o644 if mode is None else mode)
            os.replace(tmp, real)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        if sync:
            fsync_dir(directory)

    def free_kib(self, path):
        """KiB free for us on the file system that holds ``path`` (None: cannot tell)."""
        try:
            st = os.statvfs(self.path(path))
        except OSError:
            return None
        return st.f_bavail * st.f_frsize // 1024

    def remove_stale_temp(self, directory):
        """Delete the temp files of write_atomic() under ``directory`` whose writer is gone
        (a run killed between write and rename). Returns how many were removed."""
        removed = 0
        for top, _, files in os.walk(self.path(directory)):
            for name in files:
                pid = _temp_writer(name)
                if pid is None or _alive(pid):
                    continue
                try:
                    os.unlink(os.path.join(top, name))
                    removed += 1
                except OSError:
                    pass
        return removed

    def remove(self, path):
        try:
            os.unlink(self.path(path))
            fsync_dir(os.path.dirname(self.path(path)))
        except FileNotFoundError:
            pass


def _temp_writer(name):
    """The PID in a write_atomic() temp name (".NAME.tmpPID"), else None."""
    head, sep, digits = name.rpartition(".tmp")
    if not (sep and name.startswith(".") and len(head) > 1 and digits.isdigit()):
        return None
    return int(digits)


def _alive(pid):
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def fsync_dir(directory):
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
